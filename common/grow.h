/* grow: the one way an array grows (as curl's dynbuf, every growable array says at its use
 * how large it may get): the capacity doubles from a first size, never past a cap. Never
 * frees, never moves the elements on failure. */
#ifndef AGENTBOX_GROW_H
#define AGENTBOX_GROW_H

#include <stddef.h>

/* Makes room for element n of the array *arrp points to (elem bytes each, *cap allocated):
 * 0, or -1 with errno ENOMEM, or E2BIG when n reaches max (the array is untouched then). */
int grow_to_fit(void *arrp, size_t n, size_t *cap, size_t elem, size_t first, size_t max);
/* The capacity grow_to_fit would give for element n: *cap itself when n fits already, 0 when
 * n reaches max (refused). For a caller that must weigh the new size before it allocates
 * (a budget shared by many buffers). */
size_t grow_next_cap(size_t n, size_t cap, size_t first, size_t max);
#define GROW(arr, n, cap, first, max)                                                              \
    grow_to_fit(&(arr), (n), &(cap), sizeof(*(arr)), (first), (max))

#endif
