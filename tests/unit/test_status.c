/* Unit tests for wire/status.c: every status's name round trip, and the one mapping from a
 * finished task's status to the exit code of run, wait, batch and llm. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "status.h"

static void test_names_round_trip(void **state)
{
    (void)state;
    for (int i = TS_SUCCEEDED; i < TS_NSTATUS; i++)
        assert_int_equal(task_status_parse(task_status_name((enum task_status)i)), i);
    assert_int_equal(task_status_parse("queued"), -1); /* not a terminal status */
    assert_int_equal(task_status_parse("running"), -1);
    assert_int_equal(task_status_parse("bogus"), -1);
    assert_int_equal(task_status_parse(NULL), -1);
    assert_false(task_status_terminal(TS_RUNNING));
    assert_true(task_status_terminal(TS_CANCELLED));
}

static void test_exit_codes(void **state)
{
    (void)state;
    assert_int_equal(task_status_exit_code("succeeded"), 0);
    assert_int_equal(task_status_exit_code("failed"), 1);
    assert_int_equal(task_status_exit_code("timeout"), 1);
    assert_int_equal(task_status_exit_code("cancelled"), 1);
    assert_int_equal(task_status_exit_code("escalated"), 3);
    assert_int_equal(task_status_exit_code("mock"), 4);
    assert_int_equal(task_status_exit_code("condense"), 1); /* an LLM call's own status */
    assert_int_equal(task_status_exit_code(""), 1);
    assert_int_equal(task_status_exit_code(NULL), 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_round_trip),
        cmocka_unit_test(test_exit_codes),
    };
    return cmocka_run_group_tests_name("status", tests, NULL, NULL);
}
