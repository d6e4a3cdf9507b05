/* Unit tests for common/safedir.c (and util.c's dir_ensure): which directories are trusted,
 * reading only regular files without blocking, removing a tree by fd without following links. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "safedir.h"
#include "util.h"

static char base[256];

static int setup(void **state)
{
    (void)state;
    snprintf(base, sizeof(base), "/tmp/agentbox-safedir-XXXXXX");
    return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    cleanup_fd int fd = open("/tmp", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return remove_tree_at(fd, base + strlen("/tmp/"));
}

static void test_own_directory_is_created_and_resolved(void **state)
{
    (void)state;
    char path[512], real[4096], err[ERR_MSG_MAX];
    snprintf(path, sizeof(path), "%s/state/", base);
    assert_int_equal(dir_ensure_trusted(path, real, sizeof(real), err, sizeof(err)), 0);
    struct stat st;
    assert_int_equal(stat(real, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    /* existing: accepted again */
    assert_int_equal(dir_ensure_trusted(path, NULL, 0, err, sizeof(err)), 0);
}

static void test_writable_by_others_is_refused_with_its_mode(void **state)
{
    (void)state;
    char path[512], err[ERR_MSG_MAX];
    snprintf(path, sizeof(path), "%s/open", base);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_int_equal(chmod(path, 0777), 0);
    assert_int_equal(dir_ensure_trusted(path, NULL, 0, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "mode 0777"));
    /* and nothing may be made below it either */
    char below[600];
    snprintf(below, sizeof(below), "%s/x", path);
    assert_int_equal(dir_ensure_trusted(below, NULL, 0, err, sizeof(err)), -1);
    assert_int_equal(access(below, F_OK), -1);
    /* sticky: fine as a directory above, never as the one written into */
    assert_int_equal(chmod(path, 01777), 0);
    assert_int_equal(dir_ensure_trusted(below, NULL, 0, err, sizeof(err)), 0);
    assert_int_equal(dir_ensure_trusted(path, NULL, 0, err, sizeof(err)), -1);
}

static void test_symlink_to_a_file_is_not_a_directory(void **state)
{
    (void)state;
    char path[512], err[ERR_MSG_MAX];
    snprintf(path, sizeof(path), "%s/link", base);
    assert_int_equal(symlink("/etc/passwd", path), 0);
    assert_int_equal(dir_ensure_trusted(path, NULL, 0, err, sizeof(err)), -1);
}

static void test_read_regular_refuses_fifo_link_and_big(void **state)
{
    (void)state;
    cleanup_fd int dfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_true(dfd >= 0);
    assert_int_equal(mkfifoat(dfd, "fifo", 0600), 0);
    char *out = NULL;
    assert_int_equal(read_regular_at(dfd, "fifo", 1, 1024, &out, NULL), -1);
    assert_int_equal(errno, EINVAL);
    assert_int_equal(symlinkat("/etc/hostname", dfd, "sl"), 0);
    assert_int_equal(read_regular_at(dfd, "sl", 0, 1024, &out, NULL), -1);
    cleanup_fd int fd = openat(dfd, "f", O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_int_equal(write_all(fd, "0123456789", 10), 0);
    assert_int_equal(read_regular_at(dfd, "f", 0, 9, &out, NULL), -1);
    assert_int_equal(errno, EFBIG);
    size_t len = 0;
    assert_int_equal(read_regular_at(dfd, "f", 0, 10, &out, &len), 0);
    assert_int_equal(len, 10);
    assert_string_equal(out, "0123456789");
    free(out);
}

static void test_remove_tree_never_follows_a_link(void **state)
{
    (void)state;
    char victim[512], tree[512], path[700];
    snprintf(victim, sizeof(victim), "%s/victim", base);
    snprintf(tree, sizeof(tree), "%s/tree", base);
    assert_int_equal(mkdir(victim, 0700), 0);
    snprintf(path, sizeof(path), "%s/keep", victim);
    cleanup_fd int k = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    assert_true(k >= 0);
    assert_int_equal(mkdir(tree, 0700), 0);
    snprintf(path, sizeof(path), "%s/a", tree);
    assert_int_equal(mkdir(path, 0700), 0);
    snprintf(path, sizeof(path), "%s/a/link", tree);
    assert_int_equal(symlink(victim, path), 0);
    cleanup_fd int dfd = open(base, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    assert_int_equal(remove_tree_at(dfd, "tree"), 0);
    assert_int_equal(access(tree, F_OK), -1);
    snprintf(path, sizeof(path), "%s/keep", victim);
    assert_int_equal(access(path, F_OK), 0);
}

static void test_dir_ensure_refuses_links_and_open_directories(void **state)
{
    (void)state;
    char path[512], link[512];
    snprintf(path, sizeof(path), "%s/plain", base);
    assert_int_equal(dir_ensure(path), 0);
    assert_int_equal(dir_ensure(path), 0);
    snprintf(link, sizeof(link), "%s/plainlink", base);
    assert_int_equal(symlink(path, link), 0);
    assert_int_equal(dir_ensure(link), -1);
    assert_int_equal(errno, ENOTDIR);
    assert_int_equal(chmod(path, 0770), 0);
    assert_int_equal(dir_ensure(path), -1);
    assert_int_equal(errno, EPERM);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_directory_is_created_and_resolved),
        cmocka_unit_test(test_writable_by_others_is_refused_with_its_mode),
        cmocka_unit_test(test_symlink_to_a_file_is_not_a_directory),
        cmocka_unit_test(test_read_regular_refuses_fifo_link_and_big),
        cmocka_unit_test(test_remove_tree_never_follows_a_link),
        cmocka_unit_test(test_dir_ensure_refuses_links_and_open_directories),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
