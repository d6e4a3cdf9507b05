/* exec_opts: see exec_opts.h. The outputs are read after the cell is gone, through the
 * workspace descriptor the cell handed over at set-up: nothing can change them while they
 * are copied, and a symlink in the workspace is never followed. */
#include "exec_opts.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cell.h"
#include "util.h"
#include "workspace_diff.h"

#define EXEC_OUTPUT_MAX_BYTES (1ull << 30)
#define EXEC_OUTPUT_MAX_FILES 10000
#define EXEC_ENV_FILE_MAX     (1u << 20)

static struct exec_extra the_extra;

struct exec_extra *exec_extra_reset(void)
{
    exec_extra_free(&the_extra);
    return &the_extra;
}

static bool env_name_ok(const char *s, size_t n)
{
    if (n == 0 || n > 255 ||
        !((s[0] >= 'A' && s[0] <= 'Z') || (s[0] >= 'a' && s[0] <= 'z') || s[0] == '_'))
        return false;
    for (size_t i = 1; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

/* "K=V", or "K" (the caller's value of K, which must be set). */
static int add_env(struct exec_extra *x, const char *kv, const char *what, char *err, size_t errsz)
{
    const char *eq = strchr(kv, '=');
    size_t n = eq ? (size_t)(eq - kv) : strlen(kv);
    if (!env_name_ok(kv, n))
        return errf(err, errsz, "%s: '%.60s': expected NAME=VALUE or NAME", what, kv);
    if (n == strlen("OPENROUTER_API_KEY") && strncmp(kv, "OPENROUTER_API_KEY", n) == 0)
        return errf(err, errsz, "%s: OPENROUTER_API_KEY never goes into a cell", what);
    char *item = NULL;
    if (eq) {
        item = strdup(kv);
    } else {
        const char *v = getenv(kv);
        if (!v)
            return errf(err, errsz, "%s: %s is not set in this environment", what, kv);
        if (asprintf(&item, "%s=%s", kv, v) < 0)
            item = NULL;
    }
    if (!item)
        return errf(err, errsz, "out of memory");
    for (size_t i = 0; i < x->nenv; i++) /* the last one named wins */
        if (strncmp(x->env[i], item, n + 1) == 0) {
            free(x->env[i]);
            x->env[i] = item;
            return 0;
        }
    if (x->nenv >= EXEC_ENV_MAX) {
        free(item);
        return errf(err, errsz, "%s: at most %d variables", what, EXEC_ENV_MAX);
    }
    x->env[x->nenv++] = item;
    return 0;
}

static int env_file(struct exec_extra *x, const char *path, char *err, size_t errsz)
{
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (read_file(path, EXEC_ENV_FILE_MAX, &text, &len) < 0)
        return errf(err, errsz, "--env-file %s: %s", path, strerror(errno));
    int line = 0;
    for (char *p = text, *next; p && *p; p = next) {
        line++;
        next = strchr(p, '\n');
        if (next)
            *next++ = '\0';
        while (*p == ' ' || *p == '\t')
            p++;
        size_t n = strlen(p);
        if (n && p[n - 1] == '\r')
            p[--n] = '\0';
        if (!*p || *p == '#')
            continue;
        if (strncmp(p, "export ", 7) == 0)
            p += 7;
        char what[PATH_MAX + 32];
        snprintf(what, sizeof(what), "--env-file %s:%d", path, line);
        if (add_env(x, p, what, err, errsz) < 0)
            return -1;
    }
    return 0;
}

static bool cell_path_ok(const char *p)
{
    if (p[0] != '/' || strlen(p) >= PATH_MAX / 2 || strstr(p, "/../") || strstr(p, "/./") ||
        strcmp(p, "/") == 0)
        return false;
    size_t n = strlen(p);
    if (n >= 3 && strcmp(p + n - 3, "/..") == 0)
        return false;
    static const char *const reserved[] = {"/proc",         "/dev",       "/sys",
                                           "/run/agentbox", "/workspace", "/tmp"};
    for (size_t i = 0; i < ARRAY_SIZE(reserved); i++) {
        size_t r = strlen(reserved[i]);
        if (strncmp(p, reserved[i], r) == 0 && (p[r] == '\0' || p[r] == '/'))
            return false;
    }
    return true;
}

static int add_bind(struct exec_extra *x, const char *v, char *err, size_t errsz)
{
    if (x->nbinds >= EXEC_BINDS_MAX)
        return errf(err, errsz, "--ro-bind: at most %d", EXEC_BINDS_MAX);
    cleanup_free char *src = strdup(v);
    if (!src)
        return errf(err, errsz, "out of memory");
    char *colon = strchr(src, ':');
    const char *dst = NULL;
    if (colon) {
        *colon = '\0';
        dst = colon + 1;
    }
    char real[PATH_MAX];
    if (!realpath(src, real))
        return errf(err, errsz, "--ro-bind %s: %s", src, strerror(errno));
    if (strncmp(real, "/tmp/", 5) == 0 || strcmp(real, "/tmp") == 0)
        return errf(err, errsz,
                    "--ro-bind %s: a source below /tmp cannot be bound (the cell's root is "
                    "built there); use another directory, e.g. below /var/tmp",
                    src);
    if (!dst)
        dst = real;
    if (!cell_path_ok(dst))
        return errf(err, errsz,
                    "--ro-bind %s: the destination must be an absolute path outside /proc, "
                    "/dev, /sys, /tmp, /workspace and /run/agentbox",
                    dst);
    x->bind_src[x->nbinds] = strdup(real);
    x->bind_dst[x->nbinds] = strdup(dst);
    if (!x->bind_src[x->nbinds] || !x->bind_dst[x->nbinds]) {
        free(x->bind_src[x->nbinds]);
        free(x->bind_dst[x->nbinds]);
        return errf(err, errsz, "out of memory");
    }
    x->nbinds++;
    return 0;
}

int exec_extra_option(int argc, char **argv, int *i, struct exec_extra *x, char *err, size_t errsz)
{
    static const char *const names[] = {"--env",    "--env-file",   "--workdir", "--ro-bind",
                                        "--output", "--output-dir", "--git"};
    const char *a = argv[*i];
    if (strcmp(a, "-t") == 0 || strcmp(a, "--tty") == 0) {
        x->tty = true;
        return 1;
    }
    const char *name = NULL;
    for (size_t k = 0; k < ARRAY_SIZE(names); k++) {
        size_t n = strlen(names[k]);
        if (strncmp(a, names[k], n) == 0 && (a[n] == '\0' || a[n] == '='))
            name = names[k];
    }
    if (!name)
        return 0;
    const char *v = a[strlen(name)] == '=' ? a + strlen(name) + 1 : NULL;
    if (!v) {
        if (*i + 1 >= argc)
            return errf(err, errsz, "%s needs a value", name);
        v = argv[++*i];
    }
    if (!*v)
        return errf(err, errsz, "%s: empty value", name);
    int rc = 0;
    if (strcmp(name, "--env") == 0)
        rc = add_env(x, v, "--env", err, errsz);
    else if (strcmp(name, "--env-file") == 0)
        rc = env_file(x, v, err, errsz);
    else if (strcmp(name, "--workdir") == 0) {
        if (v[0] != '/' && strncmp(v, "..", 2) == 0)
            return errf(err, errsz, "--workdir: a path in the cell (relative to /workspace)");
        x->workdir = v;
    } else if (strcmp(name, "--ro-bind") == 0)
        rc = add_bind(x, v, err, errsz);
    else if (strcmp(name, "--output") == 0) {
        if (wsdiff_pattern_check(v, err, errsz) < 0)
            return -1;
        if (x->noutputs >= EXEC_OUTPUTS_MAX)
            return errf(err, errsz, "--output: at most %d patterns", EXEC_OUTPUTS_MAX);
        x->outputs[x->noutputs++] = v;
    } else if (strcmp(name, "--output-dir") == 0)
        x->output_dir = v;
    else
        x->git = v;
    return rc < 0 ? -1 : 1;
}

int exec_extra_check(const struct exec_extra *x, char *err, size_t errsz)
{
    if (x->noutputs && !x->output_dir)
        return errf(err, errsz, "--output needs --output-dir DIR (where the files go)");
    if (x->output_dir && !x->noutputs)
        return errf(err, errsz, "--output-dir without --output GLOB");
    if (x->output_dir) {
        struct stat st;
        if (stat(x->output_dir, &st) < 0 || !S_ISDIR(st.st_mode))
            return errf(err, errsz, "--output-dir %s: %s", x->output_dir,
                        errno && !S_ISDIR(st.st_mode) ? strerror(errno) : "not a directory");
        if (access(x->output_dir, W_OK | X_OK) < 0)
            return errf(err, errsz, "--output-dir %s: %s", x->output_dir, strerror(errno));
    }
    return 0;
}

char *const *exec_extra_envp(struct exec_extra *x)
{
    if (!x->nenv)
        return NULL;
    char *const *base = cell_default_env();
    size_t nb = 0;
    while (base[nb])
        nb++;
    x->envp = calloc(nb + x->nenv + 1, sizeof(char *));
    if (!x->envp)
        return NULL;
    size_t n = 0;
    for (size_t i = 0; i < nb; i++) {
        size_t k = strcspn(base[i], "=");
        bool named = false;
        for (size_t j = 0; j < x->nenv; j++)
            named |= strncmp(x->env[j], base[i], k + 1) == 0;
        if (!named)
            x->envp[n++] = base[i];
    }
    for (size_t j = 0; j < x->nenv; j++)
        x->envp[n++] = x->env[j];
    return x->envp;
}

char **exec_extra_argv(struct exec_extra *x, char **argv)
{
    if (!x->workdir && !x->tty)
        return argv;
    size_t n = 0;
    while (argv[n])
        n++;
    x->wrapped = calloc(n + 8, sizeof(char *));
    if (!x->wrapped)
        return NULL;
    size_t k = 0;
    if (x->tty) { /* a session of its own with the terminal as its controlling tty */
        x->wrapped[k++] = "/usr/bin/setsid";
        x->wrapped[k++] = "--ctty";
    }
    if (x->workdir) { /* exit 125 when the directory is missing, like exec's own failures */
        x->wrapped[k++] = "/usr/bin/env";
        x->wrapped[k++] = "-C";
        x->wrapped[k++] = (char *)x->workdir;
        x->wrapped[k++] = "--";
    }
    for (size_t i = 0; i < n; i++)
        x->wrapped[k++] = argv[i];
    x->wrapped[k] = NULL;
    return x->wrapped;
}

int exec_extra_binds(const struct exec_extra *x, struct policy *pol, char *err, size_t errsz)
{
    if (!x->nbinds)
        return 0;
    struct policy_bind *b = realloc(pol->binds, (pol->nbinds + x->nbinds) * sizeof(*b));
    if (!b)
        return errf(err, errsz, "out of memory");
    pol->binds = b;
    for (size_t i = 0; i < x->nbinds; i++) {
        struct policy_bind *nb = &pol->binds[pol->nbinds];
        memset(nb, 0, sizeof(*nb));
        nb->path = strdup(x->bind_src[i]);
        nb->dest = strcmp(x->bind_src[i], x->bind_dst[i]) ? strdup(x->bind_dst[i]) : NULL;
        if (!nb->path)
            return errf(err, errsz, "out of memory");
        pol->nbinds++;
    }
    return 0;
}

/* Opens (creating) the directories of rel below dfd, never following a link; returns the
 * last directory's fd and points *leaf at the file name. */
static int out_parent(int dfd, char *rel, const char **leaf)
{
    int fd = fcntl(dfd, F_DUPFD_CLOEXEC, 0);
    char *p = rel;
    for (char *slash; fd >= 0 && (slash = strchr(p, '/')); p = slash + 1) {
        *slash = '\0';
        if (mkdirat(fd, p, 0755) < 0 && errno != EEXIST) {
            (void)close(fd);
            return -1;
        }
        int next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        (void)close(fd);
        fd = next;
    }
    *leaf = p;
    return fd;
}

/* Opens rel below the workspace fd for reading, never following a link. */
static int ws_open(int ws_fd, const char *rel)
{
    cleanup_free char *copy = strdup(rel);
    if (!copy)
        return -1;
    const char *leaf;
    cleanup_fd int dir = -1;
    int fd = fcntl(ws_fd, F_DUPFD_CLOEXEC, 0);
    char *p = copy;
    for (char *slash; fd >= 0 && (slash = strchr(p, '/')); p = slash + 1) {
        *slash = '\0';
        int next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        (void)close(fd);
        fd = next;
    }
    leaf = p;
    dir = fd;
    return dir < 0 ? -1 : openat(dir, leaf, O_RDONLY | O_NOFOLLOW | O_NOCTTY | O_CLOEXEC);
}

static int copy_one(int ws_fd, int out_fd, const char *rel, char *err, size_t errsz)
{
    cleanup_fd int in = ws_open(ws_fd, rel);
    struct stat st;
    if (in < 0 || fstat(in, &st) < 0 || !S_ISREG(st.st_mode))
        return errf(err, errsz, "--output %s: not a regular file of the workspace", rel);
    cleanup_free char *copy = strdup(rel);
    const char *leaf = NULL;
    cleanup_fd int dir = copy ? out_parent(out_fd, copy, &leaf) : -1;
    cleanup_fd int out =
        dir < 0 ? -1
                : openat(dir, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
    if (out < 0)
        return errf(err, errsz, "--output-dir: cannot create %s: %s", rel, strerror(errno));
    char buf[65536];
    for (;;) {
        ssize_t n = read(in, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 || (n > 0 && write_all(out, buf, (size_t)n) < 0))
            return errf(err, errsz, "--output %s: %s", rel, strerror(errno));
        if (n == 0)
            return 0;
    }
}

int exec_extra_collect(const struct exec_extra *x, int ws_fd, char *err, size_t errsz)
{
    if (!x->noutputs)
        return 0;
    if (ws_fd < 0)
        return errf(err, errsz, "--output: the cell's workspace is not reachable");
    char root[64];
    snprintf(root, sizeof(root), "/proc/self/fd/%d", ws_fd);
    struct wsdiff_outputs outs = {0};
    if (wsdiff_outputs(root, x->outputs, x->noutputs, EXEC_OUTPUT_MAX_FILES, EXEC_OUTPUT_MAX_BYTES,
                       &outs, err, errsz) < 0)
        return -1;
    cleanup_fd int out_fd = open(x->output_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc =
        out_fd < 0 ? errf(err, errsz, "--output-dir %s: %s", x->output_dir, strerror(errno)) : 0;
    int copied = 0;
    for (size_t i = 0; rc == 0 && i < outs.n; i++) {
        if (copy_one(ws_fd, out_fd, outs.files[i].path, err, errsz) < 0)
            rc = -1;
        else
            copied++;
    }
    if (rc == 0 && outs.truncated)
        rc = errf(err, errsz, "--output: more than %d files or %llu bytes matched",
                  EXEC_OUTPUT_MAX_FILES, (unsigned long long)EXEC_OUTPUT_MAX_BYTES);
    wsdiff_outputs_free(&outs);
    return rc < 0 ? -1 : copied;
}

void exec_extra_free(struct exec_extra *x)
{
    for (size_t i = 0; i < x->nenv; i++)
        free(x->env[i]);
    for (size_t i = 0; i < x->nbinds; i++) {
        free(x->bind_src[i]);
        free(x->bind_dst[i]);
    }
    free(x->wrapped);
    free(x->envp);
    memset(x, 0, sizeof(*x));
}
