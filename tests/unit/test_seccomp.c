/* Unit tests for sandbox/seccomp.c: each compiled filter is installed in a forked child
 * (after PR_SET_NO_NEW_PRIVS, as the cell does), which then makes the syscalls directly and
 * reports through a pipe which one did not fail the way it should. The kernel is the judge. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "policy.h"
#include "seccomp_cache.h"
#include "util.h"

static int report_fd = -1; /* the child's end of the pipe */

static void child_fail(int line, const char *what, long r, int e, const char *want)
{
    char msg[512];
    int n = snprintf(msg, sizeof(msg), "line %d: %s returned %ld, errno %d (%s); wanted %s", line,
                     what, r, e, strerror(e), want);
    if (n > 0)
        (void)!write(report_fd, msg, (size_t)n);
    syscall(SYS_exit_group, 1);
}

#define EXPECT_ERRNO(call, e)                                                                      \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long r_ = (long)(call);                                                                    \
        if (r_ != -1 || errno != (e))                                                              \
            child_fail(__LINE__, #call, r_, errno, "-1 and " #e);                                  \
    } while (0)

#define EXPECT_OK(call)                                                                            \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long r_ = (long)(call);                                                                    \
        if (r_ < 0)                                                                                \
            child_fail(__LINE__, #call, r_, errno, "success");                                     \
    } while (0)

static struct policy *load(const char *name_or_text)
{
    char err[ERR_MSG_MAX];
    struct policy *p;
    int r = name_or_text[0] == '{' ? policy_parse(name_or_text, strlen(name_or_text), "inline.json",
                                                  &p, err, sizeof(err))
                                   : policy_load(name_or_text, &p, err, sizeof(err));
    if (r < 0)
        fail_msg("%s", err);
    return p;
}

/* Runs fn in a child under the policy's filter; returns its wait status. The child's
 * complaint, if any, becomes the test's failure message when expect_exit0. */
static int run_filtered(const struct policy *p, bool network_none, void (*fn)(void),
                        bool expect_exit0)
{
    char err[ERR_MSG_MAX];
    struct sock_fprog prog;
    if (policy_seccomp_build(p, network_none, &prog, err, sizeof(err)) < 0)
        fail_msg("build: %s", err);
    int fds[2];
    assert_int_equal(pipe2(fds, O_CLOEXEC), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        close(fds[0]);
        report_fd = fds[1];
        alarm(20);
        if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0)
            child_fail(__LINE__, "prctl", -1, errno, "success");
        if (syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &prog) < 0)
            child_fail(__LINE__, "seccomp", -1, errno, "success");
        fn();
        syscall(SYS_exit_group, 0);
    }
    policy_bpf_free(&prog);
    close(fds[1]);
    char msg[512] = "";
    ssize_t n = read(fds[0], msg, sizeof(msg) - 1);
    msg[n > 0 ? n : 0] = '\0';
    close(fds[0]);
    int st;
    assert_int_equal(waitpid(pid, &st, 0), pid);
    if (expect_exit0 && !(WIFEXITED(st) && WEXITSTATUS(st) == 0))
        fail_msg("child: status 0x%x: %s", st, msg[0] ? msg : "(no message)");
    return st;
}

static void expect_sigsys(const struct policy *p, bool network_none, void (*fn)(void))
{
    int st = run_filtered(p, network_none, fn, false);
    if (!WIFSIGNALED(st) || WTERMSIG(st) != SIGSYS)
        fail_msg("wanted death by SIGSYS, got status 0x%x", st);
}

/* ---- what the baseline denies, under every shipped policy ---- */

