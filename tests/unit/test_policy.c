/* Unit tests for sandbox/policy.c: every malformed fixture in tests/unit/policies is refused
 * with the file and the field path (or line:column), the shipped policies load with the
 * values they state, "extends" merges as documented, and show's JSON loads back unchanged. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <linux/sched.h>
#include <sys/socket.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "policy.h"
#include "util.h"

static char root[PATH_MAX]; /* the source tree: policies/ and tests/unit/policies/ */

static void use_data_dir(const char *sub)
{
    char dir[PATH_MAX + 32];
    snprintf(dir, sizeof(dir), "%s%s", root, sub);
    assert_int_equal(setenv("AGENTBOX_DATA_DIR", dir, 1), 0);
}

struct bad {
    const char *file;
    const char *needle; /* must appear in the error, after the file name */
};

static const struct bad bad_files[] = {
    {"syntax.json", "syntax.json:3:15: JSON syntax error"},
    {"empty.json", "empty.json:1:1: JSON syntax error"},
    {"trailing.json", "trailing.json:2:1: JSON syntax error"},
    {"not_object.json", ": expected a JSON object at the top"},
    {"unknown_field.json", ": landlok: unknown field"},
    {"dup_key.json", ": landlock: given twice"},
    {"bad_name.json", ": name: expected 1-64 of a-z 0-9 _ -"},
    {"unknown_syscall.json", ": seccomp.rules[1].syscalls[1]: unknown syscall \"fooo\""},
    {"bad_action.json", ": seccomp.rules[0].action: unknown action \"deny\""},
    {"bad_default_action.json", ": seccomp.default_action: unknown action \"kill\""},
    {"bad_errno.json", ": seccomp.rules[0].errno: unknown errno name \"EWHAT\""},
    {"errno_range.json", ": seccomp.rules[0].errno: expected an errno name"},
    {"errno_wrong_action.json", ": seccomp.rules[0].errno: only with action errno"},
    {"rule_unknown_field.json", ": seccomp.rules[0].arg: unknown field"},
    {"syscalls_empty.json", ": seccomp.rules[0].syscalls: expected an array of 1 to"},
    {"syscalls_missing.json", ": seccomp.rules[0].syscalls: required"},
    {"syscall_not_string.json", ": seccomp.rules[0].syscalls[0]: expected a syscall name"},
    {"bad_arg_index.json", ": seccomp.rules[0].args[0].index: expected a whole number from 0 to 5"},
    {"bad_op.json", ": seccomp.rules[0].args[0].op: unknown op \"contains\""},
    {"masked_no_mask.json", ": seccomp.rules[0].args[0].mask: required with op masked_eq"},
    {"mask_not_masked.json", ": seccomp.rules[0].args[0].mask: only with op masked_eq"},
    {"value_outside_mask.json", ": seccomp.rules[0].args[0].mask: value has bits outside"},
    {"arg_too_big.json", ": seccomp.rules[0].args[0].value: expected a whole number within"},
    {"arg_bad_constant.json", ": seccomp.rules[0].args[0].value: \"AF_FOO\" is neither"},
    {"arg_empty_token.json", ": seccomp.rules[0].args[0].mask: empty value"},
    {"dup_arg_index.json", ": seccomp.rules[0].args[1].index: argument 1 is already compared"},
    {"conflict_uncond.json", ": seccomp.rules[1].syscalls[0]: \"getppid\" already has a rule"},
    {"conflict_actions.json", ": seccomp.rules[1].syscalls[0]: \"socket\" rules with args must"},
    {"conflict_same_args.json", ": seccomp.rules[1].syscalls[0]: \"socket\" has a rule with the "
                                "same args"},
    {"same_as_default.json", ": seccomp.rules[0].syscalls[0]: \"getppid\" rule does nothing"},
    {"bad_size.json", ": limits.disk: expected a size like 512M"},
    {"zero_disk.json", ": limits.disk: must be more than 0"},
    {"zero_timeout.json", ": limits.timeout_s: expected seconds, more than 0"},
    {"negative_pids.json", ": limits.pids: expected a whole number"},
    {"limits_unknown.json", ": limits.memroy: unknown field"},
    {"bad_tmp_size.json", ": mounts.tmp_size: expected a size"},
    {"bind_relative.json", ": mounts.ro_binds[0].path: expected an absolute path"},
    {"bind_proc.json", ": mounts.ro_binds[1].path: /proc is refused"},
    {"bind_run.json", ": mounts.ro_binds[0].path: /run is refused"},
    {"bind_root.json", ": mounts.ro_binds[0].path: binding the whole host root is refused"},
    {"bind_dotdot.json", ": mounts.ro_binds[0].path: path must be normalized"},
    {"bind_dup.json", ": mounts.ro_binds[2].path: \"/usr\" already bound by ro_binds[0]"},
    {"bind_no_path.json", ": mounts.ro_binds[0].path: required"},
    {"network_type.json", ": network.allow_host: expected true or false"},
    {"landlock_type.json", ": landlock: expected true or false"},
    {"extends_missing.json", ": extends: policy \"nonexistent\": no policies/nonexistent.json"},
    {"extends_path.json", ": extends: expected a policy name"},
    {"extends_bad_base.json", ": extends: "},
    {"cycle_a.json", "more than 4 levels"},
    {"rules_not_array.json", ": seccomp.rules: expected an array"},
};

