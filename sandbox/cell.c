/* cell: one sandbox's whole life, in order: clone into new
 * namespaces, maps and cgroup from the parent, then in the child the file system, hostname and
 * loopback, session, fds, rlimits, user, capabilities, no_new_privs, Landlock and seccomp last;
 * pid 1 then runs the command's init or execs the agent. The parent waits, kills, reaps and
 * writes the record. A failed child step is reported over a close-on-exec socket as
 * "STEP: errno" and the parent removes everything; no half-built cell survives. */
#include "cell_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fdpass.h"
#include "util.h"

static void child_send(int fd, const struct setup_msg *m)
{
    /* Best effort: if the parent is gone, PDEATHSIG ends us anyway. */
    (void)send(fd, m, sizeof(*m), MSG_NOSIGNAL);
}

static __attribute__((noreturn)) void child_fail(struct cell_child *ctx)
{
    struct setup_msg m = {.kind = MSG_FAIL, .err = errno};
    snprintf(m.step, sizeof(m.step), "%s", ctx->step ? ctx->step : "unknown step");
    child_send(ctx->setup_fd, &m);
    _exit(EXIT_FAILURE);
}

/* ---- the environment a cell gets by default: nothing of the caller's ---- */
char *const *cell_default_env(void)
{
    static char term[64];
    static char *env[] = {"PATH=/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
                          "HOME=" CELL_WORKSPACE,
                          "LANG=C.UTF-8",
                          "PAGER=cat",
                          "GIT_PAGER=cat",
                          "USER=agent",
                          NULL,
                          NULL};
    if (!env[6]) {
        const char *t = getenv("TERM");
        if (t && *t && strlen(t) < 32 &&
            strspn(t, "abcdefghijklmnopqrstuvwxyz0123456789-_.+") == strlen(t)) {
            snprintf(term, sizeof(term), "TERM=%s", t);
            env[6] = term;
        }
    }
    return env;
}

/* ---- child: fds ---- */
static int dup_high(int fd)
{
    return fcntl(fd, F_DUPFD_CLOEXEC, 10);
}

/* 0-2: stdio (passed through, or /dev/null and the given fds); 3: the channel (agent);
 * then the set-up socket, close-on-exec; everything else closed (CVE-2024-21626). */
static int arrange_fds(struct cell_child *ctx)
{
    const struct cell_config *cfg = ctx->cfg;
    int s = dup_high(ctx->setup_fd);
    int ch = cfg->channel_fd >= 0 ? dup_high(cfg->channel_fd) : -1;
    if (s < 0 || (cfg->channel_fd >= 0 && ch < 0))
        return CHILD_FAIL(ctx, "dup fds");
    if (!cfg->stdio_passthrough) {
        int out = cfg->stdout_fd >= 0 ? dup_high(cfg->stdout_fd) : -1;
        int errfd = cfg->stderr_fd >= 0 ? dup_high(cfg->stderr_fd) : -1;
        int in = cfg->stdin_set ? dup_high(cfg->stdin_fd) : -1;
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || (cfg->stdout_fd >= 0 && out < 0) || (cfg->stderr_fd >= 0 && errfd < 0) ||
            (cfg->stdin_set && in < 0))
            return CHILD_FAIL(ctx, "open stdio");
        if (dup2(in >= 0 ? in : null, 0) < 0 || dup2(out >= 0 ? out : null, 1) < 0 ||
            dup2(errfd >= 0 ? errfd : null, 2) < 0)
            return CHILD_FAIL(ctx, "dup stdio");
    }
    /* A directory passed as stdio (`agentbox exec ... < DIR`) would be a handle on the host's
     * file system, outside every namespace: openat() and ".." from it reach anything (the
     * CVE-2024-21626 shape). Such an fd, or a closed one, becomes /dev/null. */
    for (int fd = 0; fd <= 2; fd++) {
        struct stat st;
        if (fstat(fd, &st) == 0 && !S_ISDIR(st.st_mode))
            continue;
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null < 0 || dup2(null, fd) < 0)
            return CHILD_FAIL(ctx, "stdio /dev/null");
        if (null != fd)
            (void)close(null);
    }
    int next = 3;
    if (ch >= 0) {
        if (dup2(ch, CELL_CHANNEL_FD) < 0) /* dup2 clears close-on-exec: pid 1 keeps it */
            return CHILD_FAIL(ctx, "dup channel");
        next = CELL_CHANNEL_FD + 1;
    }
    if (dup3(s, next, O_CLOEXEC) < 0)
        return CHILD_FAIL(ctx, "dup set-up socket");
    ctx->setup_fd = next;
    if (syscall(SYS_close_range, next + 1, ~0u, 0) < 0) {
        /* close_range is Linux 5.9; before it, close what could be open. */
        struct rlimit r;
        if (getrlimit(RLIMIT_NOFILE, &r) < 0)
            return CHILD_FAIL(ctx, "close fds");
        for (int fd = next + 1; fd < (int)r.rlim_cur && fd < 65536; fd++)
            (void)close(fd);
    }
    return 0;
}

