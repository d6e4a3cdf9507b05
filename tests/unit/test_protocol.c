/* Unit tests for wire/protocol.c: every op parsed with its fields, every refusal with its
 * error code (malformed, oversized, unknown op, unknown member, bad id), and reply lines. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static int parse(const char *line, struct request *req, enum protocol_error *code)
{
    char err[512] = "";
    int rc = protocol_parse(line, strlen(line), req, code, err, sizeof(err));
    if (rc < 0)
        assert_true(err[0] != '\0');
    return rc;
}

static void test_ops_parsed(void **state)
{
    (void)state;
    struct request r;
    enum protocol_error code;
    assert_int_equal(parse("{\"op\":\"submit\",\"task\":{\"prompt\":\"x\"}}", &r, &code), 0);
    assert_int_equal(r.op, OP_SUBMIT);
    assert_true(cJSON_IsObject(r.task));
    request_free(&r);
    assert_int_equal(parse("{\"op\":\"wait\",\"id\":\"t-1\",\"timeout_s\":2.5}", &r, &code), 0);
    assert_int_equal(r.op, OP_WAIT);
    assert_string_equal(r.id, "t-1");
    assert_true(r.timeout_s == 2.5);
    request_free(&r);
    assert_int_equal(parse("{\"op\":\"wait\",\"id\":\"t\"}", &r, &code), 0);
    assert_true(r.timeout_s < 0);
    request_free(&r);
    assert_int_equal(parse("{\"op\":\"events\",\"id\":\"all\",\"follow\":true}", &r, &code), 0);
    assert_true(r.all && r.follow);
    request_free(&r);
    /* "all" is special to events only; for status it is an ordinary id */
    assert_int_equal(parse("{\"op\":\"status\",\"id\":\"all\"}", &r, &code), 0);
    assert_false(r.all);
    assert_string_equal(r.id, "all");
    request_free(&r);
    assert_int_equal(parse("  {\"op\":\"list\"} \r", &r, &code), 0);
    assert_int_equal(r.op, OP_LIST);
    request_free(&r);
    const char *simple[] = {"health", "metrics"};
    for (size_t i = 0; i < 2; i++) {
        char line[64];
        snprintf(line, sizeof(line), "{\"op\":\"%s\"}", simple[i]);
        assert_int_equal(parse(line, &r, &code), 0);
        assert_string_equal(protocol_op_name(r.op), simple[i]);
        request_free(&r);
    }
}

static void test_refusals(void **state)
{
    (void)state;
    static const struct {
        const char *line;
        enum protocol_error code;
    } cases[] = {
        {"", PERR_BAD_REQUEST},
        {"{", PERR_BAD_REQUEST},
        {"[]", PERR_BAD_REQUEST},
        {"\"op\"", PERR_BAD_REQUEST},
        {"{\"op\":1}", PERR_BAD_REQUEST},
        {"{}", PERR_BAD_REQUEST},
        {"{\"op\":\"nope\"}", PERR_UNKNOWN_OP},
        {"{\"op\":\"list\",\"extra\":1}", PERR_BAD_REQUEST},
        {"{\"op\":\"list\"}{}", PERR_BAD_REQUEST},
        {"{\"op\":\"status\"}", PERR_BAD_REQUEST},
        {"{\"op\":\"status\",\"id\":\"../etc\"}", PERR_BAD_REQUEST},
        {"{\"op\":\"status\",\"id\":7}", PERR_BAD_REQUEST},
        {"{\"op\":\"cancel\",\"id\":\"\"}", PERR_BAD_REQUEST},
        {"{\"op\":\"wait\",\"id\":\"a\",\"timeout_s\":-1}", PERR_BAD_REQUEST},
        {"{\"op\":\"wait\",\"id\":\"a\",\"timeout_s\":\"5\"}", PERR_BAD_REQUEST},
        {"{\"op\":\"events\",\"id\":\"a\",\"follow\":1}", PERR_BAD_REQUEST},
        {"{\"op\":\"submit\",\"task\":\"x\"}", PERR_BAD_REQUEST},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct request r;
        enum protocol_error code = PERR_INTERNAL;
        int rc = parse(cases[i].line, &r, &code);
        if (rc != -1 || code != cases[i].code)
            fail_msg("case %zu (%s): rc %d code %s", i, cases[i].line, rc,
                     protocol_error_name(code));
        assert_null(r.root);
    }
}

static void test_nul_and_size(void **state)
{
    (void)state;
    struct request r;
    enum protocol_error code;
    char err[256];
    const char nul[] = "{\"op\":\"list\"}\0";
    assert_int_equal(protocol_parse(nul, sizeof(nul) - 1, &r, &code, err, sizeof(err)), -1);
    assert_int_equal(code, PERR_BAD_REQUEST);
    size_t n = PROTOCOL_REQUEST_MAX_BYTES + 1;
    char *big = malloc(n);
    assert_non_null(big);
    memset(big, ' ', n);
    assert_int_equal(protocol_parse(big, n, &r, &code, err, sizeof(err)), -1);
    assert_int_equal(code, PERR_TOO_LARGE);
    free(big);
}

static void test_reply_lines(void **state)
{
    (void)state;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "id", "t");
    cJSON_AddBoolToObject(f, "ok", false); /* a field cannot override "ok" */
    char *line = protocol_ok_line(f);
    assert_string_equal(line, "{\"ok\":true,\"id\":\"t\"}\n");
    free(line);
    line = protocol_error_line(PERR_QUEUE_FULL, "full \"now\"");
    assert_string_equal(line, "{\"ok\":false,\"error\":{\"code\":\"queue_full\",\"message\":"
                              "\"full \\\"now\\\"\"}}\n");
    free(line);
    assert_string_equal(protocol_error_name(PERR_DUPLICATE_ID), "duplicate_id");
    assert_string_equal(protocol_error_name((enum protocol_error)999), "internal");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ops_parsed),
        cmocka_unit_test(test_refusals),
        cmocka_unit_test(test_nul_and_size),
        cmocka_unit_test(test_reply_lines),
    };
    return cmocka_run_group_tests_name("protocol", tests, NULL, NULL);
}