static void baseline_calls(void)
{
    char buf[64];
    EXPECT_ERRNO(syscall(SYS_ptrace, 0 /* PTRACE_TRACEME */, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_process_vm_readv, getppid(), 0, 0, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_unshare, CLONE_NEWUSER), EPERM);
    EXPECT_ERRNO(syscall(SYS_unshare, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_setns, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_umount2, "/tmp", 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_pivot_root, "/", "/"), EPERM);
    EXPECT_ERRNO(syscall(SYS_fsopen, "tmpfs", 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_open_tree, AT_FDCWD, "/", 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_keyctl, 0, 0, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_add_key, "user", "x", "y", 1, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_request_key, "user", "x", 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_bpf, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_perf_event_open, 0, 0, -1, -1, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_userfaultfd, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_io_uring_setup, 1, buf), ENOSYS);
    EXPECT_ERRNO(syscall(SYS_io_uring_enter, 0, 0, 0, 0, 0, 0), ENOSYS);
    EXPECT_ERRNO(syscall(SYS_io_uring_register, 0, 0, 0, 0), ENOSYS);
    EXPECT_ERRNO(syscall(SYS_clone3, buf, 64), ENOSYS);
    EXPECT_ERRNO(syscall(SYS_kexec_load, 0, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_init_module, 0, 0, ""), EPERM);
    EXPECT_ERRNO(syscall(SYS_finit_module, -1, "", 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_delete_module, "x", 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_reboot, 0, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_acct, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_swapon, "/x", 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_syslog, 3, buf, sizeof(buf)), EPERM);
    EXPECT_ERRNO(syscall(SYS_iopl, 3), EPERM);
    EXPECT_ERRNO(syscall(SYS_ioperm, 0, 1, 1), EPERM);
    EXPECT_ERRNO(syscall(SYS_settimeofday, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_clock_settime, CLOCK_REALTIME, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_clock_adjtime, CLOCK_REALTIME, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_open_by_handle_at, AT_FDCWD, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_name_to_handle_at, AT_FDCWD, "/", 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_quotactl, 0, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_pidfd_getfd, 0, 0, 0), EPERM);

    /* clone: any namespace flag is refused; the exit signal byte is not a flag */
    static const unsigned long ns[] = {CLONE_NEWNS,  CLONE_NEWUSER, CLONE_NEWPID,   CLONE_NEWNET,
                                       CLONE_NEWIPC, CLONE_NEWUTS,  CLONE_NEWCGROUP};
    for (size_t i = 0; i < ARRAY_SIZE(ns); i++)
        EXPECT_ERRNO(syscall(SYS_clone, ns[i] | SIGCHLD, 0, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_clone, CLONE_NEWUSER | CLONE_NEWNS | SIGCHLD, 0, 0, 0, 0), EPERM);

    /* TIOCSTI and TIOCLINUX, also with junk in the high 32 bits the kernel ignores
     * (CVE-2019-10063); without the filter /dev/null would say ENOTTY */
    int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
    EXPECT_OK(fd);
    char c = 'x';
    EXPECT_ERRNO(syscall(SYS_ioctl, fd, (unsigned long)TIOCSTI, &c), EPERM);
    EXPECT_ERRNO(syscall(SYS_ioctl, fd, 0xffffffff00005412ul, &c), EPERM);
    EXPECT_ERRNO(syscall(SYS_ioctl, fd, 0x1234567800005412ul, &c), EPERM);
    EXPECT_ERRNO(syscall(SYS_ioctl, fd, (unsigned long)TIOCLINUX, &c), EPERM);
    EXPECT_ERRNO(syscall(SYS_ioctl, fd, 0xffffffff00000000ul | TIOCLINUX, &c), EPERM);
    EXPECT_ERRNO(syscall(SYS_ioctl, fd, (unsigned long)TIOCSETD, &c), EPERM);
    struct winsize ws;
    EXPECT_ERRNO(syscall(SYS_ioctl, fd, (unsigned long)TIOCGWINSZ, &ws), ENOTTY);
    EXPECT_OK(syscall(SYS_ioctl, fd, (unsigned long)FIOCLEX, 0));

    /* personality: query and plain Linux only */
    EXPECT_OK(syscall(SYS_personality, 0xffffffff));
    EXPECT_OK(syscall(SYS_personality, PER_LINUX));
    EXPECT_ERRNO(syscall(SYS_personality, READ_IMPLIES_EXEC), EPERM);
    EXPECT_ERRNO(syscall(SYS_personality, ADDR_NO_RANDOMIZE), EPERM);
    EXPECT_ERRNO(syscall(SYS_personality, MMAP_PAGE_ZERO), EPERM);

    /* socket families outside the allow-list, whatever the network mode */
    EXPECT_ERRNO(socket(AF_VSOCK, SOCK_STREAM, 0), EAFNOSUPPORT);
    EXPECT_ERRNO(socket(AF_ALG, SOCK_SEQPACKET, 0), EAFNOSUPPORT);
    EXPECT_ERRNO(socket(AF_PACKET, SOCK_RAW, 0), EAFNOSUPPORT);
    EXPECT_ERRNO(socket(AF_TIPC, SOCK_RDM, 0), EAFNOSUPPORT);
    EXPECT_ERRNO(syscall(SYS_socket, 0x100000000ul | AF_VSOCK, SOCK_STREAM, 0), EAFNOSUPPORT);
    int sv[2];
    EXPECT_ERRNO(socketpair(AF_TIPC, SOCK_SEQPACKET, 0, sv), EAFNOSUPPORT);
    EXPECT_OK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv));
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_OK(u);

    /* ordinary work still runs: fork (glibc uses clone without namespace flags), pipes */
    int pfd[2];
    EXPECT_OK(pipe(pfd));
    pid_t pid = fork();
    EXPECT_OK(pid);
    if (pid == 0)
        syscall(SYS_exit_group, 7);
    int st;
    EXPECT_OK(waitpid(pid, &st, 0));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 7)
        child_fail(__LINE__, "fork child status", st, 0, "exit 7");
    pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    EXPECT_OK(pid);
    if (pid == 0)
        syscall(SYS_exit_group, 0);
    EXPECT_OK(waitpid(pid, &st, 0));
    EXPECT_OK(getpid());
}

