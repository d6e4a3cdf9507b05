/* git_workspace: see git_workspace.h. Every git command runs with a fixed environment (no
 * system or global configuration, no hooks, the file transport only, no prompts) and a
 * timeout; its stderr tail goes into the error when it fails. */
#include "git_workspace.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gitcmd.h"
#include "json.h"
#include "util.h"

#define GIT_BIN       "/usr/bin/git"
#define GIT_TIMEOUT_S 600.0
#define GIT_REPO_MAX  4096

static char *const git_env[] = {
    "PATH=/usr/bin:/bin",      "HOME=/nonexistent",           "LC_ALL=C",
    "GIT_CONFIG_NOSYSTEM=1",   "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
    "GIT_ALLOW_PROTOCOL=file", "GIT_PROTOCOL_FROM_USER=0",    NULL};

static bool is_remote(const char *repo)
{
    if (strncmp(repo, "file://", 7) == 0)
        return false;
    if (strstr(repo, "://") || strncmp(repo, "ext::", 5) == 0 || strncmp(repo, "fd::", 4) == 0)
        return true;
    /* scp-like "host:path": a ':' before the first '/' */
    const char *colon = strchr(repo, ':'), *slash = strchr(repo, '/');
    return colon && (!slash || colon < slash);
}

static bool rev_is_sane(const char *rev)
{
    size_t n = strlen(rev);
    if (n == 0 || n > GIT_WS_REV_MAX || rev[0] == '-')
        return false;
    for (const char *p = rev; *p; p++)
        if ((unsigned char)*p <= ' ' || *p == 0x7f)
            return false;
    return true;
}

static int check_repo(const char *repo, const char *ctx, char **out, char *err, size_t errsz)
{
    if (!repo[0] || strlen(repo) > GIT_REPO_MAX || repo[0] == '-')
        return errf(err, errsz, "%s.repo: expected a local repository path or file:// URL", ctx);
    if (is_remote(repo))
        return errf(err, errsz,
                    "%s.repo: %s: a remote repository needs network egress, which this task "
                    "does not have; clone it locally and give its path",
                    ctx, repo);
    if (repo[0] == '/' || strncmp(repo, "file://", 7) == 0) {
        *out = strdup(repo);
    } else {
        char cwd[PATH_MAX];
        if (!getcwd(cwd, sizeof(cwd)))
            return errf(err, errsz, "%s.repo: %s: %s", ctx, repo, strerror(errno));
        if (asprintf(out, "%s/%s", cwd, repo) < 0)
            *out = NULL;
    }
    return *out ? 0 : errf(err, errsz, "out of memory");
}

static int make_spec(const char *repo, const char *rev, const char *ctx, struct git_ws_spec **out,
                     char *err, size_t errsz)
{
    if (!rev_is_sane(rev))
        return errf(err, errsz,
                    "%s.rev: expected a commit, branch or tag (no spaces, not starting with "
                    "'-')",
                    ctx);
    struct git_ws_spec *s = calloc(1, sizeof(*s));
    if (!s)
        return errf(err, errsz, "out of memory");
    if (check_repo(repo, ctx, &s->repo, err, errsz) < 0 || !(s->rev = strdup(rev))) {
        if (s->repo && !s->rev)
            errf(err, errsz, "out of memory");
        git_ws_spec_free(s);
        return -1;
    }
    *out = s;
    return 0;
}

int git_ws_spec_parse(const cJSON *git, const char *ctx, struct git_ws_spec **out, char *err,
                      size_t errsz)
{
    *out = NULL;
    if (!cJSON_IsObject(git))
        return errf(err, errsz, "%s: expected an object {\"repo\": PATH, \"rev\": REV}", ctx);
    static const char *const keys[] = {"repo", "rev", NULL};
    if (json_check_keys(git, ctx, keys, err, errsz) < 0)
        return -1;
    const char *repo = NULL, *rev = NULL;
    if (json_get_string(git, ctx, "repo", &repo, err, errsz) < 0 ||
        json_get_string(git, ctx, "rev", &rev, err, errsz) < 0)
        return -1;
    if (!repo)
        return errf(err, errsz, "%s.repo: required", ctx);
    return make_spec(repo, rev ? rev : "HEAD", ctx, out, err, errsz);
}

int git_ws_spec_from_arg(const char *arg, struct git_ws_spec **out, char *err, size_t errsz)
{
    *out = NULL;
    cleanup_free char *copy = strdup(arg);
    if (!copy)
        return errf(err, errsz, "out of memory");
    char *at = strrchr(copy, '@');
    /* an '@' inside the path part ("/srv/a@b/repo") is not the separator */
    if (at && strchr(at, '/'))
        at = NULL;
    const char *rev = "HEAD";
    if (at) {
        *at = '\0';
        rev = at + 1;
    }
    return make_spec(copy, rev, "--git", out, err, errsz);
}

void git_ws_spec_free(struct git_ws_spec *s)
{
    if (!s)
        return;
    free(s->repo);
    free(s->rev);
    free(s);
}

cJSON *git_ws_spec_json(const struct git_ws_spec *s)
{
    cJSON *j = cJSON_CreateObject();
    if (j) {
        cJSON_AddStringToObject(j, "repo", s->repo);
        cJSON_AddStringToObject(j, "rev", s->rev);
    }
    return j;
}

