/* Unit tests for common/util.c: size, seconds and integer parsing, size printing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

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
    const char *bad[] = {"", "-1", "nan", "inf", "0x10", "1e999", "5 s", "5x", " 5", "+5"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++)
        assert_int_equal(seconds_parse(bad[i], &v), -1);
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
        cmocka_unit_test(test_uint_parse_bounds),
        cmocka_unit_test(test_size_format_round_trips),
    };
    return cmocka_run_group_tests_name("util", tests, NULL, NULL);
}
