/* Unit tests for llm/sse.c: every stream, split at every byte boundary and fed one byte
 * at a time, must give exactly the reply it gives in one piece. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

struct result {
    int rc;
    char *message; /* printed JSON or NULL */
    char *error;
    char finish[32];
    char model[LLM_MODEL_NAME_MAX];
    bool has_usage;
    struct llm_usage usage;
};

static void result_free(struct result *r)
{
    free(r->message);
    free(r->error);
}

/* feeds text in pieces cut at the given offsets (sorted, may be empty); step>0: byte runs */
static struct result run(const char *text, const size_t *cuts, int ncuts, size_t step)
{
    struct sse_parser p;
    struct result res = {0};
    sse_init(&p);
    size_t len = strlen(text), pos = 0;
    if (step) {
        for (pos = 0; pos < len; pos += step)
            (void)sse_feed(&p, text + pos, (pos + step <= len) ? step : len - pos);
    } else {
        for (int i = 0; i < ncuts; i++) {
            (void)sse_feed(&p, text + pos, cuts[i] - pos);
            pos = cuts[i];
        }
        (void)sse_feed(&p, text + pos, len - pos);
    }
    struct llm_reply r;
    char err[256];
    res.rc = sse_finish(&p, &r, err, sizeof(err));
    if (res.rc == 0) {
        res.message = r.message ? cJSON_PrintUnformatted(r.message) : NULL;
        res.error = r.error ? cJSON_PrintUnformatted(r.error) : NULL;
        snprintf(res.finish, sizeof(res.finish), "%s", r.finish_reason);
        snprintf(res.model, sizeof(res.model), "%s", r.model);
        res.has_usage = r.has_usage;
        res.usage = r.usage;
    }
    llm_reply_free(&r);
    sse_free(&p);
    return res;
}

static void assert_same(const struct result *a, const struct result *b)
{
    assert_int_equal(a->rc, b->rc);
    if (a->message || b->message) {
        assert_non_null(a->message);
        assert_non_null(b->message);
        assert_string_equal(a->message, b->message);
    }
    if (a->error || b->error) {
        assert_non_null(a->error);
        assert_non_null(b->error);
        assert_string_equal(a->error, b->error);
    }
    assert_string_equal(a->finish, b->finish);
    assert_string_equal(a->model, b->model);
    assert_int_equal(a->has_usage, b->has_usage);
    assert_true(a->usage.total_tokens == b->usage.total_tokens);
    assert_true(a->usage.cost_usd == b->usage.cost_usd);
}

/* the whole-stream result, checked against every single split and byte-wise feeding */
static struct result check_splits(const char *text)
{
    struct result whole = run(text, NULL, 0, 0);
    size_t len = strlen(text);
    for (size_t i = 0; i <= len; i++) {
        struct result r = run(text, &i, 1, 0);
        assert_same(&whole, &r);
        result_free(&r);
    }
    for (size_t step = 1; step <= 3; step++) {
        struct result r = run(text, NULL, 0, step);
        assert_same(&whole, &r);
        result_free(&r);
    }
    /* two cuts, a sample of pairs (all pairs is quadratic in a ~1 KB stream) */
    for (size_t i = 0; i < len; i += 7)
        for (size_t j = i + 1; j < len; j += 13) {
            size_t cuts[2] = {i, j};
            struct result r = run(text, cuts, 2, 0);
            assert_same(&whole, &r);
            result_free(&r);
        }
    return whole;
}

static const char content_stream[] =
    ": OPENROUTER PROCESSING\r\n\r\n"
    "data: {\"id\":\"gen-1\",\"model\":\"m/x:free\",\"choices\":[{\"index\":0,\"delta\":"
    "{\"role\":\"assistant\",\"content\":\"Hel\"},\"finish_reason\":null}]}\r\n\r\n"
    ": OPENROUTER PROCESSING\r\n\r\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo \\u00e9\"},"
    "\"finish_reason\":\"stop\"}]}\r\n\r\n"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":10,\"completion_tokens\":3,"
    "\"total_tokens\":13,\"cost\":0.0001}}\r\n\r\n"
    "data: [DONE]\r\n\r\n";

static void test_content_deltas_comments_crlf_usage(void **state)
{
    (void)state;
    struct result r = check_splits(content_stream);
    assert_int_equal(r.rc, 0);
    assert_non_null(r.message);
    assert_non_null(strstr(r.message, "\"content\":\"Hello \xc3\xa9\""));
    assert_string_equal(r.finish, "stop");
    assert_string_equal(r.model, "m/x:free");
    assert_true(r.has_usage);
    assert_true(r.usage.total_tokens == 13);
    assert_true(r.usage.cost_usd == 0.0001);
    result_free(&r);
}

