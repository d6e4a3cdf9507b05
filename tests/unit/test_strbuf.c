/* Unit tests for common/strbuf.c: text appended in pieces comes back whole; a buffer made
 * with STRBUF_INIT(max) holds exactly max bytes and refuses the next one (nothing more is
 * appended, strbuf_over says why, strbuf_steal gives NULL); {0} means the default max. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "strbuf.h"

static void test_pieces_come_back_whole(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT(1 << 20);
    for (int i = 0; i < 1000; i++)
        strbuf_printf(&sb, "%03d,", i % 1000);
    strbuf_adds(&sb, "end");
    assert_false(strbuf_over(&sb));
    char *s = strbuf_steal(&sb);
    assert_non_null(s);
    assert_int_equal(strlen(s), 4003);
    assert_memory_equal(s, "000,001,002,", 12);
    assert_string_equal(s + 3996, "999,end");
    free(s);
}

static void test_exactly_max_then_refused(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT(300);
    char chunk[100];
    memset(chunk, 'x', sizeof(chunk));
    for (int i = 0; i < 3; i++)
        strbuf_add(&sb, chunk, sizeof(chunk));
    assert_false(strbuf_over(&sb));
    assert_int_equal(sb.len, 300);
    assert_true(sb.cap <= 301); /* never allocated past max + NUL */
    strbuf_add(&sb, "y", 1);
    assert_true(strbuf_over(&sb));
    assert_int_equal(sb.len, 300);
    strbuf_adds(&sb, ""); /* nothing more after the refusal, not even an empty append */
    assert_int_equal(sb.len, 300);
    assert_null(strbuf_steal(&sb));
    assert_null(sb.s);
    assert_false(strbuf_over(&sb)); /* released: empty again */
}

static void test_printf_over_max(void **state)
{
    (void)state;
    struct strbuf sb = STRBUF_INIT(16);
    strbuf_printf(&sb, "%s", "0123456789");
    strbuf_printf(&sb, "%s", "0123456789");
    assert_true(strbuf_over(&sb));
    assert_int_equal(sb.len, 10);
    strbuf_release(&sb);
}

static void test_default_max(void **state)
{
    (void)state;
    struct strbuf sb = {0};
    strbuf_add(&sb, "a", 1);
    assert_false(strbuf_over(&sb));
    char *big = malloc(STRBUF_DEFAULT_MAX);
    assert_non_null(big);
    memset(big, 'b', STRBUF_DEFAULT_MAX);
    strbuf_add(&sb, big, STRBUF_DEFAULT_MAX); /* 1 + max: one byte too many */
    free(big);
    assert_true(strbuf_over(&sb));
    assert_int_equal(sb.len, 1);
    strbuf_release(&sb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pieces_come_back_whole),
        cmocka_unit_test(test_exactly_max_then_refused),
        cmocka_unit_test(test_printf_over_max),
        cmocka_unit_test(test_default_max),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
