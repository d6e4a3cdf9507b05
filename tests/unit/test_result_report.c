/* Unit tests for wire/result_report.c: a hostile report is checked, bounded and made valid
 * UTF-8, and what was cut or refused is counted, never silently dropped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "result_report.h"
#include "utf8.h"

static cJSON *entry(const char *path, const char *status)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "path", path);
    cJSON_AddStringToObject(e, "status", status);
    cJSON_AddNumberToObject(e, "size", 1);
    return e;
}

static void test_refused_entries_are_counted(void **state)
{
    (void)state;
    cJSON *rep = cJSON_CreateObject();
    cJSON *files = cJSON_AddArrayToObject(rep, "files");
    cJSON_AddItemToArray(files, entry("ok.txt", "added"));
    cJSON_AddItemToArray(files, entry("../escape", "added"));
    cJSON_AddItemToArray(files, entry("x", "exploded"));
    cJSON_AddItemToArray(files, entry("bad\xff", "modified"));
    cJSON_AddStringToObject(rep, "diff", "+caf\xe9\n");
    cJSON_AddStringToObject(rep, "error", "why\xfe");
    struct result_cut cut;
    result_report_clean(rep, &cut);
    assert_int_equal(cut.files_refused, 2);
    assert_int_equal(cut.files, 0);
    assert_true(cut.diff_lossy);
    cJSON *f = cJSON_GetObjectItemCaseSensitive(rep, "files");
    assert_int_equal(cJSON_GetArraySize(f), 2);
    cJSON *bad = cJSON_GetArrayItem(f, 1);
    assert_string_equal(cJSON_GetObjectItemCaseSensitive(bad, "path")->valuestring, "bad\\xff");
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(bad, "path_escaped")));
    char *text = cJSON_PrintUnformatted(rep);
    assert_true(utf8_valid(text, strlen(text)));
    free(text);
    cJSON_Delete(rep);
}

static void test_bounds_hold(void **state)
{
    (void)state;
    cJSON *rep = cJSON_CreateObject();
    cJSON *files = cJSON_AddArrayToObject(rep, "files");
    for (int i = 0; i < RESULT_FILES_MAX + 5; i++) {
        char p[32];
        snprintf(p, sizeof(p), "f%d", i);
        cJSON_AddItemToArray(files, entry(p, "added"));
    }
    size_t big = RESULT_DIFF_MAX_BYTES + 1000;
    char *diff = malloc(big + 1);
    assert_non_null(diff);
    for (size_t i = 0; i < big; i++)
        diff[i] = (i % 50 == 49) ? '\n' : 'x';
    diff[big] = '\0';
    cJSON_AddStringToObject(rep, "diff", diff);
    free(diff);
    struct result_cut cut;
    result_report_clean(rep, &cut);
    assert_int_equal(cut.files, 5);
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(rep, "files")),
                     RESULT_FILES_MAX);
    const char *d = cJSON_GetObjectItemCaseSensitive(rep, "diff")->valuestring;
    assert_true(strlen(d) <= RESULT_DIFF_MAX_BYTES);
    assert_int_equal(d[strlen(d) - 1], '\n'); /* cut at a line end */
    assert_int_equal(cut.diff_bytes, big - strlen(d));
    assert_false(cut.diff_lossy);
    cJSON *res = cJSON_CreateObject();
    result_report_add_cut(res, &cut);
    cJSON *t = cJSON_GetObjectItemCaseSensitive(res, "truncated");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(t, "files")->valuedouble, 5);
    cJSON_Delete(res);
    cJSON_Delete(rep);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_entries_are_counted),
        cmocka_unit_test(test_bounds_hold),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
