/* gitcmd: see gitcmd.h. The child drops privileges in the fixed order (groups, gid, uid)
 * and checks each step: a child that could not become the requester never runs. */
#include "gitcmd.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

static void drop_or_die(bool drop, uid_t uid, gid_t gid)
{
    if (!drop)
        return;
    if (setgroups(0, NULL) < 0 || setresgid(gid, gid, gid) < 0 || setresuid(uid, uid, uid) < 0)
        _exit(126);
    if (getuid() != uid || geteuid() != uid || getegid() != gid)
        _exit(126);
}

static void child(const struct gitcmd *c, int outw, int errw)
{
    if (c->cwd && chdir(c->cwd) < 0)
        _exit(126);
    drop_or_die(c->drop, c->uid, c->gid);
    umask(022);
    int null = open("/dev/null", O_RDWR);
    int in = c->stdin_fd >= 0 ? c->stdin_fd : null;
    if (null < 0 || dup2(in, 0) < 0 || dup2(outw >= 0 ? outw : null, 1) < 0 || dup2(errw, 2) < 0)
        _exit(126);
    if (close_range(3, ~0U, 0) != 0)
        for (int fd = 3; fd < 1024; fd++)
            (void)close(fd);
    struct sigaction sa = {.sa_handler = SIG_DFL};
    (void)sigaction(SIGPIPE, &sa, NULL);
    execve(c->argv[0], c->argv, c->envp);
    _exit(127);
}

static void keep_tail(struct gitcmd_result *res, size_t *elen, const char *buf, size_t n)
{
    size_t cap = sizeof(res->errtail) - 1;
    if (n >= cap) {
        memcpy(res->errtail, buf + n - cap, cap);
        *elen = cap;
        return;
    }
    if (*elen + n > cap) {
        size_t drop = *elen + n - cap;
        memmove(res->errtail, res->errtail + drop, *elen - drop);
        *elen -= drop;
    }
    memcpy(res->errtail + *elen, buf, n);
    *elen += n;
}

/* Reads both pipes until EOF, the cap or the deadline; returns true when the child must be
 * killed. */
static bool pump(const struct gitcmd *c, struct gitcmd_result *res, int outr, int errr)
{
    double deadline = monotonic_s() + (c->timeout_s > 0 ? c->timeout_s : 600.0);
    size_t elen = 0;
    bool kill_it = false;
    while (outr >= 0 || errr >= 0) {
        int left = (int)((deadline - monotonic_s()) * 1000);
        if (left <= 0) {
            res->status = -1;
            kill_it = true;
            break;
        }
        struct pollfd p[2] = {{.fd = outr, .events = POLLIN}, {.fd = errr, .events = POLLIN}};
        int pr = poll(p, 2, left);
        if (pr < 0 && errno != EINTR)
            break;
        char buf[8192];
        if (outr >= 0 && p[0].revents) {
            size_t room = c->max_out - res->outlen;
            ssize_t n = read(outr, res->out + res->outlen, room ? room : 1);
            if (n > 0 && !room) {
                res->truncated = kill_it = true;
                break;
            }
            if (n > 0)
                res->outlen += (size_t)n;
            else if (n == 0 || errno != EINTR)
                outr = -1;
        }
        if (errr >= 0 && p[1].revents) {
            ssize_t n = read(errr, buf, sizeof(buf));
            if (n > 0)
                keep_tail(res, &elen, buf, (size_t)n);
            else if (n == 0 || errno != EINTR)
                errr = -1;
        }
    }
    while (elen && (res->errtail[elen - 1] == '\n' || res->errtail[elen - 1] == ' '))
        elen--;
    res->errtail[elen] = '\0';
    return kill_it;
}

int gitcmd_run(const struct gitcmd *c, struct gitcmd_result *res, char *err, size_t errsz)
{
    memset(res, 0, sizeof(*res));
    int op[2] = {-1, -1}, ep[2] = {-1, -1};
    if (c->max_out && !(res->out = malloc(c->max_out + 1)))
        return errf(err, errsz, "out of memory");
    if ((c->max_out && pipe2(op, O_CLOEXEC) < 0) || pipe2(ep, O_CLOEXEC) < 0) {
        int e = errno;
        if (op[0] >= 0)
            (void)close(op[0]), (void)close(op[1]);
        gitcmd_result_free(res);
        return errf(err, errsz, "pipe: %s", strerror(e));
    }
    pid_t pid = fork();
    if (pid == 0)
        child(c, op[1], ep[1]);
    int e = errno;
    if (op[1] >= 0)
        (void)close(op[1]);
    (void)close(ep[1]);
    if (pid < 0) {
        if (op[0] >= 0)
            (void)close(op[0]);
        (void)close(ep[0]);
        gitcmd_result_free(res);
        return errf(err, errsz, "fork: %s", strerror(e));
    }
    bool kill_it = pump(c, res, op[0], ep[0]);
    if (kill_it)
        (void)kill(pid, SIGKILL);
    if (op[0] >= 0)
        (void)close(op[0]);
    (void)close(ep[0]);
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    if (res->status != -1)
        res->status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    if (res->out)
        res->out[res->outlen] = '\0';
    return 0;
}

void gitcmd_result_free(struct gitcmd_result *res)
{
    free(res->out);
    res->out = NULL;
    res->outlen = 0;
}

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (flag == FTW_DP || flag == FTW_D)
        return rmdir(path) < 0 && errno != ENOENT ? 1 : 0;
    return unlink(path) < 0 && errno != ENOENT ? 1 : 0;
}

int gitcmd_remove_tree(const char *path, bool drop, uid_t uid, gid_t gid)
{
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        drop_or_die(drop, uid, gid);
        _exit(nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS) == 0 ? 0 : 1);
    }
    int st = 0;
    while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
        ;
    return WIFEXITED(st) && WEXITSTATUS(st) == 0 ? 0 : -1;
}
