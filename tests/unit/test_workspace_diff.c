/* Unit tests for agent/workspace_diff.c on real trees: manifest statuses, sizes and hashes,
 * symlinks and FIFOs never followed or listed, limits, the rewritten unified diff and its cap,
 * and the outputs collector's pattern rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json.h"
#include "sha256.h"
#include "util.h"
#include "workspace_diff.h"

struct fx {
    char root[64], seed[96], ws[96];
};

static void put(const char *dir, const char *rel, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    assert_int_equal(fclose(fp), 0);
}

static void mk(const char *dir, const char *rel)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, rel);
    assert_int_equal(mkdir(path, 0755), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    snprintf(f->root, sizeof(f->root), "/tmp/agentbox-wsd-XXXXXX");
    if (!mkdtemp(f->root))
        return -1;
    snprintf(f->seed, sizeof(f->seed), "%s/seed", f->root);
    snprintf(f->ws, sizeof(f->ws), "%s/ws", f->root);
    if (mkdir(f->seed, 0755) || mkdir(f->ws, 0755))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->root);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* The standard scene: same, modified (same size), modified (new size), deleted, a deleted
 * directory, added files, a symlink to outside, a FIFO. */
static void scene(struct fx *f)
{
    put(f->seed, "same.txt", "same\n");
    put(f->ws, "same.txt", "same\n");
    put(f->seed, "b.txt", "one\ntwo\n");
    put(f->ws, "b.txt", "one\nTWO\n");
    put(f->seed, "c.txt", "short\n");
    put(f->ws, "c.txt", "much longer now\n");
    put(f->seed, "gone.txt", "-- comment\tx\nkeep\n");
    mk(f->seed, "olddir");
    put(f->seed, "olddir/e.txt", "e\n");
    put(f->ws, "new.txt", "hello\n");
    mk(f->ws, "sub");
    mk(f->ws, "sub/deeper");
    put(f->ws, "sub/deeper/g.log", "g\n");
    char path[256];
    snprintf(path, sizeof(path), "%s/etc-link", f->ws);
    assert_int_equal(symlink("/etc", path), 0);
    snprintf(path, sizeof(path), "%s/passwd-link.txt", f->ws);
    assert_int_equal(symlink("/etc/passwd", path), 0);
    snprintf(path, sizeof(path), "%s/pipe", f->ws);
    assert_int_equal(mkfifo(path, 0600), 0);
}

static const struct wsdiff_file *find(const struct wsdiff_manifest *m, const char *path)
{
    for (size_t i = 0; i < m->n; i++)
        if (strcmp(m->files[i].path, path) == 0)
            return &m->files[i];
    return NULL;
}

static void test_manifest(void **state)
{
    struct fx *f = *state;
    scene(f);
    struct wsdiff_manifest m;
    char err[ERR_MSG_MAX];
    assert_int_equal(wsdiff_manifest(f->seed, f->ws, NULL, &m, err, sizeof(err)), 0);
    const char *want[] = {"b.txt",   "c.txt",        "gone.txt",
                          "new.txt", "olddir/e.txt", "sub/deeper/g.log"};
    assert_int_equal(m.n, ARRAY_SIZE(want));
    for (size_t i = 0; i < ARRAY_SIZE(want); i++)
        assert_string_equal(m.files[i].path, want[i]); /* sorted, relative */
    assert_int_equal(find(&m, "b.txt")->status, WSDIFF_MODIFIED);
    assert_int_equal(find(&m, "c.txt")->status, WSDIFF_MODIFIED);
    assert_int_equal(find(&m, "c.txt")->size, 16);
    assert_int_equal(find(&m, "gone.txt")->status, WSDIFF_DELETED);
    assert_string_equal(find(&m, "gone.txt")->sha256, "");
    assert_int_equal(find(&m, "olddir/e.txt")->status, WSDIFF_DELETED);
    const struct wsdiff_file *n = find(&m, "new.txt");
    assert_int_equal(n->status, WSDIFF_ADDED);
    assert_int_equal(n->size, 6);
    assert_string_equal(n->sha256,
                        "5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be03");
    char hex[65];
    sha256_hex("one\nTWO\n", 8, hex);
    assert_string_equal(find(&m, "b.txt")->sha256, hex);
    assert_null(find(&m, "same.txt"));
    assert_int_equal(m.symlinks_skipped, 2);
    assert_int_equal(m.specials_skipped, 1);
    assert_false(m.truncated);
    cleanup_json cJSON *j = wsdiff_manifest_json(&m);
    cleanup_free char *text = cJSON_PrintUnformatted(j);
    assert_non_null(strstr(text, "{\"path\":\"gone.txt\",\"status\":\"deleted\",\"size\":18,"
                                 "\"sha256\":null}"));
    assert_non_null(strstr(text, "{\"path\":\"new.txt\",\"status\":\"added\",\"size\":6,\"sha256\":"
                                 "\"5891b5b522d5df086d0ff0b110fbd9d21bb4fc7163af34d08286a2e846f6be0"
                                 "3\"}"));
    wsdiff_manifest_free(&m);
}

