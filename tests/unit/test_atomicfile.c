/* Unit tests for common/atomicfile.c: a file is replaced whole; a write the disk refuses
 * half-way leaves the old file as it was and no temporary file behind. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "atomicfile.h"
#include "util.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_atomicfile.XXXXXX");
    return mkdtemp(dir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int entries(void)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    int n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") && strcmp(de->d_name, "..");
    closedir(d);
    return n;
}

static void test_replaced_whole_or_not_at_all(void **state)
{
    (void)state;
    char path[128];
    snprintf(path, sizeof(path), "%s/result.json", dir);
    assert_int_equal(atomic_write_file(path, "old\n", 4, 0600, NULL), 0);
    assert_int_equal(atomic_write_file(path, "newer\n", 6, 0600, NULL), 0);
    char *text = NULL;
    size_t len = 0;
    assert_int_equal(read_file(path, 1024, &text, &len), 0);
    assert_string_equal(text, "newer\n");
    free(text);
    /* the disk refuses after 100 bytes: the old content stays, no temporary file */
    static char big[100000];
    memset(big, 'x', sizeof(big));
    struct rlimit old;
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    struct rlimit small = {.rlim_cur = 100, .rlim_max = old.rlim_max};
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &small), 0);
    int rc = atomic_write_file(path, big, sizeof(big), 0600, NULL);
    int e = errno;
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, prev);
    assert_int_equal(rc, -1);
    assert_int_equal(e, EFBIG);
    assert_int_equal(read_file(path, 1024, &text, &len), 0);
    assert_string_equal(text, "newer\n");
    free(text);
    assert_int_equal(entries(), 1);
    assert_true(errno_is_no_space(ENOSPC) && errno_is_no_space(EDQUOT) && !errno_is_no_space(EIO));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_replaced_whole_or_not_at_all, setup, teardown),
    };
    return cmocka_run_group_tests_name("atomicfile", tests, NULL, NULL);
}
