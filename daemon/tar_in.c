/* tar_in: see tar_in.h. One pass over the buffer; names are checked with the same rule as
 * a task's inline files (task_path_is_safe). */
#include "tar_in.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "task.h"
#include "util.h"

#define BLOCK 512

struct pending {
    char path[PATH_MAX];
    char link[PATH_MAX];
};

static bool octal(const unsigned char *f, size_t n, uint64_t *out)
{
    uint64_t v = 0;
    size_t i = 0;
    while (i < n && f[i] == ' ')
        i++;
    if (i < n && (f[i] & 0x80))
        return false; /* base-256: a member larger than anything we accept */
    for (; i < n && f[i] >= '0' && f[i] <= '7'; i++)
        v = v * 8 + (uint64_t)(f[i] - '0');
    if (i < n && f[i] != '\0' && f[i] != ' ')
        return false;
    *out = v;
    return true;
}

static bool checksum_ok(const unsigned char *h)
{
    uint64_t want;
    if (!octal(h + 148, 8, &want))
        return false;
    uint64_t sum = 0;
    for (size_t i = 0; i < BLOCK; i++)
        sum += (i >= 148 && i < 156) ? ' ' : h[i];
    return sum == want;
}

static void field(char *out, size_t outsz, const unsigned char *f, size_t n)
{
    size_t k = strnlen((const char *)f, n);
    if (k >= outsz)
        k = outsz - 1;
    memcpy(out, f, k);
    out[k] = '\0';
}

/* pax records "LEN key=value\n": path and linkpath are kept, the rest ignored. */
static bool pax(const unsigned char *d, size_t n, struct pending *p)
{
    size_t i = 0;
    while (i < n) {
        size_t len = 0, j = i;
        while (j < n && d[j] >= '0' && d[j] <= '9')
            len = len * 10 + (size_t)(d[j++] - '0');
        if (j >= n || d[j] != ' ' || len == 0 || i + len > n || d[i + len - 1] != '\n')
            return false;
        const char *kv = (const char *)d + j + 1;
        size_t kvlen = i + len - 1 - (j + 1);
        const char *eq = memchr(kv, '=', kvlen);
        if (eq) {
            size_t klen = (size_t)(eq - kv), vlen = kvlen - klen - 1;
            char *dst = klen == 4 && !memcmp(kv, "path", 4)       ? p->path
                        : klen == 8 && !memcmp(kv, "linkpath", 8) ? p->link
                                                                  : NULL;
            if (dst && vlen < PATH_MAX) {
                memcpy(dst, eq + 1, vlen);
                dst[vlen] = '\0';
            } else if (dst)
                return false;
        }
        i += len;
    }
    return true;
}

/* "./a/b/" -> "a/b"; "" for the archive's root. */
static void clean_name(char *s)
{
    while (s[0] == '.' && s[1] == '/')
        memmove(s, s + 2, strlen(s + 2) + 1);
    if (strcmp(s, ".") == 0)
        s[0] = '\0';
    size_t n = strlen(s);
    while (n && s[n - 1] == '/')
        s[--n] = '\0';
}

/* A relative target that stays inside the tree, seen from the member's directory. */
static bool link_inside(const char *member, const char *target)
{
    if (!target[0] || target[0] == '/')
        return false;
    int depth = 0;
    for (const char *p = member; (p = strchr(p, '/')); p++)
        depth++;
    const char *p = target;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 2 && p[0] == '.' && p[1] == '.') {
            if (--depth < 0)
                return false;
        } else if (len && !(len == 1 && p[0] == '.'))
            depth++;
        if (!slash)
            break;
        p = slash + 1;
    }
    return true;
}

/* Opens (creating) the directories of rel below dfd, never through a link; *leaf = the name. */
static int parent_of(int dfd, char *rel, const char **leaf)
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
        *slash = '/';
        (void)close(fd);
        fd = next;
    }
    *leaf = p;
    return fd;
}

