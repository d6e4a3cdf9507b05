/* git_patch: see git_patch.h. read-tree COMMIT, add -A (the index then holds the work
 * tree: tracked files as they are now, new files unless ignored, removals), diff --cached
 * against COMMIT. */
#include "git_patch.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cell.h"
#include "channel.h"
#include "gitcmd.h"
#include "util.h"

#define GIT_BIN "/usr/bin/git"

struct penv {
    char dir[64];
    char vars[8][4200];
    char *envp[16];
};

static void build_env(struct penv *e, const char *seed_git, const char *worktree)
{
    int n = 0;
    snprintf(e->vars[n++], sizeof(e->vars[0]), "GIT_DIR=%s", seed_git);
    snprintf(e->vars[n++], sizeof(e->vars[0]), "GIT_WORK_TREE=%s", worktree);
    snprintf(e->vars[n++], sizeof(e->vars[0]), "GIT_INDEX_FILE=%s/index", e->dir);
    snprintf(e->vars[n++], sizeof(e->vars[0]), "GIT_OBJECT_DIRECTORY=%s/objects", e->dir);
    snprintf(e->vars[n++], sizeof(e->vars[0]), "GIT_ALTERNATE_OBJECT_DIRECTORIES=%s/objects",
             seed_git);
    snprintf(e->vars[n++], sizeof(e->vars[0]), "HOME=%s", e->dir);
    int i = 0;
    for (; i < n; i++)
        e->envp[i] = e->vars[i];
    e->envp[i++] = "PATH=/usr/bin:/bin";
    e->envp[i++] = "LC_ALL=C";
    e->envp[i++] = "GIT_CONFIG_NOSYSTEM=1";
    e->envp[i++] = "GIT_CONFIG_GLOBAL=/dev/null";
    e->envp[i++] = "GIT_OPTIONAL_LOCKS=0";
    e->envp[i] = NULL;
}

static int step(struct penv *e, char *const *argv, const char *cwd, size_t max, double timeout_s,
                struct gitcmd_result *res, char *err, size_t errsz)
{
    struct gitcmd c = {.argv = argv,
                       .envp = e->envp,
                       .cwd = cwd,
                       .stdin_fd = -1,
                       .max_out = max,
                       .timeout_s = timeout_s};
    if (gitcmd_run(&c, res, err, errsz) < 0)
        return -1;
    if (res->status != 0 && !res->truncated) {
        errf(err, errsz, "git %s: %s", argv[3], res->errtail[0] ? res->errtail : "failed");
        gitcmd_result_free(res);
        return -1;
    }
    return 0;
}

static void remove_dir(const char *dir)
{
    pid_t pid = fork();
    if (pid == 0) {
        char *const argv[] = {"rm", "-rf", "--", (char *)dir, NULL};
        char *const envp[] = {"PATH=/usr/bin:/bin", NULL};
        execve("/bin/rm", argv, envp);
        _exit(127);
    }
    int st;
    if (pid > 0)
        while (waitpid(pid, &st, 0) < 0 && errno == EINTR)
            ;
}

int git_patch_compute(const char *seed_git, const char *worktree, const char *commit, size_t max,
                      double timeout_s, char **out, bool *truncated, char *err, size_t errsz)
{
    *out = NULL;
    *truncated = false;
    struct penv e;
    const char *tmp = getenv("TMPDIR");
    snprintf(e.dir, sizeof(e.dir), "%.40s/agentbox-patch-XXXXXX",
             tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (!mkdtemp(e.dir))
        return errf(err, errsz, "patch: mkdtemp: %s", strerror(errno));
    char objs[96];
    snprintf(objs, sizeof(objs), "%s/objects", e.dir);
    int rc = -1;
    struct gitcmd_result res;
    build_env(&e, seed_git, worktree);
    char *const rt[] = {GIT_BIN,     "-c",           "core.hooksPath=/dev/null",
                        "read-tree", (char *)commit, NULL};
    char *const add[] = {GIT_BIN, "-c", "core.hooksPath=/dev/null", "add", "-A", NULL};
    char *const diff[] = {GIT_BIN,
                          "-c",
                          "core.hooksPath=/dev/null",
                          "diff",
                          "--cached",
                          "--binary",
                          "--no-color",
                          "--no-ext-diff",
                          "--no-renames",
                          "--no-textconv",
                          (char *)commit,
                          NULL};
    if (mkdir(objs, 0700) < 0) {
        errf(err, errsz, "patch: mkdir: %s", strerror(errno));
        goto out;
    }
    if (step(&e, rt, worktree, 0, timeout_s, &res, err, errsz) < 0)
        goto out;
    if (step(&e, add, worktree, 0, timeout_s, &res, err, errsz) < 0)
        goto out;
    if (step(&e, diff, worktree, max, timeout_s, &res, err, errsz) < 0)
        goto out;
    *truncated = res.truncated;
    *out = res.out ? res.out : strdup("");
    rc = *out ? 0 : errf(err, errsz, "out of memory");
out:
    remove_dir(e.dir);
    return rc;
}

int git_patch_send(int chan, const char *commit)
{
    char err[ERR_MSG_MAX] = "";
    cleanup_free char *patch = NULL;
    bool truncated = false;
    int rc = git_patch_compute(CELL_SEED_DIR "/.git", CELL_WORKSPACE, commit, GIT_PATCH_MAX_BYTES,
                               120.0, &patch, &truncated, err, sizeof(err));
    cJSON *h = cJSON_CreateObject();
    if (!h)
        return -1;
    cJSON_AddBoolToObject(h, "truncated", truncated);
    if (rc < 0)
        cJSON_AddStringToObject(h, "error", err);
    return channel_send_kind(chan, CH_PATCH, h, patch, patch ? strlen(patch) : 0);
}
