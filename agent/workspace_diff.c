/* workspace_diff: walks the seed and the workspace side by side, one directory level at a
 * time, holding an fd per level (so a rename or symlink swap under us cannot redirect the
 * walk: nothing is ever resolved by path from the top again). Runs diff(1) for the text diff
 * because diffutils is on every Debian and its output is what reviewers expect; the child
 * gets no fds but its pipe, LC_ALL=C, and a deadline. */
#include "workspace_diff.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "sha256.h"
#include "strbuf.h"
#include "grow.h"
#include "util.h"

/* ---------- directory listing ---------- */

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static void free_names(char **names, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

/* Sorted entry names of an open directory (not . and ..); *scan_left bounds the total. */
static int list_dir(int dfd, char ***out, size_t *nout, size_t *scan_left)
{
    *out = NULL;
    *nout = 0;
    if (dfd < 0)
        return 0;
    int fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        close(fd);
        return -1;
    }
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (*scan_left == 0) {
            rc = 1; /* limit reached: the caller marks the result truncated */
            break;
        }
        (*scan_left)--;
        if (GROW(names, n, cap, 32, (size_t)1 << 24) < 0) { /* scan_left stops far below */
            rc = -1;
            break;
        }
        if (!(names[n] = strdup(e->d_name))) {
            rc = -1;
            break;
        }
        n++;
    }
    closedir(d);
    if (rc < 0) {
        free_names(names, n);
        return -1;
    }
    if (n)
        qsort(names, n, sizeof(char *), cmp_str);
    *out = names;
    *nout = n;
    return rc;
}

enum kind { K_NONE, K_REG, K_DIR, K_LNK, K_OTHER };

static enum kind kind_at(int dfd, const char *name, struct stat *st)
{
    if (dfd < 0 || fstatat(dfd, name, st, AT_SYMLINK_NOFOLLOW) != 0)
        return K_NONE;
    if (S_ISREG(st->st_mode))
        return K_REG;
    if (S_ISDIR(st->st_mode))
        return K_DIR;
    if (S_ISLNK(st->st_mode))
        return K_LNK;
    return K_OTHER;
}

/* Opens a regular file for reading without following a symlink or blocking on a FIFO that
 * replaced it after the fstatat. */
static int open_reg(int dfd, const char *name)
{
    int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd >= 0 && (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))) {
        close(fd);
        errno = EINVAL;
        return -1;
    }
    return fd;
}

/* ---------- manifest ---------- */

struct walk {
    struct wsdiff_manifest *m;
    size_t cap; /* of m->files */
    size_t max_files;
    size_t scan_left;
    uint64_t hash_left;
    bool skip_git;
    char path[PATH_MAX];
};

static int add_file(struct walk *w, enum wsdiff_status st, uint64_t size, const char *sha)
{
    struct wsdiff_manifest *m = w->m;
    if (m->n >= w->max_files) {
        m->truncated = true;
        return 1;
    }
    if (GROW(m->files, m->n, w->cap, 16, (size_t)1 << 24) < 0) /* truncated far below */
        return -1;
    struct wsdiff_file *f = &m->files[m->n];
    if (!(f->path = strdup(w->path)))
        return -1;
    f->status = st;
    f->size = size;
    snprintf(f->sha256, sizeof(f->sha256), "%s", sha ? sha : "");
    m->n++;
    return 0;
}

/* Hashes wfd; when sfd >= 0 also compares it byte for byte. *same is true only when sfd's
 * content equals wfd's. Returns 0, 1 when the byte budget ran out (nothing decided), -1. */
