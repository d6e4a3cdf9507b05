/* Unit tests for common/util.c: size, seconds and integer parsing, size printing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "json.h"
#include "util.h"

static void test_size_parse_accepts_suffixes(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(size_parse("512", &v), 0);
    assert_int_equal(v, 512);
    assert_int_equal(size_parse("64K", &v), 0);
    assert_int_equal(v, 64 * 1024);
    assert_int_equal(size_parse("512M", &v), 0);
    assert_int_equal(v, 512ull << 20);
    assert_int_equal(size_parse("2G", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(size_parse("2GiB", &v), 0);
    assert_int_equal(v, 2ull << 30);
    assert_int_equal(size_parse("1m", &v), 0);
    assert_int_equal(v, 1ull << 20);
}

static void test_size_parse_refuses_junk(void **state)
{
    (void)state;
    uint64_t v = 7;
    const char *bad[] = {
        "",     "M",  "-1", "1.5G", "12Q", "1 G", " 1", "99999999999999999999", "17179869184G",
        "0x10", "1GG"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(size_parse(bad[i], &v), -1);
    assert_int_equal(v, 7);
}

static void test_seconds_parse(void **state)
{
    (void)state;
    double v;
    assert_int_equal(seconds_parse("300.0", &v), 0);
    assert_true(v == 300.0);
    assert_int_equal(seconds_parse("1.5", &v), 0);
    assert_true(v == 1.5);
    assert_int_equal(seconds_parse("5m", &v), 0);
    assert_true(v == 300);
    assert_int_equal(seconds_parse("2h", &v), 0);
    assert_true(v == 7200);
    const char *bad[] = {"",    "-1", "nan", "inf", "0x10", "1e999",
                         "5 s", "5x", " 5",  "+5",  "1e3",  "2E1"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(seconds_parse(bad[i], &v), -1);
}

static void test_option_messages_share_one_wording(void **state)
{
    (void)state;
    char err[256];
    double d;
    uint64_t u;
    assert_int_equal(opt_seconds("--timeout", "1e3", 0, &d, err, sizeof(err)), -1);
    assert_string_equal(err, "--timeout: expected seconds (like 30, 1.5, 5m or 2h), got '1e3'");
    assert_int_equal(opt_seconds("--cpu", "0", 1, &d, err, sizeof(err)), 0);
    assert_true(d == 0);
    assert_int_equal(opt_seconds("--timeout", "0", 0, &d, err, sizeof(err)), -1);
    assert_string_equal(err, "--timeout: expected more than 0 seconds, got '0'");
    assert_int_equal(opt_size("--memory", "1", 8u << 20, &u, err, sizeof(err)), -1);
    assert_string_equal(err, "--memory: 1 is below the working minimum of 8M");
    assert_int_equal(opt_size("--memory", "lots", 0, &u, err, sizeof(err)), -1);
    assert_string_equal(
        err, "--memory: expected a size (like 512M; K, M, G are powers of 1024), got 'lots'");
    assert_int_equal(opt_size("--memory", "4M", 4u << 20, &u, err, sizeof(err)), 0);
    assert_int_equal(opt_count("--pids", "1", 2, 100, &u, err, sizeof(err)), -1);
    assert_string_equal(err, "--pids: expected a whole number from 2 to 100, got '1'");
}

static void test_json_syntax_errors_name_line_and_column(void **state)
{
    (void)state;
    char err[256];
    assert_null(json_parse_located("{\n  \"a\": 1,\n  \"b\": oops\n}", "t.json", err, sizeof(err)));
    assert_string_equal(err, "t.json:3:8: JSON syntax error near \"oops\"");
    assert_null(json_parse_located("{\"a\": ", "stdin", err, sizeof(err)));
    assert_string_equal(err, "stdin:1:7: JSON syntax error at the end of the input");
    cJSON *ok = json_parse_located("{\"a\": [1, {\"b\": \"\\t\"}]}", "x", err, sizeof(err));
    assert_non_null(ok);
    char *pretty = json_print_pretty(ok);
    assert_string_equal(pretty, "{\n  \"a\": [1, {\n      \"b\": \"\\t\"\n    }]\n}");
    free(pretty);
    cJSON_Delete(ok);
}

static void test_uint_parse_bounds(void **state)
{
    (void)state;
    uint64_t v;
    assert_int_equal(uint_parse("0", 10, &v), 0);
    assert_int_equal(uint_parse("10", 10, &v), 0);
    assert_int_equal(uint_parse("11", 10, &v), -1);
    assert_int_equal(uint_parse("18446744073709551616", UINT64_MAX, &v), -1);
    assert_int_equal(uint_parse("-1", 10, &v), -1);
}

static void test_size_format_round_trips(void **state)
{
    (void)state;
    char buf[32];
    uint64_t v;
    const uint64_t sizes[] = {0, 1000, 1024, 512ull << 20, 3ull << 30, (1ull << 20) + 1};
    for (size_t i = 0; i < ARRAY_SIZE(sizes); i++) {
        assert_int_equal(size_parse(size_format(sizes[i], buf, sizeof(buf)), &v), 0);
        assert_int_equal(v, sizes[i]);
    }
    assert_string_equal(size_format(512ull << 20, buf, sizeof(buf)), "512M");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_size_parse_accepts_suffixes),
        cmocka_unit_test(test_size_parse_refuses_junk),
        cmocka_unit_test(test_seconds_parse),
        cmocka_unit_test(test_option_messages_share_one_wording),
        cmocka_unit_test(test_json_syntax_errors_name_line_and_column),
        cmocka_unit_test(test_uint_parse_bounds),
        cmocka_unit_test(test_size_format_round_trips),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
