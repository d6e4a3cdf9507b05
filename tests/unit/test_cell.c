/* Tests of the cell API (sandbox/cell.c) that `agentbox exec` does not reach: an agent cell
 * (pid 1 execs this very binary as `__agent`, with the channel as fd 3), cell_run's timeout,
 * and a set-up failure that must leave nothing behind. They need user namespaces; where the
 * host refuses them the tests are skipped. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include "cell.h"
#include "policy.h"
#include "util.h"

/* pid 1 of the agent cell: reports what it sees on the channel and exits 42. */
static int agent_probe(int argc, char **argv)
{
    char fds[256] = "";
    DIR *d = opendir("/proc/self/fd");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.' && strlen(fds) + strlen(e->d_name) + 2 < sizeof(fds)) {
            strcat(fds, e->d_name);
            strcat(fds, ",");
        }
    if (d)
        closedir(d);
    char exe[256] = "";
    ssize_t n = readlink("/proc/self/exe", exe, sizeof(exe) - 1);
    if (n > 0)
        exe[n] = '\0';
    int w = open("/proc/self/exe", O_WRONLY);
    char msg[1024];
    snprintf(msg, sizeof(msg), "uid=%u pid=%d ppid=%d arg=%s env=%s exe=%s exe_writable=%d fds=%s",
             (unsigned)getuid(), (int)getpid(), (int)getppid(), argc > 2 ? argv[2] : "-",
             getenv("PROBE") ? getenv("PROBE") : "-", exe, w >= 0, fds);
    if (write(CELL_CHANNEL_FD, msg, strlen(msg)) < 0)
        return 1;
    return 42;
}

struct fixture {
    struct policy *pol;
    struct sock_fprog prog;
};

static int setup(void **state)
{
    static struct fixture f;
    char err[ERR_MSG_MAX];
    if (policy_load("default", &f.pol, err, sizeof(err)) < 0 ||
        policy_seccomp_build(f.pol, true, &f.prog, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return -1;
    }
    *state = &f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    policy_bpf_free(&f->prog);
    policy_free(f->pol);
    return 0;
}

static struct cell_config base_config(const struct fixture *f)
{
    struct cell_config cfg = {.policy = f->pol,
                              .seccomp = &f->prog,
                              .limits = f->pol->limits,
                              .channel_fd = -1,
                              .stdio_passthrough = false,
                              .stdout_fd = -1,
                              .stderr_fd = -1};
    cfg.limits.timeout_s = 20;
    return cfg;
}

static bool userns_refused(const char *err)
{
    return strstr(err, "at clone:") != NULL;
}

static void test_agent_cell_gets_channel_as_fd3_only(void **state)
{
    struct fixture *f = *state;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    char *args[] = {"hello", NULL};
    /* LeakSanitizer stops the world with ptrace, which the cell's seccomp filter denies. */
    char *env[] = {"PROBE=yes", "PATH=/usr/bin:/bin", "ASAN_OPTIONS=detect_leaks=0", NULL};
    struct cell_config cfg = base_config(f);
    cfg.pid1 = CELL_PID1_AGENT;
    cfg.argv = args;
    cfg.envp = env;
    cfg.channel_fd = sv[1];
    cfg.stderr_fd = 2; /* diagnostics of the probe */
    struct cell *c;
    char err[ERR_MSG_MAX] = "";
    if (cell_spawn(&cfg, &c, err, sizeof(err)) < 0) {
        close(sv[0]);
        close(sv[1]);
        if (userns_refused(err))
            skip();
        fail_msg("%s", err);
    }
    close(sv[1]);
    char buf[1024];
    size_t got = 0;
    for (;;) {
        ssize_t n = read(sv[0], buf + got, sizeof(buf) - 1 - got);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    close(sv[0]);
    struct pollfd p = {.fd = cell_pidfd(c), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 10000), 1);
    struct cell_record rec;
    assert_int_equal(cell_reap(c, &rec), 0);
    cell_free(c);
    assert_int_equal(rec.status, CELL_EXITED);
    assert_int_equal(rec.exit_code, 42);
    if (!strstr(buf, "uid=1000 pid=1 ppid=0 arg=hello env=yes exe=" CELL_AGENT_BIN
                     " exe_writable=0 fds=0,1,2,3,4,"))
        fail_msg("agent saw: %s", buf);
}

static void test_run_times_out_and_kills(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"sh", "-c", "sleep 30", NULL};
    struct cell_config cfg = base_config(f);
    cfg.pid1 = CELL_PID1_COMMAND;
    cfg.argv = argv;
    cfg.limits.timeout_s = 0.3;
    struct cell_record rec;
    char err[ERR_MSG_MAX] = "";
    double t0 = monotonic_s();
    if (cell_run(&cfg, &rec, err, sizeof(err)) < 0) {
        if (userns_refused(err))
            skip();
        fail_msg("%s", err);
    }
    assert_true(monotonic_s() - t0 < 5);
    assert_int_equal(rec.status, CELL_TIMEOUT);
    assert_false(rec.has_exit_code);
    assert_true(rec.enforced & (1u << CELL_F_TIMEOUT));
}