static void test_manifest_without_seed_and_limits(void **state)
{
    struct fx *f = *state;
    scene(f);
    struct wsdiff_manifest m;
    char err[ERR_MSG_MAX], missing[128];
    snprintf(missing, sizeof(missing), "%s/no-such-seed", f->root);
    assert_int_equal(wsdiff_manifest(missing, f->ws, NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n, 5); /* b c new same sub/deeper/g.log, all added */
    for (size_t i = 0; i < m.n; i++)
        assert_int_equal(m.files[i].status, WSDIFF_ADDED);
    wsdiff_manifest_free(&m);
    assert_int_equal(wsdiff_manifest(NULL, f->ws, NULL, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n, 5);
    wsdiff_manifest_free(&m);
    struct wsdiff_limits lim = {.max_files = 2};
    assert_int_equal(wsdiff_manifest(f->seed, f->ws, &lim, &m, err, sizeof(err)), 0);
    assert_int_equal(m.n, 2);
    assert_true(m.truncated);
    wsdiff_manifest_free(&m);
    lim = (struct wsdiff_limits){.max_hash_bytes = 10};
    assert_int_equal(wsdiff_manifest(f->seed, f->ws, &lim, &m, err, sizeof(err)), 0);
    assert_true(m.truncated);
    assert_true(m.bytes_read <= 10);
    assert_string_equal(find(&m, "c.txt")->sha256, ""); /* listed (size differs), not hashed */
    wsdiff_manifest_free(&m);
    lim = (struct wsdiff_limits){.max_scan = 3};
    assert_int_equal(wsdiff_manifest(f->seed, f->ws, &lim, &m, err, sizeof(err)), 0);
    assert_true(m.truncated);
    wsdiff_manifest_free(&m);
    assert_int_equal(wsdiff_manifest(f->seed, missing, NULL, &m, err, sizeof(err)), -1);
}

static void test_unified_diff(void **state)
{
    struct fx *f = *state;
    scene(f);
    char *d = NULL, err[ERR_MSG_MAX];
    bool trunc = true;
    assert_int_equal(wsdiff_unified(f->seed, f->ws, 0, 0, NULL, &d, &trunc, err, sizeof(err)), 0);
    assert_false(trunc);
    assert_non_null(strstr(d, "--- a/b.txt\n+++ b/b.txt\n@@ -1,2 +1,2 @@\n one\n-two\n+TWO\n"));
    assert_non_null(strstr(d, "+++ b/new.txt\n@@ -0,0 +1 @@\n+hello\n"));
    assert_non_null(strstr(d, "--- a/olddir/e.txt\n"));
    /* A removed line starting with "-- " is content, not a header: kept whole, tab and all. */
    assert_non_null(strstr(d, "\n--- comment\tx\n-keep\n"));
    assert_non_null(strstr(d, "diff -ruN --no-dereference a/b.txt b/b.txt\n"));
    assert_non_null(strstr(d, "Only in b: pipe\n"));
    assert_null(strstr(d, f->root)); /* no absolute paths, */
    assert_null(strstr(d, "\t20"));  /* no timestamps */
    assert_null(strstr(d, "root:")); /* the symlink's target was not read */
    assert_non_null(strstr(d, "[diff exited with status 2")); /* the new symlinks */
    free(d);
    /* Identical trees: empty. */
    assert_int_equal(wsdiff_unified(f->seed, f->seed, 0, 0, NULL, &d, &trunc, err, sizeof(err)), 0);
    assert_string_equal(d, "");
    free(d);
}

static void test_unified_diff_cap_and_no_seed(void **state)
{
    struct fx *f = *state;
    char path[256];
    snprintf(path, sizeof(path), "%s/big.txt", f->ws);
    FILE *fp = fopen(path, "w");
    for (int i = 0; i < 200000; i++)
        fprintf(fp, "line %d of a long file\n", i);
    fclose(fp);
    char *d = NULL, err[ERR_MSG_MAX], tmp[128], missing[128];
    snprintf(tmp, sizeof(tmp), "%s/tmp", f->root);
    assert_int_equal(mkdir(tmp, 0700), 0);
    setenv("TMPDIR", tmp, 1);
    snprintf(missing, sizeof(missing), "%s/absent", f->root);
    bool trunc = false;
    assert_int_equal(wsdiff_unified(missing, f->ws, 4096, 0, NULL, &d, &trunc, err, sizeof(err)),
                     0);
    unsetenv("TMPDIR");
    assert_true(trunc);
    assert_true(strlen(d) <= 4096 + 100);
    assert_non_null(strstr(d, "+++ b/big.txt\n"));
    assert_non_null(strstr(d, "[diff truncated: it is longer than 4096 bytes]"));
    /* The last kept line is whole. */
    char *note = strstr(d, "\n\n[diff truncated");
    assert_non_null(note);
    assert_true(note[-1] != '\n');
    assert_null(strstr(d, tmp));
    free(d);
    assert_int_equal(rmdir(tmp), 0); /* the empty stand-in seed was removed */
    assert_int_equal(
        wsdiff_unified(f->seed, f->ws, 0, 0, "/nonexistent/diff", &d, &trunc, err, sizeof(err)),
        -1);
}

static void test_patterns(void **state)
{
    (void)state;
    char err[ERR_MSG_MAX];
    assert_int_equal(wsdiff_pattern_check("*.txt", err, sizeof(err)), 0);
    assert_int_equal(wsdiff_pattern_check("out/**", err, sizeof(err)), 0);
    assert_int_equal(wsdiff_pattern_check("a..b/x", err, sizeof(err)), 0);
    assert_int_equal(wsdiff_pattern_check("/etc/passwd", err, sizeof(err)), -1);
    assert_int_equal(wsdiff_pattern_check("../x", err, sizeof(err)), -1);
    assert_int_equal(wsdiff_pattern_check("a/../../x", err, sizeof(err)), -1);
    assert_int_equal(wsdiff_pattern_check("a/..", err, sizeof(err)), -1);
    assert_int_equal(wsdiff_pattern_check("", err, sizeof(err)), -1);
    assert_true(wsdiff_pattern_match("*.txt", "a.txt"));
    assert_false(wsdiff_pattern_match("*.txt", "d/a.txt"));
    assert_true(wsdiff_pattern_match("**/*.txt", "a.txt"));
    assert_true(wsdiff_pattern_match("**/*.txt", "d/e/a.txt"));
    assert_true(wsdiff_pattern_match("out/**", "out/x/y.bin"));
    assert_false(wsdiff_pattern_match("out/**", "outx/y"));
    assert_true(wsdiff_pattern_match("./report.md", "report.md"));
    assert_true(wsdiff_pattern_match("d/*/f?.c", "d/x/f1.c"));
    assert_false(wsdiff_pattern_match("d/*/f?.c", "d/x/y/f1.c"));
}

static void test_outputs(void **state)
{
    struct fx *f = *state;
    scene(f);
    mk(f->ws, "out");
    put(f->ws, "out/r1.json", "{}");
    put(f->ws, "out/r2.json", "[1,2]");
    struct wsdiff_outputs o;
    char err[ERR_MSG_MAX];
    const char *pats[] = {"*.txt", "out/**", "**/*.log"};
    assert_int_equal(wsdiff_outputs(f->ws, pats, 3, 0, 0, &o, err, sizeof(err)), 0);
    const char *want[] = {"b.txt",       "c.txt",    "new.txt",         "out/r1.json",
                          "out/r2.json", "same.txt", "sub/deeper/g.log"};
    assert_int_equal(o.n, ARRAY_SIZE(want));
    for (size_t i = 0; i < o.n; i++)
        assert_string_equal(o.files[i].path, want[i]); /* passwd-link.txt: a symlink, not listed */
    assert_int_equal(o.files[3].size, 2);
    assert_false(o.truncated);
    wsdiff_outputs_free(&o);
    assert_int_equal(wsdiff_outputs(f->ws, pats, 3, 2, 0, &o, err, sizeof(err)), 0);
    assert_int_equal(o.n, 2);
    assert_true(o.truncated);
    wsdiff_outputs_free(&o);
    assert_int_equal(wsdiff_outputs(f->ws, pats, 3, 0, 10, &o, err, sizeof(err)), 0);
    assert_true(o.total_bytes <= 10);
    assert_true(o.truncated);
    wsdiff_outputs_free(&o);
    const char *evil[] = {"*.txt", "../seed/*"};
    assert_int_equal(wsdiff_outputs(f->ws, evil, 2, 0, 0, &o, err, sizeof(err)), -1);
    assert_non_null(strstr(err, ".."));
    const char *etc[] = {"etc-link/*"};
    assert_int_equal(wsdiff_outputs(f->ws, etc, 1, 0, 0, &o, err, sizeof(err)), 0);
    assert_int_equal(o.n, 0); /* the symlinked directory is not entered */
    wsdiff_outputs_free(&o);
}

/* A seeded repository of 5000 files, 100 of them edited: the manifest's cost. On a tmpfs
 * when there is one, as a cell's workspace is. */
static void test_manifest_cost(void **state)
{
    (void)state;
    char root[64], seed[96], ws[96], cmd[640];
    snprintf(root, sizeof(root), "%s/agentbox-wsd-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    assert_non_null(mkdtemp(root));
    snprintf(seed, sizeof(seed), "%s/seed", root);
    snprintf(ws, sizeof(ws), "%s/ws", root);
    snprintf(cmd, sizeof(cmd),
             "mkdir '%s' && cd '%s' && for d in $(seq 50); do mkdir d$d; for i in $(seq 100); do "
             "printf '%%01000d' $((d * 1000 + i)) > d$d/f$i; done; done && cp -a . '%s' && "
             "for i in $(seq 100); do echo x >> '%s'/d$((i %% 50 + 1))/f$i; done",
             seed, seed, ws, ws);
    assert_int_equal(system(cmd), 0);
    struct wsdiff_manifest m;
    char err[ERR_MSG_MAX];
    double t0 = monotonic_s();
    assert_int_equal(wsdiff_manifest(seed, ws, NULL, &m, err, sizeof(err)), 0);
    double ms = (monotonic_s() - t0) * 1000;
    assert_int_equal(m.n, 100);
    for (size_t i = 0; i < m.n; i++)
        assert_int_equal(m.files[i].status, WSDIFF_MODIFIED);
    fprintf(stderr, "manifest of 5000 seeded files (5 MB) in %s, 100 modified: %.1f ms\n", root,
            ms);
    wsdiff_manifest_free(&m);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", root);
    assert_int_equal(system(cmd), 0);
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_manifest),
        T(test_manifest_without_seed_and_limits),
        T(test_unified_diff),
        T(test_unified_diff_cap_and_no_seed),
        T(test_patterns),
        T(test_outputs),
        cmocka_unit_test(test_manifest_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