static int hash_compare(struct walk *w, int wfd, int sfd, uint64_t size, char hex[65], bool *same)
{
    uint64_t cost = size * (sfd >= 0 ? 2 : 1);
    if (cost > w->hash_left) {
        w->m->truncated = true;
        return 1;
    }
    struct sha256 s;
    sha256_init(&s);
    static char a[65536], b[65536];
    bool equal = sfd >= 0;
    for (;;) {
        ssize_t n = read(wfd, a, sizeof(a));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            break;
        w->m->bytes_read += (uint64_t)n;
        sha256_update(&s, a, (size_t)n);
        if (equal) {
            size_t got = 0;
            while (got < (size_t)n) {
                ssize_t k = read(sfd, b + got, (size_t)n - got);
                if (k < 0 && errno == EINTR)
                    continue;
                if (k <= 0)
                    break;
                got += (size_t)k;
            }
            w->m->bytes_read += got;
            equal = got == (size_t)n && memcmp(a, b, got) == 0;
        }
    }
    if (equal) { /* the seed file must also be at its end */
        char c;
        equal = read(sfd, &c, 1) == 0;
    }
    uint8_t d[SHA256_DIGEST_BYTES];
    sha256_final(&s, d);
    sha256_digest_hex(d, hex);
    w->hash_left -= cost < w->hash_left ? cost : w->hash_left;
    *same = equal;
    return 0;
}

static int walk(struct walk *w, int sfd, int wfd, size_t plen, int depth);