static const char tool_stream[] =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_a\","
    "\"type\":\"function\",\"function\":{\"name\":\"execute_bash\",\"arguments\":\"\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"{\\\"comm\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"call_b\","
    "\"function\":{\"name\":\"think\",\"arguments\":\"{\\\"thought\\\":\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"and\\\":\\\"ls\\\"}\"}}]}}]}\n\n"
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"function\":"
    "{\"arguments\":\"\\\"hm\\\"}\"}}]},\"finish_reason\":\"tool_calls\"}]}\n\n"
    "data: [DONE]\n\n";

static void test_tool_call_deltas_merged_by_index(void **state)
{
    (void)state;
    struct result r = check_splits(tool_stream);
    assert_int_equal(r.rc, 0);
    cJSON *m = cJSON_Parse(r.message);
    assert_non_null(m);
    cJSON *tcs = cJSON_GetObjectItem(m, "tool_calls");
    assert_int_equal(cJSON_GetArraySize(tcs), 2);
    cJSON *t0 = cJSON_GetArrayItem(tcs, 0), *t1 = cJSON_GetArrayItem(tcs, 1);
    assert_string_equal(cJSON_GetObjectItem(t0, "id")->valuestring, "call_a");
    cJSON *f0 = cJSON_GetObjectItem(t0, "function"), *f1 = cJSON_GetObjectItem(t1, "function");
    assert_string_equal(cJSON_GetObjectItem(f0, "name")->valuestring, "execute_bash");
    assert_string_equal(cJSON_GetObjectItem(f0, "arguments")->valuestring, "{\"command\":\"ls\"}");
    assert_string_equal(cJSON_GetObjectItem(t1, "id")->valuestring, "call_b");
    assert_string_equal(cJSON_GetObjectItem(f1, "name")->valuestring, "think");
    assert_string_equal(cJSON_GetObjectItem(f1, "arguments")->valuestring, "{\"thought\":\"hm\"}");
    assert_true(cJSON_IsNull(cJSON_GetObjectItem(m, "content")));
    assert_string_equal(r.finish, "tool_calls");
    cJSON_Delete(m);
    result_free(&r);
}

/* calls streamed without an id (or with ""): each gets a fresh, distinct id, never its
 * position ("call_0"), which every reply of a conversation would repeat */
static void test_tool_calls_without_ids(void **state)
{
    (void)state;
    static const char text[] =
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
        "\"function\":{\"name\":\"think\",\"arguments\":\"{}\"}}]}}]}\n\n"
        "data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":1,\"id\":\"\","
        "\"function\":{\"name\":\"think\",\"arguments\":\"{}\"}}]},\"finish_reason\":"
        "\"tool_calls\"}]}\n\ndata: [DONE]\n\n";
    struct result r = run(text, NULL, 0, 0);
    assert_int_equal(r.rc, 0);
    cJSON *m = cJSON_Parse(r.message);
    cJSON *tcs = cJSON_GetObjectItem(m, "tool_calls");
    assert_int_equal(cJSON_GetArraySize(tcs), 2);
    const char *a = cJSON_GetObjectItem(cJSON_GetArrayItem(tcs, 0), "id")->valuestring;
    const char *b = cJSON_GetObjectItem(cJSON_GetArrayItem(tcs, 1), "id")->valuestring;
    assert_true(strncmp(a, "call_", 5) == 0 && strlen(a) > 8);
    assert_true(strncmp(b, "call_", 5) == 0 && strlen(b) > 8);
    assert_string_not_equal(a, b);
    assert_string_not_equal(a, "call_0");
    cJSON_Delete(m);
    result_free(&r);
}

static const char midstream_error[] =
    "data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"partial\"}}]}\n\n"
    ": keep-alive\n\n"
    "data: {\"id\":\"x\",\"error\":{\"code\":502,\"message\":\"Provider disconnected\","
    "\"metadata\":{\"provider_name\":\"P\"}},\"choices\":[{\"index\":0,\"delta\":{},"
    "\"finish_reason\":\"error\"}]}\n\n"
    "data: [DONE]\n\n";

static void test_midstream_error(void **state)
{
    (void)state;
    struct result r = check_splits(midstream_error);
    assert_int_equal(r.rc, 0);
    assert_null(r.message);
    assert_non_null(r.error);
    assert_non_null(strstr(r.error, "Provider disconnected"));
    result_free(&r);
}

static void test_truncated_and_malformed(void **state)
{
    (void)state;
    struct result r = check_splits("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":"
                                   "\"a\"}}]}\n\ndata: {\"choices\":[{\"index\":0,\"del");
    assert_int_equal(r.rc, -1); /* the cut-off last event does not parse */
    result_free(&r);
    r = check_splits("data: {\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]}\n\n");
    assert_int_equal(r.rc, -2); /* no [DONE], no finish_reason */
    result_free(&r);
    r = check_splits("data: not json\n\ndata: [DONE]\n\n");
    assert_int_equal(r.rc, -1);
    result_free(&r);
    r = check_splits("data: [DONE]\n\n");
    assert_int_equal(r.rc, -1); /* nothing at all */
    result_free(&r);
    r = check_splits("");
    assert_int_equal(r.rc, -2);
    result_free(&r);
}

static void test_cr_only_and_no_final_blank_line(void **state)
{
    (void)state;
    struct result r = check_splits(
        "data:{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":"
        "\"stop\"}]}\r\rdata: [DONE]");
    assert_int_equal(r.rc, 0);
    assert_non_null(strstr(r.message, "\"content\":\"x\""));
    result_free(&r);
}

static void test_tool_index_out_of_range_refused(void **state)
{
    (void)state;
    struct result r = check_splits("data: {\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":"
                                   "[{\"index\":100000,\"function\":{\"name\":\"x\"}}]}}]}\n\n"
                                   "data: [DONE]\n\n");
    assert_int_equal(r.rc, -1);
    result_free(&r);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_content_deltas_comments_crlf_usage),
        cmocka_unit_test(test_tool_call_deltas_merged_by_index),
        cmocka_unit_test(test_tool_calls_without_ids),
        cmocka_unit_test(test_midstream_error),
        cmocka_unit_test(test_truncated_and_malformed),
        cmocka_unit_test(test_cr_only_and_no_final_blank_line),
        cmocka_unit_test(test_tool_index_out_of_range_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
