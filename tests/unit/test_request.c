/* Unit tests for llm/llm_request.c and llm_response.c: the body OpenRouter needs
 * (tools, max_tokens, stream options, usage), no key in it; replies parsed defensively. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "llm_request.h"
#include "llm_response.h"

static cJSON *base_body(void)
{
    cJSON *b = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
                           "\"model\":\"caller/sets-this\",\"stream\":true}");
    assert_non_null(b);
    cJSON_AddItemToObject(b, "tools", llm_request_tools(false));
    return b;
}

static void test_body_has_model_tools_max_tokens_usage(void **state)
{
    (void)state;
    cJSON *b = base_body();
    char err[256];
    char *text = llm_request_body(b, "deepseek/deepseek-v3:free", false, 4096, err, sizeof(err));
    assert_non_null(text);
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "model")->valuestring, "deepseek/deepseek-v3:free");
    assert_int_equal(cJSON_GetObjectItem(j, "max_tokens")->valueint, 4096);
    assert_true(cJSON_IsFalse(cJSON_GetObjectItem(j, "stream")));
    assert_null(cJSON_GetObjectItem(j, "stream_options"));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(cJSON_GetObjectItem(j, "usage"), "include")));
    cJSON *tools = cJSON_GetObjectItem(j, "tools");
    assert_int_equal(cJSON_GetArraySize(tools), 4);
    const char *names[] = {"execute_bash", "str_replace_editor", "think", "finish"};
    for (int i = 0; i < 4; i++) {
        cJSON *fn = cJSON_GetObjectItem(cJSON_GetArrayItem(tools, i), "function");
        assert_string_equal(cJSON_GetObjectItem(fn, "name")->valuestring, names[i]);
        assert_non_null(cJSON_GetObjectItem(fn, "parameters"));
    }
    cJSON_Delete(j);
    free(text);
    /* the caller's own max_tokens is kept; stream asks for usage in the stream */
    cJSON_AddNumberToObject(b, "max_tokens", 77);
    text = llm_request_body(b, "m", true, 4096, err, sizeof(err));
    j = cJSON_Parse(text);
    assert_int_equal(cJSON_GetObjectItem(j, "max_tokens")->valueint, 77);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItem(j, "stream")));
    assert_true(cJSON_IsTrue(
        cJSON_GetObjectItem(cJSON_GetObjectItem(j, "stream_options"), "include_usage")));
    cJSON_Delete(j);
    free(text);
    cJSON_Delete(b);
}

static void test_body_refuses_without_messages(void **state)
{
    (void)state;
    char err[256] = "";
    cJSON *b = cJSON_Parse("{\"messages\":[]}");
    assert_null(llm_request_body(b, "m", false, 1, err, sizeof(err)));
    assert_non_null(strstr(err, "messages"));
    cJSON_Delete(b);
    b = cJSON_Parse("{\"messages\":[{\"role\":\"user\",\"content\":\"x\"}]}");
    assert_null(llm_request_body(b, "", false, 1, err, sizeof(err)));
    cJSON_Delete(b);
}

static void test_key_only_in_auth_header(void **state)
{
    (void)state;
    const char *key = "sk-or-v1-0123456789abcdef";
    char *h = llm_request_auth_header(key);
    assert_string_equal(h, "Authorization: Bearer sk-or-v1-0123456789abcdef");
    free(h);
    cJSON *b = base_body();
    char err[256];
    char *text = llm_request_body(b, "m", true, 10, err, sizeof(err));
    assert_null(strstr(text, key));
    assert_null(strstr(text, "Bearer"));
    assert_null(strstr(text, "Authorization"));
    free(text);
    cJSON_Delete(b);
}

static void test_minimal_tools_is_think(void **state)
{
    (void)state;
    cJSON *t = llm_request_tools(true);
    assert_int_equal(cJSON_GetArraySize(t), 1);
    cJSON *fn = cJSON_GetObjectItem(cJSON_GetArrayItem(t, 0), "function");
    assert_string_equal(cJSON_GetObjectItem(fn, "name")->valuestring, "think");
    cJSON_Delete(t);
}