static int reset_data_dir(void **state)
{
    (void)state;
    use_data_dir("");
    return 0;
}

static void test_malformed_fixtures_refused_with_field_path(void **state)
{
    (void)state;
    use_data_dir("/tests/unit"); /* so "extends" finds the fixtures' own bases */
    for (size_t i = 0; i < ARRAY_SIZE(bad_files); i++) {
        char path[PATH_MAX + 64], err[ERR_MSG_MAX] = "";
        snprintf(path, sizeof(path), "%s/tests/unit/policies/%s", root, bad_files[i].file);
        struct policy *p = (struct policy *)1;
        int r = policy_load(path, &p, err, sizeof(err));
        if (r != -1 || !strstr(err, bad_files[i].needle) || strncmp(err, path, strlen(path)) != 0)
            fail_msg("%s: r=%d, error \"%s\", wanted \"%s\" after the path", bad_files[i].file, r,
                     err, bad_files[i].needle);
        assert_null(p);
    }
    /* the base's own error names the base's file and field */
    char path[PATH_MAX + 64], err[ERR_MSG_MAX];
    struct policy *p;
    snprintf(path, sizeof(path), "%s/tests/unit/policies/extends_bad_base.json", root);
    assert_int_equal(policy_load(path, &p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "extends: "));
    assert_non_null(strstr(err, "broken_base.json: limits.disk: expected a size"));
    use_data_dir("");
}

static void test_every_fixture_is_listed(void **state)
{
    (void)state;
    /* a fixture nobody asserts on is a test that cannot fail */
    char cmd[PATH_MAX + 64];
    snprintf(cmd, sizeof(cmd), "ls %s/tests/unit/policies", root);
    FILE *ls = popen(cmd, "r");
    assert_non_null(ls);
    char line[256];
    int n = 0;
    while (fgets(line, sizeof(line), ls)) {
        line[strcspn(line, "\n")] = '\0';
        bool listed = strcmp(line, "broken_base.json") == 0 || strcmp(line, "cycle_b.json") == 0;
        for (size_t i = 0; i < ARRAY_SIZE(bad_files) && !listed; i++)
            listed = strcmp(bad_files[i].file, line) == 0;
        if (!listed)
            fail_msg("fixture %s has no expectation in test_policy.c", line);
        n++;
    }
    assert_int_equal(pclose(ls), 0);
    assert_int_equal(n, (int)ARRAY_SIZE(bad_files) + 2);
}

static void test_names_and_paths(void **state)
{
    (void)state;
    char err[ERR_MSG_MAX];
    struct policy *p;
    const char *bad[] = {"Default", "", "a b", "x.y", "..", "default\n"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        assert_int_equal(policy_load(bad[i], &p, err, sizeof(err)), -1);
        assert_non_null(strstr(err, "a name is 1-64 of a-z 0-9 _ -"));
    }
    assert_int_equal(policy_load("nonexistent", &p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "policy \"nonexistent\": no policies/nonexistent.json"));
    assert_int_equal(policy_load("/nonexistent/x.json", &p, err, sizeof(err)), -1);
    assert_string_equal(err, "/nonexistent/x.json: No such file or directory");
    assert_int_equal(policy_load("/etc", &p, err, sizeof(err)), -1);
    assert_string_equal(err, "/etc: not a regular file");
    /* found from any working directory through the data dir */
    char cwd[PATH_MAX];
    assert_non_null(getcwd(cwd, sizeof(cwd)));
    assert_int_equal(chdir("/"), 0);
    assert_int_equal(policy_load("default", &p, err, sizeof(err)), 0);
    assert_int_equal(chdir(cwd), 0);
    assert_string_equal(p->name, "default");
    policy_free(p);
}

