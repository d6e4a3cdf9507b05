/* Unit tests for batch/batch_input.c and batch_report.c: line handling, derived and
 * duplicate ids, shard arithmetic (fixed vectors: docs/batch.md promises these numbers),
 * exit-code precedence, and the JUnit writer's escaping. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch_input.h"
#include "batch_report.h"
#include "sha256.h"
#include "util.h"

static void read_text(const char *text, struct batch_input *in)
{
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    char err[512];
    assert_int_equal(batch_input_read(f, "mem", in, err, sizeof(err)), 0);
    fclose(f);
}

static void test_blank_and_comment_lines_are_skipped(void **state)
{
    (void)state;
    struct batch_input in;
    read_text("\n  \n# a comment\n{\"id\":\"a\",\"prompt\":\"x\"}\r\n   # indented\n"
              "{\"id\":\"b\",\"prompt\":\"y\"}",
              &in);
    assert_int_equal(in.nerrors_all, 0);
    assert_int_equal(in.n, 2);
    assert_string_equal(in.items[0].task.id, "a");
    assert_int_equal(in.items[0].line, 4);
    assert_string_equal(in.items[1].task.id, "b");
    assert_int_equal(in.items[1].line, 6);
    batch_input_free(&in);
}

static void test_bad_lines_are_all_reported_with_numbers(void **state)
{
    (void)state;
    struct batch_input in;
    read_text(
        "{\"id\":\"a\",\"prompt\":\"x\"}\n{oops\n[1,2]\n{\"prompt\":\"\"}\n"
        "{\"id\":\"../"
        "x\",\"prompt\":\"p\"}\n{\"id\":\"c\",\"prompt\":\"p\",\"limits\":{\"disk\":\"lots\"}}\n",
        &in);
    assert_int_equal(in.n, 1);
    assert_int_equal(in.nerrors_all, 5);
    unsigned want[] = {2, 3, 4, 5, 6};
    const char *field[] = {"JSON", "object", "task.prompt", "task.id", "task.limits.disk"};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(in.errors[i].line, want[i]);
        if (!strstr(in.errors[i].message, field[i]))
            fail_msg("line %u: '%s' does not mention %s", want[i], in.errors[i].message, field[i]);
    }
    batch_input_free(&in);
}

static void test_derived_ids_are_content_hashes(void **state)
{
    (void)state;
    struct batch_input in;
    const char *line = "{\"prompt\":\"same\"}";
    char text[256];
    snprintf(text, sizeof(text), "%s\n  %s  \n{\"prompt\":\"other\"}\n%s\n", line, line, line);
    read_text(text, &in);
    assert_int_equal(in.nerrors_all, 0);
    assert_int_equal(in.n, 4);
    char hex[SHA256_HEX_CHARS], want[64];
    sha256_hex(line, strlen(line), hex);
    snprintf(want, sizeof(want), "task-%.16s", hex);
    assert_string_equal(in.items[0].task.id, want);
    assert_true(in.items[0].derived_id);
    /* repeats of the same line are numbered in line order; white space around is ignored */
    snprintf(want, sizeof(want), "task-%.16s-2", hex);
    assert_string_equal(in.items[1].task.id, want);
    snprintf(want, sizeof(want), "task-%.16s-3", hex);
    assert_string_equal(in.items[3].task.id, want);
    assert_string_not_equal(in.items[2].task.id, in.items[0].task.id);
    char d[64];
    batch_derive_id(line, strlen(line), 3, d, sizeof(d));
    assert_string_equal(d, want);
    batch_input_free(&in);
}

static void test_duplicate_ids_refused(void **state)
{
    (void)state;
    struct batch_input in;
    read_text("{\"id\":\"a\",\"prompt\":\"x\"}\n{\"id\":\"b\",\"prompt\":\"x\"}\n"
              "{\"id\":\"a\",\"prompt\":\"y\"}\n{\"id\":\"a\",\"prompt\":\"z\"}\n",
              &in);
    assert_int_equal(in.nerrors_all, 2);
    assert_int_equal(in.errors[0].line, 3);
    assert_non_null(strstr(in.errors[0].message, "line 1"));
    assert_int_equal(in.errors[1].line, 4);
    assert_non_null(strstr(in.errors[1].message, "line 1"));
    batch_input_free(&in);
}

