/* Unit tests for agent/fncall_text.c: the prompt suffix, parsing well-formed and nasty
 * replies (missing closing tags, multiline values, nesting, duplicates, junk), converting a
 * native history to text form and back, and a deterministic fuzz run for crashes. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fncall_text.h"
#include "json.h"
#include "tools.h"
#include "util.h"

static cJSON *tools;

static int setup(void **state)
{
    (void)state;
    tools = tools_schema();
    return tools ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cJSON_Delete(tools);
    return 0;
}

/* Parses text expecting a call; compares arguments (as JSON) to want_args. */
static void ok(const char *text, const char *want_name, const char *want_args,
               const char *want_content)
{
    struct fncall_text_call c;
    char err[ERR_MSG_MAX] = "";
    int rc = fncall_text_parse(text, tools, &c, err, sizeof(err));
    if (rc != 1)
        fail_msg("rc %d (%s) for: %s", rc, err, text);
    assert_string_equal(c.name, want_name);
    cleanup_json cJSON *got = cJSON_Parse(c.arguments);
    cleanup_json cJSON *want = cJSON_Parse(want_args);
    assert_non_null(want);
    if (!cJSON_Compare(got, want, true))
        fail_msg("arguments %s, wanted %s", c.arguments, want_args);
    if (want_content)
        assert_string_equal(c.content, want_content);
    fncall_text_call_free(&c);
}

static void bad(const char *text, const char *want_err)
{
    struct fncall_text_call c;
    char err[ERR_MSG_MAX] = "";
    assert_int_equal(fncall_text_parse(text, tools, &c, err, sizeof(err)), -1);
    if (!strstr(err, want_err))
        fail_msg("error \"%s\" lacks \"%s\"", err, want_err);
    assert_null(c.name);
}

static void test_suffix(void **state)
{
    (void)state;
    cleanup_free char *s = fncall_text_system_suffix(tools);
    assert_non_null(s);
    assert_non_null(strstr(s, "---- BEGIN FUNCTION #1: execute_bash ----"));
    assert_non_null(strstr(s, "  (1) command (string, required): "));
    assert_non_null(strstr(s, "  (2) timeout (number, optional): "));
    assert_non_null(strstr(s, "---- BEGIN FUNCTION #4: finish ----"));
    assert_non_null(strstr(s, "Allowed values: [`view`, `create`, `str_replace`, `insert`, "
                              "`undo_edit`]"));
    assert_non_null(strstr(s, "<function=example_function_name>"));
    assert_non_null(strstr(s, "Only call one function at a time"));
}

static void test_well_formed(void **state)
{
    (void)state;
    ok("Let me look.\n\n<function=execute_bash>\n<parameter=command>ls -la</parameter>\n"
       "</function>",
       "execute_bash", "{\"command\":\"ls -la\"}", "Let me look.");
    /* Indentation inside a multiline value survives; one newline at each end is dropped. */
    ok("<function=str_replace_editor>\n<parameter=command>str_replace</parameter>\n"
       "<parameter=path>/workspace/a.py</parameter>\n<parameter=old_str>\n    return 1\n"
       "  \n</parameter>\n<parameter=new_str>\n    return 2\n</parameter>\n</function>",
       "str_replace_editor",
       "{\"command\":\"str_replace\",\"path\":\"/workspace/a.py\",\"old_str\":\"    return "
       "1\\n  \",\"new_str\":\"    return 2\"}",
       "");
    /* Typed by the schema: integer, array, number. */
    ok("<function=str_replace_editor><parameter=command>view</parameter><parameter=path>/x</"
       "parameter><parameter=view_range>[1, -1]</parameter></function>",
       "str_replace_editor", "{\"command\":\"view\",\"path\":\"/x\",\"view_range\":[1,-1]}", "");
    ok("<function=str_replace_editor><parameter=command>insert</parameter><parameter=path>/x</"
       "parameter><parameter=insert_line>12</parameter><parameter=new_str>y</parameter></"
       "function>",
       "str_replace_editor",
       "{\"command\":\"insert\",\"path\":\"/x\",\"insert_line\":12,\"new_str\":\"y\"}", "");
    ok("<function=execute_bash><parameter=command>sleep 1</parameter><parameter=timeout>2.5</"
       "parameter></function>",
       "execute_bash", "{\"command\":\"sleep 1\",\"timeout\":2.5}", "");
    /* Not a number: left as a string for the registry to refuse with a clear message. */
    ok("<function=execute_bash><parameter=command>x</parameter><parameter=timeout>soon</"
       "parameter></function>",
       "execute_bash", "{\"command\":\"x\",\"timeout\":\"soon\"}", "");
    ok("<function=think>\n<parameter=thought>a < b && c > d</parameter>\n</function>", "think",
       "{\"thought\":\"a < b && c > d\"}", "");
    ok("<function=finish>\n</function>", "finish", "{}", "");
}