static void test_size_bound_and_nul(void **state)
{
    (void)state;
    char path[] = "/tmp/agentbox-test-policy-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, POLICY_FILE_MAX_BYTES + 1), 0);
    assert_int_equal(close(fd), 0);
    char err[ERR_MSG_MAX];
    struct policy *p;
    assert_int_equal(policy_load(path, &p, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "larger than 1048576 bytes"));
    assert_int_equal(unlink(path), 0);
    static const char text[] = "{\"name\": \"x\"}\0{}";
    assert_int_equal(policy_parse(text, sizeof(text) - 1, "mem.json", &p, err, sizeof(err)), -1);
    assert_string_equal(err, "mem.json: contains a NUL byte");
}

static void test_minimal_policy_gets_builtin_defaults(void **state)
{
    (void)state;
    char err[ERR_MSG_MAX];
    struct policy *p;
    assert_int_equal(policy_parse("{}", 2, "dir/min.json", &p, err, sizeof(err)), 0);
    assert_string_equal(p->name, "min");
    assert_int_equal(p->limits.disk_bytes, POLICY_DEFAULT_DISK_BYTES);
    assert_int_equal(p->limits.inodes, POLICY_DEFAULT_INODES);
    assert_int_equal(p->limits.memory_bytes, POLICY_DEFAULT_MEMORY_BYTES);
    assert_int_equal(p->limits.pids, POLICY_DEFAULT_PIDS);
    assert_int_equal(p->limits.nofile, POLICY_DEFAULT_NOFILE);
    assert_true(p->limits.timeout_s == POLICY_DEFAULT_TIMEOUT_S);
    assert_int_equal(p->tmp_bytes, POLICY_DEFAULT_TMP_BYTES);
    assert_int_equal(p->nbinds, 0);
    assert_int_equal(p->nrules, 0);
    assert_true(p->landlock && p->loopback && !p->allow_network_host);
    assert_int_equal(p->default_action, POLICY_ACT_ALLOW);
    policy_free(p);

    /* default.json states the built-in values explicitly: they must agree */
    assert_int_equal(policy_load("default", &p, err, sizeof(err)), 0);
    assert_int_equal(p->limits.disk_bytes, POLICY_DEFAULT_DISK_BYTES);
    assert_int_equal(p->limits.inodes, POLICY_DEFAULT_INODES);
    assert_int_equal(p->limits.memory_bytes, POLICY_DEFAULT_MEMORY_BYTES);
    assert_int_equal(p->limits.pids, POLICY_DEFAULT_PIDS);
    assert_int_equal(p->limits.nofile, POLICY_DEFAULT_NOFILE);
    assert_int_equal(p->limits.fsize_bytes, POLICY_DEFAULT_FSIZE_BYTES);
    assert_true(p->limits.cpu_s == POLICY_DEFAULT_CPU_S);
    assert_true(p->limits.timeout_s == POLICY_DEFAULT_TIMEOUT_S);
    assert_int_equal(p->tmp_bytes, POLICY_DEFAULT_TMP_BYTES);
    assert_int_equal(p->shm_bytes, POLICY_DEFAULT_SHM_BYTES);
    policy_free(p);
}

static const struct policy_rule *find_rule(const struct policy *p, const char *name)
{
    for (size_t i = 0; i < p->nrules; i++)
        if (strcmp(p->rules[i].syscall, name) == 0)
            return &p->rules[i];
    return NULL;
}

static void test_shipped_policies(void **state)
{
    (void)state;
    char err[ERR_MSG_MAX];
    struct policy *d, *s, *pm;
    assert_int_equal(policy_load("default", &d, err, sizeof(err)), 0);
    assert_int_equal(policy_load("strict", &s, err, sizeof(err)), 0);
    assert_int_equal(policy_load("permissive", &pm, err, sizeof(err)), 0);

    assert_false(d->allow_network_host);
    assert_true(d->landlock);
    assert_string_equal(d->binds[0].path, "/usr");
    assert_non_null(find_rule(d, "modify_ldt"));
    assert_int_equal(find_rule(d, "kcmp")->action, POLICY_ACT_ERRNO);

    /* strict extends default: its kcmp rule replaces default's, the rest stay */
    assert_string_equal(s->name, "strict");
    assert_int_equal(find_rule(s, "kcmp")->action, POLICY_ACT_KILL_PROCESS);
    assert_non_null(strstr(find_rule(s, "kcmp")->where, "strict.json: seccomp.rules[1]"));
    assert_int_equal(find_rule(s, "fanotify_init")->action, POLICY_ACT_ERRNO);
    assert_non_null(strstr(find_rule(s, "fanotify_init")->where, "default.json"));
    assert_int_equal(find_rule(s, "socket")->errno_value, EAFNOSUPPORT);
    assert_int_equal(find_rule(s, "socket")->args[0].value, AF_NETLINK);
    assert_false(s->loopback);
    assert_true(s->limits.memory_bytes < d->limits.memory_bytes);
    assert_true(s->limits.pids < d->limits.pids);

    /* permissive: default's rules unchanged, network and limits opened up */
    assert_int_equal(pm->nrules, d->nrules);
    assert_true(pm->allow_network_host);
    assert_false(pm->landlock);
    assert_true(pm->limits.disk_bytes > d->limits.disk_bytes);
    assert_int_equal(pm->default_action, POLICY_ACT_ALLOW);
    policy_free(d);
    policy_free(s);
    policy_free(pm);
}

