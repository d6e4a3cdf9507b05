/* Unit tests for agent/tools/tools.c: the schema the request carries, alias resolution, every
 * kind of malformed call turning into an error observation, and dispatch to real tools. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "tools.h"
#include "util.h"

#define CONTAINS(hay, needle)                                                                      \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("expected \"%s\" in \"%s\"", (needle), (hay));                                \
    } while (0)

static void test_schema_shape(void **state)
{
    (void)state;
    cleanup_json cJSON *s = tools_schema();
    assert_non_null(s);
    assert_int_equal(cJSON_GetArraySize(s), 4);
    const char *names[] = {"execute_bash", "str_replace_editor", "think", "finish"};
    const char *req[] = {"command", "command", "thought", "message"};
    for (int i = 0; i < 4; i++) {
        cJSON *t = cJSON_GetArrayItem(s, i);
        assert_string_equal(cJSON_GetObjectItem(t, "type")->valuestring, "function");
        cJSON *f = cJSON_GetObjectItem(t, "function");
        assert_string_equal(cJSON_GetObjectItem(f, "name")->valuestring, names[i]);
        assert_true(strlen(cJSON_GetObjectItem(f, "description")->valuestring) > 40);
        cJSON *p = cJSON_GetObjectItem(f, "parameters");
        assert_string_equal(cJSON_GetObjectItem(p, "type")->valuestring, "object");
        cJSON *r = cJSON_GetObjectItem(p, "required");
        assert_string_equal(cJSON_GetArrayItem(r, 0)->valuestring, req[i]);
        cJSON *props = cJSON_GetObjectItem(p, "properties");
        assert_non_null(cJSON_GetObjectItem(props, req[i]));
    }
    cJSON *ed = cJSON_GetObjectItem(cJSON_GetArrayItem(s, 1), "function");
    cJSON *props = cJSON_GetObjectItem(cJSON_GetObjectItem(ed, "parameters"), "properties");
    const char *eprops[] = {"command", "path",        "file_text", "old_str",
                            "new_str", "insert_line", "view_range"};
    for (size_t i = 0; i < ARRAY_SIZE(eprops); i++)
        assert_non_null(cJSON_GetObjectItem(props, eprops[i]));
    assert_int_equal(
        cJSON_GetArraySize(cJSON_GetObjectItem(cJSON_GetObjectItem(props, "command"), "enum")), 5);
}

static void test_aliases(void **state)
{
    (void)state;
    assert_string_equal(tools_canonical_name("bash"), "execute_bash");
    assert_string_equal(tools_canonical_name("Terminal"), "execute_bash");
    assert_string_equal(tools_canonical_name("execute-command"), "execute_bash");
    assert_string_equal(tools_canonical_name("str_replace"), "str_replace_editor");
    assert_string_equal(tools_canonical_name("file_editor"), "str_replace_editor");
    assert_string_equal(tools_canonical_name("str_replace_based_edit_tool"), "str_replace_editor");
    assert_string_equal(tools_canonical_name("think"), "think");
    assert_string_equal(tools_canonical_name("finish"), "finish");
    assert_null(tools_canonical_name("rm_rf"));
    assert_null(tools_canonical_name(""));
    assert_null(tools_canonical_name(NULL));
    char longname[200];
    memset(longname, 'a', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    assert_null(tools_canonical_name(longname));
}

static struct tools *mk(void)
{
    struct tool_bash_opts o = {.cwd = "/tmp"};
    struct tools *t = tools_new(&o);
    assert_non_null(t);
    return t;
}

static void bad(struct tools *t, const char *name, const char *args, const char *want)
{
    struct tool_outcome o;
    assert_int_equal(tools_dispatch(t, name, args, &o), 0);
    assert_true(o.is_error);
    assert_false(o.is_finish);
    CONTAINS(o.observation, want);
    tool_outcome_free(&o);
}

static void test_malformed_calls(void **state)
{
    (void)state;
    struct tools *t = mk();
    bad(t, "launch_missiles", "{}", "unknown tool `launch_missiles`");
    bad(t, NULL, "{}", "unknown tool");
    bad(t, "execute_bash", "{\"command\": \"ls\"", "not valid JSON");
    bad(t, "execute_bash", "[\"ls\"]", "must be a JSON object");
    bad(t, "execute_bash", "\"ls\"", "must be a JSON object");
    bad(t, "execute_bash", "{}", "missing required parameter `command`");
    bad(t, "execute_bash", "", "missing required parameter `command`");
    bad(t, "execute_bash", "{\"command\": 42}",
        "`command` of tool `execute_bash` must be a string");
    bad(t, "execute_bash", "{\"command\": \"\"}", "`command` is empty");
    bad(t, "execute_bash", "{\"command\": \"ls\", \"timeout\": \"soon\"}", "`timeout`");
    bad(t, "execute_bash", "{\"command\": \"ls\", \"timeout\": -5}", "`timeout`");
    bad(t, "str_replace_editor", "{\"path\": \"/tmp\"}", "missing required parameter `command`");
    bad(t, "str_replace_editor", "{\"command\": \"view\"}", "missing required parameter `path`");
    bad(t, "str_replace_editor", "{\"command\": \"view\", \"path\": \"/tmp\", \"view_range\": 5}",
        "`view_range`");
    bad(t, "str_replace_editor",
        "{\"command\": \"view\", \"path\": \"/etc/hostname\", \"view_range\": [1]}",
        "`view_range`");
    bad(t, "str_replace_editor",
        "{\"command\": \"insert\", \"path\": \"/tmp/x\", \"new_str\": \"a\", \"insert_line\": 1.5}",
        "`insert_line`");
    bad(t, "str_replace_editor", "{\"command\": \"view\", \"path\": \"x\"}",
        "not an absolute path");
    bad(t, "think", "{}", "missing required parameter `thought`");
    bad(t, "finish", "{\"message\": null}", "missing required parameter `message`");
    /* None of that started anything: the bash session starts on the first good call. */
    assert_null(tools_bash(t));
    tools_free(t);
}