static void test_baseline_under_each_shipped_policy(void **state)
{
    (void)state;
    const char *names[] = {"default", "strict", "permissive"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++) {
        struct policy *p = load(names[i]);
        run_filtered(p, true, baseline_calls, true);
        run_filtered(p, false, baseline_calls, true);
        policy_free(p);
    }
}

/* A policy that allows everything and says nothing gets the baseline just the same. */
static void test_baseline_under_empty_policy(void **state)
{
    (void)state;
    struct policy *p = load("{}");
    run_filtered(p, true, baseline_calls, true);
    policy_free(p);
}

/* ---- network modes ---- */

static void inet_allowed(void)
{
    EXPECT_OK(socket(AF_INET, SOCK_STREAM, 0));
    EXPECT_OK(socket(AF_INET6, SOCK_DGRAM, 0));
    EXPECT_OK(socket(AF_NETLINK, SOCK_RAW, 0));
}

static void inet_denied(void)
{
    EXPECT_ERRNO(socket(AF_INET, SOCK_STREAM, 0), EAFNOSUPPORT);
    EXPECT_ERRNO(socket(AF_INET6, SOCK_DGRAM, 0), EAFNOSUPPORT);
    EXPECT_OK(socket(AF_UNIX, SOCK_DGRAM, 0));
}

static void inet_only_allowed(void)
{
    EXPECT_OK(socket(AF_INET, SOCK_STREAM, 0));
    EXPECT_OK(socket(AF_INET6, SOCK_DGRAM, 0));
}

static void netlink_denied(void)
{
    EXPECT_ERRNO(socket(AF_NETLINK, SOCK_RAW, 0), EAFNOSUPPORT);
}

static void test_network_modes(void **state)
{
    (void)state;
    struct policy *d = load("default"), *s = load("strict");
    run_filtered(d, true, inet_allowed, true); /* loopback: true */
    run_filtered(d, false, inet_allowed, true);
    run_filtered(s, true, inet_denied, true); /* loopback: false */
    run_filtered(s, true, netlink_denied, true);
    run_filtered(s, false, netlink_denied, true); /* strict's own rule, in both modes */
    run_filtered(s, false, inet_only_allowed, true);
    policy_free(d);
    policy_free(s);
}

/* ---- policy rules, and how they combine with the baseline ---- */