static void test_arg_values(void **state)
{
    (void)state;
    static const char text[] =
        "{\"seccomp\": {\"rules\": [\n"
        " {\"syscalls\": [\"clone\"], \"action\": \"kill_process\", \"args\": [{\"index\": 0, "
        "\"op\": \"masked_eq\", \"mask\": \"CLONE_NEWNS|CLONE_NEWUSER\", \"value\": "
        "\"CLONE_NEWUSER\"}]},\n"
        " {\"syscalls\": [\"ioctl\"], \"action\": \"errno\", \"errno\": 25, \"args\": [{\"index\": "
        "1, \"op\": \"eq\", \"value\": \"0xffffffff00005412\"}, {\"index\": 0, \"op\": \"lt\", "
        "\"value\": -100}]}\n"
        "]}}";
    char err[ERR_MSG_MAX];
    struct policy *p;
    assert_int_equal(policy_parse(text, strlen(text), "args.json", &p, err, sizeof(err)), 0);
    assert_int_equal(p->nrules, 2);
    assert_int_equal(p->rules[0].args[0].mask, CLONE_NEWNS | CLONE_NEWUSER);
    assert_int_equal(p->rules[0].args[0].value, CLONE_NEWUSER);
    assert_int_equal(p->rules[1].args[0].value, 0xffffffff00005412ull);
    assert_int_equal(p->rules[1].args[1].value, (uint64_t)-100);
    assert_int_equal(p->rules[1].errno_value, ENOTTY);
    assert_string_equal(p->rules[1].where, "args.json: seccomp.rules[1].syscalls[0]");
    policy_free(p);
}

static void test_show_json_loads_back_to_the_same_filter(void **state)
{
    (void)state;
    const char *names[] = {"default", "strict", "permissive"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        char err[ERR_MSG_MAX];
        struct policy *a, *b;
        assert_int_equal(policy_load(names[i], &a, err, sizeof(err)), 0);
        cleanup_json cJSON *j = policy_to_json(a);
        assert_non_null(j);
        char *text = cJSON_Print(j);
        assert_non_null(text);
        if (policy_parse(text, strlen(text), "shown.json", &b, err, sizeof(err)) < 0)
            fail_msg("%s: %s", names[i], err);
        free(text);
        assert_string_equal(a->name, b->name);
        assert_int_equal(a->nrules, b->nrules);
        assert_int_equal(a->nbinds, b->nbinds);
        assert_memory_equal(&a->limits, &b->limits, sizeof(a->limits));
        assert_int_equal(a->tmp_bytes, b->tmp_bytes);
        assert_int_equal(a->loopback, b->loopback);
        assert_int_equal(a->landlock, b->landlock);
        for (int none = 0; none < 2; none++) {
            struct sock_fprog fa, fb;
            assert_int_equal(policy_seccomp_build(a, none, &fa, err, sizeof(err)), 0);
            assert_int_equal(policy_seccomp_build(b, none, &fb, err, sizeof(err)), 0);
            assert_int_equal(fa.len, fb.len);
            assert_memory_equal(fa.filter, fb.filter, fa.len * sizeof(*fa.filter));
            policy_bpf_free(&fa);
            policy_bpf_free(&fb);
        }
        policy_free(a);
        policy_free(b);
    }
}

int main(void)
{
    const char *env = getenv("AGENTBOX_DATA_DIR");
    if (env && *env)
        snprintf(root, sizeof(root), "%s", env);
    else if (!getcwd(root, sizeof(root)))
        return 1;
    use_data_dir("");
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_malformed_fixtures_refused_with_field_path, reset_data_dir),
        cmocka_unit_test_setup(test_every_fixture_is_listed, reset_data_dir),
        cmocka_unit_test_setup(test_names_and_paths, reset_data_dir),
        cmocka_unit_test_setup(test_size_bound_and_nul, reset_data_dir),
        cmocka_unit_test_setup(test_minimal_policy_gets_builtin_defaults, reset_data_dir),
        cmocka_unit_test_setup(test_shipped_policies, reset_data_dir),
        cmocka_unit_test_setup(test_arg_values, reset_data_dir),
        cmocka_unit_test_setup(test_show_json_loads_back_to_the_same_filter, reset_data_dir),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
