/* cell_steps: the small steps of a cell's set-up that need nothing of cell.c's own (the list
 * itself, child_steps, is in cell.c). Child side: between clone and exec, no malloc; each
 * returns 0, or -1 with errno set. */
#include "cell_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "util.h"

/* Start from a clean signal state: the caller may block or ignore signals (a supervisor
 * ignores SIGPIPE, exec blocks SIGINT/SIGTERM for its signalfd), and an ignored or blocked
 * signal survives exec into the command. */
int reset_signals(struct cell_child *ctx)
{
    (void)ctx;
    sigset_t none;
    sigemptyset(&none);
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    for (int sig = 1; sig < NSIG; sig++)
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    return sigprocmask(SIG_SETMASK, &none, NULL);
}

/* A supervisor that dies takes its cells along. Set before waiting for the maps: if the
 * parent died before this, the read of the maps' go sees EOF instead (the usual race). */
int parent_death_signal(struct cell_child *ctx)
{
    (void)ctx;
    return prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0);
}

int open_agent_binary(struct cell_child *ctx)
{
    if (ctx->cfg->pid1 != CELL_PID1_AGENT || ctx->exe_tree_fd >= 0)
        return 0;
    ctx->exe_fd = open(self_exe_path(), O_PATH | O_CLOEXEC);
    return ctx->exe_fd < 0 ? -1 : 0;
}

/* Changing uid cleared the parent-death signal (commit_creds): arm it again, then make sure
 * the parent did not die in between (its end of the socket would be closed). */
int parent_death_signal_again(struct cell_child *ctx)
{
    struct pollfd alive = {.fd = ctx->setup_fd, .events = POLLIN};
    if (prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0 || poll(&alive, 1, 0) < 0)
        return -1;
    if (alive.revents & (POLLHUP | POLLERR)) {
        errno = EPIPE;
        return -1;
    }
    return 0;
}

/* A new session has no controlling terminal: no TIOCSTI into the caller's (CVE-2017-5226). */
int new_session(struct cell_child *ctx)
{
    (void)ctx;
    return setsid() < 0 ? -1 : 0;
}

int apply_limits(struct cell_child *ctx)
{
    return limits_apply(ctx, ctx->cg_memory, ctx->cg_pids) ? -1 : 0;
}

int no_new_privs(struct cell_child *ctx)
{
    (void)ctx;
    return prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
}

/* The command's pid 1 must not be readable or writable through /proc by the command it runs
 * (same uid); an exec'd agent sets this itself, as exec resets it. */
int init_undumpable(struct cell_child *ctx)
{
    return ctx->cfg->pid1 == CELL_PID1_COMMAND ? prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) : 0;
}

int load_seccomp(struct cell_child *ctx)
{
    const struct cell_config *cfg = ctx->cfg;
    return cfg->seccomp ? prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, cfg->seccomp, 0, 0) : 0;
}
