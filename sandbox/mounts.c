/* mounts: the cell's file system view, built in its own mount namespace: a tmpfs root with
 * read-only binds of the policy's host paths, a minimal /dev, a fresh /proc with its
 * sensitive parts masked, sized /tmp and /dev/shm, then pivot_root. Never mounts anything
 * writable from the host, and never makes a mount less restricted than it was. */
#include "cell_internal.h"

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

/* Where the new root is built, in the cell's private mount namespace only. Host paths
 * below it are shadowed, so binds there are refused; the seed and the binary are opened
 * as fds before it is mounted. */
#define NEWROOT "/tmp"

static char step_buf[PATH_MAX + 32]; /* the child's own copy: names a failed path */

static int fail_path(struct cell_child *ctx, const char *what, const char *path)
{
    int e = errno;
    snprintf(step_buf, sizeof(step_buf), "%s %s", what, path);
    errno = e;
    return CHILD_FAIL(ctx, step_buf);
}

static int in_root(char *out, size_t outsz, const char *path)
{
    int n = snprintf(out, outsz, NEWROOT "%s", path);
    if (n < 0 || (size_t)n >= outsz) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

/* mkdir -p below the new root (which only we can write to at this point). */
static int mkdirs(const char *path, mode_t mode)
{
    char buf[PATH_MAX];
    if (snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    for (char *p = buf + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(buf, mode) < 0 && errno != EEXIST)
            return -1;
        *p = '/';
    }
    if (mkdir(buf, mode) < 0 && errno != EEXIST)
        return -1;
    return 0;
}

static int parent_dirs(const char *path)
{
    char buf[PATH_MAX];
    snprintf(buf, sizeof(buf), "%s", path);
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf)
        return 0;
    *slash = '\0';
    return mkdirs(buf, 0755);
}

static int touch(const char *path)
{
    if (parent_dirs(path) < 0)
        return -1;
    int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0444);
    if (fd < 0)
        return errno == EEXIST ? 0 : -1;
    return close(fd);
}

/* A read-only, nosuid, nodev bind of a host path at the same place in the new root; host
 * symlinks (/bin -> usr/bin on merged-/usr systems) are recreated as symlinks. */
static int bind_host(struct cell_child *ctx, const struct policy_bind *b)
{
    char target[PATH_MAX];
    if (b->path[0] != '/' || strcmp(b->path, "/") == 0 ||
        strncmp(b->path, NEWROOT "/", strlen(NEWROOT) + 1) == 0 || strcmp(b->path, NEWROOT) == 0) {
        errno = EINVAL;
        return fail_path(ctx, "bind", b->path);
    }
    if (in_root(target, sizeof(target), b->dest ? b->dest : b->path) < 0)
        return fail_path(ctx, "bind", b->path);
    struct stat st;
    if (lstat(b->path, &st) < 0) {
        if (errno == ENOENT && b->optional)
            return 0;
        return fail_path(ctx, "bind", b->path);
    }
    if (S_ISLNK(st.st_mode)) {
        char link[PATH_MAX];
        ssize_t n = readlink(b->path, link, sizeof(link) - 1);
        if (n < 0)
            return fail_path(ctx, "bind readlink", b->path);
        link[n] = '\0';
        if (parent_dirs(target) < 0 || (symlink(link, target) < 0 && errno != EEXIST))
            return fail_path(ctx, "bind symlink", b->path);
        return 0;
    }
    if (S_ISDIR(st.st_mode) ? mkdirs(target, 0755) : touch(target))
        return fail_path(ctx, "bind mountpoint", b->path);
    if (mount(b->path, target, NULL, MS_BIND | MS_REC, NULL) < 0)
        return fail_path(ctx, "bind", b->path);
    if (mounts_restrict(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, true))
        return fail_path(ctx, "bind read-only", b->path);
    return 0;
}

/* Scratch tmpfs (/tmp, /dev/shm) get the workspace's inode limit, or this without one: an
 * unbounded nr_inodes is half of RAM in inodes, kernel memory no rlimit holds. */
#define SCRATCH_INODES_DEFAULT 65536ull

static int mount_tmpfs(struct cell_child *ctx, const char *path, unsigned long flags,
                       const char *mode, uint64_t size, uint64_t inodes, const char *step)
{
    char opts[128];
    int n = snprintf(opts, sizeof(opts), "mode=%s", mode);
    if (size)
        n += snprintf(opts + n, sizeof(opts) - (size_t)n, ",size=%llu", (unsigned long long)size);
    if (inodes)
        snprintf(opts + n, sizeof(opts) - (size_t)n, ",nr_inodes=%llu", (unsigned long long)inodes);
    if (mkdirs(path, 0755) < 0 || mount("tmpfs", path, "tmpfs", flags, opts) < 0)
        return CHILD_FAIL(ctx, step);
    return 0;
}

