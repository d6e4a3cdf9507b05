/* Unit tests for common/grow.c: doubling from the first size, room for the element asked for,
 * and the cap: refused with E2BIG, the array and its capacity untouched; grow_next_cap
 * tells the same sizes before anything is allocated. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>

#include "grow.h"

static void test_doubles_up_to_the_cap(void **state)
{
    (void)state;
    int *a = NULL;
    size_t n = 0, cap = 0;
    for (; n < 10; n++) {
        assert_int_equal(GROW(a, n, cap, 4, 10), 0);
        a[n] = (int)n;
    }
    assert_int_equal(cap, 10); /* 4, 8, then the cap rather than 16 */
    errno = 0;
    assert_int_equal(GROW(a, n, cap, 4, 10), -1);
    assert_int_equal(errno, E2BIG);
    assert_int_equal(cap, 10);
    for (size_t i = 0; i < n; i++)
        assert_int_equal(a[i], (int)i);
    free(a);
}

static void test_room_for_n(void **state)
{
    (void)state;
    long *a = NULL;
    size_t cap = 0;
    assert_int_equal(GROW(a, 0, cap, 16, 1000), 0);
    assert_int_equal(cap, 16);
    assert_int_equal(GROW(a, 15, cap, 16, 1000), 0); /* fits: nothing moves */
    assert_int_equal(cap, 16);
    assert_int_equal(GROW(a, 16, cap, 16, 1000), 0);
    assert_int_equal(cap, 32);
    free(a);
}

/* What a shared budget weighs before allocating: the same sizes grow_to_fit would give. */
static void test_next_cap_matches_grow(void **state)
{
    (void)state;
    assert_int_equal(grow_next_cap(3, 8, 4, 100), 8);     /* fits: unchanged */
    assert_int_equal(grow_next_cap(0, 0, 4, 100), 4);     /* the first size */
    assert_int_equal(grow_next_cap(8, 8, 4, 100), 16);    /* doubles */
    assert_int_equal(grow_next_cap(40, 8, 4, 100), 41);   /* at least room for n */
    assert_int_equal(grow_next_cap(90, 64, 4, 100), 100); /* never past the cap */
    assert_int_equal(grow_next_cap(100, 64, 4, 100), 0);  /* refused at the cap */
    assert_int_equal(grow_next_cap(5, (size_t)-1 / 2 + 1, 4, (size_t)-1), (size_t)-1 / 2 + 1);
    char *a = NULL;
    size_t cap = 0;
    for (size_t n = 0; n < 100; n++) {
        size_t want = grow_next_cap(n, cap, 16, 100);
        assert_int_equal(grow_to_fit(&a, n, &cap, 1, 16, 100), 0);
        assert_int_equal(cap, want);
    }
    errno = 0;
    assert_int_equal(grow_to_fit(&a, 100, &cap, 1, 16, 100), -1);
    assert_int_equal(errno, E2BIG);
    free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubles_up_to_the_cap),
        cmocka_unit_test(test_room_for_n),
        cmocka_unit_test(test_next_cap_matches_grow),
    };
    return cmocka_run_group_tests_name("grow", tests, NULL, NULL);
}
