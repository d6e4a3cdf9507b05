/* Unit tests for llm/llm_classify.c: the table of docs/errors.md, row by row. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <string.h>

#define CURL_DISABLE_TYPECHECK 1
#include <curl/curl.h>

#include "llm_classify.h"

struct row {
    const char *name;
    int curl_code;
    long status;
    const char *error_json; /* the "error" object, or NULL */
    int flags;              /* F_* below */
    double retry_after_hdr;
    enum llm_error_type type;
    bool retryable, context, unavailable, moderation;
    double retry_after; /* expected; -1 none */
};

#define F_IN200     1
#define F_MID       2
#define F_EMPTY     4
#define F_MALFORMED 8
#define F_TRUNC     16

static const struct row rows[] = {
    {"401", 0, 401, "{\"code\":401,\"message\":\"No auth credentials found\"}", 0, -1,
     AUTHENTICATION_ERROR, false, false, false, false, -1},
    {"402", 0, 402, "{\"code\":402,\"message\":\"Insufficient credits\"}", 0, -1,
     AUTHENTICATION_ERROR, false, false, false, false, -1},
    {"403 permission", 0, 403, "{\"code\":403,\"message\":\"Key disabled\"}", 0, -1,
     AUTHENTICATION_ERROR, false, false, false, false, -1},
    {"403 moderation", 0, 403,
     "{\"code\":403,\"message\":\"flagged\",\"metadata\":{\"reasons\":[\"violence\"]}}", 0, -1,
     VALIDATION_ERROR, false, false, false, true, -1},
    {"400", 0, 400, "{\"code\":400,\"message\":\"Invalid messages\"}", 0, -1, VALIDATION_ERROR,
     false, false, false, false, -1},
    {"422", 0, 422, NULL, 0, -1, VALIDATION_ERROR, false, false, false, false, -1},
    {"400 context meta", 0, 400,
     "{\"code\":400,\"message\":\"too long\",\"metadata\":{\"error_type\":"
     "\"context_length_exceeded\"}}",
     0, -1, VALIDATION_ERROR, false, true, false, false, -1},
    {"400 context text", 0, 400,
     "{\"code\":400,\"message\":\"This endpoint's maximum context length is 65536 tokens\"}", 0, -1,
     VALIDATION_ERROR, false, true, false, false, -1},
    {"413", 0, 413, NULL, 0, -1, VALIDATION_ERROR, false, true, false, false, -1},
    {"404 no endpoints", 0, 404,
     "{\"code\":404,\"message\":\"No endpoints found that support tool use.\"}", 0, -1,
     VALIDATION_ERROR, false, false, true, false, -1},
    {"404 model gone", 0, 404, "{\"code\":404,\"message\":\"Model not found\"}", 0, -1,
     VALIDATION_ERROR, false, false, true, false, -1},
    {"408", 0, 408, NULL, 0, -1, TIMEOUT_ERROR, true, false, false, false, -1},
    {"429 header", 0, 429, "{\"code\":429,\"message\":\"Rate limit exceeded\"}", 0, 7,
     RATE_LIMIT_ERROR, true, false, false, false, 7},
    {"429 metadata", 0, 429,
     "{\"code\":\"429\",\"message\":\"slow\",\"metadata\":{\"retry_after_seconds\":12}}", 0, -1,
     RATE_LIMIT_ERROR, true, false, false, false, 12},
    {"429 header wins", 0, 429, "{\"code\":429,\"metadata\":{\"retry_after_seconds\":12}}", 0, 3,
     RATE_LIMIT_ERROR, true, false, false, false, 3},
    {"503 availability retryable", 0, 503,
     "{\"code\":503,\"message\":\"unavailable\",\"metadata\":{\"availability\":{\"retryable\":"
     "true,\"retry_after\":30}}}",
     0, -1, CONNECTION_ERROR, true, false, false, false, 30},
    {"503 availability not retryable", 0, 503,
     "{\"code\":503,\"metadata\":{\"availability\":{\"retryable\":false}}}", 0, -1,
     CONNECTION_ERROR, false, false, true, false, -1},
    {"500", 0, 500, NULL, 0, -1, CONNECTION_ERROR, true, false, false, false, -1},
    {"502", 0, 502, "{\"code\":502,\"message\":\"bad gateway\"}", 0, -1, CONNECTION_ERROR, true,
     false, false, false, -1},
    {"524", 0, 524, NULL, 0, -1, CONNECTION_ERROR, true, false, false, false, -1},
    {"529", 0, 529, NULL, 0, -1, CONNECTION_ERROR, true, false, false, false, -1},
    {"503 provider timeout", 0, 503, "{\"code\":503,\"metadata\":{\"error_type\":\"timeout\"}}", 0,
     -1, TIMEOUT_ERROR, true, false, false, false, -1},
    {"400 says rate limit", 0, 400,
     "{\"code\":400,\"metadata\":{\"error_type\":\"rate_limit_exceeded\"}}", 0, -1,
     RATE_LIMIT_ERROR, true, false, false, false, -1},
    {"401 metadata cannot soften", 0, 401,
     "{\"code\":401,\"metadata\":{\"error_type\":\"provider_unavailable\"}}", 0, -1,
     AUTHENTICATION_ERROR, false, false, false, false, -1},
    {"418 unknown", 0, 418, NULL, 0, -1, UNKNOWN_ERROR, false, false, false, false, -1},
    {"refused", CURLE_COULDNT_CONNECT, 0, NULL, 0, -1, CONNECTION_ERROR, true, false, false, false,
     -1},
    {"reset", CURLE_RECV_ERROR, 0, NULL, 0, -1, CONNECTION_ERROR, true, false, false, false, -1},
    {"nothing", CURLE_GOT_NOTHING, 0, NULL, 0, -1, CONNECTION_ERROR, true, false, false, false, -1},
    {"dns", CURLE_COULDNT_RESOLVE_HOST, 0, NULL, 0, -1, CONNECTION_ERROR, true, false, false, false,
     -1},
    {"call timeout", CURLE_OPERATION_TIMEDOUT, 0, NULL, 0, -1, TIMEOUT_ERROR, true, false, false,
     false, -1},
    {"partial body", CURLE_PARTIAL_FILE, 200, NULL, 0, -1, SDK_ERROR, true, false, false, false,
     -1},
    {"too large", CURLE_WRITE_ERROR, 200, NULL, 0, -1, SDK_ERROR, true, false, false, false, -1},
    {"bad cert", CURLE_PEER_FAILED_VERIFICATION, 0, NULL, 0, -1, UNKNOWN_ERROR, false, false, false,
     false, -1},
    {"empty 200", 0, 200, NULL, F_EMPTY, -1, SDK_ERROR, true, false, false, false, -1},
    {"malformed 200", 0, 200, NULL, F_MALFORMED, -1, SDK_ERROR, true, false, false, false, -1},
    {"truncated stream", 0, 200, NULL, F_TRUNC, -1, SDK_ERROR, true, false, false, false, -1},
    {"error in 200", 0, 200, "{\"code\":502,\"message\":\"upstream died\"}", F_IN200, -1, SDK_ERROR,
     true, false, false, false, -1},
    {"mid-stream error", 0, 200, "{\"code\":\"server_error\",\"message\":\"oops\"}", F_MID, -1,
     SDK_ERROR, true, false, false, false, -1},
    {"mid-stream context", 0, 200,
     "{\"code\":400,\"metadata\":{\"error_type\":\"context_length_exceeded\"}}", F_MID, -1,
     VALIDATION_ERROR, false, true, false, false, -1},
};