static int send_workspace_fd(struct cell_child *ctx)
{
    int fd = open(CELL_WORKSPACE, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return CHILD_FAIL(ctx, "open /workspace");
    struct setup_msg m = {.kind = MSG_WORKSPACE};
    ssize_t n = fdpass_send(ctx->setup_fd, &m, sizeof(m), fd);
    int e = errno;
    (void)close(fd);
    errno = e;
    return n == (ssize_t)sizeof(m) ? 0 : CHILD_FAIL(ctx, "send workspace fd");
}

static int send_proxy_fd(struct cell_child *ctx)
{
    if (!ctx->cfg->egress)
        return 0;
    int fd = egress_listen_child(ctx);
    if (fd < 0)
        return -1;
    struct setup_msg m = {.kind = MSG_PROXYFD};
    ssize_t n = fdpass_send(ctx->setup_fd, &m, sizeof(m), fd);
    int e = errno;
    (void)close(fd);
    errno = e;
    return n == (ssize_t)sizeof(m) ? 0 : CHILD_FAIL(ctx, "send proxy socket");
}

/* ---- child: pid 1 of a command cell ---- */
static volatile pid_t init_child = -1;

static void forward_signal(int sig)
{
    if (init_child > 0)
        (void)kill(init_child, sig);
}

/* A small init: forks and execs the command, forwards SIGTERM/SIGINT, reaps everything, and
 * exits when the command does, which makes the kernel kill whatever else still runs in the
 * pid namespace (daemons, double forks). It reports the command's wait status itself, because
 * pid 1 of a namespace cannot die of a signal sent from inside it. */
static __attribute__((noreturn)) void init_main(struct cell_child *ctx, char *const *envp)
{
    static const int fwd[] = {SIGTERM, SIGINT, SIGHUP, SIGQUIT};
    sigset_t block, old;
    sigemptyset(&block);
    for (size_t i = 0; i < ARRAY_SIZE(fwd); i++)
        sigaddset(&block, fwd[i]);
    struct sigaction sa = {.sa_handler = forward_signal};
    sigemptyset(&sa.sa_mask);
    for (size_t i = 0; i < ARRAY_SIZE(fwd); i++)
        (void)sigaction(fwd[i], &sa, NULL);
    (void)sigprocmask(SIG_BLOCK, &block, &old);
    /* vfork: no copy of our page tables; the child only resets signals and execs. */
    pid_t pid = vfork();
    if (pid == 0) {
        struct sigaction dfl = {.sa_handler = SIG_DFL};
        for (size_t i = 0; i < ARRAY_SIZE(fwd); i++)
            (void)sigaction(fwd[i], &dfl, NULL);
        (void)sigprocmask(SIG_SETMASK, &old, NULL);
        extern char **environ;
        environ = (char **)envp; /* execvp searches the cell's PATH, not ours */
        execvp(ctx->cfg->argv[0], ctx->cfg->argv);
        struct setup_msg m = {.kind = MSG_EXEC, .err = errno};
        child_send(ctx->setup_fd, &m);
        _exit(errno == ENOENT || errno == ENOTDIR ? 127 : 126);
    }
    if (pid < 0) {
        ctx->step = "fork command";
        child_fail(ctx);
    }
    init_child = pid;
    (void)sigprocmask(SIG_SETMASK, &old, NULL);
    int st = 0;
    for (;;) {
        pid_t w = waitpid(-1, &st, 0);
        if (w == pid)
            break;
        if (w < 0 && errno != EINTR)
            _exit(EXIT_FAILURE);
    }
    struct setup_msg m = {.kind = MSG_STATUS, .value = st};
    child_send(ctx->setup_fd, &m);
    _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st));
}