static void strict_refusals(void)
{
    EXPECT_ERRNO(syscall(SYS_execveat, AT_FDCWD, "/nonexistent", 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_mq_open, "/x", 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_fanotify_init, 0, 0), EPERM); /* from default, via extends */
}

static void call_kcmp(void)
{
    syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0);
}

static void call_modify_ldt(void)
{
    char buf[16];
    syscall(SYS_modify_ldt, 0, buf, sizeof(buf));
}

static void default_refusals(void)
{
    EXPECT_ERRNO(syscall(SYS_kcmp, getpid(), getpid(), 0, 0, 0), EPERM);
    char buf[16];
    EXPECT_ERRNO(syscall(SYS_modify_ldt, 0, buf, sizeof(buf)), EPERM);
}

static void test_policy_rules(void **state)
{
    (void)state;
    struct policy *d = load("default"), *s = load("strict");
    run_filtered(d, true, default_refusals, true);
    run_filtered(s, true, strict_refusals, true);
    expect_sigsys(s, true, call_kcmp); /* strict overrides default's errno with kill_process */
    expect_sigsys(s, false, call_modify_ldt);
    policy_free(d);
    policy_free(s);
}

/* An allow-list policy: everything not named fails with its default errno, and allowing
 * ioctl, clone or personality outright does not reopen what the baseline closes. */
static const char allow_list[] =
    "{\"seccomp\": {\"default_action\": \"errno\", \"default_errno\": \"ENOSYS\", \"rules\": [\n"
    " {\"syscalls\": [\"write\", \"exit_group\", \"exit\", \"getpid\", \"openat\", \"ioctl\",\n"
    "   \"clone\", \"wait4\", \"personality\", \"socket\", \"ptrace\", \"mount\"],\n"
    "  \"action\": \"allow\"}]}}";

static void allow_list_calls(void)
{
    EXPECT_OK(syscall(SYS_getpid));
    EXPECT_ERRNO(syscall(SYS_getppid), ENOSYS);
    EXPECT_ERRNO(syscall(SYS_mkdirat, AT_FDCWD, "/nonexistent/x", 0700), ENOSYS);
    int fd = (int)syscall(SYS_openat, AT_FDCWD, "/dev/null", O_RDONLY | O_CLOEXEC);
    EXPECT_OK(fd);
    char c = 'x';
    EXPECT_ERRNO(syscall(SYS_ioctl, fd, 0xffffffff00005412ul, &c), EPERM);
    EXPECT_ERRNO(syscall(SYS_ioctl, fd, (unsigned long)TIOCGWINSZ, &c), ENOTTY);
    EXPECT_ERRNO(syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_personality, READ_IMPLIES_EXEC), EPERM);
    EXPECT_OK(syscall(SYS_personality, 0xffffffff));
    EXPECT_ERRNO(syscall(SYS_socket, AF_VSOCK, SOCK_STREAM, 0), EAFNOSUPPORT);
    EXPECT_OK(syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0));
    EXPECT_ERRNO(syscall(SYS_ptrace, 0, 0, 0, 0), EPERM);
    EXPECT_ERRNO(syscall(SYS_mount, "none", "/tmp", "tmpfs", 0, 0), EPERM);
    pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
    EXPECT_OK(pid);
    if (pid == 0)
        syscall(SYS_exit_group, 3);
    int st;
    EXPECT_OK(syscall(SYS_wait4, pid, &st, 0, 0));
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 3)
        child_fail(__LINE__, "clone child status", st, 0, "exit 3");
}

static void test_allow_list_policy_keeps_baseline(void **state)
{
    (void)state;
    struct policy *p = load(allow_list);
    run_filtered(p, true, allow_list_calls, true);
    policy_free(p);
}

/* Stricter wins between baseline and policy; on a tie the baseline's errno stays. */
static void ptrace_eperm(void)
{
    EXPECT_ERRNO(syscall(SYS_ptrace, 0, 0, 0, 0), EPERM);
}

static void call_ptrace(void)
{
    syscall(SYS_ptrace, 0, 0, 0, 0);
}

