/* Unit tests for agent/tools/tool_editor.c on real files in a temporary directory: each command's
 * success text and file effect, each refusal's message, undo depth, binary, FIFO and size
 * refusals. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool_editor.h"
#include "util.h"

struct fx {
    struct tool_editor *ed;
    char dir[64];
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/agentbox-ted-XXXXXX");
    if (!mkdtemp(f->dir) || !(f->ed = tool_editor_new()))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    tool_editor_free(f->ed);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

static const char *p(struct fx *f, const char *name)
{
    static char buf[4][256];
    static int i;
    i = (i + 1) % 4;
    snprintf(buf[i], sizeof(buf[i]), "%s/%s", f->dir, name);
    return buf[i];
}

static void put(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static char *get(const char *path)
{
    char *text = NULL;
    size_t len;
    assert_int_equal(read_file(path, 1 << 24, &text, &len), 0);
    return text;
}

/* Runs a command; checks is_error; returns the observation (caller frees). */
static char *ed(struct fx *f, struct tool_editor_args a, bool want_error)
{
    bool is_error = !want_error;
    char *obs = tool_editor_run(f->ed, &a, &is_error);
    assert_non_null(obs);
    if (is_error != want_error)
        fprintf(stderr, "unexpected: %s\n", obs);
    assert_int_equal(is_error, want_error);
    return obs;
}

#define CONTAINS(hay, needle)                                                                      \
    do {                                                                                           \
        if (!strstr((hay), (needle)))                                                              \
            fail_msg("expected \"%s\" in \"%s\"", (needle), (hay));                                \
    } while (0)

static void test_view_file_and_range(void **state)
{
    struct fx *f = *state;
    put(p(f, "a.txt"), "one\ntwo\nthree\nfour\n");
    char *o = ed(f, (struct tool_editor_args){.command = "view", .path = p(f, "a.txt")}, false);
    char want[512];
    snprintf(want, sizeof(want),
             "Here's the result of running `cat -n` on %s:\n     1\tone\n     2\ttwo\n     "
             "3\tthree\n     4\tfour\n",
             p(f, "a.txt"));
    assert_string_equal(o, want);
    free(o);
    o = ed(f,
           (struct tool_editor_args){.command = "view",
                                     .path = p(f, "a.txt"),
                                     .has_view_range = true,
                                     .view_range = {2, -1}},
           false);
    CONTAINS(o, "     2\ttwo\n     3\tthree\n     4\tfour\n");
    assert_null(strstr(o, "\tone"));
    free(o);
    o = ed(
        f,
        (struct tool_editor_args){
            .command = "view", .path = p(f, "a.txt"), .has_view_range = true, .view_range = {2, 3}},
        false);
    assert_null(strstr(o, "four"));
    free(o);
    o = ed(
        f,
        (struct tool_editor_args){
            .command = "view", .path = p(f, "a.txt"), .has_view_range = true, .view_range = {0, 2}},
        true);
    CONTAINS(o, "Its first element `0` should be within the range of lines of the file: [1, 4]");
    free(o);
    o = ed(
        f,
        (struct tool_editor_args){
            .command = "view", .path = p(f, "a.txt"), .has_view_range = true, .view_range = {1, 9}},
        true);
    CONTAINS(o, "second element `9`");
    free(o);
    o = ed(
        f,
        (struct tool_editor_args){
            .command = "view", .path = p(f, "a.txt"), .has_view_range = true, .view_range = {3, 2}},
        true);
    free(o);
}