static void test_output_goes_to_given_fds(void **state)
{
    struct fixture *f = *state;
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    char *argv[] = {"sh", "-c", "echo out; echo err >&2; cat; exit 5", NULL};
    struct cell_config cfg = base_config(f);
    cfg.pid1 = CELL_PID1_COMMAND;
    cfg.argv = argv;
    cfg.stdout_fd = p[1];
    cfg.stderr_fd = p[1];
    struct cell_record rec;
    char err[ERR_MSG_MAX] = "";
    int r = cell_run(&cfg, &rec, err, sizeof(err));
    close(p[1]);
    char buf[256];
    ssize_t n = read(p[0], buf, sizeof(buf) - 1);
    close(p[0]);
    if (r < 0) {
        if (userns_refused(err))
            skip();
        fail_msg("%s", err);
    }
    assert_true(n > 0);
    buf[n] = '\0';
    assert_string_equal(buf, "out\nerr\n"); /* stdin was /dev/null: cat ends at once */
    assert_int_equal(rec.status, CELL_EXITED);
    assert_int_equal(rec.exit_code, 5);
}

/* A supervisor makes itself non-dumpable (its memory holds the API key); its cells must still
 * start, also unprivileged (whose map writes need a dumpable child). */
static void test_undumpable_parent_can_spawn(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"true", NULL};
    struct cell_config cfg = base_config(f);
    cfg.pid1 = CELL_PID1_COMMAND;
    cfg.argv = argv;
    struct cell_record rec;
    char err[ERR_MSG_MAX] = "";
    assert_int_equal(prctl(PR_SET_DUMPABLE, 0, 0, 0, 0), 0);
    int r = cell_run(&cfg, &rec, err, sizeof(err));
    assert_int_equal(prctl(PR_SET_DUMPABLE, 1, 0, 0, 0), 0);
    if (r < 0 && userns_refused(err))
        skip();
    if (r < 0)
        fail_msg("%s", err);
    assert_int_equal(rec.status, CELL_EXITED);
    assert_int_equal(rec.exit_code, 0);
}

static void test_setup_failure_names_the_step(void **state)
{
    struct fixture *f = *state;
    struct policy bad = *f->pol;
    struct policy_bind binds[] = {{.path = "/usr", .optional = false},
                                  {.path = "/nonexistent-agentbox-test", .optional = false}};
    bad.binds = binds;
    bad.nbinds = 2;
    char *argv[] = {"true", NULL};
    struct cell_config cfg = base_config(f);
    cfg.policy = &bad;
    cfg.pid1 = CELL_PID1_COMMAND;
    cfg.argv = argv;
    struct cell_record rec;
    char err[ERR_MSG_MAX] = "";
    assert_int_equal(cell_run(&cfg, &rec, err, sizeof(err)), -1);
    if (userns_refused(err))
        skip();
    assert_int_equal(rec.status, CELL_SETUP_ERROR);
    if (!strstr(err, "set-up failed at bind /nonexistent-agentbox-test: No such file"))
        fail_msg("%s", err);
}

static void test_network_host_needs_the_policy(void **state)
{
    struct fixture *f = *state;
    char *argv[] = {"true", NULL};
    struct cell_config cfg = base_config(f);
    cfg.pid1 = CELL_PID1_COMMAND;
    cfg.argv = argv;
    cfg.network_host = true;
    struct cell *c = NULL;
    char err[ERR_MSG_MAX] = "";
    if (f->pol->allow_network_host)
        skip();
    assert_int_equal(cell_spawn(&cfg, &c, err, sizeof(err)), -1);
    assert_null(c);
    assert_non_null(strstr(err, "network host"));
}

int main(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "__agent") == 0)
        return agent_probe(argc, argv);
    (void)self_exe_path();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_cell_gets_channel_as_fd3_only),
        cmocka_unit_test(test_run_times_out_and_kills),
        cmocka_unit_test(test_output_goes_to_given_fds),
        cmocka_unit_test(test_undumpable_parent_can_spawn),
        cmocka_unit_test(test_setup_failure_names_the_step),
        cmocka_unit_test(test_network_host_needs_the_policy),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