static void test_strictest_verdict_wins(void **state)
{
    (void)state;
    struct policy *tie = load("{\"seccomp\": {\"rules\": [{\"syscalls\": [\"ptrace\"], "
                              "\"action\": \"errno\", \"errno\": \"ENOSYS\"}]}}");
    struct policy *kill = load("{\"seccomp\": {\"rules\": [{\"syscalls\": [\"ptrace\"], "
                               "\"action\": \"kill_process\"}]}}");
    run_filtered(tie, true, ptrace_eperm, true);
    expect_sigsys(kill, true, call_ptrace);
    policy_free(tie);
    policy_free(kill);
}

/* Conditional policy rules: argument comparisons as the kernel sees them. */
static void arg_rules(void)
{
    EXPECT_ERRNO(syscall(SYS_getpriority, 0 /* PRIO_PROCESS */, 0), EACCES);
    EXPECT_OK(syscall(SYS_getpriority, 1 /* PRIO_PGRP */, 0));
    EXPECT_ERRNO(syscall(SYS_lseek, 99, 0, 0), EBADF); /* fd 99 >= 50: not matched */
    EXPECT_ERRNO(syscall(SYS_lseek, 40, 0, 0), ESPIPE);
    EXPECT_ERRNO(syscall(SYS_dup3, 0, 100, 0x80000 /* O_CLOEXEC */), EROFS);
    EXPECT_OK(syscall(SYS_dup3, 0, 100, 0));
    EXPECT_OK(syscall(SYS_dup3, 0, 99, 0x80000));
    char cwd[64];
    EXPECT_OK(syscall(SYS_getcwd, cwd, sizeof(cwd))); /* "log": allowed, audited */
}

static void test_argument_rules(void **state)
{
    (void)state;
    struct policy *p =
        load("{\"seccomp\": {\"rules\": [\n"
             " {\"syscalls\": [\"getcwd\"], \"action\": \"log\"},\n"
             " {\"syscalls\": [\"getpriority\"], \"action\": \"errno\", \"errno\": \"EACCES\",\n"
             "  \"args\": [{\"index\": 0, \"op\": \"eq\", \"value\": 0}]},\n"
             " {\"syscalls\": [\"lseek\"], \"action\": \"errno\", \"errno\": 29,\n"
             "  \"args\": [{\"index\": 0, \"op\": \"lt\", \"value\": 50}]},\n"
             " {\"syscalls\": [\"dup3\"], \"action\": \"errno\", \"errno\": \"EROFS\",\n"
             "  \"args\": [{\"index\": 2, \"op\": \"masked_eq\", \"mask\": \"0x80000\", \"value\": "
             "\"0x80000\"}, {\"index\": 1, \"op\": \"ge\", \"value\": 100}]}\n"
             "]}}");
    run_filtered(p, true, arg_rules, true);
    policy_free(p);
}

/* ---- foreign ABIs ---- */

static void call_x32(void)
{
    syscall(0x40000000 | SYS_getpid); /* x32 ABI number of getpid */
}

static void call_int80(void)
{
    long ret = 20; /* getpid in the i386 table */
    __asm__ volatile("int $0x80" : "+a"(ret) : : "memory");
}

static void test_foreign_abis_are_killed(void **state)
{
    (void)state;
    struct policy *p = load("default");
    expect_sigsys(p, true, call_x32);
    expect_sigsys(p, true, call_int80);
    policy_free(p);
}

/* ---- real tools under the default filter ---- */

static char tool_dir[64];

static void run_tools(void)
{
    char script[2048];
    snprintf(script, sizeof(script),
             "set -e; cd %s; x=$(echo hello | tr h j | cat); test \"$x\" = jello; "
             "printf 'int main(void){return 42;}' > a.c; gcc -o a a.c; set +e; ./a; "
             "test $? = 42 || exit 9; set -e; "
             "/usr/bin/python3 -c 'import socket, subprocess, tempfile, threading; "
             "socket.socketpair(); subprocess.run([\"true\"], check=True); "
             "t = threading.Thread(target=print); t.start(); t.join()' >/dev/null; "
             "git init -q r && git -C r -c user.email=a@b -c user.name=a commit -q "
             "--allow-empty -m x; tar cf t.tar a.c && tar tf t.tar >/dev/null; "
             "printf 'all:\\n\\ttrue\\n' > Makefile && make -s",
             tool_dir);
    execl("/bin/sh", "sh", "-c", script, (char *)NULL);
    child_fail(__LINE__, "execl", -1, errno, "exec");
}