static void test_view_dir_two_levels_no_hidden(void **state)
{
    struct fx *f = *state;
    assert_int_equal(mkdir(p(f, "src"), 0755), 0);
    assert_int_equal(mkdir(p(f, "src/deep"), 0755), 0);
    assert_int_equal(mkdir(p(f, "src/deep/deeper"), 0755), 0);
    assert_int_equal(mkdir(p(f, ".git"), 0755), 0);
    put(p(f, "src/main.c"), "int main;\n");
    put(p(f, ".hidden"), "x");
    put(p(f, "README"), "x");
    char *o = ed(f, (struct tool_editor_args){.command = "view", .path = f->dir}, false);
    CONTAINS(o, "excluding hidden items");
    char line[256];
    snprintf(line, sizeof(line), "%s/src/\n", f->dir);
    CONTAINS(o, line);
    snprintf(line, sizeof(line), "%s/src/main.c\n", f->dir);
    CONTAINS(o, line);
    snprintf(line, sizeof(line), "%s/src/deep/\n", f->dir);
    CONTAINS(o, line);
    snprintf(line, sizeof(line), "%s/README\n", f->dir);
    CONTAINS(o, line);
    assert_null(strstr(o, "deeper"));
    assert_null(strstr(o, ".git"));
    assert_null(strstr(o, ".hidden"));
    free(o);
    o = ed(f,
           (struct tool_editor_args){
               .command = "view", .path = f->dir, .has_view_range = true, .view_range = {1, 2}},
           true);
    CONTAINS(o, "not allowed when `path` points to a directory");
    free(o);
    o = ed(f, (struct tool_editor_args){.command = "str_replace", .path = f->dir, .old_str = "x"},
           true);
    CONTAINS(o, "is a directory and only the `view` command");
    free(o);
}

static void test_create(void **state)
{
    struct fx *f = *state;
    char *o = ed(
        f,
        (struct tool_editor_args){.command = "create", .path = p(f, "n.py"), .file_text = "x=1\n"},
        false);
    CONTAINS(o, "File created successfully at: ");
    free(o);
    char *t = get(p(f, "n.py"));
    assert_string_equal(t, "x=1\n");
    free(t);
    o = ed(f,
           (struct tool_editor_args){.command = "create", .path = p(f, "n.py"), .file_text = "y"},
           true);
    CONTAINS(o, "Cannot overwrite files using command `create`");
    free(o);
    t = get(p(f, "n.py"));
    assert_string_equal(t, "x=1\n");
    free(t);
    o = ed(f,
           (struct tool_editor_args){
               .command = "create", .path = p(f, "missing/dir/n.py"), .file_text = "y"},
           true);
    CONTAINS(o, "parent directory");
    free(o);
    o = ed(f, (struct tool_editor_args){.command = "create", .path = p(f, "z")}, true);
    CONTAINS(o, "`file_text` is required");
    free(o);
}

static void test_str_replace(void **state)
{
    struct fx *f = *state;
    put(p(f, "c.py"), "def f():\n    return 1\n\ndef g():\n    return 1\n");
    char *o = ed(f,
                 (struct tool_editor_args){.command = "str_replace",
                                           .path = p(f, "c.py"),
                                           .old_str = "return 1",
                                           .new_str = "return 2"},
                 true);
    CONTAINS(o, "Multiple occurrences of old_str `return 1` in lines [2, 5]");
    free(o);
    o = ed(
        f,
        (struct tool_editor_args){
            .command = "str_replace", .path = p(f, "c.py"), .old_str = "return 3", .new_str = "x"},
        true);
    CONTAINS(o, "did not appear verbatim");
    free(o);
    o = ed(f,
           (struct tool_editor_args){.command = "str_replace",
                                     .path = p(f, "c.py"),
                                     .old_str = "def g():\n    return 1",
                                     .new_str = "def g():\n    return 42"},
           false);
    CONTAINS(o, "has been edited");
    CONTAINS(o, "     5\t    return 42\n");
    free(o);
    char *t = get(p(f, "c.py"));
    assert_string_equal(t, "def f():\n    return 1\n\ndef g():\n    return 42\n");
    free(t);
    /* Empty new_str deletes. */
    o = ed(f,
           (struct tool_editor_args){.command = "str_replace",
                                     .path = p(f, "c.py"),
                                     .old_str = "\ndef g():\n    return 42"},
           false);
    free(o);
    t = get(p(f, "c.py"));
    assert_string_equal(t, "def f():\n    return 1\n\n");
    free(t);
    o = ed(f,
           (struct tool_editor_args){
               .command = "str_replace", .path = p(f, "c.py"), .old_str = "a", .new_str = "a"},
           true);
    CONTAINS(o, "must be different");
    free(o);
    o = ed(f, (struct tool_editor_args){.command = "str_replace", .path = p(f, "c.py")}, true);
    CONTAINS(o, "`old_str` is required");
    free(o);
    /* Overlapping occurrences are several, not one. */
    put(p(f, "o.txt"), "aaa\n");
    o = ed(f,
           (struct tool_editor_args){
               .command = "str_replace", .path = p(f, "o.txt"), .old_str = "aa", .new_str = "b"},
           true);
    CONTAINS(o, "Multiple occurrences");
    free(o);
}