static uint64_t scratch_inodes(const struct cell_child *ctx)
{
    return ctx->cfg->limits.inodes ? ctx->cfg->limits.inodes : SCRATCH_INODES_DEFAULT;
}

static int make_dev(struct cell_child *ctx)
{
    static const char *const nodes[] = {"null", "zero", "full", "random", "urandom"};
    static const char *const links[][2] = {{"fd", "/proc/self/fd"},
                                           {"stdin", "/proc/self/fd/0"},
                                           {"stdout", "/proc/self/fd/1"},
                                           {"stderr", "/proc/self/fd/2"}};
    char host[64], target[PATH_MAX];
    /* No tty, no pts: a cell has no terminal to inject into (CVE-2017-5226). */
    if (mount_tmpfs(ctx, NEWROOT "/dev", MS_NOSUID | MS_NOEXEC, "0755", 64 << 10, 64, "/dev tmpfs"))
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(nodes); i++) {
        snprintf(host, sizeof(host), "/dev/%s", nodes[i]);
        snprintf(target, sizeof(target), NEWROOT "/dev/%s", nodes[i]);
        if (touch(target) < 0 || mount(host, target, NULL, MS_BIND, NULL) < 0 ||
            mounts_restrict(target, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC, false) < 0)
            return fail_path(ctx, "/dev node", host);
    }
    for (size_t i = 0; i < ARRAY_SIZE(links); i++) {
        snprintf(target, sizeof(target), NEWROOT "/dev/%s", links[i][0]);
        if (symlink(links[i][1], target) < 0)
            return fail_path(ctx, "/dev symlink", links[i][0]);
    }
    /* Private and sized: a shared /dev/shm would be a channel between cells. */
    uint64_t shm = ctx->cfg->policy->shm_bytes;
    if (mount_tmpfs(ctx, NEWROOT "/dev/shm", MS_NOSUID | MS_NODEV, "1777", shm, scratch_inodes(ctx),
                    "/dev/shm tmpfs"))
        return -1;
    /* The /dev tmpfs belongs to the cell's uid (it mounted it): read-only, so nothing can be
     * added to it. Writing to the device nodes is unaffected. */
    if (mounts_restrict(NEWROOT "/dev", MOUNT_ATTR_RDONLY, false) < 0)
        return CHILD_FAIL(ctx, "/dev read-only");
    return 0;
}

/* As bubblewrap does: what configures the host kernel is read-only, and the few files that
 * expose host kernel memory or timers are covered with /dev/null. The cell's root has no
 * capability over the host anyway (root-only files such as kpageflags stay closed to it);
 * this is defence in depth. Each mount costs set-up and tear-down time, so only these. */