static void test_tools_run_under_default(void **state)
{
    (void)state;
    snprintf(tool_dir, sizeof(tool_dir), "/tmp/agentbox-test-seccomp-XXXXXX");
    assert_non_null(mkdtemp(tool_dir));
    struct policy *p = load("default");
    int st = run_filtered(p, true, run_tools, false);
    policy_free(p);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tool_dir);
    assert_int_equal(system(cmd), 0);
    if (!WIFEXITED(st) || WEXITSTATUS(st) != 0)
        fail_msg("sh, gcc, python3, git, tar, make under the default filter: status 0x%x", st);
}

/* ---- build once, apply many: the per-process cache behind policy_seccomp_build ---- */

static struct sock_fprog build(const struct policy *p, bool network_none)
{
    char err[ERR_MSG_MAX];
    struct sock_fprog prog;
    if (policy_seccomp_build(p, network_none, &prog, err, sizeof(err)) < 0)
        fail_msg("build: %s", err);
    return prog;
}

static bool same_program(const struct sock_fprog *a, const struct sock_fprog *b)
{
    return a->len == b->len && memcmp(a->filter, b->filter, a->len * sizeof(*a->filter)) == 0;
}

static const char cache_rules[] =
    "{\"seccomp\": {\"rules\": [{\"syscalls\": [\"getpgid\"], \"action\": \"errno\", "
    "\"errno\": \"%s\", \"args\": [{\"index\": 0, \"op\": \"eq\", \"value\": %d}]}]}, "
    "\"network\": {\"loopback\": false}}";

static void getpgid_eacces_calls(void)
{
    EXPECT_ERRNO(syscall(SYS_getpgid, 12345), EACCES);
    EXPECT_OK(syscall(SYS_getpgid, 0));
}

static struct policy *cache_policy(const char *errno_name, int value)
{
    char text[512];
    snprintf(text, sizeof(text), cache_rules, errno_name, value);
    return load(text);
}

/* The same rules give a copy of the same program without a second build; rules that differ
 * in one errno, one argument value or the network mode never get another policy's program,
 * and the program from the cache still does what it says in the kernel. */
static void test_cache_is_keyed_by_content(void **state)
{
    (void)state;
    struct policy *a = cache_policy("EACCES", 12345), *a2 = cache_policy("EACCES", 12345);
    struct policy *errno_differs = cache_policy("EPERM", 12345);
    struct policy *value_differs = cache_policy("EACCES", 12346);
    struct sock_fprog first = build(a, true);
    unsigned long h = seccomp_cache_hits();
    struct sock_fprog again = build(a2, true); /* another parse of the same text */
    assert_int_equal(seccomp_cache_hits(), h + 1);
    assert_true(same_program(&first, &again));
    assert_ptr_not_equal(first.filter, again.filter); /* the caller's own copy */
    struct sock_fprog e = build(errno_differs, true), v = build(value_differs, true);
    struct sock_fprog inet = build(a, false); /* without loopback, "none" changes the program */
    assert_int_equal(seccomp_cache_hits(), h + 1);
    assert_false(same_program(&first, &e));
    assert_false(same_program(&first, &v));
    assert_false(same_program(&first, &inet));
    struct sock_fprog *all[] = {&first, &again, &e, &v, &inet};
    for (size_t i = 0; i < ARRAY_SIZE(all); i++)
        policy_bpf_free(all[i]);
    struct policy *ps[] = {a, a2, errno_differs, value_differs};
    for (size_t i = 0; i < ARRAY_SIZE(ps); i++)
        policy_free(ps[i]);
    /* from the cache, and still enforced */
    struct policy *cached = cache_policy("EACCES", 12345);
    run_filtered(cached, true, getpgid_eacces_calls, true);
    policy_free(cached);
}

