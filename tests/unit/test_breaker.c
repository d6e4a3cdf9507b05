/* Unit tests for llm/breaker.c on a fake clock: the default thresholds (5 failures open
 * it, 60 s open, 3 half-open calls, 2 successes close it). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "breaker.h"

static const struct breaker_params SEED = {5, 60.0, 3, 2};

static void test_opens_after_threshold_consecutive_failures(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, &SEED);
    double t = 1000;
    for (int i = 0; i < 4; i++) {
        assert_true(breaker_allow(&b, t));
        assert_false(breaker_failure(&b, t));
    }
    assert_true(breaker_allow(&b, t));
    assert_true(breaker_success(&b, t) == false); /* a success resets the count */
    for (int i = 0; i < 4; i++)
        assert_false(breaker_failure(&b, t));
    assert_int_equal(b.state, BREAKER_CLOSED);
    assert_true(breaker_failure(&b, t));
    assert_int_equal(b.state, BREAKER_OPEN);
    assert_int_equal(b.trips, 1);
    assert_false(breaker_allow(&b, t + 59.9));
    assert_false(breaker_peek(&b, t + 59.9));
}

static void test_half_open_probes_then_close(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, &SEED);
    assert_true(breaker_trip(&b, 0));
    assert_false(breaker_trip(&b, 1)); /* already open */
    assert_true(breaker_peek(&b, 60));
    assert_true(breaker_allow(&b, 60));
    assert_int_equal(b.state, BREAKER_HALF_OPEN);
    assert_true(breaker_allow(&b, 60));
    assert_true(breaker_allow(&b, 60));
    assert_false(breaker_allow(&b, 60)); /* only 3 probes */
    assert_false(breaker_peek(&b, 60));
    assert_false(breaker_success(&b, 61));
    assert_int_equal(b.state, BREAKER_HALF_OPEN);
    assert_true(breaker_success(&b, 61));
    assert_int_equal(b.state, BREAKER_CLOSED);
    assert_true(breaker_allow(&b, 62));
}

static void test_half_open_failure_reopens(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, &SEED);
    (void)breaker_trip(&b, 0);
    assert_true(breaker_allow(&b, 61));
    assert_false(breaker_success(&b, 61));
    assert_true(breaker_failure(&b, 62));
    assert_int_equal(b.state, BREAKER_OPEN);
    assert_int_equal(b.trips, 2);
    assert_false(breaker_allow(&b, 62 + 59));
    assert_true(breaker_allow(&b, 62 + 60));
}

static void test_failures_while_open_do_not_extend(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, &SEED);
    (void)breaker_trip(&b, 0);
    assert_false(breaker_failure(&b, 30)); /* a late report from before it opened */
    assert_true(breaker_allow(&b, 60));
}

static void test_release_gives_a_probe_back(void **state)
{
    (void)state;
    struct breaker b;
    breaker_init(&b, &SEED);
    (void)breaker_trip(&b, 0);
    for (int i = 0; i < 3; i++)
        assert_true(breaker_allow(&b, 60));
    assert_false(breaker_allow(&b, 60));
    breaker_release(&b); /* a probe cut by the task's deadline */
    assert_int_equal(b.state, BREAKER_HALF_OPEN);
    assert_true(breaker_allow(&b, 60));
    breaker_release(&b);
    breaker_release(&b);
    breaker_release(&b);
    breaker_release(&b); /* never below zero */
    assert_int_equal(b.probes, 0);
    struct breaker c;
    breaker_init(&c, &SEED);
    breaker_release(&c); /* closed: nothing to give back */
    assert_int_equal(c.state, BREAKER_CLOSED);
}

static void test_degenerate_params_are_sane(void **state)
{
    (void)state;
    struct breaker b;
    struct breaker_params p = {0, 0, 0, 5};
    breaker_init(&b, &p);
    assert_true(breaker_failure(&b, 0)); /* threshold 0 taken as 1 */
    assert_true(breaker_allow(&b, 0));   /* open 0 s: half-open at once */
    assert_true(breaker_success(&b, 0)); /* successes capped to probes (1) */
    assert_int_equal(b.state, BREAKER_CLOSED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_opens_after_threshold_consecutive_failures),
        cmocka_unit_test(test_half_open_probes_then_close),
        cmocka_unit_test(test_half_open_failure_reopens),
        cmocka_unit_test(test_failures_while_open_do_not_extend),
        cmocka_unit_test(test_release_gives_a_probe_back),
        cmocka_unit_test(test_degenerate_params_are_sane),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
