/* Unit tests for agent/stuck.c: each OpenHands scenario fires exactly at its threshold,
 * not one step earlier, and a different step in between breaks it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>

#include "stuck.h"

static void feed(struct stuck *s, const char *act, const char *obs, bool err)
{
    stuck_feed(s, act, obs, err, true);
}

static void test_repeat_at_four(void **state)
{
    (void)state;
    struct stuck s;
    stuck_reset(&s);
    for (int i = 0; i < 3; i++) {
        feed(&s, "execute_bash{\"command\":\"ls\"}", "a.txt", false);
        assert_int_equal(stuck_check(&s), STUCK_NONE);
    }
    feed(&s, "execute_bash{\"command\":\"ls\"}", "a.txt", false);
    assert_int_equal(stuck_check(&s), STUCK_REPEAT);
    assert_string_equal(stuck_kind_name(stuck_check(&s)), "repeat");
    /* Same action, a different observation: not a repeat (the world changed). */
    stuck_reset(&s);
    for (int i = 0; i < 3; i++)
        feed(&s, "ls", "a.txt", false);
    feed(&s, "ls", "a.txt b.txt", false);
    assert_int_equal(stuck_check(&s), STUCK_NONE);
}

static void test_reset_forgets(void **state)
{
    (void)state;
    struct stuck s;
    stuck_reset(&s);
    for (int i = 0; i < 3; i++)
        feed(&s, "ls", "x", false);
    stuck_reset(&s);
    feed(&s, "ls", "x", false);
    assert_int_equal(stuck_check(&s), STUCK_NONE);
}

static void test_error_loop_at_three_and_nudge_once(void **state)
{
    (void)state;
    struct stuck s;
    stuck_reset(&s);
    feed(&s, "edit", "ERROR: no match at line 3", true);
    feed(&s, "edit", "ERROR: no match at line 4", true);
    assert_int_equal(stuck_check(&s), STUCK_NONE);
    feed(&s, "edit", "ERROR: no match at line 5", true);
    assert_int_equal(stuck_check(&s), STUCK_ERROR_LOOP);
    assert_true(stuck_error_nudge_once(&s));
    assert_false(stuck_error_nudge_once(&s));
    /* One success in between breaks the loop. */
    stuck_reset(&s);
    feed(&s, "edit", "e", true);
    feed(&s, "edit", "fine", false);
    feed(&s, "edit", "e", true);
    assert_int_equal(stuck_check(&s), STUCK_NONE);
    /* Different actions each failing: not a loop. */
    stuck_reset(&s);
    feed(&s, "a", "e", true);
    feed(&s, "b", "e", true);
    feed(&s, "a", "e", true);
    assert_int_equal(stuck_check(&s), STUCK_NONE);
}

static void test_monologue_at_three(void **state)
{
    (void)state;
    struct stuck s;
    stuck_reset(&s);
    stuck_feed(&s, NULL, NULL, false, false);
    stuck_feed(&s, NULL, NULL, false, false);
    assert_int_equal(stuck_check(&s), STUCK_NONE);
    stuck_feed(&s, NULL, NULL, false, false);
    assert_int_equal(stuck_check(&s), STUCK_MONOLOGUE);
    feed(&s, "ls", "x", false);
    assert_int_equal(stuck_check(&s), STUCK_NONE);
}

static void test_alternation_at_six(void **state)
{
    (void)state;
    struct stuck s;
    stuck_reset(&s);
    for (int i = 0; i < 5; i++) {
        if (i % 2)
            feed(&s, "B", "ob", false);
        else
            feed(&s, "A", "oa", false);
        assert_int_equal(stuck_check(&s), STUCK_NONE);
    }
    feed(&s, "B", "ob", false);
    assert_int_equal(stuck_check(&s), STUCK_ALTERNATION);
    /* A no-action step inside breaks it. */
    stuck_feed(&s, NULL, NULL, false, false);
    assert_int_equal(stuck_check(&s), STUCK_NONE);
    /* ABABAC is not an alternation. */
    stuck_reset(&s);
    const char *seq[] = {"A", "B", "A", "B", "A", "C"};
    for (int i = 0; i < 6; i++)
        feed(&s, seq[i], "o", false);
    assert_int_equal(stuck_check(&s), STUCK_NONE);
}

static void test_ring_wraps(void **state)
{
    (void)state;
    struct stuck s;
    stuck_reset(&s);
    for (int i = 0; i < 100; i++) {
        char a[16];
        snprintf(a, sizeof(a), "act%d", i);
        feed(&s, a, "o", false);
        assert_int_equal(stuck_check(&s), STUCK_NONE);
    }
    for (int i = 0; i < 4; i++)
        feed(&s, "same", "o", false);
    assert_int_equal(stuck_check(&s), STUCK_REPEAT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_repeat_at_four),
        cmocka_unit_test(test_reset_forgets),
        cmocka_unit_test(test_error_loop_at_three_and_nudge_once),
        cmocka_unit_test(test_monologue_at_three),
        cmocka_unit_test(test_alternation_at_six),
        cmocka_unit_test(test_ring_wraps),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