struct cache_thread {
    const struct policy *p[2];
    const struct sock_fprog *want[2];
    int bad;
};

static void *cache_worker(void *arg)
{
    struct cache_thread *t = arg;
    for (int i = 0; i < 200; i++) {
        char err[ERR_MSG_MAX];
        struct sock_fprog prog;
        int k = i & 1;
        if (policy_seccomp_build(t->p[k], true, &prog, err, sizeof(err)) < 0 ||
            !same_program(&prog, t->want[k]))
            t->bad++;
        policy_bpf_free(&prog);
    }
    return NULL;
}

/* Serve and batch build from several threads: each gets the right program every time. */
static void test_cache_concurrent(void **state)
{
    (void)state;
    struct policy *d = load("default"), *s = load("strict");
    struct sock_fprog wd = build(d, true), ws = build(s, true);
    assert_false(same_program(&wd, &ws));
    struct cache_thread t[4];
    pthread_t th[4];
    for (int i = 0; i < 4; i++) {
        t[i] = (struct cache_thread){.p = {d, s}, .want = {&wd, &ws}};
        assert_int_equal(pthread_create(&th[i], NULL, cache_worker, &t[i]), 0);
    }
    for (int i = 0; i < 4; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(t[i].bad, 0);
    }
    policy_bpf_free(&wd);
    policy_bpf_free(&ws);
    policy_free(d);
    policy_free(s);
}

/* ---- cost: this runs in the parent once per cell ---- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median_us(double *us, int n)
{
    qsort(us, (size_t)n, sizeof(us[0]), cmp_double);
    return us[n / 2];
}

/* First builds (each policy different, more of them than the cache holds, so old entries are
 * replaced) against builds the cache answers. */
static void test_build_cost(void **state)
{
    (void)state;
    enum { COLD = 51, N = 201 };
    double cold[COLD], warm[N];
    for (int i = 0; i < COLD; i++) {
        struct policy *p = cache_policy("EPERM", 1000 + i);
        double t0 = monotonic_s();
        struct sock_fprog prog = build(p, true);
        cold[i] = (monotonic_s() - t0) * 1e6;
        assert_true(prog.len > 0 && prog.len <= BPF_MAXINSNS);
        policy_bpf_free(&prog);
        policy_free(p);
    }
    struct policy *p = load("strict");
    for (int i = 0; i < N; i++) {
        double t0 = monotonic_s();
        struct sock_fprog prog = build(p, true);
        warm[i] = (monotonic_s() - t0) * 1e6;
        assert_true(prog.len > 0 && prog.len <= BPF_MAXINSNS);
        policy_bpf_free(&prog);
    }
    printf("policy_seccomp_build: first build median %.0f us (%d policies); again, from the cache, "
           "median %.0f us (%d builds)\n",
           median_us(cold, COLD), COLD, median_us(warm, N), N);
    policy_free(p);
}

int main(void)
{
    const char *env = getenv("AGENTBOX_DATA_DIR");
    if (!env || !*env) {
        char cwd[4096];
        if (!getcwd(cwd, sizeof(cwd)) || setenv("AGENTBOX_DATA_DIR", cwd, 1) < 0)
            return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_baseline_under_each_shipped_policy),
        cmocka_unit_test(test_baseline_under_empty_policy),
        cmocka_unit_test(test_network_modes),
        cmocka_unit_test(test_policy_rules),
        cmocka_unit_test(test_allow_list_policy_keeps_baseline),
        cmocka_unit_test(test_strictest_verdict_wins),
        cmocka_unit_test(test_argument_rules),
        cmocka_unit_test(test_foreign_abis_are_killed),
        cmocka_unit_test(test_tools_run_under_default),
        cmocka_unit_test(test_cache_is_keyed_by_content),
        cmocka_unit_test(test_cache_concurrent),
        cmocka_unit_test(test_build_cost),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