static void test_table(void **state)
{
    (void)state;
    for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
        const struct row *r = &rows[i];
        cJSON *e = r->error_json ? cJSON_Parse(r->error_json) : NULL;
        if (r->error_json)
            assert_non_null(e);
        struct llm_signal s = {
            .curl_code = r->curl_code,
            .http_status = r->status,
            .error = e,
            .in_200 = r->flags & F_IN200,
            .midstream = r->flags & F_MID,
            .body_empty = r->flags & F_EMPTY,
            .body_malformed = r->flags & F_MALFORMED,
            .truncated = r->flags & F_TRUNC,
            .retry_after_hdr_s = r->retry_after_hdr,
        };
        struct llm_error_info o;
        llm_classify(&s, &o);
        print_message("row %s: %s %s\n", r->name, llm_error_type_name(o.type), o.message);
        assert_string_equal(llm_error_type_name(o.type), llm_error_type_name(r->type));
        assert_int_equal(o.retryable, r->retryable);
        assert_int_equal(o.context_length, r->context);
        assert_int_equal(o.model_unavailable, r->unavailable);
        assert_int_equal(o.moderation, r->moderation);
        assert_true(o.retry_after_s == r->retry_after);
        assert_true(o.message[0] != '\0');
        cJSON_Delete(e);
    }
}

static void test_auth_message_is_actionable(void **state)
{
    (void)state;
    struct llm_signal s = {.http_status = 401, .retry_after_hdr_s = -1};
    struct llm_error_info o;
    llm_classify(&s, &o);
    assert_non_null(strstr(o.message, "OPENROUTER_API_KEY"));
    assert_non_null(strstr(o.message, "401"));
}

static void test_retry_after_header_forms(void **state)
{
    (void)state;
    assert_true(llm_retry_after_parse("120", 0) == 120);
    assert_true(llm_retry_after_parse(" 1.5\r\n", 0) == 1.5);
    assert_true(llm_retry_after_parse("-3", 0) == -1);
    assert_true(llm_retry_after_parse("soon", 0) == -1);
    /* Wed, 21 Oct 2015 07:28:00 GMT = 1445412480 */
    assert_true(llm_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 1445412470.0) == 10);
    assert_true(llm_retry_after_parse("Wed, 21 Oct 2015 07:28:00 GMT", 1445412490.0) == 0);
}

static void test_type_names_round_trip(void **state)
{
    (void)state;
    for (int t = 0; t < LLM_ERROR_TYPES; t++)
        assert_int_equal(llm_error_type_parse(llm_error_type_name((enum llm_error_type)t)), t);
    assert_int_equal(llm_error_type_parse("NOPE"), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_auth_message_is_actionable),
        cmocka_unit_test(test_retry_after_header_forms),
        cmocka_unit_test(test_type_names_round_trip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