static void test_insert(void **state)
{
    struct fx *f = *state;
    put(p(f, "i.txt"), "a\nb");
    char *o = ed(f,
                 (struct tool_editor_args){.command = "insert",
                                           .path = p(f, "i.txt"),
                                           .has_insert_line = true,
                                           .insert_line = 0,
                                           .new_str = "top"},
                 false);
    free(o);
    o = ed(f,
           (struct tool_editor_args){.command = "insert",
                                     .path = p(f, "i.txt"),
                                     .has_insert_line = true,
                                     .insert_line = 2,
                                     .new_str = "mid1\nmid2\n"},
           false);
    CONTAINS(o, "     3\tmid1\n     4\tmid2\n");
    free(o);
    o = ed(f,
           (struct tool_editor_args){.command = "insert",
                                     .path = p(f, "i.txt"),
                                     .has_insert_line = true,
                                     .insert_line = 5,
                                     .new_str = "end"},
           false);
    free(o);
    char *t = get(p(f, "i.txt"));
    assert_string_equal(t, "top\na\nmid1\nmid2\nb\nend\n");
    free(t);
    o = ed(f,
           (struct tool_editor_args){.command = "insert",
                                     .path = p(f, "i.txt"),
                                     .has_insert_line = true,
                                     .insert_line = 7,
                                     .new_str = "x"},
           true);
    CONTAINS(o, "Invalid `insert_line` parameter: 7. It should be within the range of lines of "
                "the file: [0, 6]");
    free(o);
    o = ed(f,
           (struct tool_editor_args){.command = "insert",
                                     .path = p(f, "i.txt"),
                                     .has_insert_line = true,
                                     .insert_line = -1,
                                     .new_str = "x"},
           true);
    free(o);
    o = ed(f, (struct tool_editor_args){.command = "insert", .path = p(f, "i.txt"), .new_str = "x"},
           true);
    CONTAINS(o, "`insert_line` is required");
    free(o);
}

static void test_undo(void **state)
{
    struct fx *f = *state;
    put(p(f, "u.txt"), "v0\n");
    char *o = ed(f, (struct tool_editor_args){.command = "undo_edit", .path = p(f, "u.txt")}, true);
    CONTAINS(o, "No edit history found for");
    free(o);
    /* 12 edits: v0 -> v1 ... v12; only the last 10 can be undone. */
    for (int i = 0; i < 12; i++) {
        char from[16], to[16];
        snprintf(from, sizeof(from), "v%d", i);
        snprintf(to, sizeof(to), "v%d", i + 1);
        o = ed(f,
               (struct tool_editor_args){
                   .command = "str_replace", .path = p(f, "u.txt"), .old_str = from, .new_str = to},
               false);
        free(o);
    }
    put(p(f, "other.txt"), "x\n");
    o = ed(f,
           (struct tool_editor_args){
               .command = "str_replace", .path = p(f, "other.txt"), .old_str = "x", .new_str = "y"},
           false);
    free(o);
    for (int i = 11; i >= 2; i--) {
        o = ed(f, (struct tool_editor_args){.command = "undo_edit", .path = p(f, "u.txt")}, false);
        CONTAINS(o, "undone successfully");
        free(o);
        char *t = get(p(f, "u.txt")), want[16];
        snprintf(want, sizeof(want), "v%d\n", i);
        assert_string_equal(t, want);
        free(t);
    }
    o = ed(f, (struct tool_editor_args){.command = "undo_edit", .path = p(f, "u.txt")}, true);
    free(o);
    o = ed(f, (struct tool_editor_args){.command = "undo_edit", .path = p(f, "other.txt")}, false);
    free(o);
    char *t = get(p(f, "other.txt"));
    assert_string_equal(t, "x\n");
    free(t);
    assert_int_equal(tool_editor_history_bytes(f->ed), 0);
}

