/* Unit tests for common/grow.c: doubling from the first size, room for the element asked for,
 * and the cap: refused with E2BIG, the array and its capacity untouched. */
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_doubles_up_to_the_cap),
        cmocka_unit_test(test_room_for_n),
    };
    return cmocka_run_group_tests_name("grow", tests, NULL, NULL);
}