static int make_proc(struct cell_child *ctx)
{
    static const char *const masked[] = {"kcore", "timer_list", "sched_debug"};
    static const char *const readonly[] = {"sys", "sysrq-trigger", "irq", "bus"};
    char target[PATH_MAX];
    if (mkdirs(NEWROOT "/proc", 0755) < 0 ||
        mount("proc", NEWROOT "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return CHILD_FAIL(ctx, "mount /proc");
    /* while its /proc/sys is still writable (and we still hold the namespace's caps) */
    if (limits_cap_ucounts(ctx, NEWROOT "/proc/sys/user") < 0)
        return -1;
    for (size_t i = 0; i < ARRAY_SIZE(masked); i++) {
        snprintf(target, sizeof(target), NEWROOT "/proc/%s", masked[i]);
        if (access(target, F_OK) < 0)
            continue;
        if (mount(NEWROOT "/dev/null", target, NULL, MS_BIND, NULL) < 0)
            return fail_path(ctx, "mask", target + strlen(NEWROOT));
    }
    for (size_t i = 0; i < ARRAY_SIZE(readonly); i++) {
        snprintf(target, sizeof(target), NEWROOT "/proc/%s", readonly[i]);
        if (access(target, F_OK) < 0)
            continue;
        if (mount(target, target, NULL, MS_BIND | MS_REC, NULL) < 0 ||
            mounts_restrict(target,
                            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV |
                                MOUNT_ATTR_NOEXEC,
                            true) < 0)
            return fail_path(ctx, "read-only", target + strlen(NEWROOT));
    }
    return 0;
}

static int bind_agent_binary(struct cell_child *ctx)
{
    char src[64];
    snprintf(src, sizeof(src), "/proc/self/fd/%d", ctx->exe_fd);
    if (touch(NEWROOT CELL_AGENT_BIN) < 0)
        return CHILD_FAIL(ctx, "bind agent binary");
    if (ctx->exe_tree_fd >= 0) {
        /* root's parent cloned the mount: move it here, no longer a peer of the host's */
        if (syscall(SYS_move_mount, ctx->exe_tree_fd, "", AT_FDCWD, NEWROOT CELL_AGENT_BIN,
                    MOVE_MOUNT_F_EMPTY_PATH) < 0 ||
            mount(NULL, NEWROOT CELL_AGENT_BIN, NULL, MS_PRIVATE, NULL) < 0)
            return CHILD_FAIL(ctx, "bind agent binary");
    } else if (mount(src, NEWROOT CELL_AGENT_BIN, NULL, MS_BIND, NULL) < 0)
        return CHILD_FAIL(ctx, "bind agent binary");
    if (mounts_restrict(NEWROOT CELL_AGENT_BIN,
                        MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, false) < 0)
        return CHILD_FAIL(ctx, "bind agent binary");
    return 0;
}

/* The cell's own account names: with the host's /etc bound, `whoami` would name whichever
 * host account has uid 1000 while USER says agent. Small passwd and group files in the new
 * root (not the host's list of accounts) are bound over the host's, read-only. */
static int bind_identity(struct cell_child *ctx)
{
    static const struct {
        const char *path, *text;
    } files[] = {
        {"/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"
                        "agent:x:1000:1000:agentbox cell:" CELL_WORKSPACE ":/bin/sh\n"
                        "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"},
        {"/etc/group", "root:x:0:\nagent:x:1000:\nnogroup:x:65534:\n"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(files); i++) {
        char target[PATH_MAX], src[PATH_MAX];
        struct stat st;
        if (in_root(target, sizeof(target), files[i].path) < 0 || lstat(target, &st) < 0 ||
            !S_ISREG(st.st_mode))
            continue; /* no /etc in this policy, or no such file: nothing to contradict */
        snprintf(src, sizeof(src), NEWROOT "/run/agentbox/%s", strrchr(files[i].path, '/') + 1);
        int fd = open(src, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0644);
        bool ok = fd >= 0 && write_all(fd, files[i].text, strlen(files[i].text)) == 0;
        if (fd >= 0 && close(fd) < 0)
            ok = false;
        if (!ok)
            return fail_path(ctx, "write cell identity", files[i].path);
        /* Best effort: the host replaces these files by rename (useradd, passwd), which
         * makes a mount onto the old one fail (ENOENT) or dissolves it (EINVAL when made
         * read-only); a few tries find the new file, and a cell whose `whoami` names a host
         * account is better than a cell that never starts. */
        for (int tries = 0; tries < 5; tries++) {
            if (mount(src, target, NULL, MS_BIND, NULL) == 0 &&
                mounts_restrict(target, MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                                false) == 0)
                break;
            (void)umount2(target, MNT_DETACH); /* never a writable bind left behind */
        }
    }
    return 0;
}

int mounts_build_root(struct cell_child *ctx)
{
    const struct policy *p = ctx->cfg->policy;
    /* Nothing we mount may propagate back to the host's mount namespace. */
    if (mount(NULL, "/", NULL, MS_REC | MS_PRIVATE, NULL) < 0)
        return CHILD_FAIL(ctx, "make / private");
    if (mount("tmpfs", NEWROOT, "tmpfs", MS_NOSUID | MS_NODEV, "mode=0755,size=1M,nr_inodes=4096") <
        0)
        return CHILD_FAIL(ctx, "new root tmpfs");
    for (size_t i = 0; i < p->nbinds; i++)
        if (bind_host(ctx, &p->binds[i]) < 0)
            return -1;
    if (make_dev(ctx) < 0 || make_proc(ctx) < 0)
        return -1;
    if (mount_tmpfs(ctx, NEWROOT "/tmp", MS_NOSUID | MS_NODEV, "1777", p->tmp_bytes,
                    scratch_inodes(ctx), "/tmp tmpfs"))
        return -1;
    if (mkdirs(NEWROOT "/run/agentbox", 0755) < 0)
        return CHILD_FAIL(ctx, "mkdir /run/agentbox");
    if (bind_identity(ctx) < 0)
        return -1;
    if (workspace_mount(ctx, NEWROOT) < 0)
        return -1;
    if (ctx->cfg->pid1 == CELL_PID1_AGENT && bind_agent_binary(ctx) < 0)
        return -1;
    return 0;
}

int mounts_enter_root(struct cell_child *ctx)
{
    /* pivot_root(".", ".") stacks the old root under the new one; detaching it leaves no
     * path back to the host's tree (as runc does). */
    if (chdir(NEWROOT) < 0 || syscall(SYS_pivot_root, ".", ".") < 0)
        return CHILD_FAIL(ctx, "pivot_root");
    if (umount2(".", MNT_DETACH) < 0)
        return CHILD_FAIL(ctx, "detach old root");
    if (chdir("/") < 0)
        return CHILD_FAIL(ctx, "chdir /");
    if (mounts_restrict("/", MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV, false))
        return CHILD_FAIL(ctx, "remount / read-only");
    /* cwd inside the cell, never a host directory (CVE-2024-21626). */
    if (chdir(CELL_WORKSPACE) < 0)
        return CHILD_FAIL(ctx, "chdir /workspace");
    return 0;
}