static __attribute__((noreturn)) void exec_agent(struct cell_child *ctx, char *const *envp)
{
    char *argv[64];
    size_t n = 0;
    argv[n++] = "agentbox";
    argv[n++] = "__agent";
    for (char *const *a = ctx->cfg->argv; a && *a && n < ARRAY_SIZE(argv) - 1; a++)
        argv[n++] = *a;
    argv[n] = NULL;
    execve(CELL_AGENT_BIN, argv, envp);
    ctx->step = "exec agent";
    child_fail(ctx);
}

/* ---- child: the set-up, in order ---- */

/* A non-dumpable parent (the supervisor) gives a non-dumpable child, whose /proc files are
 * root's: an unprivileged parent could not write its uid_map. Dumpable only until the maps
 * are written. */
static int dumpable_for_maps(struct cell_child *ctx)
{
    if (!ctx->undumpable_parent)
        return 0;
    if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0) < 0)
        return -1;
    struct setup_msg d = {.kind = MSG_DUMPABLE};
    child_send(ctx->setup_fd, &d);
    return 0;
}

static int wait_for_maps(struct cell_child *ctx)
{
    char go;
    ssize_t n = read(ctx->setup_fd, &go, 1);
    if (n != 1 || go != 'M') {
        if (n >= 0)
            errno = EPIPE; /* the parent gave up, or sent something else */
        return -1;
    }
    if (ctx->undumpable_parent && prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return CHILD_FAIL(ctx, "undumpable again");
    return 0;
}

/* v1: the parent made the cgroups while we built the root; we move ourselves in while the
 * host's /sys is still in view, then take a cgroup namespace rooted there. */
static int join_cgroups(struct cell_child *ctx)
{
    struct go_msg g;
    ssize_t n = read(ctx->setup_fd, &g, sizeof(g));
    if (n != (ssize_t)sizeof(g) || g.kind != 'G') {
        if (n >= 0)
            errno = EPIPE;
        return -1;
    }
    g.memory_path[sizeof(g.memory_path) - 1] = g.pids_path[sizeof(g.pids_path) - 1] = '\0';
    ctx->cg_memory = g.memory;
    ctx->cg_pids = g.pids;
    if (ctx->cgroup_v2)
        return 0;
    if (cgroup_enter(ctx, g.memory_path, g.pids_path) < 0)
        return -1;
    return unshare(CLONE_NEWCGROUP) < 0 ? CHILD_FAIL(ctx, "cgroup namespace") : 0;
}

static int report_ready(struct cell_child *ctx)
{
    struct setup_msg m = {.kind = MSG_READY,
                          .enforced = ctx->enforced,
                          .unavailable = ctx->unavailable,
                          .landlock_abi = ctx->landlock_abi,
                          .seed_mode = ctx->seed_mode ? ctx->seed_mode[0] : 0};
    child_send(ctx->setup_fd, &m);
    return 0;
}

/* The cell's set-up, one step a line, in the order it must happen (docs/sandbox.md). A step
 * returns 0, or -1 with errno set (and ctx->step when it names a finer step than its own). */
static const struct child_step {
    const char *name;
    int (*run)(struct cell_child *ctx);
} child_steps[] = {
    {"reset signals", reset_signals},
    {"dumpable for the id maps", dumpable_for_maps},
    {"parent death signal", parent_death_signal},
    {"wait for the id maps", wait_for_maps},
    /* the seed as the parent opened it, with the requester's rights (seed_open.c); as root
     * the child resolves no host path by name (the parent cloned the mounts it needs) */
    {"reopen the seed", workspace_reopen_seed},
    {"open agentbox binary", open_agent_binary},
    {"become the cell's user", ns_become_user},
    {"parent death signal again", parent_death_signal_again},
    {"build the root", mounts_build_root},
    {"join the cgroups", join_cgroups},
    {"enter the root", mounts_enter_root},
    {"hostname and loopback", ns_set_hostname_and_lo},
    {"setsid", new_session},
    {"send workspace fd", send_workspace_fd},
    {"send proxy socket", send_proxy_fd},
    {"arrange fds", arrange_fds},
    {"limits", apply_limits},
    {"drop capabilities", caps_drop_all},
    {"no_new_privs", no_new_privs},
    {"landlock", landlock_apply},
    {"dumpable", init_undumpable},
    {"seccomp", load_seccomp},
    {"report ready", report_ready},
};

/* One failure idiom: the step that failed is named to the parent (child_fail), with errno. */
static __attribute__((noreturn)) void child_main(struct cell_child *ctx)
{
    for (size_t i = 0; i < ARRAY_SIZE(child_steps); i++) {
        ctx->step = NULL;
        if (child_steps[i].run(ctx) < 0) {
            if (!ctx->step)
                ctx->step = child_steps[i].name;
            child_fail(ctx);
        }
    }
    char *const *envp = ctx->cfg->envp ? ctx->cfg->envp : cell_default_env();
    if (ctx->cfg->pid1 == CELL_PID1_AGENT)
        exec_agent(ctx, envp);
    init_main(ctx, envp);
}

/* ---- parent ---- */
int cell_recv_msg(int fd, struct setup_msg *m, int *passed_fd)
{
    int got;
    ssize_t n = fdpass_recv(fd, m, sizeof(*m), MSG_DONTWAIT, &got);
    if (n < 0)
        return -1;
    /* Only a whole workspace message may carry a descriptor. */
    if (got >= 0 &&
        !((m->kind == MSG_WORKSPACE || m->kind == MSG_PROXYFD) && n == (ssize_t)sizeof(*m))) {
        (void)close(got);
        got = -1;
    }
    if (n == 0)
        return 0; /* EOF */
    if (n != (ssize_t)sizeof(*m)) {
        if (got >= 0)
            (void)close(got);
        errno = EPROTO;
        return -1;
    }
    m->step[sizeof(m->step) - 1] = '\0';
    if (passed_fd)
        *passed_fd = got;
    else if (got >= 0)
        (void)close(got);
    return 1;
}

/* Releases the cell's cgroups (kept for the slot's next cell when they hold no task, else
 * removed), then their janitor registration (nothing is left for it: the slot's kept cgroups
 * are empty): registering and unregistering happen here only. */
static void drop_cgroups(struct cell *c)
{
    cgroup_release(&c->cg);
    janitor_unregister(c->cg.janitor_id);
    c->cg.janitor_id = 0;
}

void cell_cleanup(struct cell *c)
{
    if (c->pidfd >= 0 && !c->reaped) {
        (void)cell_kill(c);
        siginfo_t si;
        while (syscall(SYS_waitid, P_PIDFD, c->pidfd, &si, WEXITED, NULL) < 0 && errno == EINTR)
            ;
        c->reaped = true;
    }
    drop_cgroups(c);
    slot_release(&c->slot);
    int *fds[] = {&c->pidfd, &c->setup_fd, &c->ws_fd, &c->exe_tree, &c->seed_tree, &c->proxy_fd};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++) {
        if (*fds[i] >= 0)
            (void)close(*fds[i]);
        *fds[i] = -1;
    }
}

