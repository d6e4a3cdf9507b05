/* Unit tests for agent/tools/tool_bash.c against a real bash: state carrying over, no stdin,
 * timeouts that kill the command but keep the session, background jobs, 50 MB of output in
 * bounded memory, invalid UTF-8, and no processes left behind (each test stops its session). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tool_bash.h"
#include "utf8.h"
#include "util.h"

struct fixture {
    struct tool_bash *b;
    char dir[64];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/agentbox-tbash-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    char err[ERR_MSG_MAX];
    struct tool_bash_opts o = {.cwd = f->dir};
    if (tool_bash_start(&f->b, &o, err, sizeof(err)) != 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tool_bash_stop(f->b);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    int rc = system(cmd);
    free(f);
    return rc == 0 ? 0 : -1;
}

/* Runs cmd and returns its result (caller frees). */
static struct tool_bash_result run(struct fixture *f, const char *cmd, double timeout)
{
    struct tool_bash_result r;
    char err[ERR_MSG_MAX] = "";
    int rc = tool_bash_run(f->b, cmd, timeout, &r, err, sizeof(err));
    if (rc != 0)
        fprintf(stderr, "tool_bash_run: %s\n", err);
    assert_int_equal(rc, 0);
    assert_non_null(r.output);
    return r;
}

/* A pid is gone when it no longer exists or is a zombie awaiting its (other) parent. */
static bool pid_gone(pid_t pid)
{
    for (int i = 0; i < 300; i++) {
        char path[64], buf[512];
        snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
        FILE *fp = fopen(path, "r");
        if (!fp)
            return true;
        size_t n = fread(buf, 1, sizeof(buf) - 1, fp);
        fclose(fp);
        buf[n] = '\0';
        char *p = strrchr(buf, ')');
        if (p && p[1] == ' ' && (p[2] == 'Z' || p[2] == 'X'))
            return true;
        usleep(10000);
    }
    return false;
}

static pid_t read_pid(const char *dir, const char *name)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    cleanup_free char *text = NULL;
    size_t len;
    if (read_file(path, 64, &text, &len) != 0)
        return -1;
    return (pid_t)atoi(text);
}

static void test_echo_exit_code_and_observation(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r = run(f, "echo hello; false", 0);
    assert_string_equal(r.output, "hello\n");
    assert_int_equal(r.exit_code, 1);
    assert_false(r.timed_out);
    assert_string_equal(r.cwd, f->dir);
    assert_true(r.timeout_s == TOOL_BASH_DEFAULT_TIMEOUT_S);
    char *obs = tool_bash_observation(&r);
    char want[256];
    snprintf(want, sizeof(want),
             "hello\n[Current working directory: %s]\n[Command finished with exit code 1]", f->dir);
    assert_string_equal(obs, want);
    free(obs);
    tool_bash_result_free(&r);
    /* No trailing newline, stderr merged, the marker never shows. */
    r = run(f, "printf abc; echo err >&2; exit_code_is() { return 7; }; exit_code_is", 0);
    assert_string_equal(r.output, "abcerr\n");
    assert_int_equal(r.exit_code, 7);
    assert_null(strstr(r.output, "__AB_"));
    tool_bash_result_free(&r);
    /* A syntax error is the command's problem, not the session's. */
    r = run(f, "if then fi", 0);
    assert_int_equal(r.exit_code, 2);
    tool_bash_result_free(&r);
    /* Shadowing the builtins the end marker uses does not break the session. */
    r = run(f, "printf() { echo fake; }; export() { echo fake; }; echo defined", 0);
    assert_string_equal(r.output, "defined\n");
    tool_bash_result_free(&r);
    r = run(f, "echo still here", 0);
    assert_string_equal(r.output, "still here\n");
    tool_bash_result_free(&r);
}