static int run_git(struct git_ws *w, char *const *argv, const char *cwd, size_t max_out,
                   struct gitcmd_result *res, char *err, size_t errsz)
{
    struct gitcmd c = {.argv = argv,
                       .envp = git_env,
                       .cwd = cwd,
                       .drop = w->drop,
                       .uid = w->uid,
                       .gid = w->gid,
                       .stdin_fd = -1,
                       .max_out = max_out,
                       .timeout_s = GIT_TIMEOUT_S};
    return gitcmd_run(&c, res, err, errsz);
}

static int make_dirs(struct git_ws *w, char *err, size_t errsz)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(w->top, sizeof(w->top), "%s/agentbox-git-XXXXXX", tmp && tmp[0] == '/' ? tmp : "/tmp");
    if (!mkdtemp(w->top)) {
        w->top[0] = '\0';
        return errf(err, errsz, "cannot create a temporary directory: %s", strerror(errno));
    }
    /* 0711: the requester's git reaches its work tree below it, nobody can list it */
    snprintf(w->tree, sizeof(w->tree), "%s/ws", w->top);
    if (chmod(w->top, 0711) < 0 || mkdir(w->tree, 0755) < 0 ||
        (w->drop && chown(w->tree, w->uid, w->gid) < 0))
        return errf(err, errsz, "cannot prepare %s: %s", w->tree, strerror(errno));
    return 0;
}

static int clone_and_checkout(const struct git_ws_spec *s, const char *ctx, struct git_ws *w,
                              char *err, size_t errsz)
{
    char gerr[ERR_MSG_MAX];
    struct gitcmd_result res;
    char *const clone[] = {GIT_BIN,
                           "-c",
                           "core.hooksPath=/dev/null",
                           "clone",
                           "--quiet",
                           "--no-hardlinks",
                           "--no-checkout",
                           "--",
                           s->repo,
                           ".",
                           NULL};
    if (run_git(w, clone, w->tree, 0, &res, gerr, sizeof(gerr)) < 0)
        return errf(err, errsz, "%s: git clone: %s", ctx, gerr);
    if (res.status != 0)
        return errf(err, errsz, "%s.repo: %s: not a git repository the requester can read (%s)",
                    ctx, s->repo, res.errtail[0] ? res.errtail : "git clone failed");
    /* REV as given, else a branch of the repository (the clone has it as origin/REV) */
    bool ok = false;
    for (int attempt = 0; attempt < 2 && !ok; attempt++) {
        char spec[GIT_WS_REV_MAX + 32];
        snprintf(spec, sizeof(spec), "%s%s^{commit}", attempt ? "refs/remotes/origin/" : "",
                 s->rev);
        char *const parse[] = {GIT_BIN, "rev-parse", "--verify", "--quiet", "--end-of-options",
                               spec,    NULL};
        if (run_git(w, parse, w->tree, 128, &res, gerr, sizeof(gerr)) < 0)
            return errf(err, errsz, "%s: git rev-parse: %s", ctx, gerr);
        size_t n = res.out ? strcspn(res.out, "\n") : 0;
        ok = res.status == 0 && (n == 40 || n == 64);
        if (ok)
            snprintf(w->commit, sizeof(w->commit), "%.*s", (int)n, res.out);
        gitcmd_result_free(&res);
    }
    if (!ok)
        return errf(err, errsz, "%s.rev: %s: no such commit in %s", ctx, s->rev, s->repo);
    char *const co[] = {GIT_BIN,    "-c",      "core.hooksPath=/dev/null",
                        "checkout", "--quiet", "--detach",
                        w->commit,  NULL};
    if (run_git(w, co, w->tree, 0, &res, gerr, sizeof(gerr)) < 0)
        return errf(err, errsz, "%s: git checkout: %s", ctx, gerr);
    if (res.status != 0)
        return errf(err, errsz, "%s: git checkout %s failed: %s", ctx, w->commit, res.errtail);
    return 0;
}

int git_ws_prepare(const struct git_ws_spec *s, const char *ctx, bool drop, uid_t uid, gid_t gid,
                   struct git_ws *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    double t0 = monotonic_s();
    out->drop = drop;
    out->uid = uid;
    out->gid = gid;
    if (access(GIT_BIN, X_OK) < 0)
        return errf(err, errsz, "%s: git is not installed (%s)", ctx, GIT_BIN);
    if (make_dirs(out, err, errsz) < 0 || clone_and_checkout(s, ctx, out, err, errsz) < 0) {
        git_ws_cleanup(out);
        return -1;
    }
    out->prepare_s = monotonic_s() - t0;
    return 0;
}

void git_ws_cleanup(struct git_ws *w)
{
    if (!w->top[0])
        return;
    struct stat st;
    if (lstat(w->tree, &st) == 0)
        (void)gitcmd_remove_tree(w->tree, w->drop, w->uid, w->gid);
    (void)rmdir(w->tree); /* a tree the requester could not remove (a 0500 dir) stays */
    (void)rmdir(w->top);
    w->top[0] = '\0';
}