static void test_ids_only_skips_field_checks_but_not_ids(void **state)
{
    (void)state;
    const char *text =
        "{\"id\":\"a\",\"prompt\":\"x\",\"workspace\":{\"from_dir\":\"/nonexistent\"}}\n"
        "{\"prompt\":\"same\"}\n{\"prompt\":\"same\"}\n{\"id\":\"../x\"}\n{\"id\":\"a\"}\n";
    FILE *f = fmemopen((void *)text, strlen(text), "r");
    assert_non_null(f);
    struct batch_input in;
    char err[512];
    assert_int_equal(batch_input_read_ids(f, "mem", &in, err, sizeof(err)), 0);
    fclose(f);
    assert_int_equal(in.n, 4); /* a, the two derived ids, and the duplicate a */
    assert_string_equal(in.items[0].task.id, "a");
    assert_null(in.items[0].task.workspace_from);
    assert_int_equal(strncmp(in.items[1].task.id, "task-", 5), 0);
    assert_non_null(strstr(in.items[2].task.id, "-2"));
    assert_int_equal(in.nerrors_all, 2); /* the invalid id (line 4), the duplicate (line 5) */
    assert_int_equal(in.errors[0].line, 4);
    assert_int_equal(in.errors[1].line, 5);
    batch_input_free(&in);
}

static void test_shard_hash_vectors(void **state)
{
    (void)state;
    /* FNV-1a 64 reference values (the docs show how to compute them in Python) */
    assert_true(batch_shard_hash("") == 0xcbf29ce484222325ull);
    assert_true(batch_shard_hash("a") == 0xaf63dc4c8601ec8cull);
    assert_true(batch_shard_hash("foobar") == 0x85944171f73967e8ull);
    /* every id is in exactly one shard */
    char id[32];
    for (unsigned n = 1; n <= 7; n++)
        for (int k = 0; k < 200; k++) {
            snprintf(id, sizeof(id), "task-%d", k);
            int hits = 0;
            for (unsigned i = 0; i < n; i++)
                hits += batch_in_shard(id, i, n);
            assert_int_equal(hits, 1);
        }
}

static void test_shard_parse(void **state)
{
    (void)state;
    unsigned i, n;
    char err[256];
    assert_int_equal(batch_shard_parse("0/1", &i, &n, err, sizeof(err)), 0);
    assert_int_equal(i, 0);
    assert_int_equal(n, 1);
    assert_int_equal(batch_shard_parse("3/4", &i, &n, err, sizeof(err)), 0);
    assert_int_equal(i, 3);
    assert_int_equal(n, 4);
    const char *bad[] = {"4/4", "1", "/4", "1/", "1/0", "-1/4", "a/b", "1/4x", "0/2000000", NULL};
    for (int k = 0; bad[k]; k++) {
        err[0] = '\0';
        if (batch_shard_parse(bad[k], &i, &n, err, sizeof(err)) != -1)
            fail_msg("--shard %s accepted", bad[k]);
        assert_non_null(strstr(err, "--shard"));
    }
}

static cJSON *result(const char *status)
{
    cJSON *r = cJSON_CreateObject();
    cJSON_AddStringToObject(r, "status", status);
    return r;
}

static int code_of(const char *const *statuses)
{
    struct batch_tally t = {0};
    for (int i = 0; statuses[i]; i++) {
        cJSON *r = strcmp(statuses[i], "-") ? result(statuses[i]) : NULL;
        batch_tally_add(&t, r, false);
        cJSON_Delete(r);
    }
    return batch_exit_code(&t);
}

static void test_exit_code_precedence(void **state)
{
    (void)state;
    assert_int_equal(code_of((const char *[]){NULL}), 0);
    assert_int_equal(code_of((const char *[]){"succeeded", "succeeded", NULL}), 0);
    assert_int_equal(code_of((const char *[]){"succeeded", "mock", NULL}), 4);
    assert_int_equal(code_of((const char *[]){"mock", "escalated", NULL}), 3);
    assert_int_equal(code_of((const char *[]){"escalated", "failed", "mock", NULL}), 1);
    assert_int_equal(code_of((const char *[]){"succeeded", "timeout", NULL}), 1);
    assert_int_equal(code_of((const char *[]){"succeeded", "cancelled", NULL}), 1);
    assert_int_equal(code_of((const char *[]){"succeeded", "-", NULL}), 1);
    assert_int_equal(code_of((const char *[]){"succeeded", "weird", NULL}), 1);
}

