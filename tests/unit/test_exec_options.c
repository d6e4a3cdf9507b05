/* Unit tests for exec_options_parse and exec_options_limits (cli/cmd_exec.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "cmd_exec.h"
#include "util.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

static void test_defaults_and_command(void **state)
{
    (void)state;
    char *argv[] = {"exec", "--", "echo", "hi", NULL};
    struct exec_options o;
    char err[256] = "";
    assert_int_equal(exec_options_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_string_equal(o.policy, "default");
    assert_int_equal(o.set, 0);
    assert_int_equal(o.network_host, -1);
    assert_null(o.meta);
    assert_null(o.workspace_from);
    assert_false(o.help);
    assert_string_equal(o.argv[0], "echo");
    assert_string_equal(o.argv[1], "hi");
    assert_null(o.argv[2]);
}

static void test_every_option(void **state)
{
    (void)state;
    char *argv[] = {
        "exec", "--policy",  "strict", "--timeout=1.5", "--disk",      "64M", "--inodes",
        "1000", "--memory",  "1G",     "--pids=50",     "--cpu",       "3",   "--workspace-from",
        "/src", "--network", "host",   "--meta",        "/tmp/m.json", "--",  "--not-an-option",
        NULL};
    struct exec_options o;
    char err[256] = "";
    assert_int_equal(exec_options_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_string_equal(o.policy, "strict");
    assert_true(o.limits.timeout_s > 1.49 && o.limits.timeout_s < 1.51);
    assert_int_equal(o.limits.disk_bytes, 64ull << 20);
    assert_int_equal(o.limits.inodes, 1000);
    assert_int_equal(o.limits.memory_bytes, 1ull << 30);
    assert_int_equal(o.limits.pids, 50);
    assert_true(o.limits.cpu_s > 2.99 && o.limits.cpu_s < 3.01);
    assert_string_equal(o.workspace_from, "/src");
    assert_int_equal(o.network_host, 1);
    assert_string_equal(o.meta, "/tmp/m.json");
    assert_int_equal(o.set, LIMIT_SET_TIMEOUT | LIMIT_SET_DISK | LIMIT_SET_INODES |
                                LIMIT_SET_MEMORY | LIMIT_SET_PIDS | LIMIT_SET_CPU);
    /* after "--" everything is the command, even what looks like an option */
    assert_string_equal(o.argv[0], "--not-an-option");
}

static void test_command_without_double_dash(void **state)
{
    (void)state;
    char *argv[] = {"exec", "--network", "none", "ls", "-l", NULL};
    struct exec_options o;
    char err[256] = "";
    assert_int_equal(exec_options_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_int_equal(o.network_host, 0);
    assert_string_equal(o.argv[0], "ls");
    assert_string_equal(o.argv[1], "-l");
}

static void test_help(void **state)
{
    (void)state;
    char *argv[] = {"exec", "--disk", "1M", "--help", NULL};
    struct exec_options o;
    char err[256] = "";
    assert_int_equal(exec_options_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    assert_true(o.help);
}

struct bad_case {
    char *args[6];
    const char *needle; /* the error must name this */
};

static void test_refusals_name_the_option(void **state)
{
    (void)state;
    static const struct bad_case cases[] = {
        {{"exec", "--bogus", "--", "true"}, "--bogus"},
        {{"exec", "--disk", "12Q", "--", "true"}, "--disk"},
        {{"exec", "--disk", "0", "--", "true"}, "--disk"},
        {{"exec", "--memory", "-1", "--", "true"}, "--memory"},
        {{"exec", "--inodes", "1.5", "--", "true"}, "--inodes"},
        {{"exec", "--pids", "0", "--", "true"}, "--pids"},
        {{"exec", "--timeout", "soon", "--", "true"}, "--timeout"},
        {{"exec", "--timeout", "0", "--", "true"}, "--timeout"},
        {{"exec", "--cpu", "-3", "--", "true"}, "--cpu"},
        {{"exec", "--network", "bridge", "--", "true"}, "--network"},
        {{"exec", "--meta="}, "--meta"},
        {{"exec", "--policy"}, "--policy"},
        {{"exec", "--"}, "missing command"},
        {{"exec"}, "missing command"},
        {{"exec", "--", ""}, "empty command"},
        {{"exec", "--workspace-from", "", "--", "true"}, "--workspace-from"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
        int argc = 0;
        char *argv[7];
        while (argc < 6 && cases[i].args[argc]) {
            argv[argc] = cases[i].args[argc];
            argc++;
        }
        argv[argc] = NULL;
        struct exec_options o;
        char err[256] = "";
        assert_int_equal(exec_options_parse(argc, argv, &o, err, sizeof(err)), -1);
        if (!strstr(err, cases[i].needle))
            fail_msg("case %zu: '%s' does not name '%s'", i, err, cases[i].needle);
    }
}

static void test_limits_override_only_what_was_given(void **state)
{
    (void)state;
    struct policy_limits def = {.disk_bytes = 1,
                                .inodes = 2,
                                .memory_bytes = 3,
                                .pids = 4,
                                .nofile = 5,
                                .fsize_bytes = 6,
                                .cpu_s = 7,
                                .timeout_s = 8};
    char *argv[] = {"exec", "--disk", "10K", "--pids", "40", "--", "true", NULL};
    struct exec_options o;
    char err[256] = "";
    assert_int_equal(exec_options_parse(ARGC(argv), argv, &o, err, sizeof(err)), 0);
    struct policy_limits out;
    exec_options_limits(&o, &def, &out);
    assert_int_equal(out.disk_bytes, 10240);
    assert_int_equal(out.pids, 40);
    assert_int_equal(out.inodes, 2);
    assert_int_equal(out.memory_bytes, 3);
    assert_int_equal(out.nofile, 5);
    assert_int_equal(out.fsize_bytes, 6);
    assert_true(out.cpu_s == 7 && out.timeout_s == 8);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_and_command),
        cmocka_unit_test(test_every_option),
        cmocka_unit_test(test_command_without_double_dash),
        cmocka_unit_test(test_help),
        cmocka_unit_test(test_refusals_name_the_option),
        cmocka_unit_test(test_limits_override_only_what_was_given),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
