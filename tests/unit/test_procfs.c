/* Unit tests for common/procfs.c: fields read after the command name's last ')', whatever
 * the name holds; a truncated line is refused; this process's own stat parses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>
#include <unistd.h>

#include "procfs.h"

static void test_hostile_command_name(void **state)
{
    (void)state;
    char line[] =
        "4242 (a) Z 1 2 3 (x) ) S 7 8 9 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 123456 0 0\n";
    struct procfs_stat st;
    assert_int_equal(procfs_stat_parse(line, &st), 0);
    assert_int_equal(st.state, 'S');
    assert_int_equal(st.ppid, 7);
    assert_int_equal(st.pgrp, 8);
    assert_int_equal(st.session, 9);
    assert_int_equal(st.starttime, 123456);
}

static void test_truncated_line_refused(void **state)
{
    (void)state;
    char cut[] = "4242 (sh) S 1 2 3 4";
    struct procfs_stat st;
    assert_int_equal(procfs_stat_parse(cut, &st), -1);
    char none[] = "4242 sh S 1 2 3";
    assert_int_equal(procfs_stat_parse(none, &st), -1);
}

static void test_own_stat(void **state)
{
    (void)state;
    struct procfs_stat st;
    assert_int_equal(procfs_stat(getpid(), &st), 0);
    assert_int_equal(st.ppid, getppid());
    assert_int_equal(st.session, getsid(0));
    assert_true(st.starttime > 0);
    assert_int_equal(procfs_stat(-1, &st), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hostile_command_name),
        cmocka_unit_test(test_truncated_line_refused),
        cmocka_unit_test(test_own_stat),
    };
    return cmocka_run_group_tests_name("procfs", tests, NULL, NULL);
}
