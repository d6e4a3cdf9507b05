/* Unit tests for executor/utf8.c: valid text passes unchanged; each class of malformed
 * input (stray continuation, overlong, surrogate, too large, truncated, NUL) is replaced. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "utf8.h"

static void check(const char *in, size_t len, const char *want)
{
    size_t n = 0;
    char *out = utf8_sanitize(in, len, &n);
    assert_non_null(out);
    assert_string_equal(out, want);
    assert_int_equal(n, strlen(want));
    assert_true(utf8_valid(out, n));
    free(out);
}

static void test_valid_unchanged(void **state)
{
    (void)state;
    const char *s = "plain, \xc3\xa9t\xc3\xa9, \xe2\x82\xac, \xf0\x9f\x98\x80\n";
    assert_true(utf8_valid(s, strlen(s)));
    check(s, strlen(s), s);
    check("", 0, "");
}

static void test_invalid_replaced(void **state)
{
    (void)state;
    check("\xff\xfeok", 4, "\xef\xbf\xbd\xef\xbf\xbdok");
    check("a\x80z", 3, "a\xef\xbf\xbdz");
    check("\xc0\xaf", 2, "\xef\xbf\xbd\xef\xbf\xbd");                 /* overlong '/' */
    check("\xed\xa0\x80", 3, "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* surrogate */
    check("\xf4\x90\x80\x80", 4,
          "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd"); /* > U+10FFFF */
    check("ab\xe2\x82", 4, "ab\xef\xbf\xbd\xef\xbf\xbd");      /* truncated at the end */
    check("a\0b", 3,
          "a\xef\xbf\xbd"
          "b");
    assert_false(utf8_valid("a\0b", 3));
    assert_false(utf8_valid("\xe0\x80\x80", 3));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_unchanged),
        cmocka_unit_test(test_invalid_replaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
