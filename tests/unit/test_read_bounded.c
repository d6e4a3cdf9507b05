/* Unit tests for the one bounded whole-file read (common/util.c read_fd_bounded, and
 * read_file / read_regular_at over it): exactly max bytes pass, one byte more is refused with
 * EFBIG and nothing returned, from a regular file (before reading) and from a pipe (at the
 * first byte past the cap); a file that grows while it is read stays bounded. */
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
#include "util.h"

static int temp_file(const char *text, size_t n, char *path, size_t pathsz)
{
    snprintf(path, pathsz, "/tmp/agentbox-test-rb-XXXXXX");
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write_all(fd, text, n), 0);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    return fd;
}

static void test_regular_file_cap(void **state)
{
    (void)state;
    char path[64];
    int fd = temp_file("0123456789", 10, path, sizeof(path));
    char *out = (char *)0x1;
    size_t len = 0;
    assert_int_equal(read_fd_bounded(fd, 10, &out, &len), 0); /* exactly max */
    assert_int_equal(len, 10);
    assert_string_equal(out, "0123456789");
    free(out);
    out = NULL;
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    errno = 0;
    assert_int_equal(read_fd_bounded(fd, 9, &out, &len), -1); /* one byte more */
    assert_int_equal(errno, EFBIG);
    assert_null(out);
    errno = 0;
    assert_int_equal(read_file(path, 9, &out, &len), -1);
    assert_int_equal(errno, EFBIG);
    assert_int_equal(read_regular_at(AT_FDCWD, path, 0, 10, &out, &len), 0);
    assert_int_equal(len, 10);
    free(out);
    out = NULL;
    errno = 0;
    assert_int_equal(read_regular_at(AT_FDCWD, path, 0, 9, &out, &len), -1);
    assert_int_equal(errno, EFBIG);
    assert_null(out);
    (void)close(fd);
    (void)unlink(path);
}

static void test_empty_file(void **state)
{
    (void)state;
    char path[64];
    int fd = temp_file("", 0, path, sizeof(path));
    char *out = NULL;
    size_t len = 99;
    assert_int_equal(read_fd_bounded(fd, 0, &out, &len), 0);
    assert_int_equal(len, 0);
    assert_string_equal(out, "");
    free(out);
    (void)close(fd);
    (void)unlink(path);
}

/* A pipe has no size to judge first: the cap holds at the first byte past it. */
static void test_pipe_cap(void **state)
{
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    char big[70000];
    memset(big, 'x', sizeof(big)); /* more than one first allocation */
    assert_int_equal(fcntl(p[1], F_SETPIPE_SZ, 1 << 20) >= (int)sizeof(big), 1);
    assert_int_equal(write_all(p[1], big, sizeof(big)), 0);
    (void)close(p[1]);
    char *out = NULL;
    size_t len = 0;
    errno = 0;
    assert_int_equal(read_fd_bounded(p[0], sizeof(big) - 1, &out, &len), -1);
    assert_int_equal(errno, EFBIG);
    assert_null(out);
    (void)close(p[0]);

    assert_int_equal(pipe(p), 0);
    assert_int_equal(fcntl(p[1], F_SETPIPE_SZ, 1 << 20) >= (int)sizeof(big), 1);
    assert_int_equal(write_all(p[1], big, sizeof(big)), 0);
    (void)close(p[1]);
    assert_int_equal(read_fd_bounded(p[0], sizeof(big), &out, &len), 0);
    assert_int_equal(len, sizeof(big));
    assert_int_equal(out[len], '\0');
    assert_int_equal(memcmp(out, big, sizeof(big)), 0);
    free(out);
    (void)close(p[0]);
}

/* Read from where the fd stands: a caller that has read a header reads the rest. */
static void test_reads_from_the_offset(void **state)
{
    (void)state;
    char path[64];
    int fd = temp_file("headbody", 8, path, sizeof(path));
    assert_int_equal(lseek(fd, 4, SEEK_SET), 4);
    char *out = NULL;
    size_t len = 0;
    assert_int_equal(read_fd_bounded(fd, 100, &out, &len), 0);
    assert_string_equal(out, "body");
    free(out);
    (void)close(fd);
    (void)unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_regular_file_cap),
        cmocka_unit_test(test_empty_file),
        cmocka_unit_test(test_pipe_cap),
        cmocka_unit_test(test_reads_from_the_offset),
    };
    return cmocka_run_group_tests_name("read_bounded", tests, NULL, NULL);
}