static void test_junit_escapes_hostile_text(void **state)
{
    (void)state;
    char dir[] = "/tmp/agentbox-junit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[128];
    snprintf(path, sizeof(path), "%s/r.xml", dir);
    cJSON *ok = result("succeeded");
    cJSON_AddStringToObject(ok, "output", "a<b>&\"c'\x01\xff\xc3\xa9");
    cJSON *bad = result("failed");
    cJSON *e = cJSON_AddObjectToObject(bad, "error");
    cJSON_AddStringToObject(e, "type", "SDK_ERROR");
    cJSON_AddStringToObject(e, "message", "</failure><x>");
    struct batch_case cases[] = {
        {"ok", ok, false}, {"bad", bad, false}, {"old", ok, true}, {"never", NULL, false}};
    char err[256];
    assert_int_equal(batch_junit_write(path, "s&s", cases, 4, 1.5, err, sizeof(err)), 0);
    char *text = NULL;
    assert_int_equal(read_file(path, 1 << 20, &text, NULL), 0);
    assert_non_null(strstr(text, "tests=\"4\" failures=\"1\" errors=\"0\" skipped=\"2\""));
    assert_non_null(strstr(text, "a&lt;b&gt;&amp;&quot;c&apos;?\xef\xbf\xbd\xc3\xa9"));
    assert_non_null(strstr(text, "&lt;/failure&gt;&lt;x&gt;"));
    assert_non_null(strstr(text, "name=\"s&amp;s\""));
    assert_null(strstr(text, "<x>"));
    free(text);
    cJSON_Delete(ok);
    cJSON_Delete(bad);
    unlink(path);
    rmdir(dir);
}

static void test_progress_fits_width(void **state)
{
    (void)state;
    char buf[512];
    batch_progress_format(buf, sizeof(buf), 100, 5, 10, 1, 3, 75, 12345, 0.5, 0);
    assert_true(strlen(buf) <= 100);
    assert_non_null(strstr(buf, "5/10 done"));
    assert_non_null(strstr(buf, "1 failed"));
    assert_non_null(strstr(buf, "3 running"));
    assert_non_null(strstr(buf, "ETA 1m15s"));
    assert_non_null(strstr(buf, "12.3k tok"));
    batch_progress_format(buf, sizeof(buf), 30, 0, 10, 0, 0, -1, 0, 0, 0);
    assert_non_null(strstr(buf, "ETA --"));
    batch_progress_format(buf, sizeof(buf), 200, 5, 10, 0, 3, 75, 0, 0, 12.2);
    assert_non_null(strstr(buf, "waiting for rate limit: 12 s"));
}

static void test_eta_is_never_zero_while_tasks_run(void **state)
{
    (void)state;
    double running[2] = {1.0, 2.0};
    /* 9 of 10 ended at 1 s each; the last has run 30 s: about 15 s more, not "0s" */
    double late[1] = {30.0};
    assert_float_equal(batch_eta(1.0, 0, 10, late, 1), 15.0, 1e-9);
    /* one just short of the average still shows at least a second */
    double close[1] = {0.99};
    assert_float_equal(batch_eta(1.0, 0, 10, close, 1), 1.0, 1e-9);
    /* nothing ended yet: unknown */
    assert_true(batch_eta(0, 5, 2, running, 2) < 0);
    /* 4 queued at 10 s on 2 cells, the running ones need up to 9 s more */
    assert_float_equal(batch_eta(10.0, 4, 2, running, 2), 29.0, 1e-9);
    assert_float_equal(batch_eta(10.0, 0, 2, NULL, 0), 0.0, 1e-9);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_blank_and_comment_lines_are_skipped),
        cmocka_unit_test(test_eta_is_never_zero_while_tasks_run),
        cmocka_unit_test(test_bad_lines_are_all_reported_with_numbers),
        cmocka_unit_test(test_derived_ids_are_content_hashes),
        cmocka_unit_test(test_duplicate_ids_refused),
        cmocka_unit_test(test_ids_only_skips_field_checks_but_not_ids),
        cmocka_unit_test(test_shard_hash_vectors),
        cmocka_unit_test(test_shard_parse),
        cmocka_unit_test(test_exit_code_precedence),
        cmocka_unit_test(test_junit_escapes_hostile_text),
        cmocka_unit_test(test_progress_fits_width),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