static void test_cwd_and_exports_persist(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r =
        run(f, "mkdir -p 'sub dir' && cd 'sub dir'; export FOO=bar; BAZ=1", 0);
    assert_int_equal(r.exit_code, 0);
    tool_bash_result_free(&r);
    r = run(f, "pwd; echo \"$FOO\"; env | grep -c '^BAZ=' || true", 0);
    char want[256];
    snprintf(want, sizeof(want), "%s/sub dir\nbar\n0\n", f->dir);
    assert_string_equal(r.output, want);
    snprintf(want, sizeof(want), "%s/sub dir", f->dir);
    assert_string_equal(r.cwd, want);
    tool_bash_result_free(&r);
}

static void test_no_stdin_no_pager_no_key(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r = run(f,
                                    "cat; read x; echo \"read=$?\"; [ -t 0 ] && echo tty || "
                                    "echo notty; echo \"$PAGER $GIT_PAGER $TERM [$PS1]\"",
                                    10);
    assert_string_equal(r.output, "read=1\nnotty\ncat cat dumb []\n");
    tool_bash_result_free(&r);
}

static void test_key_and_fds_do_not_leak(void **state)
{
    (void)state;
    setenv("OPENROUTER_API_KEY", "sk-or-v1-secret", 1);
    int fd = open("/dev/null", O_RDONLY); /* no O_CLOEXEC: the session must close it anyway */
    assert_true(fd >= 0);
    assert_int_equal(dup2(fd, 77), 77);
    struct tool_bash *b;
    char err[ERR_MSG_MAX];
    assert_int_equal(tool_bash_start(&b, NULL, err, sizeof(err)), 0);
    struct tool_bash_result r;
    assert_int_equal(tool_bash_run(b,
                                   "echo ${OPENROUTER_API_KEY-unset}; [ -e /proc/$$/fd/77 ] && "
                                   "echo leak || echo clean",
                                   10, &r, err, sizeof(err)),
                     0);
    assert_string_equal(r.output, "unset\nclean\n");
    tool_bash_result_free(&r);
    tool_bash_stop(b);
    unsetenv("OPENROUTER_API_KEY");
    close(77);
    close(fd);
}

static void test_timeout_kills_command_keeps_shell(void **state)
{
    struct fixture *f = *state;
    pid_t shell = tool_bash_pid(f->b);
    double t0 = monotonic_s();
    struct tool_bash_result r =
        run(f, "echo before; sh -c 'echo $$ > victim.pid; exec sleep 30'; echo after", 1);
    double took = monotonic_s() - t0;
    assert_true(r.timed_out);
    assert_false(r.restarted);
    assert_int_equal(r.exit_code, -1);
    assert_true(took >= 0.9 && took < 5);
    assert_non_null(strstr(r.output, "before"));
    char *obs = tool_bash_observation(&r);
    assert_non_null(strstr(obs, "timed out after 1 seconds"));
    free(obs);
    tool_bash_result_free(&r);
    pid_t victim = read_pid(f->dir, "victim.pid");
    assert_true(victim > 0);
    assert_true(pid_gone(victim));
    assert_int_equal(tool_bash_pid(f->b), shell); /* the same shell, still usable */
    r = run(f, "echo ok", 5);
    /* "after" ran once the sleep died: it is this call's output now or was the last one's. */
    assert_non_null(strstr(r.output, "ok\n"));
    assert_int_equal(r.exit_code, 0);
    tool_bash_result_free(&r);
}

static void test_timeout_in_builtin_loop_keeps_the_shell(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r = run(f, "export KEEP=yes; mkdir -p d; cd d", 5);
    tool_bash_result_free(&r);
    pid_t shell = tool_bash_pid(f->b);
    /* SIGUSR1's trap returns from the sourced command between two builtins */
    r = run(f, "while :; do :; done; echo never", 0.5);
    assert_true(r.timed_out);
    assert_false(r.restarted);
    assert_null(strstr(r.output, "never"));
    tool_bash_result_free(&r);
    assert_int_equal(tool_bash_pid(f->b), shell);
    r = run(f, "echo \"$KEEP\"; pwd", 5);
    char want[128];
    snprintf(want, sizeof(want), "yes\n%s/d\n", f->dir);
    assert_string_equal(r.output, want);
    tool_bash_result_free(&r);
}

