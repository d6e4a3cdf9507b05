/* Unit tests for daemon/statefile.c: a task's paths and files below serve's state dir. An id
 * that is not a task id ("..", "../x", ".uploads", "a/b") names nothing; a symlink planted for
 * a task's directory or for a file in it is refused, never followed; a path too long for the
 * buffer is an error, not a cut-off path. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safedir.h"
#include "statefile.h"
#include "util.h"

static char root[64];
static int dfd = -1;

static int setup(void **state)
{
    (void)state;
    snprintf(root, sizeof(root), "/tmp/agentbox-test-sf-XXXXXX");
    assert_non_null(mkdtemp(root));
    dfd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    assert_int_equal(remove_tree_at(AT_FDCWD, root), 0);
    (void)close(dfd);
    return 0;
}

static void test_paths(void **state)
{
    (void)state;
    char p[STATEFILE_PATH_MAX];
    assert_int_equal(statefile_path("/s", "t-1", NULL, p, sizeof(p)), 0);
    assert_string_equal(p, "/s/t-1");
    assert_int_equal(statefile_path("/s", "t-1", "result.json", p, sizeof(p)), 0);
    assert_string_equal(p, "/s/t-1/result.json");
    assert_int_equal(statefile_upload_path("/s", "t-1", p, sizeof(p)), 0);
    assert_string_equal(p, "/s/.uploads/t-1");
    const char *bad[] = {"", "..", ".", "../x", "a/b", ".uploads", "-x"};
    for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
        errno = 0;
        assert_int_equal(statefile_path("/s", bad[i], NULL, p, sizeof(p)), -1);
        assert_int_equal(errno, EINVAL);
        assert_int_equal(statefile_open(dfd, bad[i], NULL, O_RDONLY, 0), -1);
    }
    assert_int_equal(statefile_path("/s", "t", "../x", p, sizeof(p)), -1);
    char small[8];
    errno = 0;
    assert_int_equal(statefile_path("/state", "task", NULL, small, sizeof(small)), -1);
    assert_int_equal(errno, ENAMETOOLONG);
    /* the longest state dir and id with the longest name fit the one buffer size */
    char dir[CONFIG_URL_MAX], id[TASK_ID_MAX + 1], name[STATEFILE_NAME_MAX];
    memset(dir, 'd', sizeof(dir) - 1);
    dir[0] = '/';
    dir[sizeof(dir) - 1] = '\0';
    memset(id, 'i', sizeof(id) - 1);
    id[sizeof(id) - 1] = '\0';
    memset(name, 'n', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    assert_int_equal(statefile_path(dir, id, name, p, sizeof(p)), 0);
    assert_int_equal(statefile_upload_path(dir, id, p, sizeof(p)), 0);
}

static void test_reads_below_the_fd(void **state)
{
    (void)state;
    assert_int_equal(mkdirat(dfd, "t1", 0700), 0);
    int fd = statefile_open(dfd, "t1", "result.json", O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write_all(fd, "{\"a\":1}", 7), 0);
    (void)close(fd);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(statefile_read(dfd, "t1", "result.json", 100, &text, &len), 0);
    assert_string_equal(text, "{\"a\":1}");
    free(text);
    text = NULL;
    errno = 0;
    assert_int_equal(statefile_read(dfd, "t1", "result.json", 6, &text, &len), -1);
    assert_int_equal(errno, EFBIG);
    assert_null(text);
}

/* A task's directory or a file in it swapped for a link to elsewhere is not followed. */
static void test_links_refused(void **state)
{
    (void)state;
    char other[128];
    snprintf(other, sizeof(other), "%s/elsewhere", root);
    assert_int_equal(mkdir(other, 0700), 0);
    assert_int_equal(mkdirat(dfd, "elsewhere/t2", 0700), 0);
    int fd = openat(dfd, "elsewhere/t2/events.jsonl", O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    (void)close(fd);
    assert_int_equal(symlinkat("elsewhere/t2", dfd, "t2"), 0);
    char *text = NULL;
    size_t len;
    assert_int_equal(statefile_read(dfd, "t2", "events.jsonl", 100, &text, &len), -1);
    assert_int_equal(statefile_open(dfd, "t2", "events.jsonl", O_RDONLY, 0), -1);
    assert_int_equal(statefile_open(dfd, "t2", NULL, O_RDONLY | O_DIRECTORY, 0), -1);
    assert_int_equal(mkdirat(dfd, "t3", 0700), 0);
    assert_int_equal(symlinkat("../elsewhere/t2/events.jsonl", dfd, "t3/events.jsonl"), 0);
    assert_int_equal(statefile_read(dfd, "t3", "events.jsonl", 100, &text, &len), -1);
    assert_int_equal(errno, ELOOP);
    assert_int_equal(statefile_open(dfd, "t3", "events.jsonl", O_RDONLY, 0), -1);
    assert_int_equal(errno, ELOOP);
    assert_null(text);
    /* a result written for the linked task lands nowhere: the link is not followed */
    assert_int_equal(statefile_write(dfd, "t2", "result.json", "{}", 2, NULL), -1);
    struct stat st;
    assert_int_equal(fstatat(dfd, "elsewhere/t2/result.json", &st, 0), -1);
    /* and written in place for a real task directory (replacing a planted link by rename) */
    assert_int_equal(symlinkat("../elsewhere/t2/r", dfd, "t3/result.json"), 0);
    assert_int_equal(statefile_write(dfd, "t3", "result.json", "{}", 2, NULL), 0);
    assert_int_equal(fstatat(dfd, "t3/result.json", &st, AT_SYMLINK_NOFOLLOW), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(fstatat(dfd, "elsewhere/t2/r", &st, 0), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_paths),
        cmocka_unit_test(test_reads_below_the_fd),
        cmocka_unit_test(test_links_refused),
    };
    return cmocka_run_group_tests_name("statefile", tests, setup, teardown);
}