/* Waits for the child's "ready" (and, for an agent, the exec that closes the socket). */
static int wait_ready(struct cell *c, char *err, size_t errsz)
{
    bool ready = false;
    double deadline = monotonic_s() + CELL_SETUP_TIMEOUT_MS / 1000.0;
    for (;;) {
        int ms = (int)((deadline - monotonic_s()) * 1000);
        if (ms <= 0)
            return errf(err, errsz, "set-up failed: timed out after %d ms", CELL_SETUP_TIMEOUT_MS);
        struct pollfd pfd = {.fd = c->setup_fd, .events = POLLIN};
        int r = poll(&pfd, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return errf(err, errsz, "set-up failed at poll: %s", strerror(errno));
        if (r == 0)
            continue;
        struct setup_msg m;
        int fd = -1;
        r = cell_recv_msg(c->setup_fd, &m, &fd);
        /* ECONNRESET: the child exited with our "go" unread; its failure message is still
         * queued behind the error, which reading has now cleared. */
        if (r < 0 && (errno == EAGAIN || errno == ECONNRESET))
            continue;
        if (r < 0)
            return errf(err, errsz, "set-up failed at set-up socket: %s", strerror(errno));
        if (r == 0) {
            if (ready)
                return 0; /* the agent's exec closed the socket */
            return errf(err, errsz, "set-up failed at ready: the cell died before it was ready");
        }
        switch (m.kind) {
        case MSG_FAIL:
            return errf(err, errsz, "set-up failed at %s: %s", m.step, strerror(m.err));
        case MSG_WORKSPACE:
            if (fd >= 0 && c->ws_fd < 0)
                c->ws_fd = fd;
            else if (fd >= 0)
                (void)close(fd);
            break;
        case MSG_PROXYFD:
            if (fd >= 0 && c->proxy_fd < 0)
                c->proxy_fd = fd;
            else if (fd >= 0)
                (void)close(fd);
            break;
        case MSG_READY:
            ready = true;
            c->enforced |= m.enforced;
            c->unavailable |= m.unavailable;
            c->landlock_abi = m.landlock_abi;
            c->seed_mode = m.seed_mode == 'o' ? "overlay" : m.seed_mode == 'c' ? "copy" : NULL;
            if (c->mode == CELL_PID1_COMMAND)
                return 0;
            break;
        default:
            return errf(err, errsz, "set-up failed: unexpected message from the cell");
        }
    }
}

/* Waits for MSG_DUMPABLE (see child_main), or the child's failure or death. */
static int wait_dumpable(struct cell *c, char *err, size_t errsz)
{
    struct pollfd pfd = {.fd = c->setup_fd, .events = POLLIN};
    for (;;) {
        int r = poll(&pfd, 1, CELL_SETUP_TIMEOUT_MS);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return errf(err, errsz, "set-up failed at dumpable: %s",
                        r == 0 ? "timed out" : strerror(errno));
        struct setup_msg m;
        r = cell_recv_msg(c->setup_fd, &m, NULL);
        if (r < 0 && (errno == EAGAIN || errno == ECONNRESET))
            continue;
        if (r == 1 && m.kind == MSG_DUMPABLE)
            return 0;
        if (r == 1 && m.kind == MSG_FAIL)
            return errf(err, errsz, "set-up failed at %s: %s", m.step, strerror(m.err));
        return errf(err, errsz, "set-up failed at dumpable: the cell died before it began");
    }
}

/* A child that failed has already said why: prefer its message to our EPIPE. */
static int send_go(struct cell *c, const char *msg, size_t len, char *err, size_t errsz)
{
    if (send(c->setup_fd, msg, len, MSG_NOSIGNAL) == (ssize_t)len)
        return 0;
    int e = errno;
    if (wait_ready(c, err, errsz) < 0)
        return -1;
    return errf(err, errsz, "set-up failed at go: %s", strerror(e));
}

/* The cell's cgroups of this version (none is not an error), and the janitor that removes
 * them should agentbox be SIGKILLed. -1 only if the janitor cannot be started. */
static int make_cgroups(struct cell *c, const struct cell_config *cfg, int version)
{
    drop_cgroups(c);
    cgroup_create(&c->cg, version, &c->slot, &cfg->limits);
    if (c->cg.version && janitor_register(&c->cg, c->slot.lock_fd, &c->cg.janitor_id) < 0) {
        int e = errno;
        drop_cgroups(c);
        errno = e;
        return -1;
    }
    return 0;
}

/* Root: our descriptors belong to our mount namespace, which the cell's cannot bind from, so
 * the cell gets detached copies of the mounts of the binary and of the seed directory to move
 * into place. (An unprivileged parent cannot make them; its child, with the same rights, opens
 * the names itself, the seed checked to be the directory opened here: workspace_reopen_seed.) */
static void close_mounts(struct cell *c);

static int clone_mounts(struct cell *c, const struct cell_config *cfg, char *err, size_t errsz)
{
    if (cfg->pid1 == CELL_PID1_AGENT &&
        (c->exe_tree = (int)syscall(SYS_open_tree, AT_FDCWD, self_exe_path(),
                                    OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC)) < 0)
        goto no_clone;
    if (cfg->workspace_from && (c->seed_tree = (int)syscall(SYS_open_tree, cfg->seed_fd, "",
                                                            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC |
                                                                AT_EMPTY_PATH | AT_RECURSIVE)) < 0)
        goto no_clone;
    return 0;
no_clone:
    /* Root without CAP_SYS_ADMIN (a hardened systemd unit's bounding set) may not clone
     * mounts: then the child opens the names itself, as an unprivileged parent's does, and
     * the seed is used only if it is the very directory opened here (workspace_reopen_seed). */
    if (errno == EPERM) {
        close_mounts(c);
        return 0;
    }
    return errf(err, errsz, "set-up failed at clone %s mount: %s",
                c->exe_tree < 0 && cfg->pid1 == CELL_PID1_AGENT ? "agentbox binary" : "seed",
                strerror(errno));
}

static void close_mounts(struct cell *c)
{
    int *fds[] = {&c->exe_tree, &c->seed_tree};
    for (size_t i = 0; i < ARRAY_SIZE(fds); i++) {
        if (*fds[i] >= 0)
            (void)close(*fds[i]);
        *fds[i] = -1;
    }
}

/* What no cell can be made from: refused before anything is allocated. */
static int check_config(const struct cell_config *cfg, char *err, size_t errsz)
{
    if (!cfg->policy || (cfg->pid1 == CELL_PID1_COMMAND && (!cfg->argv || !cfg->argv[0])))
        return errf(err, errsz, "set-up failed: no policy or no command");
    if (cfg->network_host && cfg->egress)
        return errf(err, errsz, "set-up failed: network host and egress are exclusive");
    if (cfg->network_host && !cfg->policy->allow_network_host)
        return errf(err, errsz, "set-up failed: policy '%s' does not allow network host",
                    cfg->policy->name);
    struct stat seed_st;
    if (cfg->workspace_from &&
        (cfg->seed_fd <= 2 || fstat(cfg->seed_fd, &seed_st) < 0 || !S_ISDIR(seed_st.st_mode)))
        return errf(err, errsz, "set-up failed: the seed directory %s was not opened",
                    cfg->workspace_from);
    return 0;
}

static struct cell *cell_new(const struct cell_config *cfg)
{
    struct cell *c = calloc(1, sizeof(*c));
    if (!c)
        return NULL;
    c->pidfd = c->setup_fd = c->ws_fd = c->exe_tree = c->seed_tree = c->proxy_fd = -1;
    c->slot.index = -1;
    c->slot.lock_fd = -1;
    c->cg.dir_fd = c->cg.peak_fd = -1;
    c->mode = cfg->pid1;
    c->start = monotonic_s();
    return c;
}

/* The clone itself: pid 1 in its namespaces (v2: born in its cgroup), running child_main
 * with sp[1]. Returns the pid, or -1 with errno; sp[0] becomes c->setup_fd either way. */
static long clone_cell(struct cell *c, const struct cell_config *cfg, const int sp[2], bool root,
                       bool undumpable)
{
    /* Without v2, pid 1 makes its cgroup namespace itself once it is in its v1 cgroups (or
     * knows there are none): one made at clone would be rooted at ours. */
    uint64_t nsflags = ns_clone_flags(cfg);
    if (c->cg.version != 2)
        nsflags &= ~(uint64_t)CLONE_NEWCGROUP;
    struct clone_args ca = {.flags = nsflags | CLONE_PIDFD,
                            .pidfd = (uint64_t)(uintptr_t)&c->pidfd,
                            .exit_signal = SIGCHLD};
    if (c->cg.version == 2) {
        ca.flags |= CLONE_INTO_CGROUP;
        ca.cgroup = (uint64_t)c->cg.dir_fd;
    }
    /* As root, the user namespace is created as the slot's uid: it owns it, and is charged
     * for what the cell holds of the kernel's per-user counters (namespaces.c). */
    long pid =
        root ? ns_clone3_as(&ca, c->slot.uid, c->slot.gid) : syscall(SYS_clone3, &ca, sizeof(ca));
    if (pid < 0 && c->cg.version == 2 && errno != ENOMEM && errno != EAGAIN) {
        /* The cgroup refused the cell (e.g. a v2 parent that is not delegated to us):
         * without a cgroup, the limits fall back to rlimits. */
        drop_cgroups(c);
        ca.flags &= ~((uint64_t)CLONE_INTO_CGROUP | (uint64_t)CLONE_NEWCGROUP);
        ca.cgroup = 0;
        pid = root ? ns_clone3_as(&ca, c->slot.uid, c->slot.gid)
                   : syscall(SYS_clone3, &ca, sizeof(ca));
    }
    if (pid == 0) {
        (void)close(sp[0]);
        struct cell_child ctx = {.cfg = cfg,
                                 .setup_fd = sp[1],
                                 .seed_fd = cfg->workspace_from ? cfg->seed_fd : -1,
                                 .seed_tree_fd = c->seed_tree,
                                 .exe_fd = -1,
                                 .exe_tree_fd = c->exe_tree,
                                 .root_caller = root,
                                 .cgroup_v2 = c->cg.version == 2,
                                 .undumpable_parent = !root && undumpable,
                                 .enforced = 0};
        child_main(&ctx);
    }
    int e = errno;
    (void)close(sp[1]);
    close_mounts(c); /* the child has its copies */
    c->setup_fd = sp[0];
    errno = e;
    return pid;
}

/* The parent's half of the set-up, while pid 1 builds its root: the maps, then (v1) the
 * cgroups, whose "tasks" pid 1 may then write itself (see cgroup_enter), and their janitor;
 * then "go" and the wait for "ready". */
static int parent_setup(struct cell *c, const struct cell_config *cfg, bool root, bool undumpable,
                        char *err, size_t errsz)
{
    char why[256];
    if (!root && undumpable && wait_dumpable(c, err, errsz) < 0)
        return -1;
    if (ns_write_maps(c->pid, c->slot.uid, c->slot.gid, root, why, sizeof(why)) < 0)
        return errf(err, errsz, "set-up failed at %s", why);
    if (send_go(c, "M", 1, err, errsz) < 0)
        return -1;
    if (c->cg.version == 0 && make_cgroups(c, cfg, 1) < 0)
        return errf(err, errsz, "set-up failed at cgroup janitor: %s", strerror(errno));
    if (c->cg.version == 1 && root && cgroup_grant_tasks(&c->cg, c->slot.uid, c->slot.gid) < 0)
        return errf(err, errsz, "set-up failed at cgroup tasks: %s", strerror(errno));
    struct go_msg g = {.kind = 'G', .memory = c->cg.memory, .pids = c->cg.pids};
    if (c->cg.version == 1) {
        snprintf(g.memory_path, sizeof(g.memory_path), "%s", c->cg.memory ? c->cg.path : "");
        snprintf(g.pids_path, sizeof(g.pids_path), "%s", c->cg.pids ? c->cg.pids_path : "");
    }
    if (send_go(c, (const char *)&g, sizeof(g), err, errsz) < 0)
        return -1;
    if (wait_ready(c, err, errsz) < 0)
        return -1;
    if (cfg->egress && c->proxy_fd < 0)
        return errf(err, errsz, "set-up failed at proxy socket: not received");
    return 0;
}

/* What the parent itself guarantees (pid 1 reported the rest with "ready"). */
static void mark_enforced(struct cell *c, const struct cell_config *cfg)
{
    c->enforced |= FEAT(CELL_F_USERNS) | FEAT(CELL_F_PIDNS) | FEAT(CELL_F_MOUNTNS) |
                   FEAT(CELL_F_IPCNS) | FEAT(CELL_F_UTSNS) | FEAT(CELL_F_CGROUPNS) |
                   FEAT(CELL_F_UID) | FEAT(CELL_F_SETSID) | FEAT(CELL_F_NO_NEW_PRIVS);
    if (!cfg->network_host)
        c->enforced |= FEAT(CELL_F_NETNS);
    if (cfg->seccomp)
        c->enforced |= FEAT(CELL_F_SECCOMP);
    if (cfg->limits.timeout_s > 0)
        c->enforced |= FEAT(CELL_F_TIMEOUT);
    if (c->cg.memory)
        c->enforced |= FEAT(CELL_F_MEMORY);
    if (c->cg.pids)
        c->enforced |= FEAT(CELL_F_PIDS);
}

/* A cell, in order: a slot, (v2) its cgroups, (root) the cloned mounts, the clone, the
 * parent's half of the set-up. Any failure names its step and removes everything made. */
int cell_spawn(const struct cell_config *cfg, struct cell **out, char *err, size_t errsz)
{
    *out = NULL;
    if (check_config(cfg, err, errsz) < 0)
        return -1;
    struct cell *c = cell_new(cfg);
    if (!c)
        return errf(err, errsz, "set-up failed: out of memory");
    bool root = geteuid() == 0;
    bool undumpable = prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) == 0;
    char why[256];
    if (slot_acquire(&c->slot, why, sizeof(why)) < 0) {
        errf(err, errsz, "set-up failed at %s", why);
        goto fail;
    }
    /* v2, before clone: the cell is born in its cgroup (CLONE_INTO_CGROUP, Linux 5.7). */
    if (make_cgroups(c, cfg, 2) < 0) {
        errf(err, errsz, "set-up failed at cgroup janitor: %s", strerror(errno));
        goto fail;
    }
    if (root && clone_mounts(c, cfg, err, errsz) < 0)
        goto fail;
    int sp[2];
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp) < 0) {
        errf(err, errsz, "set-up failed at socketpair: %s", strerror(errno));
        goto fail;
    }
    long pid = clone_cell(c, cfg, sp, root, undumpable);
    if (pid < 0) {
        errf(err, errsz, "set-up failed at clone: %s", strerror(errno));
        goto fail;
    }
    c->pid = (pid_t)pid;
    if (parent_setup(c, cfg, root, undumpable, err, errsz) < 0)
        goto fail;
    mark_enforced(c, cfg);
    *out = c;
    return 0;
fail:
    cell_cleanup(c);
    free(c);
    return -1;
}

int cell_pidfd(const struct cell *c)
{
    return c->pidfd;
}

int cell_workspace_fd(const struct cell *c)
{
    return c->ws_fd;
}

pid_t cell_pid(const struct cell *c)
{
    return c->pid;
}

int cell_take_proxy_fd(struct cell *c)
{
    int fd = c->proxy_fd;
    c->proxy_fd = -1;
    return fd;
}