static void test_timeout_skips_the_rest_of_the_command(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r = run(f, "sleep 30; echo never; touch after-timeout", 0.5);
    assert_true(r.timed_out);
    assert_null(strstr(r.output, "never"));
    tool_bash_result_free(&r);
    r = run(f, "ls after-timeout 2>&1; echo ok", 5);
    assert_non_null(strstr(r.output, "No such file"));
    assert_non_null(strstr(r.output, "ok\n"));
    tool_bash_result_free(&r);
}

static void test_timeout_with_trap_removed_restarts_with_state(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r = run(f, "export KEEP=yes; mkdir -p d; cd d", 5);
    tool_bash_result_free(&r);
    pid_t shell = tool_bash_pid(f->b);
    /* a command that removes the trap: the shell is killed after the grace and restarted */
    r = run(f, "trap - USR1; while :; do :; done", 0.5);
    assert_true(r.timed_out);
    assert_true(r.restarted);
    tool_bash_result_free(&r);
    assert_true(pid_gone(shell));
    assert_int_not_equal(tool_bash_pid(f->b), shell);
    r = run(f, "echo \"$KEEP\"; pwd", 5);
    char want[128];
    snprintf(want, sizeof(want), "yes\n%s/d\n", f->dir);
    assert_string_equal(r.output, want);
    tool_bash_result_free(&r);
}

static void test_exit_restarts_session(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r = run(f, "export A=1; cd /; echo bye; exit 3", 5);
    assert_int_equal(r.exit_code, 3);
    assert_true(r.restarted);
    assert_string_equal(r.output, "bye\n");
    tool_bash_result_free(&r);
    r = run(f, "echo \"$A\"; pwd", 5);
    /* The last saved state is from before the exiting command: cwd is the old one. */
    char want[128];
    snprintf(want, sizeof(want), "\n%s\n", f->dir);
    assert_string_equal(r.output, want);
    assert_int_equal(r.exit_code, 0);
    tool_bash_result_free(&r);
}

static void test_shell_killed_from_inside(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r = run(f, "export K=v; cd /", 5);
    tool_bash_result_free(&r);
    r = run(f, "echo dying; kill -9 $$", 5);
    assert_int_equal(r.exit_code, 128 + 9);
    assert_true(r.restarted);
    assert_false(r.timed_out);
    assert_string_equal(r.output, "dying\n");
    tool_bash_result_free(&r);
    r = run(f, "echo \"$K\"; pwd", 5);
    assert_string_equal(r.output, "v\n/\n");
    tool_bash_result_free(&r);
}

static void test_background_jobs_do_not_block(void **state)
{
    struct fixture *f = *state;
    double t0 = monotonic_s();
    /* The server's stdout and stderr are the session's pipe: the call must still return. */
    struct tool_bash_result r =
        run(f,
            "sleep 100 & echo $! > bg.pid; (sleep 0.2; echo late) & /usr/bin/python3 -m "
            "http.server 0 --bind 127.0.0.1 & echo $! > py.pid",
            10);
    assert_true(monotonic_s() - t0 < 2);
    assert_int_equal(r.exit_code, 0);
    tool_bash_result_free(&r);
    pid_t bg = read_pid(f->dir, "bg.pid"), py = read_pid(f->dir, "py.pid");
    assert_true(bg > 0);
    assert_true(py > 0);
    assert_int_equal(kill(bg, 0), 0);
    usleep(400000);
    r = run(f, "echo now", 5); /* what the background job printed since comes along */
    assert_non_null(strstr(r.output, "late\n"));
    assert_non_null(strstr(r.output, "now\n"));
    tool_bash_result_free(&r);
    /* A later command's timeout must not take the earlier background job with it. */
    r = run(f, "sleep 10", 0.3);
    assert_true(r.timed_out);
    tool_bash_result_free(&r);
    assert_int_equal(kill(bg, 0), 0);
    tool_bash_stop(f->b);
    f->b = NULL;
    assert_true(pid_gone(bg));
    assert_true(pid_gone(py));
    char err[ERR_MSG_MAX];
    assert_int_equal(tool_bash_start(&f->b, NULL, err, sizeof(err)), 0);
}