static int write_member(int dirfd, char *name, char type, const char *link,
                        const unsigned char *data, size_t size, unsigned mode, char *err,
                        size_t errsz)
{
    const char *leaf;
    cleanup_fd int dfd = parent_of(dirfd, name, &leaf);
    if (dfd < 0)
        return errf(err, errsz, "tar: %s: %s (a member below a link or a file?)", name,
                    strerror(errno));
    if (type == '5') {
        if (mkdirat(dfd, leaf, 0755) < 0 && errno != EEXIST)
            return errf(err, errsz, "tar: %s: %s", name, strerror(errno));
        struct stat st;
        if (fstatat(dfd, leaf, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
            return errf(err, errsz, "tar: %s: exists and is not a directory", name);
        return 0;
    }
    if (type == '2') {
        if (symlinkat(link, dfd, leaf) < 0)
            return errf(err, errsz, "tar: %s: %s", name,
                        errno == EEXIST ? "duplicate member" : strerror(errno));
        return 0;
    }
    cleanup_fd int fd = openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                               (mode & 0111) ? 0755 : 0644);
    if (fd < 0)
        return errf(err, errsz, "tar: %s: %s", name,
                    errno == EEXIST ? "duplicate member" : strerror(errno));
    if (write_all(fd, data, size) < 0)
        return errf(err, errsz, "tar: %s: %s", name, strerror(errno));
    return 0;
}

static int refuse_type(char type, const char *name, char *err, size_t errsz)
{
    const char *what = type == '1'                  ? "a hard link"
                       : type == '3' || type == '4' ? "a device node"
                       : type == '6'                ? "a FIFO"
                                                    : "an unsupported member type";
    return errf(err, errsz, "tar: %s: %s: refused", name, what);
}

int tar_in_extract(const unsigned char *data, size_t len, int dirfd, uint64_t max_bytes, char *err,
                   size_t errsz)
{
    struct pending p = {{0}, {0}};
    uint64_t total = 0;
    int count = 0, entries = 0;
    for (size_t off = 0;;) {
        if (off + BLOCK > len)
            return errf(err, errsz, "tar: truncated archive (no end marker)");
        const unsigned char *h = data + off;
        static const unsigned char zero[BLOCK];
        if (memcmp(h, zero, BLOCK) == 0)
            return count;
        uint64_t size, mode = 0644;
        if (!checksum_ok(h) || !octal(h + 124, 12, &size) || !octal(h + 100, 8, &mode))
            return errf(err, errsz, "tar: damaged header at byte %zu", off);
        size_t body = off + BLOCK, next = body + (size_t)((size + BLOCK - 1) / BLOCK * BLOCK);
        if (size > len || body + size > len || next > len)
            return errf(err, errsz, "tar: truncated archive");
        if (++entries > TAR_IN_MAX_ENTRIES)
            return errf(err, errsz, "tar: more than %d members", TAR_IN_MAX_ENTRIES);
        char type = (char)h[156];
        off = next;
        if (type == 'x' || type == 'L' || type == 'K') {
            if (type == 'x' && !pax(data + body, (size_t)size, &p))
                return errf(err, errsz, "tar: damaged pax header");
            if (type != 'x') {
                char *dst = type == 'L' ? p.path : p.link;
                if (size >= PATH_MAX)
                    return errf(err, errsz, "tar: name longer than %d bytes", PATH_MAX - 1);
                field(dst, PATH_MAX, data + body, (size_t)size);
            }
            continue;
        }
        if (type == 'g')
            continue;
        char name[PATH_MAX], link[PATH_MAX];
        if (p.path[0]) {
            snprintf(name, sizeof(name), "%s", p.path);
        } else {
            char n[101], prefix[156];
            field(n, sizeof(n), h, 100);
            field(prefix, sizeof(prefix), h + 345, 155);
            bool ustar = memcmp(h + 257, "ustar", 5) == 0;
            snprintf(name, sizeof(name), "%s%s%s", ustar ? prefix : "",
                     ustar && prefix[0] ? "/" : "", n);
        }
        if (p.link[0])
            snprintf(link, sizeof(link), "%s", p.link);
        else
            field(link, sizeof(link), h + 157, 100);
        p.path[0] = p.link[0] = '\0';
        if (name[0] == '/')
            return errf(err, errsz, "tar: %.200s: an absolute path: refused", name);
        clean_name(name);
        if (!name[0] && type == '5')
            continue;
        if (!task_path_is_safe(name))
            return errf(err, errsz, "tar: %.200s: a path outside the workspace: refused", name);
        if (type != '0' && type != '\0' && type != '7' && type != '5' && type != '2')
            return refuse_type(type, name, err, errsz);
        if (type == '2' && !link_inside(name, link))
            return errf(err, errsz, "tar: %.200s: a link to %.200s, outside the workspace: refused",
                        name, link);
        if (type != '0' && type != '\0' && type != '7')
            size = 0;
        total += size;
        if (total > max_bytes)
            return errf(err, errsz, "tar: more than %llu bytes of files",
                        (unsigned long long)max_bytes);
        if (write_member(dirfd, name, type, link, data + body, (size_t)size, (unsigned)mode, err,
                         errsz) < 0)
            return -1;
        count++;
    }
}