static void test_dispatch_real_tools(void **state)
{
    (void)state;
    char dir[] = "/tmp/agentbox-tools-XXXXXX";
    assert_non_null(mkdtemp(dir));
    struct tools *t = mk();
    struct tool_outcome o;
    char args[512];
    snprintf(args, sizeof(args), "{\"command\": \"cd %s && export X=5\"}", dir);
    assert_int_equal(tools_dispatch(t, "bash", args, &o), 0);
    assert_false(o.is_error);
    assert_string_equal(o.tool, "execute_bash");
    assert_int_equal(o.exit_code, 0);
    tool_outcome_free(&o);
    assert_int_equal(tools_dispatch(t, "execute_bash",
                                    "{\"command\": \"echo $X; pwd\", \"timeout\": \"30\"}", &o),
                     0);
    char want[256];
    snprintf(want, sizeof(want),
             "5\n%s\n[Current working directory: %s]\n[Command finished with exit code 0]", dir,
             dir);
    assert_string_equal(o.observation, want);
    tool_outcome_free(&o);
    assert_int_equal(
        tools_dispatch(t, "execute_bash", "{\"command\": \"sleep 5\", \"timeout\": 0.3}", &o), 0);
    assert_true(o.timed_out);
    assert_false(o.is_error);
    tool_outcome_free(&o);

    snprintf(args, sizeof(args),
             "{\"command\": \"create\", \"path\": \"%s/f.txt\", \"file_text\": \"a\\nb\\n\"}", dir);
    assert_int_equal(tools_dispatch(t, "str_replace_editor", args, &o), 0);
    assert_false(o.is_error);
    tool_outcome_free(&o);
    snprintf(args, sizeof(args),
             "{\"command\": \"insert\", \"path\": \"%s/f.txt\", \"new_str\": \"c\", "
             "\"insert_line\": \"2\"}",
             dir);
    assert_int_equal(tools_dispatch(t, "file_editor", args, &o), 0);
    assert_false(o.is_error);
    tool_outcome_free(&o);
    snprintf(args, sizeof(args),
             "{\"command\": \"view\", \"path\": \"%s/f.txt\", \"view_range\": \"[3, -1]\"}", dir);
    assert_int_equal(tools_dispatch(t, "str_replace_editor", args, &o), 0);
    assert_false(o.is_error);
    CONTAINS(o.observation, "     3\tc\n");
    assert_null(strstr(o.observation, "\ta\n"));
    tool_outcome_free(&o);
    /* An editor refusal is an error observation too. */
    snprintf(args, sizeof(args),
             "{\"command\": \"str_replace\", \"path\": \"%s/f.txt\", \"old_str\": \"zzz\"}", dir);
    assert_int_equal(tools_dispatch(t, "str_replace", args, &o), 0);
    assert_true(o.is_error);
    tool_outcome_free(&o);

    assert_int_equal(tools_dispatch(t, "think", "{\"thought\": \"hmm\"}", &o), 0);
    assert_false(o.is_error);
    assert_false(o.is_finish);
    assert_string_equal(o.observation, "Your thought has been logged.");
    tool_outcome_free(&o);
    assert_int_equal(tools_dispatch(t, "finish", "{\"message\": \"all done \\u00e9\"}", &o), 0);
    assert_true(o.is_finish);
    assert_false(o.is_error);
    assert_string_equal(o.finish_message, "all done \xc3\xa9");
    tool_outcome_free(&o);
    tools_free(t);
    snprintf(args, sizeof(args), "rm -rf '%s'", dir);
    assert_int_equal(system(args), 0);
}

static void test_signature(void **state)
{
    (void)state;
    char *a = tools_signature("bash", "{\"command\":  \"ls\"}");
    char *b = tools_signature("execute_bash", "{ \"command\" : \"ls\" }");
    char *c = tools_signature("execute_bash", "{\"command\": \"ls -l\"}");
    char *d = tools_signature("execute_bash", "not json");
    assert_string_equal(a, b);
    assert_string_not_equal(a, c);
    assert_string_equal(d, "execute_bash not json");
    free(a);
    free(b);
    free(c);
    free(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schema_shape),    cmocka_unit_test(test_aliases),
        cmocka_unit_test(test_malformed_calls), cmocka_unit_test(test_dispatch_real_tools),
        cmocka_unit_test(test_signature),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
