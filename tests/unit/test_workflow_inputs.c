/* Unit tests for the inputs of the git/verify/upload workflows: workspace.git and verify in
 * a task (wire/task.c, git_workspace.c, verify_spec.c), base64 (b64.c) and the tar
 * extractor's refusals (tar_in.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "b64.h"
#include "git_workspace.h"
#include "tar_in.h"
#include "task.h"
#include "util.h"
#include "verify.h"

static void expect_refused(const char *text, const char *needle)
{
    struct task t;
    char err[512] = "";
    assert_int_equal(task_parse_text(text, &t, err, sizeof(err)), -1);
    if (!strstr(err, needle))
        fail_msg("error for %s does not say %s: %s", text, needle, err);
}

static void test_git_and_verify_fields(void **state)
{
    (void)state;
    struct task t;
    char err[512];
    const char *ok =
        "{\"prompt\":\"p\",\"workspace\":{\"git\":{\"repo\":\"/srv/r\",\"rev\":\"v1\"}},"
        "\"verify\":{\"command\":\"make test\",\"timeout_s\":30,\"reset\":[\"t/**\"]}}";
    assert_int_equal(task_parse_text(ok, &t, err, sizeof(err)), 0);
    assert_string_equal(t.git->repo, "/srv/r");
    assert_string_equal(t.git->rev, "v1");
    assert_string_equal(t.verify->command, "make test");
    assert_true(t.verify->timeout_s == 30);
    assert_int_equal(t.verify->nreset, 1);
    task_free(&t);
    expect_refused("{\"prompt\":\"p\",\"verify\":{\"command\":\"x\"}}", "needs a git workspace");
    expect_refused("{\"prompt\":\"p\",\"workspace\":{\"git\":{\"repo\":\"https://h/r\"}}}",
                   "network egress");
    expect_refused("{\"prompt\":\"p\",\"workspace\":{\"git\":{\"repo\":\"h:r\"}}}",
                   "network egress");
    expect_refused("{\"prompt\":\"p\",\"workspace\":{\"git\":{\"repo\":\"/r\",\"rev\":\"-x\"}}}",
                   "task.workspace.git.rev");
    expect_refused("{\"prompt\":\"p\",\"workspace\":{\"git\":{\"rev\":\"a\"}}}",
                   "task.workspace.git.repo");
    expect_refused("{\"prompt\":\"p\",\"workspace\":{\"git\":{\"repo\":\"/r\",\"x\":1}}}",
                   "task.workspace.git");
    const char *bad_reset = "{\"prompt\":\"p\",\"workspace\":{\"git\":{\"repo\":\"/r\"}},"
                            "\"verify\":{\"command\":\"x\",\"reset\":[\"../t\"]}}";
    expect_refused(bad_reset, "task.verify.reset[0]");
}

static void test_git_arg(void **state)
{
    (void)state;
    struct git_ws_spec *s = NULL;
    char err[256];
    assert_int_equal(git_ws_spec_from_arg("/srv/a@b/repo", &s, err, sizeof(err)), 0);
    assert_string_equal(s->repo, "/srv/a@b/repo");
    assert_string_equal(s->rev, "HEAD");
    git_ws_spec_free(s);
    assert_int_equal(git_ws_spec_from_arg("/srv/repo@main~2", &s, err, sizeof(err)), 0);
    assert_string_equal(s->rev, "main~2");
    git_ws_spec_free(s);
}

static void test_b64_round_trip(void **state)
{
    (void)state;
    for (size_t n = 0; n < 70; n++) {
        unsigned char in[70];
        for (size_t i = 0; i < n; i++)
            in[i] = (unsigned char)(i * 37 + 11);
        char *text = b64_encode(in, n);
        unsigned char *out = NULL;
        size_t len = 0;
        assert_int_equal(b64_decode(text, strlen(text), 100, &out, &len), 0);
        assert_int_equal(len, n);
        assert_memory_equal(out, in, n);
        free(out);
        free(text);
    }
    unsigned char *out = NULL;
    size_t len;
    assert_int_equal(b64_decode("aGk=", 4, 100, &out, &len), 0);
    assert_memory_equal(out, "hi", 2);
    free(out);
    assert_int_equal(b64_decode("aGk", 3, 100, &out, &len), -1);
    assert_int_equal(b64_decode("a!k=", 4, 100, &out, &len), -1);
    assert_int_equal(b64_decode("aGVsbG8=", 8, 4, &out, &len), -1); /* over the cap */
}

/* One ustar header + data, then the two zero blocks. */
static size_t tar_one(unsigned char *buf, const char *name, char type, const char *link,
                      const char *data)
{
    memset(buf, 0, 512 * 4);
    snprintf((char *)buf, 100, "%s", name);
    snprintf((char *)buf + 100, 8, "%07o", 0644);
    snprintf((char *)buf + 124, 12, "%011o", (unsigned)strlen(data));
    buf[156] = (unsigned char)type;
    snprintf((char *)buf + 157, 100, "%s", link);
    memcpy(buf + 257,
           "ustar\0"
           "00",
           8);
    memset(buf + 148, ' ', 8);
    unsigned sum = 0;
    for (int i = 0; i < 512; i++)
        sum += buf[i];
    snprintf((char *)buf + 148, 8, "%06o", sum);
    memcpy(buf + 512, data, strlen(data));
    return 512 * 4;
}

static void expect_tar(const char *name, char type, const char *link, int want, const char *needle)
{
    char dir[] = "/tmp/agentbox-tar-unit-XXXXXX";
    assert_non_null(mkdtemp(dir));
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    unsigned char buf[2048];
    size_t n = tar_one(buf, name, type, link, type == '0' ? "x" : "");
    char err[512] = "";
    int rc = tar_in_extract(buf, n, fd, 1 << 20, err, sizeof(err));
    close(fd);
    char cmd[100];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    assert_int_equal(system(cmd), 0);
    if (rc != want || (needle && !strstr(err, needle)))
        fail_msg("%s (%c): rc %d, err '%s'", name, type, rc, err);
}

static void test_tar_refusals(void **state)
{
    (void)state;
    expect_tar("a/b.txt", '0', "", 1, NULL);
    expect_tar("./ok", '0', "", 1, NULL);
    expect_tar("l", '2', "sub/../x", 1, NULL);
    expect_tar("../x", '0', "", -1, "outside the workspace");
    expect_tar("/etc/x", '0', "", -1, "absolute");
    expect_tar("d", '3', "", -1, "device node");
    expect_tar("d", '4', "", -1, "device node");
    expect_tar("p", '6', "", -1, "FIFO");
    expect_tar("h", '1', "x", -1, "hard link");
    expect_tar("l", '2', "../x", -1, "outside the workspace");
    expect_tar("l", '2', "/etc", -1, "outside the workspace");
    unsigned char junk[1024] = {1};
    char err[256];
    assert_int_equal(tar_in_extract(junk, sizeof(junk), -1, 100, err, sizeof(err)), -1);
    assert_non_null(strstr(err, "damaged"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_git_and_verify_fields),
        cmocka_unit_test(test_git_arg),
        cmocka_unit_test(test_b64_round_trip),
        cmocka_unit_test(test_tar_refusals),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
