/* workspace: the cell's /workspace, a tmpfs whose size= and nr_inodes= are the disk quota
 * (the kernel fails a write past it with ENOSPC; nothing is polled), optionally seeded from a
 * host directory: overlayfs with a read-only bind of the source as lowerdir and the upper
 * layer on the quota'd tmpfs, or a copy. Never writes to the host directory and never follows
 * a symlink of it: the source is only ever reached through a read-only bind, and the copy
 * walks it with openat(O_NOFOLLOW) one name at a time. */
#include "cell_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

#define SEED_MAX_DEPTH 128

static void tmpfs_opts(char *out, size_t outsz, const struct policy_limits *lim)
{
    int n = snprintf(out, outsz, "mode=0755,uid=%u,gid=%u", CELL_UID, CELL_GID);
    if (lim->disk_bytes)
        n +=
            snprintf(out + n, outsz - (size_t)n, ",size=%llu", (unsigned long long)lim->disk_bytes);
    if (lim->inodes)
        snprintf(out + n, outsz - (size_t)n, ",nr_inodes=%llu", (unsigned long long)lim->inodes);
}

static int copy_file(int sfd, int dfd)
{
    char buf[65536];
    for (;;) {
        ssize_t n = read(sfd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        if (n == 0)
            return 0;
        if (write_all(dfd, buf, (size_t)n) < 0)
            return -1;
    }
}

/* The seed entry a failed copy stopped at, relative to the seed ("sub/file"): the error names
 * it (e.g. a 0600 file the cell's uid cannot read). */
static char copy_failed_at[PATH_MAX];

static void note_failure(const char *rel, const char *name)
{
    int e = errno;
    if (!copy_failed_at[0])
        snprintf(copy_failed_at, sizeof(copy_failed_at), "%s%s", rel, name);
    errno = e;
}

/* A directory read without malloc: fdopendir mallocs, and this child may have been cloned
 * from a supervisor thread while another of its threads held an allocator lock (serve and
 * batch make cells on spawner threads, supervisor/spawner.c): getdents64 into a buffer on
 * the stack. The dup shares sdir's offset, as fdopendir's did; names are read with *at. */
struct rawdir {
    int fd;
    long len, pos;
    char buf[4096];
};

static int rawdir_open(struct rawdir *d, int dir)
{
    d->len = d->pos = 0;
    d->fd = fcntl(dir, F_DUPFD_CLOEXEC, 0);
    return d->fd < 0 ? -1 : 0;
}

/* The next name but . and ..; NULL at the end (errno untouched) or on error (errno set). */
static const char *rawdir_next(struct rawdir *d)
{
    for (;;) {
        if (d->pos >= d->len) {
            d->len = syscall(SYS_getdents64, d->fd, d->buf, sizeof(d->buf));
            d->pos = 0;
            if (d->len <= 0)
                return NULL;
        }
        const char *rec = d->buf + d->pos;
        unsigned short reclen;
        memcpy(&reclen, rec + 16, sizeof(reclen)); /* d_ino 8, d_off 8, d_reclen 2, d_type 1 */
        d->pos += reclen;
        const char *name = rec + 19;
        if (strcmp(name, ".") != 0 && strcmp(name, "..") != 0)
            return name;
    }
}

static void rawdir_close(struct rawdir *d)
{
    int e = errno;
    (void)close(d->fd);
    errno = e;
}

/* Copies the directory sdir into ddir: regular files, directories and symlinks (as
 * symlinks); devices, fifos and sockets are skipped. rel is sdir's path below the seed ("" or
 * "a/b/"). */
static int copy_tree(int sdir, int ddir, const char *rel, int depth)
{
    if (depth > SEED_MAX_DEPTH) {
        errno = ELOOP;
        return -1;
    }
    struct rawdir d;
    if (rawdir_open(&d, sdir) < 0)
        return -1;
    int rc = 0;
    const char *name;
    while (rc == 0 && (errno = 0, name = rawdir_next(&d))) {
        struct stat st;
        if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            note_failure(rel, name);
            rc = -1;
            break;
        }
        mode_t mode = st.st_mode & 0777;
        if (S_ISDIR(st.st_mode)) {
            int s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (s < 0 || mkdirat(ddir, name, 0700) < 0) {
                note_failure(rel, name);
                if (s >= 0)
                    (void)close(s);
                rc = -1;
                break;
            }
            int t = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            char sub[PATH_MAX];
            if (snprintf(sub, sizeof(sub), "%s%s/", rel, name) >= (int)sizeof(sub)) {
                errno = ENAMETOOLONG;
                t = t < 0 ? t : (close(t), -1);
            }
            rc = t < 0 ? -1 : copy_tree(s, t, sub, depth + 1);
            if (rc == 0 && fchmod(t, mode | 0700) < 0)
                rc = -1;
            (void)close(s);
            if (t >= 0)
                (void)close(t);
        } else if (S_ISREG(st.st_mode)) {
            int s = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOCTTY);
            int t = s < 0 ? -1
                          : openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC,
                                   mode | 0600);
            if (t < 0 || copy_file(s, t) < 0)
                rc = -1;
            if (s >= 0)
                (void)close(s);
            if (t >= 0 && close(t) < 0)
                rc = -1;
        } else if (S_ISLNK(st.st_mode)) {
            char target[PATH_MAX];
            ssize_t n = readlinkat(sdir, name, target, sizeof(target) - 1);
            if (n < 0)
                rc = -1;
            else {
                target[n] = '\0';
                rc = symlinkat(target, ddir, name);
            }
        }
        if (rc < 0)
            note_failure(rel, name);
    }
    if (rc == 0 && errno != 0) { /* readdir failed */
        note_failure(rel, ".");
        rc = -1;
    }
    rawdir_close(&d);
    return rc;
}

