/* grow: see grow.h. */
#include "grow.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

size_t grow_next_cap(size_t n, size_t cap, size_t first, size_t max)
{
    if (n < cap)
        return cap;
    if (n >= max)
        return 0;
    size_t ncap = cap ? (cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2) : first;
    if (ncap <= n)
        ncap = n + 1;
    return ncap > max ? max : ncap;
}

int grow_to_fit(void *arrp, size_t n, size_t *cap, size_t elem, size_t first, size_t max)
{
    if (n < *cap)
        return 0;
    size_t ncap = grow_next_cap(n, *cap, first, max);
    if (!ncap) {
        errno = E2BIG;
        return -1;
    }
    if (ncap > SIZE_MAX / elem) {
        errno = ENOMEM;
        return -1;
    }
    void **slot = arrp; /* an element pointer stored as void * (built -fno-strict-aliasing) */
    void *p = realloc(*slot, ncap * elem);
    if (!p)
        return -1;
    *slot = p;
    *cap = ncap;
    return 0;
}
