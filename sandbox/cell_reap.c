/* cell_reap: the end of a cell's life, on the parent's side: kill, time out, reap through the
 * pidfd, the record (exit status from pid 1's report when it is well-formed, else from
 * waitid; disk, memory peak and OOM from the workspace and the cgroups), and cell_run, spawn
 * and wait in one call. Never trusts what pid 1 sent after "ready": every message is checked. */
#include "cell_internal.h"

#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

int cell_kill(struct cell *c)
{
    if (c->reaped || c->pidfd < 0)
        return 0;
    if (syscall(SYS_pidfd_send_signal, c->pidfd, SIGKILL, NULL, 0) < 0 && errno != ESRCH)
        return -1;
    return 0;
}

int cell_timeout(struct cell *c)
{
    c->timed_out = true;
    return cell_kill(c);
}

/* Messages pid 1 and the command's child sent after "ready"; untrusted, so checked. */
static void drain(struct cell *c, int *exec_errno, int *status, bool *have_status)
{
    struct setup_msg m;
    while (cell_recv_msg(c->setup_fd, &m, NULL) == 1) {
        if (m.kind == MSG_EXEC && m.err > 0 && m.err < 4096)
            *exec_errno = m.err;
        else if (m.kind == MSG_STATUS && c->mode == CELL_PID1_COMMAND &&
                 ((WIFEXITED(m.value)) || (WIFSIGNALED(m.value) && WTERMSIG(m.value) < 65))) {
            *status = m.value;
            *have_status = true;
        }
    }
}

int cell_reap(struct cell *c, struct cell_record *rec)
{
    memset(rec, 0, sizeof(*rec));
    rec->slot = c->slot.index;
    siginfo_t si;
    struct rusage ru;
    memset(&si, 0, sizeof(si));
    memset(&ru, 0, sizeof(ru));
    long r;
    do
        r = syscall(SYS_waitid, P_PIDFD, c->pidfd, &si, WEXITED, &ru);
    while (r < 0 && errno == EINTR);
    if (r < 0)
        return -1;
    c->reaped = true;
    rec->wall_s = monotonic_s() - c->start;
    rec->cpu_s = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 +
                 (double)ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    rec->max_rss_kb = ru.ru_maxrss > 0 ? (uint64_t)ru.ru_maxrss : 0;

    int exec_errno = 0, st = 0;
    bool have_status = false;
    drain(c, &exec_errno, &st, &have_status);
    rec->exec_errno = exec_errno;
    if (have_status && WIFEXITED(st)) {
        rec->status = CELL_EXITED;
        rec->has_exit_code = true;
        rec->exit_code = WEXITSTATUS(st);
    } else if (have_status) {
        rec->status = CELL_SIGNALED;
        rec->signal = WTERMSIG(st);
    } else if (si.si_code == CLD_EXITED) {
        rec->status = CELL_EXITED;
        rec->has_exit_code = true;
        rec->exit_code = si.si_status;
    } else {
        rec->status = CELL_SIGNALED;
        rec->signal = si.si_status;
    }

    struct statfs sf;
    if (c->ws_fd >= 0 && fstatfs(c->ws_fd, &sf) == 0) {
        rec->disk_bytes = (uint64_t)(sf.f_blocks - sf.f_bfree) * (uint64_t)sf.f_bsize;
        rec->disk_inodes = (uint64_t)(sf.f_files - sf.f_ffree);
    }
    uint64_t peak_kb;
    bool oom;
    cgroup_stats(&c->cg, &peak_kb, &oom);
    if (peak_kb > rec->max_rss_kb)
        rec->max_rss_kb = peak_kb;
    if (c->timed_out) {
        rec->status = CELL_TIMEOUT;
        rec->has_exit_code = false;
        rec->signal = 0;
    } else if (oom)
        rec->status = CELL_MEMORY;
    rec->enforced = c->enforced;
    rec->unavailable = c->unavailable;
    rec->workspace_seed = c->seed_mode;
    rec->cgroup = c->cg.version == 2 ? "v2" : c->cg.version == 1 ? "v1" : NULL;
    rec->landlock_abi = c->landlock_abi;
    cell_cleanup(c);
    return 0;
}

int cell_run(const struct cell_config *cfg, struct cell_record *rec, char *err, size_t errsz)
{
    struct cell *c;
    if (cell_spawn(cfg, &c, err, errsz) < 0) {
        memset(rec, 0, sizeof(*rec));
        rec->status = CELL_SETUP_ERROR;
        rec->slot = -1;
        return -1;
    }
    double deadline = cfg->limits.timeout_s > 0 ? monotonic_s() + cfg->limits.timeout_s : 0;
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - monotonic_s();
            ms = left <= 0 ? 0 : (int)(left * 1000) + 1;
        }
        struct pollfd pfd = {.fd = cell_pidfd(c), .events = POLLIN};
        int r = poll(&pfd, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r > 0)
            break;
        if (r < 0 || (deadline > 0 && monotonic_s() >= deadline)) {
            (void)cell_timeout(c);
            break;
        }
    }
    int r = cell_reap(c, rec);
    cell_free(c);
    if (r < 0)
        return errf(err, errsz, "reap: %s", strerror(errno));
    return 0;
}

void cell_free(struct cell *c)
{
    if (!c)
        return;
    cell_cleanup(c);
    free(c);
}
