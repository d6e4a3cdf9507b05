/* Unit tests for common/utf8.c: valid text passes unchanged; each class of malformed
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

static void check_name(const char *in, const char *want, bool want_escaped)
{
    bool escaped = !want_escaped;
    char *out = utf8_escape_name(in, &escaped);
    assert_non_null(out);
    assert_string_equal(out, want);
    assert_int_equal(escaped, want_escaped);
    assert_true(utf8_valid(out, strlen(out)));
    free(out);
}

static void test_names_escaped_only_when_needed(void **state)
{
    (void)state;
    check_name("src/caf\xc3\xa9.c", "src/caf\xc3\xa9.c", false);
    check_name("back\\slash", "back\\slash", false); /* a backslash alone: unchanged */
    check_name("bad-\xff\xfe.txt", "bad-\\xff\\xfe.txt", true);
    check_name("nl\nname", "nl\\x0aname", true);
    check_name("tab\t\\\x7f", "tab\\x09\\\\\\x7f", true); /* once escaping, \ doubles */
    check_name("d\xc3(/\xc3\xa9", "d\\xc3(/\xc3\xa9", true);
}

static void test_json_strings_made_valid(void **state)
{
    (void)state;
    cJSON *j = cJSON_Parse("{\"ok\":\"fine\",\"a\":[\"x\xffy\",{\"k\xfe\":\"\xc3\xa9\"}]}");
    assert_non_null(j);
    assert_int_equal(utf8_fix_json(j), 2);
    char *text = cJSON_PrintUnformatted(j);
    assert_true(utf8_valid(text, strlen(text)));
    assert_non_null(strstr(text, "x\xef\xbf\xbdy"));
    assert_non_null(strstr(text, "\"fine\""));
    assert_int_equal(utf8_fix_json(j), 0);
    free(text);
    cJSON_Delete(j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_names_escaped_only_when_needed),
        cmocka_unit_test(test_json_strings_made_valid),
        cmocka_unit_test(test_valid_unchanged),
        cmocka_unit_test(test_invalid_replaced),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