static int parse(const char *body, struct llm_reply *r)
{
    char err[256];
    return llm_response_parse(body, strlen(body), r, err, sizeof(err));
}

static void test_response_tool_call_arguments_verbatim(void **state)
{
    (void)state;
    struct llm_reply r;
    assert_int_equal(
        parse("{\"model\":\"m\",\"choices\":[{\"finish_reason\":\"tool_calls\",\"message\":{"
              "\"role\":\"assistant\",\"content\":null,\"tool_calls\":[{\"id\":\"c1\",\"type\":"
              "\"function\",\"function\":{\"name\":\"execute_bash\",\"arguments\":\"{not json\"}},"
              "{\"type\":\"function\",\"function\":{\"name\":\"think\"}}]}}],"
              "\"usage\":{\"prompt_tokens\":5,\"completion_tokens\":7,\"cost\":0.5}}",
              &r),
        0);
    assert_null(r.error);
    assert_string_equal(r.finish_reason, "tool_calls");
    cJSON *tcs = cJSON_GetObjectItem(r.message, "tool_calls");
    assert_int_equal(cJSON_GetArraySize(tcs), 2);
    cJSON *f0 = cJSON_GetObjectItem(cJSON_GetArrayItem(tcs, 0), "function");
    assert_string_equal(cJSON_GetObjectItem(f0, "arguments")->valuestring, "{not json");
    cJSON *t1 = cJSON_GetArrayItem(tcs, 1);
    /* no id: a fresh one, never the call's position in the reply ("call_1") */
    const char *gen = cJSON_GetObjectItem(t1, "id")->valuestring;
    assert_int_equal(strlen(gen), 21);
    assert_true(strncmp(gen, "call_", 5) == 0);
    assert_string_not_equal(gen, "call_1");
    struct llm_reply r2;
    assert_int_equal(
        parse("{\"choices\":[{\"message\":{\"role\":\"assistant\",\"tool_calls\":[{"
              "\"id\":\"\",\"type\":\"function\",\"function\":{\"name\":\"think\"}}]}}]}",
              &r2),
        0);
    const char *gen2 =
        cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(r2.message, "tool_calls"), 0),
                            "id")
            ->valuestring;
    assert_true(gen2[0] != '\0'); /* an empty id is replaced too */
    assert_string_not_equal(gen2, gen);
    llm_reply_free(&r2);
    assert_string_equal(
        cJSON_GetObjectItem(cJSON_GetObjectItem(t1, "function"), "arguments")->valuestring, "");
    assert_true(r.has_usage);
    assert_true(r.usage.total_tokens == 12);
    assert_true(r.usage.cost_usd == 0.5);
    llm_reply_free(&r);
}

/* an event stream is recognised by its body when the Content-Type is wrong */
static void test_body_is_sse(void **state)
{
    (void)state;
    static const char *yes[] = {"data: {}\n\n",
                                "data:{}",
                                ": OPENROUTER PROCESSING\n\n",
                                "\r\n\ndata: [DONE]",
                                "\xef\xbb\xbf"
                                "data: x",
                                "event: message\n"};
    static const char *no[] = {"{\"choices\":[]}", "  {\"data\": 1}", "", "[1]", "dat", "<html>"};
    for (size_t i = 0; i < sizeof(yes) / sizeof(*yes); i++)
        assert_true(llm_body_is_sse(yes[i], strlen(yes[i])));
    for (size_t i = 0; i < sizeof(no) / sizeof(*no); i++)
        assert_false(llm_body_is_sse(no[i], strlen(no[i])));
    assert_false(llm_body_is_sse(NULL, 0));
}