static void test_missing_closing_tags(void **state)
{
    (void)state;
    ok("<function=execute_bash>\n<parameter=command>ls\n", "execute_bash", "{\"command\":\"ls\"}",
       NULL);
    ok("<function=execute_bash>\n<parameter=command>ls\n</parameter>\n", "execute_bash",
       "{\"command\":\"ls\"}", NULL);
    ok("<function=execute_bash>\n<parameter=command>ls\n</parameter>\n</func", "execute_bash",
       "{\"command\":\"ls\"}", NULL);
    ok("<function=execute_bash>\n<parameter=command>ls\n</para", "execute_bash",
       "{\"command\":\"ls\"}", NULL);
    ok("<function=str_replace_editor>\n<parameter=command>view\n<parameter=path>/w</parameter>\n"
       "</function>",
       "str_replace_editor", "{\"command\":\"view\",\"path\":\"/w\"}", NULL);
    ok("<function=str_replace_editor>\n<parameter=command>view\n<parameter=path>/w\n</function>",
       "str_replace_editor", "{\"command\":\"view\",\"path\":\"/w\"}", NULL);
}

static void test_no_call_and_extras(void **state)
{
    (void)state;
    struct fncall_text_call c;
    char err[ERR_MSG_MAX];
    assert_int_equal(
        fncall_text_parse("I am done thinking. <function is a word>", tools, &c, err, sizeof(err)),
        0);
    assert_int_equal(fncall_text_parse("", tools, &c, err, sizeof(err)), 0);
    assert_int_equal(fncall_text_parse(NULL, tools, &c, err, sizeof(err)), 0);
    assert_int_equal(fncall_text_parse("<function=think><parameter=thought>a</parameter></"
                                       "function>\nthen <function=finish><parameter=message>b</"
                                       "parameter></function>",
                                       tools, &c, err, sizeof(err)),
                     1);
    assert_string_equal(c.name, "think");
    assert_int_equal(c.extra_calls, 1);
    fncall_text_call_free(&c);
}

static void test_refuses_garbage(void **state)
{
    (void)state;
    bad("<function=>\n</function>", "function name");
    bad("<function=rm -rf /><parameter=x>1</parameter></function>", "function name");
    bad("<function=execute_bash <parameter=command>ls</parameter></function>", "function name");
    bad("<function=execute_bash>\n<parameter=command><function=finish><parameter=message>x</"
        "parameter></function></parameter></function>",
        "inside another function call");
    bad("<function=execute_bash>\n<parameter=command>ls\n<function=think>", "inside another");
    bad("<function=execute_bash>\nrun ls please\n</function>", "unexpected text");
    bad("<function=execute_bash>\n<parameter=command>ls</parameter>\n<parameter=command>pwd</"
        "parameter>\n</function>",
        "given twice");
    bad("<function=execute_bash>\n<parameter=bad name>ls</parameter>\n</function>",
        "parameter name");
    char name[200];
    memset(name, 'a', sizeof(name));
    memcpy(name, "<function=", 10);
    name[sizeof(name) - 2] = '>';
    name[sizeof(name) - 1] = '\0';
    bad(name, "function name");
    struct strbuf {
        char s[4096];
    } many = {{0}};
    strcpy(many.s, "<function=execute_bash>");
    for (int i = 0; i < 40; i++)
        snprintf(many.s + strlen(many.s), sizeof(many.s) - strlen(many.s),
                 "<parameter=p%d>v</parameter>", i);
    bad(many.s, "too many parameters");
}

