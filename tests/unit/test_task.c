/* Unit tests for wire/task.c: every invalid task is refused naming the field. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#include "task.h"
#include "util.h"

static void expect_refused(const char *text, const char *field)
{
    struct task t;
    char err[512] = "";
    assert_int_equal(task_parse_text(text, &t, err, sizeof(err)), -1);
    if (!strstr(err, field))
        fail_msg("error for %s does not name %s: %s", text, field, err);
}

static void test_minimal_task_gets_an_id(void **state)
{
    (void)state;
    struct task t;
    char err[512];
    assert_int_equal(task_parse_text("{\"prompt\":\"hi\"}", &t, err, sizeof(err)), 0);
    assert_string_equal(t.prompt, "hi");
    assert_true(strncmp(t.id, "task-", 5) == 0);
    assert_true(task_id_is_valid(t.id));
    task_free(&t);
}

static void test_full_task(void **state)
{
    (void)state;
    struct task t;
    char err[512];
    const char *text =
        "{\"id\":\"t-1\",\"prompt\":\"p\",\"model\":\"m\",\"fallback_models\":[\"a\",\"b\"],"
        "\"max_iterations\":7,\"timeout_s\":12.5,\"policy\":\"strict\",\"network\":\"none\","
        "\"limits\":{\"disk\":\"64M\",\"inodes\":100,\"memory\":8388608,\"pids\":10,"
        "\"cpu_s\":3},\"workspace\":{\"from_dir\":\"/tmp\",\"files\":{\"a/b.txt\":\"x\"}},"
        "\"outputs\":[\"*.txt\"],\"budget\":{\"max_cost_usd\":0.5,\"max_tokens\":1000},"
        "\"metadata\":{\"k\":1}}";
    assert_int_equal(task_parse_text(text, &t, err, sizeof(err)), 0);
    assert_string_equal(t.id, "t-1");
    assert_int_equal(t.nfallback, 2);
    assert_int_equal(t.max_iterations, 7);
    assert_int_equal(t.disk_bytes, 64u << 20);
    assert_int_equal(t.memory_bytes, 8388608);
    assert_int_equal(t.limits_set, LIMIT_SET_DISK | LIMIT_SET_INODES | LIMIT_SET_MEMORY |
                                       LIMIT_SET_PIDS | LIMIT_SET_CPU);
    assert_string_equal(t.workspace_from, "/tmp");
    assert_int_equal(t.noutputs, 1);
    assert_int_equal(t.max_tokens, 1000);
    assert_non_null(t.metadata);
    task_free(&t);
}

static void test_invalid_tasks_name_the_field(void **state)
{
    (void)state;
    expect_refused("[1]", "task");
    expect_refused("{not json", "not valid JSON");
    expect_refused("{}", "task.prompt");
    expect_refused("{\"prompt\":\"\"}", "task.prompt");
    expect_refused("{\"prompt\":3}", "task.prompt");
    expect_refused("{\"prompt\":\"p\",\"bogus\":1}", "task.bogus");
    expect_refused("{\"prompt\":\"p\",\"id\":\"../etc\"}", "task.id");
    expect_refused("{\"prompt\":\"p\",\"id\":\"a/b\"}", "task.id");
    expect_refused("{\"prompt\":\"p\",\"max_iterations\":0}", "task.max_iterations");
    expect_refused("{\"prompt\":\"p\",\"max_iterations\":1.5}", "task.max_iterations");
    expect_refused("{\"prompt\":\"p\",\"timeout_s\":-1}", "task.timeout_s");
    expect_refused("{\"prompt\":\"p\",\"network\":\"wan\"}", "task.network");
    expect_refused("{\"prompt\":\"p\",\"limits\":{\"disk\":\"12Q\"}}", "task.limits.disk");
    expect_refused("{\"prompt\":\"p\",\"limits\":{\"disc\":\"1M\"}}", "task.limits.disc");
    expect_refused("{\"prompt\":\"p\",\"limits\":{\"pids\":-3}}", "task.limits.pids");
    expect_refused("{\"prompt\":\"p\",\"workspace\":{\"from_dir\":\"\"}}",
                   "task.workspace.from_dir");
    expect_refused("{\"prompt\":\"p\",\"workspace\":{\"files\":{\"../x\":\"a\"}}}",
                   "task.workspace.files");
    expect_refused("{\"prompt\":\"p\",\"workspace\":{\"files\":{\"/etc/x\":\"a\"}}}",
                   "task.workspace.files");
    expect_refused("{\"prompt\":\"p\",\"workspace\":{\"files\":{\"a\":1}}}",
                   "task.workspace.files");
    expect_refused("{\"prompt\":\"p\",\"outputs\":[\"../*\"]}", "task.outputs[0]");
    expect_refused("{\"prompt\":\"p\",\"outputs\":\"*.c\"}", "task.outputs");
    expect_refused("{\"prompt\":\"p\",\"budget\":{\"max_cost_usd\":\"1\"}}",
                   "task.budget.max_cost_usd");
    expect_refused("{\"prompt\":\"p\",\"fallback_models\":[1]}", "task.fallback_models[0]");
    expect_refused("{\"prompt\":\"p\",\"metadata\":[]}", "task.metadata");
}

/* The seed's name is not looked at when parsed (that would be a probe with this process's
 * rights); it is opened, with the requester's rights, by task_open_seed. */
static void test_seed_is_opened_not_parsed(void **state)
{
    (void)state;
    struct task t;
    char err[512];
    assert_int_equal(task_parse_text("{\"prompt\":\"p\",\"workspace\":{\"from_dir\":"
                                     "\"/nonexistent-xyz\"}}",
                                     &t, err, sizeof(err)),
                     0);
    assert_string_equal(t.workspace_from, "/nonexistent-xyz");
    assert_int_equal(t.seed_fd, -1);
    assert_int_equal(task_open_seed(&t, NULL, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "task.workspace.from_dir: /nonexistent-xyz"));
    task_free(&t);
    assert_int_equal(task_parse_text("{\"prompt\":\"p\",\"workspace\":{\"from_dir\":\"/\"}}", &t,
                                     err, sizeof(err)),
                     0);
    assert_int_equal(task_open_seed(&t, NULL, err, sizeof(err)), 0);
    assert_true(t.seed_fd > 2);
    task_free(&t);
}

static void test_path_safety(void **state)
{
    (void)state;
    assert_true(task_path_is_safe("a"));
    assert_true(task_path_is_safe("a/b/c.txt"));
    assert_true(task_path_is_safe("..a/b"));
    assert_false(task_path_is_safe(""));
    assert_false(task_path_is_safe("/a"));
    assert_false(task_path_is_safe("a/../b"));
    assert_false(task_path_is_safe(".."));
    assert_false(task_path_is_safe("a//b"));
    assert_false(task_path_is_safe("./a"));
    assert_false(task_path_is_safe("a/"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_minimal_task_gets_an_id),
        cmocka_unit_test(test_full_task),
        cmocka_unit_test(test_invalid_tasks_name_the_field),
        cmocka_unit_test(test_seed_is_opened_not_parsed),
        cmocka_unit_test(test_path_safety),
    };
    return cmocka_run_group_tests_name("task", tests, NULL, NULL);
}