static void test_refusals(void **state)
{
    struct fx *f = *state;
    char *o = ed(f, (struct tool_editor_args){.command = "view", .path = "relative/x"}, true);
    CONTAINS(o, "is not an absolute path");
    free(o);
    o = ed(f, (struct tool_editor_args){.command = "view", .path = p(f, "nope")}, true);
    CONTAINS(o, "does not exist");
    free(o);
    o = ed(f, (struct tool_editor_args){.command = "delete", .path = p(f, "nope")}, true);
    CONTAINS(o, "Unrecognized command delete");
    free(o);
    o = ed(f, (struct tool_editor_args){.path = p(f, "nope")}, true);
    free(o);
    o = ed(f, (struct tool_editor_args){.command = "view"}, true);
    CONTAINS(o, "`path` is required");
    free(o);
    /* Binary. */
    int fd = open(p(f, "bin"), O_WRONLY | O_CREAT, 0644);
    assert_int_equal(write(fd, "ab\0cd", 5), 5);
    close(fd);
    o = ed(f, (struct tool_editor_args){.command = "view", .path = p(f, "bin")}, true);
    CONTAINS(o, "binary");
    free(o);
    o = ed(f,
           (struct tool_editor_args){
               .command = "str_replace", .path = p(f, "bin"), .old_str = "ab", .new_str = "x"},
           true);
    CONTAINS(o, "binary");
    free(o);
    /* A FIFO must be refused, not block the agent. */
    assert_int_equal(mkfifo(p(f, "fifo"), 0600), 0);
    o = ed(f, (struct tool_editor_args){.command = "view", .path = p(f, "fifo")}, true);
    CONTAINS(o, "not a regular file");
    free(o);
    /* Too big. */
    assert_int_equal(truncate(p(f, "bin"), TOOL_EDITOR_MAX_FILE_BYTES + 1), 0);
    o = ed(f, (struct tool_editor_args){.command = "view", .path = p(f, "bin")}, true);
    CONTAINS(o, "handles files up to");
    free(o);
}

/* A write that fails half way (here: RLIMIT_FSIZE, as ENOSPC would under the quota) must
 * leave the file as it was, and say so. */
static void test_failed_write_restores(void **state)
{
    struct fx *f = *state;
    put(p(f, "w.txt"), "short line\n");
    struct rlimit old, lim = {.rlim_cur = 64, .rlim_max = RLIM_INFINITY};
    assert_int_equal(getrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_IGN);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
    char *o =
        ed(f,
           (struct tool_editor_args){.command = "str_replace",
                                     .path = p(f, "w.txt"),
                                     .old_str = "short line",
                                     .new_str = "a much longer line that no longer fits in "
                                                "the sixty-four byte limit set for this test"},
           true);
    assert_int_equal(setrlimit(RLIMIT_FSIZE, &old), 0);
    signal(SIGXFSZ, SIG_DFL);
    CONTAINS(o, "left unchanged");
    free(o);
    char *t = get(p(f, "w.txt"));
    assert_string_equal(t, "short line\n");
    free(t);
    /* Nothing to undo: the failed edit was not recorded. */
    o = ed(f, (struct tool_editor_args){.command = "undo_edit", .path = p(f, "w.txt")}, true);
    free(o);
}

static void test_view_clipped(void **state)
{
    struct fx *f = *state;
    FILE *fp = fopen(p(f, "big.txt"), "w");
    assert_non_null(fp);
    for (int i = 0; i < 5000; i++)
        fprintf(fp, "line %d\n", i);
    fclose(fp);
    char *o = ed(f, (struct tool_editor_args){.command = "view", .path = p(f, "big.txt")}, false);
    assert_true(strlen(o) < TOOL_EDITOR_VIEW_MAX_CHARS + 400);
    CONTAINS(o, "<response clipped>");
    CONTAINS(o, "grep -n");
    free(o);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_view_file_and_range),
        T(test_view_dir_two_levels_no_hidden),
        T(test_create),
        T(test_str_replace),
        T(test_insert),
        T(test_undo),
        T(test_refusals),
        T(test_view_clipped),
        T(test_failed_write_restores),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
