/* Unit tests for batch/batch_merge.c: result lines kept byte for byte, bad lines and a
 * half-written last line, duplicates named with every place, lookup by id, and the JUnit
 * writer's "missing" failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch_merge.h"
#include "batch_report.h"
#include "util.h"

static void read_text(const char *text, const char *name, struct merge_set *s)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    char err[512];
    assert_int_equal(merge_read(f, name, s, err, sizeof(err)), 0);
    fclose(f);
}

static void test_lines_are_kept_byte_for_byte(void **state)
{
    (void)state;
    struct merge_set s = {0};
    read_text("{\"id\": \"a\",  \"n\": 1.50}\n\n  \n{\"id\":\"b\"}\r\n", "f", &s);
    assert_int_equal(s.n, 2);
    assert_int_equal(s.nproblems_all, 0);
    assert_string_equal(s.lines[0].raw, "{\"id\": \"a\",  \"n\": 1.50}");
    assert_int_equal(s.lines[0].lineno, 1);
    assert_int_equal(s.lines[1].lineno, 4);
    assert_string_equal(s.lines[1].id, "b");
    merge_set_free(&s);
}

static void test_bad_lines_are_problems_a_cut_tail_is_dropped(void **state)
{
    (void)state;
    struct merge_set s = {0};
    read_text("[1]\n{\"id\":3}\n{\"id\":\"\"}\nnope\n{\"id\":\"ok\"}\n{\"id\":\"cu", "g", &s);
    assert_int_equal(s.n, 1);
    assert_int_equal(s.nproblems_all, 4);
    assert_non_null(strstr(s.problems[0], "g:1: not a result line"));
    assert_non_null(strstr(s.problems[3], "g:4: not a result line"));
    assert_int_equal(s.dropped_tails, 1);
    merge_set_free(&s);
    /* an unparsable line that does end in a newline is a problem, not a cut tail */
    read_text("{\"id\":\"cu\n", "h", &s);
    assert_int_equal(s.nproblems_all, 1);
    assert_int_equal(s.dropped_tails, 0);
    merge_set_free(&s);
}

static void test_duplicates_name_every_place(void **state)
{
    (void)state;
    struct merge_set s = {0};
    read_text("{\"id\":\"x\"}\n{\"id\":\"d\"}\n", "one", &s);
    read_text("{\"id\":\"d\"}\n{\"id\":\"y\"}\n", "two", &s);
    read_text("{\"id\":\"d\"}\n", "three", &s);
    assert_int_equal(merge_find_duplicates(&s), 1);
    assert_int_equal(s.nproblems_all, 1);
    assert_string_equal(s.problems[0], "id 'd' has 3 results: one:2, two:1 and three:1");
    assert_non_null(merge_find(&s, "y"));
    assert_string_equal(merge_find(&s, "y")->file, "two");
    assert_null(merge_find(&s, "zz"));
    merge_set_free(&s);
    read_text("{\"id\":\"p\"}\n{\"id\":\"q\"}\n", "u", &s);
    assert_int_equal(merge_find_duplicates(&s), 0);
    assert_int_equal(s.nproblems_all, 0);
    merge_set_free(&s);
}

static void test_junit_missing_is_a_failure(void **state)
{
    (void)state;
    char dir[] = "/tmp/agentbox-unit-merge-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/j.xml", dir);
    cJSON *ok = cJSON_Parse("{\"id\":\"a\",\"status\":\"succeeded\"}");
    struct batch_case cases[] = {
        {.id = "a", .result = ok}, {.id = "b", .missing = true}, {.id = "c", .result = NULL}};
    char err[512];
    assert_int_equal(batch_junit_write(path, "s", cases, 3, 1.0, err, sizeof(err)), 0);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(read_file(path, 1 << 20, &text, &len), 0);
    assert_non_null(strstr(text, "tests=\"3\" failures=\"1\" errors=\"0\" skipped=\"1\""));
    assert_non_null(strstr(text, "<failure type=\"missing\""));
    free(text);
    cJSON_Delete(ok);
    unlink(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lines_are_kept_byte_for_byte),
        cmocka_unit_test(test_bad_lines_are_problems_a_cut_tail_is_dropped),
        cmocka_unit_test(test_duplicates_name_every_place),
        cmocka_unit_test(test_junit_missing_is_a_failure),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