static int entry(struct walk *w, int sfd, int wfd, const char *name, size_t plen, int depth)
{
    if (w->skip_git && plen == 0 && strcmp(name, ".git") == 0)
        return 0;
    size_t nl = strlen(name);
    if (plen + 1 + nl + 1 > sizeof(w->path)) {
        w->m->truncated = true;
        return 0;
    }
    size_t len = plen;
    if (plen)
        w->path[len++] = '/';
    memcpy(w->path + len, name, nl + 1);
    len += nl;
    struct stat ss, ws;
    enum kind sk = kind_at(sfd, name, &ss), wk = kind_at(wfd, name, &ws);
    w->m->symlinks_skipped += (sk == K_LNK) + (wk == K_LNK);
    w->m->specials_skipped += (sk == K_OTHER) + (wk == K_OTHER);
    int rc = 0;
    if (wk == K_REG) {
        cleanup_fd int wf = open_reg(wfd, name);
        cleanup_fd int sf =
            sk == K_REG && (uint64_t)ss.st_size == (uint64_t)ws.st_size ? open_reg(sfd, name) : -1;
        char hex[65] = "";
        bool same = false;
        int h = wf < 0 ? -1 : hash_compare(w, wf, sf, (uint64_t)ws.st_size, hex, &same);
        if (h < 0) {
            hex[0] = '\0'; /* unreadable: listed, not hashed */
            w->m->truncated = true;
        } else if (h == 1 && sf >= 0) {
            /* Out of hashing budget: decide by size and mtime alone. */
            same =
                ss.st_mtim.tv_sec == ws.st_mtim.tv_sec && ss.st_mtim.tv_nsec == ws.st_mtim.tv_nsec;
        }
        if (!same)
            rc = add_file(w, sk == K_REG ? WSDIFF_MODIFIED : WSDIFF_ADDED, (uint64_t)ws.st_size,
                          hex);
    } else if (sk == K_REG) {
        rc = add_file(w, WSDIFF_DELETED, (uint64_t)ss.st_size, NULL);
    }
    if (rc == 0 && (sk == K_DIR || wk == K_DIR)) {
        if (depth >= WSDIFF_MAX_DEPTH) {
            w->m->truncated = true;
            return 0;
        }
        cleanup_fd int s2 =
            sk == K_DIR ? openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
        cleanup_fd int w2 =
            wk == K_DIR ? openat(wfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
        rc = walk(w, s2, w2, len, depth + 1);
    }
    w->path[plen] = '\0';
    return rc;
}

static int walk(struct walk *w, int sfd, int wfd, size_t plen, int depth)
{
    char **sn = NULL, **wn = NULL;
    size_t ns = 0, nw = 0;
    int l1 = list_dir(sfd, &sn, &ns, &w->scan_left);
    int l2 = l1 < 0 ? -1 : list_dir(wfd, &wn, &nw, &w->scan_left);
    if (l1 < 0 || l2 < 0) {
        free_names(sn, ns);
        free_names(wn, nw);
        if (errno == ENOMEM)
            return -1;
        w->m->truncated = true; /* an unreadable directory: say the result is partial */
        return 0;
    }
    if (l1 == 1 || l2 == 1)
        w->m->truncated = true;
    int rc = 0;
    size_t i = 0, j = 0;
    while (rc == 0 && (i < ns || j < nw)) {
        int c = i == ns ? 1 : j == nw ? -1 : strcmp(sn[i], wn[j]);
        const char *name = c <= 0 ? sn[i] : wn[j];
        rc = entry(w, sfd, wfd, name, plen, depth);
        if (c <= 0)
            i++;
        if (c >= 0)
            j++;
    }
    free_names(sn, ns);
    free_names(wn, nw);
    return rc;
}

int wsdiff_manifest(const char *seed, const char *workspace, const struct wsdiff_limits *lim,
                    struct wsdiff_manifest *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    cleanup_fd int wfd = open(workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (wfd < 0)
        return errf(err, errsz, "workspace %s: %s", workspace, strerror(errno));
    cleanup_fd int sfd = seed ? open(seed, O_RDONLY | O_DIRECTORY | O_CLOEXEC) : -1;
    if (sfd < 0 && seed && errno != ENOENT)
        return errf(err, errsz, "seed %s: %s", seed, strerror(errno));
    struct walk *w = calloc(1, sizeof(*w));
    if (!w)
        return errf(err, errsz, "out of memory");
    w->m = out;
    w->max_files = lim && lim->max_files ? lim->max_files : WSDIFF_DEFAULT_MAX_FILES;
    w->scan_left = lim && lim->max_scan ? lim->max_scan : WSDIFF_DEFAULT_MAX_SCAN;
    w->hash_left = lim && lim->max_hash_bytes ? lim->max_hash_bytes : WSDIFF_DEFAULT_MAX_HASH_BYTES;
    w->skip_git = lim && lim->skip_git;
    int rc = walk(w, sfd, wfd, 0, 0);
    free(w);
    if (rc < 0) {
        wsdiff_manifest_free(out);
        return errf(err, errsz, "out of memory walking the workspace");
    }
    return 0;
}

void wsdiff_manifest_free(struct wsdiff_manifest *m)
{
    if (!m)
        return;
    for (size_t i = 0; i < m->n; i++)
        free(m->files[i].path);
    free(m->files);
    memset(m, 0, sizeof(*m));
}

const char *wsdiff_status_name(enum wsdiff_status s)
{
    return s == WSDIFF_ADDED ? "added" : s == WSDIFF_MODIFIED ? "modified" : "deleted";
}

cJSON *wsdiff_manifest_json(const struct wsdiff_manifest *m)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < m->n; i++) {
        const struct wsdiff_file *f = &m->files[i];
        cJSON *o = cJSON_CreateObject();
        bool ok = o && cJSON_AddStringToObject(o, "path", f->path) &&
                  cJSON_AddStringToObject(o, "status", wsdiff_status_name(f->status)) &&
                  cJSON_AddNumberToObject(o, "size", (double)f->size) &&
                  (f->sha256[0] ? cJSON_AddStringToObject(o, "sha256", f->sha256) != NULL
                                : cJSON_AddNullToObject(o, "sha256") != NULL);
        if (!ok || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

/* ---------- unified diff ---------- */

/* Copies [p, end) replacing every "SEED/" by "a/" and "WS/" by "b/" (and "SEED:" by "a:",
 * as in "Only in WS: fifo"). */
static void replace_roots(struct strbuf *sb, const char *p, const char *end, const char *seed,
                          const char *ws)
{
    const char *roots[2] = {seed, ws}, *names[2] = {"a", "b"};
    while (p < end) {
        size_t left = (size_t)(end - p);
        bool done = false;
        for (int r = 0; r < 2 && !done; r++) {
            size_t rl = strlen(roots[r]);
            if (left > rl && memcmp(p, roots[r], rl) == 0 && (p[rl] == '/' || p[rl] == ':')) {
                strbuf_adds(sb, names[r]);
                p += rl;
                done = true;
            }
        }
        if (!done)
            strbuf_add(sb, p++, 1);
    }
}

/* Header and message lines name files by their full paths; turn them into a/REL and b/REL
 * and drop the timestamps (they differ on every run and tell a reviewer nothing). Hunk
 * lines are copied untouched: a removed line may well start with "-- ". *headers counts the
 * ---/+++ lines still expected after a "diff " line. */
static void rewrite_line(struct strbuf *sb, const char *line, const char *end, const char *seed,
                         const char *ws, int *headers)
{
    size_t n = (size_t)(end - line);
    if (*headers > 0 && n > 4 && (memcmp(line, "--- ", 4) == 0 || memcmp(line, "+++ ", 4) == 0)) {
        (*headers)--;
        const char *tab = memchr(line, '\t', n);
        replace_roots(sb, line, tab ? tab : end, seed, ws);
    } else if (n && strchr(" +-@\\", line[0])) {
        strbuf_add(sb, line, n);
    } else {
        *headers = n > 5 && memcmp(line, "diff ", 5) == 0 ? 2 : 0;
        replace_roots(sb, line, end, seed, ws);
    }
    strbuf_adds(sb, "\n");
}

/* diff's output with the paths made relative (rewrite_line), cut at max_bytes on a line
 * boundary (*truncated then set); a partial last line of a cut capture is dropped. */
static void rewrite_lines(struct strbuf *sb, const char *raw, size_t len, const char *seed,
                          const char *workspace, size_t max_bytes, bool *truncated)
{
    int headers = 0;
    for (const char *line = raw; line < raw + len;) {
        const char *nl = memchr(line, '\n', (size_t)(raw + len - line));
        const char *end = nl ? nl : raw + len;
        if (!nl && *truncated)
            break; /* a partial last line is dropped, not half-shown */
        size_t before = sb->len;
        rewrite_line(sb, line, end, seed, workspace, &headers);
        if (sb->len > max_bytes) {
            sb->len = before;
            if (sb->s)
                sb->s[before] = '\0';
            *truncated = true;
            break;
        }
        line = end + 1;
    }
}

static bool unified_skip_git;

void wsdiff_unified_skip_git(void)
{
    unified_skip_git = true;
}

int wsdiff_unified(const char *seed, const char *workspace, size_t max_bytes, double timeout_s,
                   const char *diff_path, char **out, bool *truncated, char *err, size_t errsz)
{
    *out = NULL;
    *truncated = false;
    if (!max_bytes)
        max_bytes = WSDIFF_DEFAULT_MAX_DIFF_BYTES;
    if (timeout_s <= 0)
        timeout_s = WSDIFF_DEFAULT_DIFF_TIMEOUT_S;
    char empty[PATH_MAX] = "";
    struct stat st;
    if (!seed || stat(seed, &st) != 0) {
        /* No seed: compare against an empty directory (diff -N then shows every file). */
        const char *tmp = getenv("TMPDIR");
        snprintf(empty, sizeof(empty), "%s/agentbox-emptyseed-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(empty))
            return errf(err, errsz, "diff: cannot create an empty seed dir: %s", strerror(errno));
        seed = empty;
    }
    int p[2];
    if (pipe2(p, O_CLOEXEC) != 0) {
        if (empty[0])
            rmdir(empty);
        return errf(err, errsz, "diff: pipe: %s", strerror(errno));
    }
    const char *bin = diff_path ? diff_path : "/usr/bin/diff";
    pid_t pid = fork();
    if (pid == 0) {
        int null = open("/dev/null", O_RDWR);
        if (null < 0 || dup2(null, 0) < 0 || dup2(p[1], 1) < 0 || dup2(null, 2) < 0)
            _exit(126);
        if (close_range(3, ~0U, 0) != 0)
            for (int fd = 3; fd < 4096; fd++)
                close(fd);
        char *const argv[] = {"diff", "-ruN", "--no-dereference", (char *)seed, (char *)workspace,
                              NULL};
        char *const argv_x[] = {"diff", "-ruN",       "--no-dereference", "-x",
                                ".git", (char *)seed, (char *)workspace,  NULL};
        char *const envp[] = {"LC_ALL=C", "PATH=/usr/bin:/bin", NULL};
        execve(bin, unified_skip_git ? argv_x : argv, envp);
        _exit(127);
    }
    close(p[1]);
    if (pid < 0) {
        close(p[0]);
        if (empty[0])
            rmdir(empty);
        return errf(err, errsz, "diff: fork: %s", strerror(errno));
    }
    /* Capture a little more than the cap: rewriting shortens header lines. */
    size_t cap = max_bytes + 65536, len = 0;
    cleanup_free char *raw = malloc(cap + 1);
    bool killed = false, timed_out = false;
    double deadline = monotonic_s() + timeout_s;
    while (raw) {
        int left = (int)((deadline - monotonic_s()) * 1000);
        if (left <= 0) {
            timed_out = true;
            break;
        }
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        int pr = poll(&pfd, 1, left);
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            continue;
        ssize_t n = read(p[0], raw + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (len == cap) {
            *truncated = true;
            break;
        }
    }
    if (timed_out || *truncated || !raw) {
        kill(pid, SIGKILL);
        killed = true;
    }
    close(p[0]);
    int status = 0;
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (empty[0])
        rmdir(empty);
    if (!raw)
        return errf(err, errsz, "diff: out of memory");
    if (!killed && WIFEXITED(status) && WEXITSTATUS(status) == 127)
        return errf(err, errsz, "diff: cannot run %s", bin);
    raw[len] = '\0';
    struct strbuf sb = STRBUF_INIT(len + 65536); /* relative paths are shorter; the notes */
    rewrite_lines(&sb, raw, len, seed, workspace, max_bytes, truncated);
    if (*truncated)
        strbuf_printf(&sb, "\n[diff truncated: it is longer than %zu bytes]\n", max_bytes);
    if (timed_out)
        strbuf_printf(&sb, "\n[diff incomplete: diff ran longer than %g seconds]\n", timeout_s);
    if (!killed && WIFEXITED(status) && WEXITSTATUS(status) == 2)
        /* diffutils 3.8 with -N --no-dereference fails on a symlink present on one side
         * only; an unreadable file does the same. The rest of the diff is complete. */
        strbuf_adds(&sb, "\n[diff exited with status 2: entries it could not compare (a "
                         "symlink present on one side only, or an unreadable file) are missing "
                         "from this diff]\n");
    *truncated |= timed_out;
    char *s = strbuf_steal(&sb);
    if (!s)
        return errf(err, errsz, "diff: out of memory");
    *out = s;
    return 0;
}

/* ---------- outputs ---------- */

int wsdiff_pattern_check(const char *pattern, char *err, size_t errsz)
{
    if (!pattern || !*pattern)
        return errf(err, errsz, "outputs: empty pattern");
    if (strlen(pattern) > WSDIFF_MAX_PATTERN_CHARS)
        return errf(err, errsz, "outputs: pattern longer than %d characters",
                    WSDIFF_MAX_PATTERN_CHARS);
    if (pattern[0] == '/')
        return errf(err, errsz, "outputs: \"%s\" is absolute; patterns are relative to /workspace",
                    pattern);
    for (const char *p = pattern; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return errf(err, errsz, "outputs: \"%s\" contains \"..\"", pattern);
        p += n + (slash ? 1 : 0);
    }
    return 0;
}

/* Matches pattern components against path components; "**" eats any number of them. */
static bool match_from(const char *pat, const char *path)
{
    const char *ps = strchr(pat, '/');
    size_t pl = ps ? (size_t)(ps - pat) : strlen(pat);
    if (pl == 2 && pat[0] == '*' && pat[1] == '*') {
        if (!ps)
            return true; /* trailing "**": everything below */
        for (const char *q = path;;) {
            if (match_from(ps + 1, q))
                return true;
            const char *s = strchr(q, '/');
            if (!s)
                return false;
            q = s + 1;
        }
    }
    const char *qs = strchr(path, '/');
    size_t ql = qs ? (size_t)(qs - path) : strlen(path);
    char pc[WSDIFF_MAX_PATTERN_CHARS + 1], qc[NAME_MAX + 1];
    if (pl >= sizeof(pc) || ql >= sizeof(qc))
        return false;
    memcpy(pc, pat, pl);
    pc[pl] = '\0';
    memcpy(qc, path, ql);
    qc[ql] = '\0';
    if (fnmatch(pc, qc, 0) != 0)
        return false;
    if (!ps && !qs)
        return true;
    if (!ps || !qs)
        return false;
    return match_from(ps + 1, qs + 1);
}

bool wsdiff_pattern_match(const char *pattern, const char *rel)
{
    while (pattern[0] == '.' && pattern[1] == '/')
        pattern += 2;
    return match_from(pattern, rel);
}

struct owalk {
    const char *const *patterns;
    size_t npatterns, max_files;
    uint64_t max_total;
    size_t scan_left;
    struct wsdiff_outputs *o;
    char path[PATH_MAX];
};

static int owalk_dir(struct owalk *w, int dfd, size_t plen, int depth)
{
    char **names;
    size_t n;
    int lr = list_dir(dfd, &names, &n, &w->scan_left);
    if (lr < 0)
        return errno == ENOMEM ? -1 : 0;
    if (lr == 1)
        w->o->truncated = true;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        size_t nl = strlen(names[i]), len = plen;
        if (plen + nl + 2 > sizeof(w->path))
            continue;
        if (plen)
            w->path[len++] = '/';
        memcpy(w->path + len, names[i], nl + 1);
        len += nl;
        struct stat st;
        enum kind k = kind_at(dfd, names[i], &st);
        if (k == K_REG) {
            bool hit = false;
            for (size_t p = 0; p < w->npatterns && !hit; p++)
                hit = wsdiff_pattern_match(w->patterns[p], w->path);
            if (hit) {
                struct wsdiff_outputs *o = w->o;
                if (o->n >= w->max_files || o->total_bytes + (uint64_t)st.st_size > w->max_total) {
                    o->truncated = true;
                } else {
                    struct wsdiff_output *f = realloc(o->files, (o->n + 1) * sizeof(*f));
                    if (!f || !(f[o->n].path = strdup(w->path))) {
                        if (f)
                            o->files = f;
                        rc = -1;
                        break;
                    }
                    o->files = f;
                    f[o->n].size = (uint64_t)st.st_size;
                    o->total_bytes += (uint64_t)st.st_size;
                    o->n++;
                }
            }
        } else if (k == K_DIR && depth < WSDIFF_MAX_DEPTH) {
            cleanup_fd int sub =
                openat(dfd, names[i], O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0)
                rc = owalk_dir(w, sub, len, depth + 1);
        }
        w->path[plen] = '\0';
    }
    free_names(names, n);
    return rc;
}

int wsdiff_outputs(const char *workspace, const char *const *patterns, size_t npatterns,
                   size_t max_files, uint64_t max_total_bytes, struct wsdiff_outputs *out,
                   char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    for (size_t i = 0; i < npatterns; i++)
        if (wsdiff_pattern_check(patterns[i], err, errsz) != 0)
            return -1;
    if (!npatterns)
        return 0;
    cleanup_fd int wfd = open(workspace, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (wfd < 0)
        return errf(err, errsz, "workspace %s: %s", workspace, strerror(errno));
    struct owalk *w = calloc(1, sizeof(*w));
    if (!w)
        return errf(err, errsz, "out of memory");
    *w = (struct owalk){.patterns = patterns,
                        .npatterns = npatterns,
                        .max_files = max_files ? max_files : WSDIFF_DEFAULT_MAX_FILES,
                        .max_total = max_total_bytes ? max_total_bytes : UINT64_MAX,
                        .scan_left = WSDIFF_DEFAULT_MAX_SCAN,
                        .o = out};
    int rc = owalk_dir(w, wfd, 0, 0);
    free(w);
    if (rc < 0) {
        wsdiff_outputs_free(out);
        return errf(err, errsz, "out of memory collecting outputs");
    }
    return 0;
}

void wsdiff_outputs_free(struct wsdiff_outputs *o)
{
    if (!o)
        return;
    for (size_t i = 0; i < o->n; i++)
        free(o->files[i].path);
    free(o->files);
    memset(o, 0, sizeof(*o));
}