static int copy_seed(struct cell_child *ctx, const char *seed, const char *ws)
{
    int s = open(seed, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (s < 0)
        return CHILD_FAIL(ctx, "open seed");
    int t = open(ws, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (t < 0) {
        (void)close(s);
        return CHILD_FAIL(ctx, "open /workspace");
    }
    copy_failed_at[0] = '\0';
    int rc = copy_tree(s, t, "", 0);
    int e = errno;
    (void)close(s);
    (void)close(t);
    errno = e;
    if (rc < 0) {
        static char step[PATH_MAX + 40];
        snprintf(step, sizeof(step), "copy seed into /workspace: %s",
                 copy_failed_at[0] ? copy_failed_at : ".");
        return CHILD_FAIL(ctx, step);
    }
    ctx->seed_mode = "copy";
    return 0;
}

/* True when every entry below dir is owned by the caller's uid and gid (rawdir: no malloc). */
static bool all_ours(int dir, int depth)
{
    if (depth > SEED_MAX_DEPTH)
        return false;
    struct rawdir d;
    if (rawdir_open(&d, dir) < 0)
        return false;
    bool ok = true;
    const char *name;
    while (ok && (errno = 0, name = rawdir_next(&d))) {
        struct stat st;
        if (fstatat(dir, name, &st, AT_SYMLINK_NOFOLLOW) < 0 || st.st_uid != geteuid() ||
            st.st_gid != getegid()) {
            ok = false;
            break;
        }
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            ok = sub >= 0 && all_ours(sub, depth + 1);
            if (sub >= 0)
                (void)close(sub);
        }
    }
    if (ok && errno != 0) /* getdents64 failed */
        ok = false;
    rawdir_close(&d);
    return ok;
}

/* Overlay only where it behaves like the copy: a copy-up keeps the lower file's owner, which
 * must be mapped in the cell (else writing it fails with EOVERFLOW). Only the caller's own
 * ids are mapped, and only for an unprivileged caller (as root the cell's uid is a slot uid
 * that owns nothing on the host), so: an unprivileged caller seeding from its own files. */
static bool overlay_fits(struct cell_child *ctx, const char *seed)
{
    if (ctx->root_caller)
        return false;
    int fd = open(seed, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return false;
    struct stat st;
    bool ok =
        fstat(fd, &st) == 0 && st.st_uid == geteuid() && st.st_gid == getegid() && all_ours(fd, 0);
    (void)close(fd);
    return ok;
}

static int try_overlay(struct cell_child *ctx, const char *newroot, const char *ws,
                       const char *seed, const char *opts)
{
    char stage[PATH_MAX], upper[PATH_MAX + 8], work[PATH_MAX + 8], ov[3 * PATH_MAX + 64];
    snprintf(stage, sizeof(stage), "%s/run/agentbox/.ws", newroot);
    snprintf(upper, sizeof(upper), "%s/upper", stage);
    snprintf(work, sizeof(work), "%s/work", stage);
    if (mkdir(stage, 0700) < 0 ||
        mount("tmpfs", stage, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, opts) < 0)
        return -1;
    snprintf(ov, sizeof(ov), "lowerdir=%s,upperdir=%s,workdir=%s,userxattr", seed, upper, work);
    int ok = mkdir(upper, 0755) == 0 && mkdir(work, 0700) == 0 &&
             mount("overlay", ws, "overlay", MS_NOSUID | MS_NODEV, ov) == 0;
    /* The overlay holds its own private clone of the upper mount: the staging mount point
     * can go, so the cell never sees the upper and work directories. */
    if (umount2(stage, MNT_DETACH) < 0 || rmdir(stage) < 0)
        return CHILD_FAIL(ctx, "overlay staging");
    if (!ok)
        return -1;
    ctx->seed_mode = "overlay";
    return 0;
}

/* Mounts the seed at target: root's parent cloned its mount (open_tree), which is moved into
 * place and made private (the clone is a peer of the host's mount); otherwise seed_fd is
 * this namespace's own copy (workspace_reopen_seed), bound through /proc. */
static int attach_seed(struct cell_child *ctx, const char *target)
{
    if (ctx->seed_tree_fd >= 0) {
        if (syscall(SYS_move_mount, ctx->seed_tree_fd, "", AT_FDCWD, target,
                    MOVE_MOUNT_F_EMPTY_PATH) < 0)
            return -1;
        return mount(NULL, target, NULL, MS_REC | MS_PRIVATE, NULL);
    }
    char src[64];
    snprintf(src, sizeof(src), "/proc/self/fd/%d", ctx->seed_fd);
    return mount(src, target, NULL, MS_BIND | MS_REC, NULL);
}

int workspace_reopen_seed(struct cell_child *ctx)
{
    if (ctx->seed_fd < 0 || ctx->seed_tree_fd >= 0)
        return 0;
    struct stat want, got;
    int fd = open(ctx->cfg->workspace_from, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return CHILD_FAIL(ctx, "open seed directory");
    if (fstat(ctx->seed_fd, &want) < 0 || fstat(fd, &got) < 0 || want.st_dev != got.st_dev ||
        want.st_ino != got.st_ino) {
        (void)close(fd);
        errno = ESTALE;
        return CHILD_FAIL(ctx, "open seed directory (it was replaced)");
    }
    ctx->seed_fd = fd;
    return 0;
}

int workspace_mount(struct cell_child *ctx, const char *newroot)
{
    const struct policy_limits *lim = &ctx->cfg->limits;
    char ws[PATH_MAX], seed[PATH_MAX], opts[160];
    snprintf(ws, sizeof(ws), "%s" CELL_WORKSPACE, newroot);
    tmpfs_opts(opts, sizeof(opts), lim);
    if (mkdir(ws, 0755) < 0)
        return CHILD_FAIL(ctx, "mkdir /workspace");
    if (lim->disk_bytes)
        ctx->enforced |= FEAT(CELL_F_DISK_QUOTA);
    if (lim->inodes)
        ctx->enforced |= FEAT(CELL_F_INODE_QUOTA);
    if (ctx->seed_fd < 0) {
        if (mount("tmpfs", ws, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
            return CHILD_FAIL(ctx, "/workspace tmpfs");
        return 0;
    }
    /* The pristine seed, read-only, where the agent loop can diff against it. */
    snprintf(seed, sizeof(seed), "%s" CELL_SEED_DIR, newroot);
    if (mkdir(seed, 0755) < 0 || attach_seed(ctx, seed) < 0)
        return CHILD_FAIL(ctx, "bind seed");
    if (mounts_restrict(seed, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true) < 0)
        return CHILD_FAIL(ctx, "seed read-only");
    if (overlay_fits(ctx, seed) && try_overlay(ctx, newroot, ws, seed, opts) == 0)
        return 0;
    if (ctx->step)
        return -1;
    if (mount("tmpfs", ws, "tmpfs", MS_NOSUID | MS_NODEV, opts) < 0)
        return CHILD_FAIL(ctx, "/workspace tmpfs");
    return copy_seed(ctx, seed, ws);
}
