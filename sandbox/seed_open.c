/* seed_open: see seed_open.h. Owns the host-side open of a seed directory and the rule it
 * follows: a seed is read with the rights of whoever asked for it. Must never open a seed
 * with root's rights on behalf of someone else, nor follow, as root, a name another user
 * controls. */
#include "seed_open.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

#define SEED_MAX_LINKS 40 /* as the kernel's MAXSYMLINKS */

int seed_absolute_path(const char *path, char *out, size_t outsz)
{
    if (path[0] == '/')
        return snprintf(out, outsz, "%s", path) < (int)outsz ? 0 : -1;
    char cwd[PATH_MAX];
    if (!getcwd(cwd, sizeof(cwd)))
        return -1;
    return snprintf(out, outsz, "%s/%s", cwd, path) < (int)outsz ? 0 : -1;
}

int seed_requester_from_socket(int fd, struct seed_requester *who)
{
    struct ucred cr;
    socklen_t len = sizeof(cr);
    memset(who, 0, sizeof(*who));
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &len) < 0)
        return -1;
    who->uid = cr.uid;
    who->gid = cr.gid;
    /* The supplementary groups as of connect (Linux 4.13); without them only the primary
     * group counts, which can only grant less. */
    len = sizeof(who->groups);
    if (getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, who->groups, &len) == 0)
        who->ngroups = (int)(len / sizeof(gid_t));
    else
        who->ngroups = 0;
    return 0;
}

/* May a root requester look up an entry (owned by entry_uid) in this directory? Only if no
 * other user can replace that entry: the directory is root's (or the requester's) and nobody
 * else may write it, or it is sticky and the entry is root's. */
static bool dir_trusted(const struct stat *dir, uid_t entry_uid, uid_t req)
{
    bool owner_ok = dir->st_uid == 0 || dir->st_uid == req;
    bool group_w = (dir->st_mode & S_IWGRP) && dir->st_gid != 0;
    bool other_w = dir->st_mode & S_IWOTH;
    if (owner_ok && !group_w && !other_w)
        return true;
    return (dir->st_mode & S_ISVTX) && owner_ok && (entry_uid == 0 || entry_uid == req);
}

/* Root's walk: one name at a time from "/", O_NOFOLLOW, symlinks resolved here under the
 * rule above. Returns an O_PATH descriptor of the directory, or -1 with err. */
static int walk_as_root(const char *path, uid_t req, char *err, size_t errsz)
{
    char *rest = malloc(2 * PATH_MAX + 2);
    char *tmp = malloc(2 * PATH_MAX + 2);
    char at[PATH_MAX] = ""; /* the path walked so far, for messages */
    int cur = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    int links = 0, rc = -1;
    if (!rest || !tmp || cur < 0) {
        errf(err, errsz, "%s: %s", path, strerror(errno ? errno : ENOMEM));
        goto out;
    }
    snprintf(rest, 2 * PATH_MAX + 2, "%s", path);
    char *p = rest;
    for (;;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        char name[NAME_MAX + 1];
        if (len > NAME_MAX) {
            errf(err, errsz, "%s: %s", path, strerror(ENAMETOOLONG));
            goto out;
        }
        memcpy(name, p, len);
        name[len] = '\0';
        p += len;
        if (strcmp(name, ".") == 0)
            continue;
        struct stat dst, st;
        int next = openat(cur, name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 || fstat(cur, &dst) < 0 || fstat(next, &st) < 0) {
            errf(err, errsz, "%s: %s", path, strerror(errno));
            if (next >= 0)
                (void)close(next);
            goto out;
        }
        size_t atlen = strlen(at);
        snprintf(at + atlen, sizeof(at) - atlen, "/%s", name);
        if (S_ISLNK(st.st_mode) && st.st_uid != 0 && st.st_uid != req) {
            errf(err, errsz, "%s: refusing to follow the symlink %s as root: it belongs to uid %u",
                 path, at, (unsigned)st.st_uid);
            (void)close(next);
            goto out;
        }
        if (strcmp(name, "..") != 0 && !dir_trusted(&dst, st.st_uid, req)) {
            errf(err, errsz,
                 "%s: refusing to follow %s as root: its directory (owner uid %u, mode %04o) "
                 "lets another user replace it",
                 path, at, (unsigned)dst.st_uid, (unsigned)(dst.st_mode & 07777));
            (void)close(next);
            goto out;
        }
        if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlinkat(next, "", target, sizeof(target) - 1);
            int e = errno;
            (void)close(next);
            if (n < 0 || ++links > SEED_MAX_LINKS) {
                errf(err, errsz, "%s: %s", path, strerror(n < 0 ? e : ELOOP));
                goto out;
            }
            target[n] = '\0';
            if (snprintf(tmp, 2 * PATH_MAX + 2, "%s/%s", target, p) >= 2 * PATH_MAX + 2) {
                errf(err, errsz, "%s: %s", path, strerror(ENAMETOOLONG));
                goto out;
            }
            memcpy(rest, tmp, strlen(tmp) + 1);
            p = rest;
            if (target[0] == '/') {
                (void)close(cur);
                cur = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
                if (cur < 0) {
                    errf(err, errsz, "%s: %s", path, strerror(errno));
                    goto out;
                }
            }
            continue;
        }
        (void)close(cur);
        cur = next;
        if (!S_ISDIR(st.st_mode)) {
            errf(err, errsz, "%s: not a directory", path);
            goto out;
        }
    }
    rc = cur;
    cur = -1;