static void test_response_errors_and_junk(void **state)
{
    (void)state;
    struct llm_reply r;
    assert_int_equal(parse("{\"choices\":[{\"finish_reason\":\"error\",\"error\":{\"code\":502,"
                           "\"message\":\"upstream\"}}]}",
                           &r),
                     0);
    assert_non_null(r.error);
    assert_null(r.message);
    llm_reply_free(&r);
    assert_int_equal(parse("{\"error\":{\"code\":429,\"message\":\"slow\"}}", &r), 0);
    assert_non_null(r.error);
    llm_reply_free(&r);
    assert_int_equal(parse("", &r), -1);
    assert_int_equal(parse("{\"choices\":[", &r), -1);
    assert_int_equal(parse("[1,2]", &r), -1);
    assert_int_equal(parse("{\"choices\":[]}", &r), -1);
    assert_int_equal(parse("{\"choices\":[{\"message\":\"str\"}]}", &r), -1);
    assert_int_equal(
        parse("{\"choices\":[{\"message\":{\"tool_calls\":[{\"function\":{}}]}}]}", &r), -1);
    cJSON *e = llm_response_error("{\"error\":\"plain text\"}", 22);
    assert_non_null(e);
    assert_string_equal(cJSON_GetObjectItem(e, "message")->valuestring, "plain text");
    cJSON_Delete(e);
    assert_null(llm_response_error("<html>", 6));
}

static void test_nul_escapes_dropped_not_truncating(void **state)
{
    (void)state;
    char t[] = "{\"a\":\"x\\u0000y\\\\u0000z\\n\"}";
    size_t n = llm_json_drop_nul_escapes(t, strlen(t));
    assert_int_equal(n, strlen(t));
    assert_string_equal(t, "{\"a\":\"xy\\\\u0000z\\n\"}");
    struct llm_reply r;
    assert_int_equal(parse("{\"choices\":[{\"finish_reason\":\"stop\",\"message\":{"
                           "\"content\":\"a\\u0000b\\u001bc\"}}]}",
                           &r),
                     0);
    assert_string_equal(cJSON_GetObjectItem(r.message, "content")->valuestring, "ab\x1b"
                                                                                "c");
    llm_reply_free(&r);
}

static void test_spliced_body_equals_built_body(void **state)
{
    (void)state;
    const char *msgs = "[{\"role\":\"system\",\"content\":\"s\"},{\"role\":\"user\","
                       "\"content\":\"he said \\\"messages\\\":[1]\"}]";
    cJSON *base = cJSON_CreateObject();
    cJSON_AddItemToObject(base, "tools", llm_request_tools(false));
    cJSON_AddNumberToObject(base, "max_tokens", 77);
    char err[256];
    char *spliced =
        llm_request_body_spliced(base, msgs, strlen(msgs), "m/x", true, 100, err, sizeof(err));
    assert_non_null(spliced);
    cJSON_AddItemToObject(base, "messages", cJSON_Parse(msgs));
    char *built = llm_request_body(base, "m/x", true, 100, err, sizeof(err));
    assert_non_null(built);
    cJSON *a = cJSON_Parse(spliced), *b = cJSON_Parse(built);
    assert_non_null(a);
    assert_true(cJSON_Compare(a, b, true));
    /* the array is spliced verbatim, in the right member */
    assert_non_null(strstr(spliced, msgs));
    cJSON_Delete(a);
    cJSON_Delete(b);
    free(spliced);
    free(built);
    /* not an array, or empty text: refused */
    assert_null(llm_request_body_spliced(base, "{}", 2, "m/x", false, 100, err, sizeof(err)));
    assert_null(llm_request_body_spliced(base, "", 0, "m/x", false, 100, err, sizeof(err)));
    cJSON_Delete(base);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_body_has_model_tools_max_tokens_usage),
        cmocka_unit_test(test_body_refuses_without_messages),
        cmocka_unit_test(test_key_only_in_auth_header),
        cmocka_unit_test(test_minimal_tools_is_think),
        cmocka_unit_test(test_response_tool_call_arguments_verbatim),
        cmocka_unit_test(test_response_errors_and_junk),
        cmocka_unit_test(test_body_is_sse),
        cmocka_unit_test(test_nul_escapes_dropped_not_truncating),
        cmocka_unit_test(test_spliced_body_equals_built_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