static void test_convert_history_round_trip(void **state)
{
    (void)state;
    const char *native =
        "[{\"role\":\"system\",\"content\":\"SYS\"},{\"role\":\"user\",\"content\":\"TASK\"},"
        "{\"role\":\"assistant\",\"content\":\"Plan.\",\"tool_calls\":[{\"id\":\"c1\",\"type\":"
        "\"function\",\"function\":{\"name\":\"str_replace_editor\",\"arguments\":"
        "\"{\\\"command\\\":\\\"insert\\\",\\\"path\\\":\\\"/w/a\\\",\\\"insert_line\\\":3,"
        "\\\"new_str\\\":\\\"  x\\\\n  y\\\"}\"}}]},"
        "{\"role\":\"tool\",\"tool_call_id\":\"c1\",\"name\":\"str_replace_editor\","
        "\"content\":\"edited\"}]";
    cleanup_json cJSON *msgs = cJSON_Parse(native);
    assert_non_null(msgs);
    /* Message by message, as the history's transform renders them. */
    cleanup_json cJSON *text = cJSON_CreateArray();
    const cJSON *m;
    cJSON_ArrayForEach(m, msgs)
    {
        cJSON *c = fncall_text_convert_message(m, "\nSUFFIX");
        assert_true(cJSON_AddItemToArray(text, c ? c : cJSON_Duplicate(m, true)));
    }
    assert_int_equal(cJSON_GetArraySize(text), 4);
    cJSON *sys = cJSON_GetArrayItem(text, 0), *asst = cJSON_GetArrayItem(text, 2),
          *res = cJSON_GetArrayItem(text, 3);
    assert_string_equal(cJSON_GetObjectItem(sys, "content")->valuestring, "SYS\nSUFFIX");
    assert_string_equal(cJSON_GetObjectItem(res, "role")->valuestring, "user");
    assert_string_equal(cJSON_GetObjectItem(res, "content")->valuestring,
                        "EXECUTION RESULT of [str_replace_editor]:\nedited");
    assert_null(cJSON_GetObjectItem(asst, "tool_calls"));
    const char *atext = cJSON_GetObjectItem(asst, "content")->valuestring;
    /* What we render, we parse back to the same call. */
    ok(atext, "str_replace_editor",
       "{\"command\":\"insert\",\"path\":\"/w/a\",\"insert_line\":3,\"new_str\":\"  x\\n  y\"}",
       "Plan.");
    /* The single-message form (history's transform) uses the result's own name field. */
    cJSON *one = cJSON_Parse("{\"role\":\"tool\",\"tool_call_id\":\"c9\",\"name\":\"execute_bash\","
                             "\"content\":\"ok\"}");
    cJSON *conv = fncall_text_convert_message(one, NULL);
    assert_string_equal(cJSON_GetObjectItem(conv, "content")->valuestring,
                        "EXECUTION RESULT of [execute_bash]:\nok");
    cJSON_Delete(one);
    cJSON_Delete(conv);
    cJSON *u = cJSON_Parse("{\"role\":\"user\",\"content\":\"hi\"}");
    assert_null(fncall_text_convert_message(u, "S"));
    cJSON_Delete(u);
}

/* Random soup of tag fragments and text: must never crash, leak or read out of bounds (the
 * sanitizer build runs this too), and every call it accepts has a JSON-object argument. */
static void test_fuzz_soup(void **state)
{
    (void)state;
    static const char *const frag[] = {"<function=",
                                       "execute_bash",
                                       ">",
                                       "</function>",
                                       "<parameter=",
                                       "command",
                                       "</parameter>",
                                       "\n",
                                       "ls",
                                       "<",
                                       "/",
                                       "=",
                                       " ",
                                       "\xff",
                                       "</para",
                                       "</func",
                                       "insert_line",
                                       "[1,",
                                       "]",
                                       "str_replace_editor"};
    unsigned seed = 12345;
    char buf[2048];
    int calls = 0;
    for (int iter = 0; iter < 20000; iter++) {
        size_t len = 0;
        int parts = rand_r(&seed) % 24;
        for (int k = 0; k < parts; k++) {
            const char *f = frag[rand_r(&seed) % ARRAY_SIZE(frag)];
            size_t fl = strlen(f);
            if (len + fl + 1 >= sizeof(buf))
                break;
            memcpy(buf + len, f, fl);
            len += fl;
        }
        buf[len] = '\0';
        struct fncall_text_call c;
        char err[ERR_MSG_MAX];
        int rc = fncall_text_parse(buf, tools, &c, err, sizeof(err));
        assert_true(rc >= -1 && rc <= 1);
        if (rc == 1) {
            calls++;
            cleanup_json cJSON *a = cJSON_Parse(c.arguments);
            assert_true(cJSON_IsObject(a));
            fncall_text_call_free(&c);
        }
    }
    assert_true(calls > 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_suffix),
        cmocka_unit_test(test_well_formed),
        cmocka_unit_test(test_missing_closing_tags),
        cmocka_unit_test(test_no_call_and_extras),
        cmocka_unit_test(test_refuses_garbage),
        cmocka_unit_test(test_convert_history_round_trip),
        cmocka_unit_test(test_fuzz_soup),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
