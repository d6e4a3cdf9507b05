/* Unit tests for daemon/journal.c: records survive a reopen with their transitions, a torn
 * last line (a crash mid-write) is skipped, forgotten tasks vanish at compaction, and the
 * compacted file holds one line per transition; a record the disk refuses leaves nothing
 * behind, and a torn record with a whole one glued after it (an older journal) gives the
 * whole one back. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "journal.h"
#include "util.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_journal.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static cJSON *task(const char *id)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddStringToObject(t, "prompt", "p");
    cJSON_AddStringToObject(t, "id", id);
    return t;
}

static void test_reopen_knows_every_task(void **state)
{
    (void)state;
    struct journal j;
    struct journal_entry *e;
    size_t n;
    char err[256];
    assert_int_equal(journal_open(&j, dir, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 0);
    journal_entries_free(e, n);
    const char *ids[] = {"a", "b", "c", "d"};
    for (int i = 0; i < 4; i++) {
        cJSON *t = task(ids[i]);
        assert_int_equal(journal_submitted(&j, ids[i], t, 100 + i, 1000), 0);
        cJSON_Delete(t);
    }
    assert_int_equal(journal_started(&j, "a", 200), 0);
    assert_int_equal(journal_finished(&j, "a", "succeeded", 300), 0);
    assert_int_equal(journal_started(&j, "b", 201), 0);
    assert_int_equal(journal_forget(&j, "c"), 0);
    journal_close(&j);
    /* a crash in the middle of a line */
    char path[128];
    snprintf(path, sizeof(path), "%s/journal.jsonl", dir);
    int fd = open(path, O_WRONLY | O_APPEND);
    assert_true(fd >= 0);
    assert_int_equal(write_all(fd, "{\"op\":\"finished\",\"id\":\"b\",\"st", 30), 0);
    close(fd);

    assert_int_equal(journal_open(&j, dir, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 3);
    assert_string_equal(e[0].id, "a");
    assert_string_equal(e[0].status, "succeeded");
    assert_true(e[0].submitted == 100 && e[0].started == 200 && e[0].ended == 300);
    assert_string_equal(e[1].id, "b");
    assert_string_equal(e[1].status, ""); /* the torn line did not count */
    assert_true(e[1].started == 201);
    assert_string_equal(e[2].id, "d");
    assert_true(e[2].started == 0);
    assert_string_equal(cJSON_GetObjectItem(e[2].task, "id")->valuestring, "d");
    journal_entries_free(e, n);
    /* an id used again after it was forgotten */
    cJSON *t = task("c");
    assert_int_equal(journal_submitted(&j, "c", t, 400, -1), 0);
    cJSON_Delete(t);
    journal_close(&j);
    assert_int_equal(journal_open(&j, dir, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 4);
    assert_string_equal(e[3].id, "c");
    journal_entries_free(e, n);
    journal_close(&j);
    /* compacted: a: 3 lines, b: 2, d: 1, c: 1 */
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(read_file(path, 1 << 20, &text, &len), 0);
    int lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    assert_int_equal(lines, 7);
    assert_null(strstr(text, "forgotten"));
    free(text);
}

static off_t journal_size(void)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/journal.jsonl", dir);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_size;
}

static void test_a_refused_record_leaves_nothing(void **state)
{
    (void)state;
    struct journal j;
    struct journal_entry *e;
    size_t n;
    char err[256];
    assert_int_equal(journal_open(&j, dir, &e, &n, err, sizeof(err)), 0);
    journal_entries_free(e, n);
    cJSON *t = task("a");
    assert_int_equal(journal_submitted(&j, "a", t, 1, 0), 0);
    cJSON_Delete(t);
    off_t good = journal_size();
    /* the disk takes 20 more bytes, then refuses (as a full one would, half-way) */
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    struct rlimit small = {.rlim_cur = (rlim_t)good + 20, .rlim_max = old.rlim_max};
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    t = task("refused");
    int rc = journal_submitted(&j, "refused", t, 2, 0);
    cJSON_Delete(t);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, -1);
    assert_int_equal(journal_size(), good); /* cut back: no half record */
    /* room again: the next record stands on its own line */
    t = task("b");
    assert_int_equal(journal_submitted(&j, "b", t, 3, 0), 0);
    cJSON_Delete(t);
    journal_close(&j);
    assert_int_equal(journal_open(&j, dir, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].id, "a");
    assert_string_equal(e[1].id, "b");
    journal_entries_free(e, n);
    journal_close(&j);
}

static void test_a_glued_record_is_found_again(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/journal.jsonl", dir);
    const char *text = "{\"op\":\"submitted\",\"id\":\"x\",\"ts\":1,\"task\":{\"id\":"
                       "{\"op\":\"submitted\",\"id\":\"y\",\"ts\":2,\"task\":{\"id\":\"y\"}}\n";
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write_all(fd, text, strlen(text)), 0);
    close(fd);
    struct journal j;
    struct journal_entry *e;
    size_t n;
    char err[256];
    assert_int_equal(journal_open(&j, dir, &e, &n, err, sizeof(err)), 0);
    assert_int_equal(n, 1);
    assert_string_equal(e[0].id, "y");
    journal_entries_free(e, n);
    journal_close(&j);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_reopen_knows_every_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_refused_record_leaves_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_a_glued_record_is_found_again, setup, teardown),
    };
    return cmocka_run_group_tests_name("journal", tests, NULL, NULL);
}
