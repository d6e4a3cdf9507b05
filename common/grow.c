/* grow: see grow.h. */
#include "grow.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>

int grow_to_fit(void *arrp, size_t n, size_t *cap, size_t elem, size_t first, size_t max)
{
    if (n < *cap)
        return 0;
    if (n >= max) {
        errno = E2BIG;
        return -1;
    }
    size_t ncap = *cap ? *cap * 2 : first;
    if (ncap <= n)
        ncap = n + 1;
    if (ncap > max)
        ncap = max;
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