static long maxrss_kb(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return ru.ru_maxrss;
}

static void test_50mb_output_bounded(void **state)
{
    struct fixture *f = *state;
    long before = maxrss_kb();
    struct tool_bash_result r =
        run(f, "echo FIRSTLINE; yes 0123456789 | head -c 52428800; echo; echo LASTLINE", 60);
    long grew = maxrss_kb() - before;
    assert_int_equal(r.exit_code, 0);
    assert_int_equal(r.bytes_total, 10 + 52428800 + 1 + 9);
    assert_true(r.bytes_cut > 52000000);
    assert_true(strlen(r.output) <= TOOL_BASH_CLIP_CHARS + 200);
    assert_true(strncmp(r.output, "FIRSTLINE\n0123456789\n", 21) == 0);
    size_t n = strlen(r.output);
    assert_string_equal(r.output + n - 9, "LASTLINE\n");
    assert_non_null(strstr(r.output, "Observation truncated"));
    fprintf(stderr, "50 MB of output: max RSS grew by %ld KB\n", grew);
    assert_true(grew < 16 * 1024);
    tool_bash_result_free(&r);
}

static void test_clip_boundary(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r = run(f, "head -c 30000 /dev/zero | tr '\\0' x", 10);
    assert_int_equal(strlen(r.output), 30000);
    assert_int_equal(r.bytes_cut, 0);
    tool_bash_result_free(&r);
    r = run(f, "head -c 30001 /dev/zero | tr '\\0' x", 10);
    assert_int_equal(r.bytes_cut, 1);
    assert_non_null(strstr(r.output, "1 bytes cut"));
    tool_bash_result_free(&r);
}

static void test_invalid_utf8(void **state)
{
    struct fixture *f = *state;
    struct tool_bash_result r = run(f, "printf '\\xff\\xfeok\\000z\\n'", 5);
    assert_true(utf8_valid(r.output, strlen(r.output)));
    assert_string_equal(r.output, "\xef\xbf\xbd\xef\xbf\xbdok\xef\xbf\xbdz\n");
    tool_bash_result_free(&r);
}

static volatile sig_atomic_t cancel_flag;

static void on_alarm(int sig)
{
    (void)sig;
    cancel_flag = 1;
}

static void test_cancel(void **state)
{
    (void)state;
    struct tool_bash *b;
    char err[ERR_MSG_MAX];
    cancel_flag = 0;
    struct tool_bash_opts o = {.cancel = &cancel_flag};
    assert_int_equal(tool_bash_start(&b, &o, err, sizeof(err)), 0);
    struct sigaction sa = {.sa_handler = on_alarm};
    sigaction(SIGALRM, &sa, NULL);
    ualarm(200000, 0);
    double t0 = monotonic_s();
    struct tool_bash_result r;
    assert_int_equal(tool_bash_run(b, "sleep 20", 30, &r, err, sizeof(err)), 0);
    assert_true(monotonic_s() - t0 < 3);
    assert_true(r.cancelled);
    assert_false(r.timed_out);
    /* the observation tells when the cancel came, not the 30 s timeout */
    assert_true(r.elapsed_s >= 0.15 && r.elapsed_s < 3);
    char *obs = tool_bash_observation(&r);
    assert_non_null(obs);
    assert_null(strstr(obs, "after 30 seconds"));
    char want[64];
    snprintf(want, sizeof(want), "was cancelled after %.2f seconds", r.elapsed_s);
    assert_non_null(strstr(obs, want));
    free(obs);
    tool_bash_result_free(&r);
    tool_bash_stop(b);
    signal(SIGALRM, SIG_DFL);
}

