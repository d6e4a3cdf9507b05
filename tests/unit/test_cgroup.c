/* test_cgroup: reading our own cgroup from /proc/self/cgroup, for every layout a host has:
 * cgroup v2 only (the default of current distributions), hybrid (v1 controllers plus the unified
 * hierarchy) and v1 only. A v2-only host whose "0::/" line was not recognised used no cgroup at
 * all (limits fell back to rlimits); this was found by running the suites in a v2-only VM.
 * And the sweep of leftover cgroups, which is rate-limited (slot_sweep_due). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>

#include "cell_internal.h"

static void test_v2_only_root(void **state)
{
    (void)state;
    char out[256] = "unchanged";
    assert_int_equal(cgroup_parse_own_path("0::/\n", "", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(cgroup_parse_own_path("0::/\n", "memory", out, sizeof(out)), -1);
}

static void test_v2_only_nested(void **state)
{
    (void)state;
    char out[256];
    assert_int_equal(cgroup_parse_own_path("0::/user.slice/user-1000.slice/session-3.scope\n", "",
                                           out, sizeof(out)),
                     0);
    assert_string_equal(out, "/user.slice/user-1000.slice/session-3.scope");
}

static void test_hybrid(void **state)
{
    (void)state;
    static const char text[] = "12:pids:/agents\n"
                               "11:memory:/process_api/61a4\n"
                               "10:cpu,cpuacct:/\n"
                               "1:name=systemd:/init.scope\n"
                               "0::/init.scope\n";
    char out[256];
    assert_int_equal(cgroup_parse_own_path(text, "", out, sizeof(out)), 0);
    assert_string_equal(out, "/init.scope");
    assert_int_equal(cgroup_parse_own_path(text, "memory", out, sizeof(out)), 0);
    assert_string_equal(out, "/process_api/61a4");
    assert_int_equal(cgroup_parse_own_path(text, "pids", out, sizeof(out)), 0);
    assert_string_equal(out, "/agents");
    assert_int_equal(cgroup_parse_own_path(text, "cpu", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    /* "cpuacct" is not "cpu", and a named hierarchy is no controller */
    assert_int_equal(cgroup_parse_own_path(text, "systemd", out, sizeof(out)), -1);
}

static void test_v1_only_and_junk(void **state)
{
    (void)state;
    char out[256];
    static const char v1[] = "3:memory:/a\n2:pids:/b\n";
    assert_int_equal(cgroup_parse_own_path(v1, "", out, sizeof(out)), -1);
    assert_int_equal(cgroup_parse_own_path(v1, "memory", out, sizeof(out)), 0);
    assert_string_equal(out, "/a");
    /* a non-zero id with an empty controller list is not the unified hierarchy */
    assert_int_equal(cgroup_parse_own_path("10::/x\n", "", out, sizeof(out)), -1);
    assert_int_equal(cgroup_parse_own_path("garbage\n\n:\n", "", out, sizeof(out)), -1);
    assert_int_equal(cgroup_parse_own_path("", "", out, sizeof(out)), -1);
}

/* The cgroup sweep reads every kept cgroup; it runs at most once per period for the user,
 * across processes: due with a period of 0, then not due within an hour of that. */
static void test_sweep_is_rate_limited(void **state)
{
    (void)state;
    assert_true(slot_sweep_due(0.0));
    assert_false(slot_sweep_due(3600.0));
    assert_true(slot_sweep_due(0.0));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_v2_only_root),
        cmocka_unit_test(test_v2_only_nested),
        cmocka_unit_test(test_hybrid),
        cmocka_unit_test(test_v1_only_and_junk),
        cmocka_unit_test(test_sweep_is_rate_limited),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
