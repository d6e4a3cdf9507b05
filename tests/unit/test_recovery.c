/* Unit tests for llm/recovery.c: chain parsing, the default chains of the required
 * outcomes, and walking a chain step by step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "recovery.h"

static struct llm_error_info err_of(enum llm_error_type t, bool retryable)
{
    struct llm_error_info e = {.type = t, .retryable = retryable, .retry_after_s = -1};
    return e;
}

static void test_parse_and_format(void **state)
{
    (void)state;
    struct recovery_chain c;
    char err[256], buf[256];
    assert_int_equal(recovery_chain_parse(" RETRY_WITH_BACKOFF*3, FALLBACK_MODEL ,CIRCUIT_BREAK",
                                          &c, err, sizeof(err)),
                     0);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.steps[0].strategy, RETRY_WITH_BACKOFF);
    assert_int_equal(c.steps[0].count, 3);
    recovery_chain_format(&c, buf, sizeof(buf));
    assert_string_equal(buf, "RETRY_WITH_BACKOFF*3,FALLBACK_MODEL,CIRCUIT_BREAK");
    assert_int_equal(recovery_chain_parse("RETRYx2", &c, err, sizeof(err)), 0);
    assert_int_equal(c.steps[0].count, 2);
    assert_int_equal(recovery_chain_parse("", &c, err, sizeof(err)), 0);
    assert_int_equal(c.n, 0);
    assert_int_equal(recovery_chain_parse("NONE", &c, err, sizeof(err)), 0);
    assert_int_equal(c.n, 0);
    recovery_chain_format(&c, buf, sizeof(buf));
    assert_string_equal(buf, "NONE");
}

static void test_parse_refuses(void **state)
{
    (void)state;
    struct recovery_chain c = {.n = 42};
    char err[256];
    const char *bad[] = {"RETRY*0",
                         "RETRY*99",
                         "NAP",
                         "ESCALATE*2",
                         "RETRY,,ESCALATE",
                         "RETRY;ESCALATE",
                         "retry",
                         "RETRY,RETRY,RETRY,RETRY,RETRY,RETRY,RETRY,"
                         "RETRY,RETRY"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_int_equal(recovery_chain_parse(bad[i], &c, err, sizeof(err)), -1);
        assert_true(err[0] != '\0');
    }
    assert_int_equal(c.n, 42); /* untouched on failure */
}

static void walk(const struct recovery_policy *p, struct llm_error_info e, bool next_model,
                 bool mock, const enum recovery_action *expect, int n)
{
    struct recovery_cursor cur;
    recovery_cursor_reset(&cur);
    for (int i = 0; i < n; i++) {
        struct recovery_decision d;
        recovery_next(p, &cur, &e, next_model, mock, &d);
        assert_int_equal(d.action, expect[i]);
    }
}

static void test_default_chains(void **state)
{
    (void)state;
    struct recovery_policy p;
    recovery_policy_default(&p);
    /* 401/402/403: escalate at once, never retried */
    enum recovery_action auth[] = {ACT_ESCALATE, ACT_FAIL};
    walk(&p, err_of(AUTHENTICATION_ERROR, false), true, true, auth, 2);
    /* 400: fails, no retry */
    enum recovery_action val[] = {ACT_FAIL};
    walk(&p, err_of(VALIDATION_ERROR, false), true, false, val, 1);
    /* 5xx: three backoff retries, trip, next model, then mock only if enabled */
    enum recovery_action conn[] = {ACT_RETRY, ACT_RETRY, ACT_RETRY, ACT_STOP_MODEL, ACT_FALLBACK};
    walk(&p, err_of(CONNECTION_ERROR, true), true, false, conn, 5);
    enum recovery_action conn_last[] = {ACT_RETRY, ACT_RETRY, ACT_RETRY, ACT_STOP_MODEL, ACT_FAIL};
    walk(&p, err_of(CONNECTION_ERROR, true), false, false, conn_last, 5);
    enum recovery_action conn_mock[] = {ACT_RETRY, ACT_RETRY, ACT_RETRY, ACT_STOP_MODEL, ACT_MOCK};
    walk(&p, err_of(CONNECTION_ERROR, true), false, true, conn_mock, 5);
    /* 429: retry after Retry-After, then the next model */
    enum recovery_action rl[] = {ACT_RETRY, ACT_FALLBACK};
    walk(&p, err_of(RATE_LIMIT_ERROR, true), true, false, rl, 2);
    enum recovery_action rl_last[] = {ACT_RETRY, ACT_RETRY, ACT_RETRY, ACT_STOP_MODEL, ACT_FAIL};
    walk(&p, err_of(RATE_LIMIT_ERROR, true), false, false, rl_last, 5);
    /* timeouts and SDK errors: retried */
    enum recovery_action to[] = {ACT_RETRY, ACT_RETRY, ACT_FALLBACK};
    walk(&p, err_of(TIMEOUT_ERROR, true), true, false, to, 3);
    walk(&p, err_of(SDK_ERROR, true), true, false, to, 3);
}

static void test_fixed_rules(void **state)
{
    (void)state;
    struct recovery_policy p;
    recovery_policy_default(&p);
    struct llm_error_info e = err_of(VALIDATION_ERROR, false);
    e.context_length = true;
    enum recovery_action condense[] = {ACT_CONDENSE, ACT_CONDENSE};
    walk(&p, e, true, true, condense, 2);
    e.context_length = false;
    e.model_unavailable = true;
    enum recovery_action next[] = {ACT_FALLBACK};
    walk(&p, e, true, false, next, 1);
    enum recovery_action none_left[] = {ACT_FAIL};
    walk(&p, e, false, false, none_left, 1);
    /* a non-retryable 503 (availability.retryable=false) skips the retries */
    struct llm_error_info c = err_of(CONNECTION_ERROR, false);
    enum recovery_action skip[] = {ACT_STOP_MODEL, ACT_FAIL};
    walk(&p, c, false, false, skip, 2);
}

static void test_configured_chain_and_strategy_names(void **state)
{
    (void)state;
    struct recovery_policy p;
    recovery_policy_default(&p);
    char err[256];
    assert_int_equal(
        recovery_chain_parse("RETRY*1,ESCALATE", &p.chains[VALIDATION_ERROR], err, sizeof(err)), 0);
    /* the chain's RETRY is skipped for a non-retryable error; ESCALATE is reached */
    enum recovery_action esc[] = {ACT_ESCALATE};
    walk(&p, err_of(VALIDATION_ERROR, false), true, false, esc, 1);
    for (int s = 0; s < RECOVERY_STRATEGIES; s++)
        assert_int_equal(recovery_strategy_parse(recovery_strategy_name(s)), s);
    assert_string_equal(recovery_strategy_name(STRAT_NONE), "NONE");
    struct recovery_cursor cur;
    recovery_cursor_reset(&cur);
    struct recovery_decision d;
    struct llm_error_info e = err_of(CONNECTION_ERROR, true);
    for (unsigned i = 0; i < 3; i++) {
        recovery_next(&p, &cur, &e, true, false, &d);
        assert_int_equal(d.strategy, RETRY_WITH_BACKOFF);
        assert_int_equal(d.retry_n, i); /* the backoff exponent grows */
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_and_format),
        cmocka_unit_test(test_parse_refuses),
        cmocka_unit_test(test_default_chains),
        cmocka_unit_test(test_fixed_rules),
        cmocka_unit_test(test_configured_chain_and_strategy_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
