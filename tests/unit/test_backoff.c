/* Unit tests for llm/backoff.c: exponential growth, the cap, jitter bounds, and that a
 * server's Retry-After wins but stays capped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <math.h>

#include "backoff.h"

static const struct backoff_params P = {.base_s = 0.5, .cap_s = 8.0, .retry_after_cap_s = 120.0};

static void test_exponential_then_capped(void **state)
{
    (void)state;
    const double expect[] = {0.5, 1, 2, 4, 8, 8, 8};
    for (unsigned n = 0; n < 7; n++)
        assert_true(fabs(backoff_delay(&P, n, -1, 0) - expect[n]) < 1e-9);
    assert_true(backoff_delay(&P, 1000, -1, 0) == 8.0); /* no overflow for absurd n */
}

static void test_jitter_bounds(void **state)
{
    (void)state;
    for (unsigned n = 0; n < 10; n++) {
        double lo = backoff_delay(&P, n, -1, 0);
        for (int i = 0; i < 1000; i++) {
            double d = backoff_delay(&P, n, -1, backoff_random());
            assert_true(d >= lo);
            assert_true(d <= lo * 1.25 + 1e-12);
            assert_true(d <= P.cap_s * 1.25 + 1e-12);
        }
        assert_true(fabs(backoff_delay(&P, n, -1, 0.999999) - lo * 1.25) < 1e-3 * lo);
    }
    /* out-of-range random input is taken as 0, never as a huge jitter */
    assert_true(backoff_delay(&P, 0, -1, 7.0) == 0.5);
    assert_true(backoff_delay(&P, 0, -1, NAN) == 0.5);
}

static void test_jitter_spreads(void **state)
{
    (void)state;
    double mn = 1e9, mx = 0;
    for (int i = 0; i < 2000; i++) {
        double d = backoff_delay(&P, 2, -1, backoff_random());
        mn = d < mn ? d : mn;
        mx = d > mx ? d : mx;
    }
    assert_true(mn < 2.0 * 1.05); /* the low end is reached */
    assert_true(mx > 2.0 * 1.20); /* and the high end */
}

static void test_retry_after_wins_and_is_capped(void **state)
{
    (void)state;
    assert_true(backoff_delay(&P, 0, 30, 0.9) == 30);
    assert_true(backoff_delay(&P, 5, 0, 0.9) == 0);
    assert_true(backoff_delay(&P, 0, 3600, 0) == 120);
}

static void test_random_range(void **state)
{
    (void)state;
    for (int i = 0; i < 100000; i++) {
        double u = backoff_random();
        assert_true(u >= 0 && u < 1);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_exponential_then_capped),
        cmocka_unit_test(test_jitter_bounds),
        cmocka_unit_test(test_jitter_spreads),
        cmocka_unit_test(test_retry_after_wins_and_is_capped),
        cmocka_unit_test(test_random_range),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