out:
    if (cur >= 0)
        (void)close(cur);
    free(rest);
    free(tmp);
    return rc;
}

/* Turns a located directory into the descriptor the cell gets; the reopen through "."
 * needs search permission and O_RDONLY read permission, both the caller's. */
static int reopen_dir(int at, const char *name, const char *path, char *err, size_t errsz)
{
    int fd = openat(at, name, O_RDONLY | O_DIRECTORY | O_CLOEXEC | O_NOCTTY);
    if (fd < 0)
        return errf(err, errsz, "%s: %s", path,
                    errno == ENOTDIR ? "not a directory" : strerror(errno));
    int d = openat(fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int e = errno;
    (void)close(fd);
    if (d < 0)
        return errf(err, errsz, "%s: %s", path, strerror(e));
    return d;
}

/* This thread's file system identity becomes the requester's: fsuid, fsgid, groups. The
 * raw system calls change only the calling thread (glibc's wrappers would change every
 * thread of the process). */
struct saved_ids {
    uid_t fsuid;
    gid_t fsgid;
    gid_t groups[NGROUPS_MAX > 4096 ? 4096 : NGROUPS_MAX];
    int ngroups;
};

static int become(const struct seed_requester *who, struct saved_ids *old)
{
    old->fsuid = (uid_t)syscall(SYS_setfsuid, -1);
    old->fsgid = (gid_t)syscall(SYS_setfsgid, -1);
    gid_t g[SEED_GROUPS_MAX];
    int n = who->ngroups > 0 ? who->ngroups : 1;
    if (who->ngroups > 0)
        memcpy(g, who->groups, sizeof(gid_t) * (size_t)n);
    else
        g[0] = who->gid;
    if (syscall(SYS_setgroups, (size_t)n, g) < 0)
        return -1;
    (void)syscall(SYS_setfsgid, who->gid);
    (void)syscall(SYS_setfsuid, who->uid);
    if ((uid_t)syscall(SYS_setfsuid, -1) != who->uid ||
        (gid_t)syscall(SYS_setfsgid, -1) != who->gid) {
        errno = EPERM;
        return -1;
    }
    return 0;
}

static void restore(const struct saved_ids *old)
{
    (void)syscall(SYS_setfsuid, old->fsuid);
    (void)syscall(SYS_setfsgid, old->fsgid);
    /* Going on with another user's identity would be worse than stopping. */
    if ((uid_t)syscall(SYS_setfsuid, -1) != old->fsuid ||
        (gid_t)syscall(SYS_setfsgid, -1) != old->fsgid ||
        syscall(SYS_setgroups, (size_t)old->ngroups, old->groups) < 0)
        abort();
}

int seed_open(const char *path, const struct seed_requester *who, char *err, size_t errsz)
{
    if (!path || path[0] != '/')
        return errf(err, errsz, "%s: expected an absolute path", path ? path : "(null)");
    bool root = geteuid() == 0;
    uid_t req = who ? who->uid : geteuid();
    if (!root && req != geteuid())
        return errf(err, errsz,
                    "%s: this supervisor runs as uid %u and cannot read a seed with the rights "
                    "of uid %u",
                    path, (unsigned)geteuid(), (unsigned)req);
    if (req == 0) {
        int at = walk_as_root(path, 0, err, errsz);
        if (at < 0)
            return -1;
        int fd = reopen_dir(at, ".", path, err, errsz);
        (void)close(at);
        return fd;
    }
    if (!root || !who) /* our own rights */
        return reopen_dir(AT_FDCWD, path, path, err, errsz);
    struct saved_ids old;
    old.ngroups = getgroups((int)(sizeof(old.groups) / sizeof(gid_t)), old.groups);
    if (old.ngroups < 0)
        return errf(err, errsz, "%s: getgroups: %s", path, strerror(errno));
    if (become(who, &old) < 0) {
        int e = errno;
        restore(&old);
        return errf(err, errsz, "%s: cannot take uid %u's rights: %s", path, (unsigned)who->uid,
                    strerror(e));
    }
    int fd = reopen_dir(AT_FDCWD, path, path, err, errsz);
    restore(&old);
    return fd;
}