static void test_task_deadline_wins(void **state)
{
    (void)state;
    struct tool_bash *b;
    char err[ERR_MSG_MAX];
    struct tool_bash_opts o = {.task_deadline_s = monotonic_s() + 0.5};
    assert_int_equal(tool_bash_start(&b, &o, err, sizeof(err)), 0);
    struct tool_bash_result r;
    double t0 = monotonic_s();
    assert_int_equal(tool_bash_run(b, "sleep 20", 60, &r, err, sizeof(err)), 0);
    assert_true(monotonic_s() - t0 < 3);
    assert_true(r.timed_out);
    assert_true(r.task_deadline);
    assert_true(r.timeout_s <= 0.5);
    char *obs = tool_bash_observation(&r);
    assert_non_null(strstr(obs, "(the task's time limit)"));
    free(obs);
    tool_bash_result_free(&r);
    tool_bash_stop(b);
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_round_trip_ms(struct tool_bash *b, double *p90)
{
    double t[200];
    char err[ERR_MSG_MAX];
    for (int i = 0; i < 200; i++) {
        struct tool_bash_result r;
        double t0 = monotonic_s();
        assert_int_equal(tool_bash_run(b, "true", 5, &r, err, sizeof(err)), 0);
        t[i] = monotonic_s() - t0;
        assert_int_equal(r.exit_code, 0);
        tool_bash_result_free(&r);
    }
    qsort(t, 200, sizeof(double), cmp_double);
    *p90 = t[180] * 1000;
    return t[100] * 1000;
}

/* The scratch dir's filesystem matters: the state file is rewritten after every command,
 * cheap on a tmpfs (the cell's /tmp), dearer on a disk-backed /tmp. */
static void test_round_trip_cost(void **state)
{
    struct fixture *f = *state;
    double p90, med = median_round_trip_ms(f->b, &p90);
    fprintf(stderr,
            "execute_bash `true` round trip, scratch in $TMPDIR or /tmp: median %.3f ms, "
            "p90 %.3f ms\n",
            med, p90);
    assert_true(med < 50); /* loose: sanitizer builds and loaded machines run it too */
    if (access("/dev/shm", W_OK) == 0) {
        struct tool_bash *b;
        char err[ERR_MSG_MAX];
        struct tool_bash_opts o = {.tmp_dir = "/dev/shm"};
        assert_int_equal(tool_bash_start(&b, &o, err, sizeof(err)), 0);
        med = median_round_trip_ms(b, &p90);
        fprintf(stderr,
                "execute_bash `true` round trip, scratch on tmpfs: median %.3f ms, p90 "
                "%.3f ms\n",
                med, p90);
        assert_true(med < 50);
        tool_bash_stop(b);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_echo_exit_code_and_observation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cwd_and_exports_persist, setup, teardown),
        cmocka_unit_test_setup_teardown(test_no_stdin_no_pager_no_key, setup, teardown),
        cmocka_unit_test(test_key_and_fds_do_not_leak),
        cmocka_unit_test_setup_teardown(test_timeout_kills_command_keeps_shell, setup, teardown),
        cmocka_unit_test_setup_teardown(test_timeout_in_builtin_loop_keeps_the_shell, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_timeout_skips_the_rest_of_the_command, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_timeout_with_trap_removed_restarts_with_state, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_exit_restarts_session, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shell_killed_from_inside, setup, teardown),
        cmocka_unit_test_setup_teardown(test_background_jobs_do_not_block, setup, teardown),
        cmocka_unit_test_setup_teardown(test_50mb_output_bounded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_clip_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_invalid_utf8, setup, teardown),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_task_deadline_wins),
        cmocka_unit_test_setup_teardown(test_round_trip_cost, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
