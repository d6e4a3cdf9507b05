/* safedir: see safedir.h. The walk goes down from "/" by fd (openat O_NOFOLLOW), judging each
 * directory before it opens the next one, so what is judged is what is used. */
#include "safedir.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pwd.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

static const char *owner_name(uid_t uid)
{
    const struct passwd *pw = getpwuid(uid);
    return pw && pw->pw_name ? pw->pw_name : "no account";
}

/* The leaf must be the running uid's and writable by nobody else; a directory above it
 * root's or the running uid's and writable by nobody else, unless sticky (/tmp). */
static int judge(const char *dir, const struct stat *st, bool leaf, char *err, size_t errsz)
{
    uid_t me = geteuid();
    if (!S_ISDIR(st->st_mode)) {
        errno = ENOTDIR;
        return errf(err, errsz, "%s: not a directory", dir);
    }
    bool owner_ok = leaf ? st->st_uid == me : st->st_uid == me || st->st_uid == 0;
    bool others_write = (st->st_mode & (S_IWGRP | S_IWOTH)) != 0;
    bool mode_ok = leaf ? !others_write : !others_write || (st->st_mode & S_ISVTX);
    if (owner_ok && mode_ok)
        return 0;
    errno = EPERM;
    if (leaf)
        return errf(err, errsz,
                    "%s: refused: owned by uid %u (%s), mode %04o; agentbox writes only into a "
                    "directory of its own uid %u that no one else may write to",
                    dir, (unsigned)st->st_uid, owner_name(st->st_uid),
                    (unsigned)(st->st_mode & 07777), (unsigned)me);
    return errf(err, errsz,
                "%s: refused: owned by uid %u (%s), mode %04o; every directory above agentbox's "
                "state must belong to root or uid %u and be writable by no one else (or be "
                "sticky, as /tmp is)",
                dir, (unsigned)st->st_uid, owner_name(st->st_uid), (unsigned)(st->st_mode & 07777),
                (unsigned)me);
}

/* Walks the absolute, resolved path real from "/" down, judging each directory (the last
 * one as the leaf when leaf_strict). Returns an fd of the last directory (O_PATH, or
 * O_RDONLY when want_read) or -1. */
static int walk(const char *real, bool leaf_strict, bool want_read, char *err, size_t errsz)
{
    cleanup_fd int fd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return errf(err, errsz, "/: %s", strerror(errno));
    char sofar[PATH_MAX] = "/";
    const char *p = real;
    for (;;) {
        while (*p == '/')
            p++;
        const char *end = strchrnul(p, '/');
        const char *rest = end;
        while (*rest == '/')
            rest++;
        bool last = *rest == '\0';
        struct stat st;
        if (fstat(fd, &st) < 0)
            return errf(err, errsz, "%s: %s", sofar, strerror(errno));
        if (judge(sofar, &st, last && *p == '\0' && leaf_strict, err, errsz) < 0)
            return -1;
        if (*p == '\0')
            break;
        char comp[NAME_MAX + 1];
        if ((size_t)(end - p) > NAME_MAX) {
            errno = ENAMETOOLONG;
            return errf(err, errsz, "%s: name too long", real);
        }
        memcpy(comp, p, (size_t)(end - p));
        comp[end - p] = '\0';
        int flags = O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC;
        flags |= last && want_read ? O_RDONLY : O_PATH;
        int next = openat(fd, comp, flags);
        if (next < 0)
            return errf(err, errsz, "%s: %s", real,
                        errno == ELOOP ? "a symlink appeared while checking" : strerror(errno));
        (void)close(fd);
        fd = next;
        size_t len = strlen(sofar);
        snprintf(sofar + len, sizeof(sofar) - len, "%s%s", len > 1 ? "/" : "", comp);
        if (last) {
            if (fstat(fd, &st) < 0)
                return errf(err, errsz, "%s: %s", sofar, strerror(errno));
            if (judge(sofar, &st, leaf_strict, err, errsz) < 0)
                return -1;
            break;
        }
        p = rest;
    }
    return steal_fd(&fd);
}

static int resolve(const char *path, char *real, char *err, size_t errsz)
{
    if (!realpath(path, real))
        return errf(err, errsz, "%s: %s", path, strerror(errno));
    return 0;
}

static int fill(const char *resolved, char *real, size_t realsz, char *err, size_t errsz)
{
    if (real && snprintf(real, realsz, "%s", resolved) >= (int)realsz) {
        errno = ENAMETOOLONG;
        return errf(err, errsz, "%s: path too long", resolved);
    }
    return 0;
}

int dir_check_trusted(const char *path, char *real, size_t realsz, char *err, size_t errsz)
{
    char r[PATH_MAX];
    if (resolve(path, r, err, errsz) < 0)
        return -1;
    cleanup_fd int fd = walk(r, true, false, err, errsz);
    return fd < 0 ? -1 : fill(r, real, realsz, err, errsz);
}

