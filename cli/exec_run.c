/* exec_run: see exec_run.h. */
#include "exec_run.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

int exec_run_prepare(struct exec_run *r, const struct exec_options *o, struct policy *pol,
                     char *err, size_t errsz)
{
    memset(r, 0, sizeof(*r));
    r->ws_fd = r->seed_fd = -1;
    r->tty.master = r->tty.slave = -1;
    r->x = o->x;
    r->argv = o->argv;
    if (!r->x)
        return 0;
    if (exec_extra_check(r->x, err, errsz) < 0)
        return -1;
    if (r->x->git && o->workspace_from)
        return errf(err, errsz, "--git and --workspace-from exclude each other");
    if (r->x->git && git_ws_spec_from_arg(r->x->git, &r->gspec, err, errsz) < 0)
        return -1;
    if (exec_extra_binds(r->x, pol, err, errsz) < 0)
        return -1;
    r->envp = exec_extra_envp(r->x);
    if (r->x->nenv && !r->envp)
        return errf(err, errsz, "out of memory");
    r->argv = exec_extra_argv(r->x, o->argv);
    if (!r->argv)
        return errf(err, errsz, "out of memory");
    return 0;
}

int exec_run_start(struct exec_run *r, struct cell_config *cfg, char *err, size_t errsz)
{
    if (r->gspec) {
        if (git_ws_prepare(r->gspec, "--git", false, getuid(), getgid(), &r->git, err, errsz) < 0)
            return -1;
        r->seed = r->git.tree;
        r->seed_fd = open(r->seed, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (r->seed_fd < 0)
            return errf(err, errsz, "--git: %s: %s", r->seed, strerror(errno));
        cfg->workspace_from = r->seed;
        cfg->seed_fd = r->seed_fd;
    }
    if (r->x && r->x->tty) {
        if (exec_tty_open(&r->tty, err, errsz) < 0)
            return -1;
        r->tty_on = true;
        cfg->stdio_passthrough = false;
        cfg->stdin_set = true;
        cfg->stdin_fd = cfg->stdout_fd = cfg->stderr_fd = r->tty.slave;
    }
    return 0;
}

void exec_run_keep_workspace(struct exec_run *r, const struct cell *c)
{
    if (r->x && r->x->noutputs && cell_workspace_fd(c) >= 0)
        r->ws_fd = fcntl(cell_workspace_fd(c), F_DUPFD_CLOEXEC, 0);
}

int exec_run_finish(struct exec_run *r, bool ran)
{
    int rc = 0;
    if (r->tty_on)
        exec_tty_close(&r->tty);
    r->tty_on = false;
    if (ran && r->x && r->x->noutputs) {
        char err[ERR_MSG_MAX];
        if (exec_extra_collect(r->x, r->ws_fd, err, sizeof(err)) < 0) {
            fprintf(stderr, "agentbox: %s\n", err);
            rc = -1;
        }
    }
    if (r->ws_fd >= 0)
        (void)close(r->ws_fd);
    if (r->seed_fd >= 0)
        (void)close(r->seed_fd);
    r->ws_fd = r->seed_fd = -1;
    git_ws_cleanup(&r->git);
    git_ws_spec_free(r->gspec);
    r->gspec = NULL;
    if (r->x)
        exec_extra_free(r->x);
    return rc;
}