int dir_open_trusted(const char *path, char *err, size_t errsz)
{
    char r[PATH_MAX];
    if (resolve(path, r, err, errsz) < 0)
        return -1;
    return walk(r, true, true, err, errsz);
}

int parent_check_trusted(const char *file, char *err, size_t errsz)
{
    char dir[PATH_MAX];
    if (snprintf(dir, sizeof(dir), "%s", file) >= (int)sizeof(dir)) {
        errno = ENAMETOOLONG;
        return errf(err, errsz, "%s: path too long", file);
    }
    char *slash = strrchr(dir, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == dir)
        dir[1] = '\0';
    else
        *slash = '\0';
    char r[PATH_MAX];
    if (resolve(dir, r, err, errsz) < 0)
        return -1;
    /* the file's own directory may be shared (sticky /tmp) as any directory above */
    cleanup_fd int fd = walk(r, false, false, err, errsz);
    return fd < 0 ? -1 : 0;
}

int dir_ensure_trusted(const char *path, char *real, size_t realsz, char *err, size_t errsz)
{
    char r[PATH_MAX];
    if (realpath(path, r))
        return dir_check_trusted(r, real, realsz, err, errsz);
    if (errno != ENOENT)
        return errf(err, errsz, "%s: %s", path, strerror(errno));
    /* a new directory: its parent is judged first, then it is made there by fd */
    char parent[PATH_MAX];
    if (snprintf(parent, sizeof(parent), "%s", path) >= (int)sizeof(parent)) {
        errno = ENAMETOOLONG;
        return errf(err, errsz, "%s: path too long", path);
    }
    size_t n = strlen(parent);
    while (n > 1 && parent[n - 1] == '/')
        parent[--n] = '\0';
    char *slash = strrchr(parent, '/');
    const char *leaf = slash ? slash + 1 : parent;
    char leafname[NAME_MAX + 1];
    if (!*leaf || strlen(leaf) > NAME_MAX || strcmp(leaf, ".") == 0 || strcmp(leaf, "..") == 0) {
        errno = EINVAL;
        return errf(err, errsz, "%s: not a directory name", path);
    }
    memcpy(leafname, leaf, strlen(leaf) + 1);
    if (!slash)
        snprintf(parent, sizeof(parent), ".");
    else if (slash == parent)
        parent[1] = '\0';
    else
        *slash = '\0';
    char rp[PATH_MAX];
    if (resolve(parent, rp, err, errsz) < 0)
        return -1;
    cleanup_fd int pfd = walk(rp, false, false, err, errsz);
    if (pfd < 0)
        return -1;
    if (mkdirat(pfd, leafname, 0700) < 0 && errno != EEXIST)
        return errf(err, errsz, "%s: %s", path, strerror(errno));
    char full[PATH_MAX];
    if (snprintf(full, sizeof(full), "%s/%s", strcmp(rp, "/") ? rp : "", leafname) >=
        (int)sizeof(full)) {
        errno = ENAMETOOLONG;
        return errf(err, errsz, "%s: path too long", path);
    }
    cleanup_fd int fd = walk(full, true, false, err, errsz);
    return fd < 0 ? -1 : fill(full, real, realsz, err, errsz);
}

int openat_below(int dfd, const char *dir, const char *name, int flags, unsigned mode)
{
    cleanup_fd int d = openat(dfd, dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (d < 0)
        return -1;
    return openat(d, name, flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
}

int read_regular_at(int dfd, const char *name, int follow, size_t max, char **out, size_t *outlen)
{
    struct stat st;
    /* judged before opening: a FIFO or a device is never opened at all */
    if (fstatat(dfd, name, &st, follow ? 0 : AT_SYMLINK_NOFOLLOW) < 0)
        return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = S_ISLNK(st.st_mode) ? ELOOP : EINVAL;
        return -1;
    }
    cleanup_fd int fd =
        openat(dfd, name, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY | (follow ? 0 : O_NOFOLLOW));
    if (fd < 0)
        return -1;
    if (fstat(fd, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode)) { /* swapped between the two looks */
        errno = EINVAL;
        return -1;
    }
    return read_fd_bounded(fd, max, out, outlen);
}

int remove_tree_at(int dfd, const char *name)
{
    if (unlinkat(dfd, name, 0) == 0 || errno == ENOENT)
        return 0;
    if (errno != EISDIR && errno != EPERM)
        return -1;
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -1;
    DIR *d = fdopendir(fd);
    if (!d) {
        (void)close(fd);
        return -1;
    }
    int rc = 0;
    const struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        if (remove_tree_at(dirfd(d), de->d_name) < 0)
            rc = -1;
    }
    (void)closedir(d);
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = -1;
    return rc;
}
