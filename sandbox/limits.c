/* limits: the cell's rlimits (core dumps off, open files, file size, CPU seconds), and the
 * fallbacks for memory and process counts when no cgroup can hold them: RLIMIT_AS and
 * RLIMIT_NPROC (which counts per user namespace since Linux 5.14, so each cell's own userns
 * gives it its own count). Never raises a limit above what the cell inherited. */
#include "cell_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "util.h"

/* Each cell's share of the kernel's per-user counters (docs/sandbox.md, "Kernel counters"):
 * below the usual per-user defaults (128 inotify instances, 8192+ watches, 819200 mqueue
 * bytes, RLIMIT_SIGPENDING in the tens of thousands), so no one cell can take all of them
 * from the user's other cells. */
#define CELL_INOTIFY_INSTANCES 32
#define CELL_INOTIFY_WATCHES   16384
#define CELL_FANOTIFY_GROUPS   8
#define CELL_FANOTIFY_MARKS    8192
#define CELL_SIGPENDING        1024
#define CELL_MSGQUEUE_BYTES    204800

static int cap_limit(int resource, rlim_t value)
{
    struct rlimit cur;
    if (getrlimit(resource, &cur) < 0)
        return -1;
    struct rlimit r = {value, value};
    if (cur.rlim_max != RLIM_INFINITY && r.rlim_max > cur.rlim_max)
        r.rlim_max = cur.rlim_max;
    if (r.rlim_cur > r.rlim_max)
        r.rlim_cur = r.rlim_max;
    return setrlimit(resource, &r);
}

/* Lowers one of the cell's user namespace's counters ("max_inotify_instances"...) below dir
 * (its /proc/sys/user); 0 if this kernel has no such counter. Never raises one. */
static int lower_ucount(const char *dir, const char *name, long value)
{
    char path[256], cur[32];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -1;
    ssize_t n = read(fd, cur, sizeof(cur) - 1);
    if (n > 0) {
        cur[n] = '\0';
        long now = strtol(cur, NULL, 10);
        if (now >= 0 && now <= value) {
            (void)close(fd);
            return 0;
        }
    }
    int len = snprintf(cur, sizeof(cur), "%ld\n", value);
    int rc = pwrite(fd, cur, (size_t)len, 0) == len ? 0 : -1;
    int e = errno;
    (void)close(fd);
    errno = e;
    return rc;
}

int limits_cap_ucounts(struct cell_child *ctx, const char *sys_user_dir)
{
    static const struct {
        const char *name;
        long value;
    } caps[] = {{"max_inotify_instances", CELL_INOTIFY_INSTANCES},
                {"max_inotify_watches", CELL_INOTIFY_WATCHES},
                {"max_fanotify_groups", CELL_FANOTIFY_GROUPS},
                {"max_fanotify_marks", CELL_FANOTIFY_MARKS}};
    for (size_t i = 0; i < ARRAY_SIZE(caps); i++)
        if (lower_ucount(sys_user_dir, caps[i].name, caps[i].value) < 0)
            return CHILD_FAIL(ctx, caps[i].name);
    ctx->enforced |= FEAT(CELL_F_UCOUNTS); /* with the rlimits limits_apply sets */
    return 0;
}

int limits_apply(struct cell_child *ctx, bool cgroup_memory, bool cgroup_pids)
{
    const struct policy_limits *lim = &ctx->cfg->limits;
    if (cap_limit(RLIMIT_CORE, 0) < 0)
        return CHILD_FAIL(ctx, "RLIMIT_CORE");
    /* counted per user namespace and uid, so these are the cell's own shares */
    if (cap_limit(RLIMIT_SIGPENDING, CELL_SIGPENDING) < 0)
        return CHILD_FAIL(ctx, "RLIMIT_SIGPENDING");
    if (cap_limit(RLIMIT_MSGQUEUE, CELL_MSGQUEUE_BYTES) < 0)
        return CHILD_FAIL(ctx, "RLIMIT_MSGQUEUE");
    if (lim->nofile) {
        if (cap_limit(RLIMIT_NOFILE, (rlim_t)lim->nofile) < 0)
            return CHILD_FAIL(ctx, "RLIMIT_NOFILE");
        ctx->enforced |= FEAT(CELL_F_NOFILE_RLIMIT);
    }
    if (lim->fsize_bytes) {
        if (cap_limit(RLIMIT_FSIZE, (rlim_t)lim->fsize_bytes) < 0)
            return CHILD_FAIL(ctx, "RLIMIT_FSIZE");
        ctx->enforced |= FEAT(CELL_F_FSIZE_RLIMIT);
    }
    if (lim->cpu_s > 0) {
        /* soft limit: SIGXCPU; one second later the hard limit: SIGKILL. */
        rlim_t s = (rlim_t)ceil(lim->cpu_s);
        struct rlimit cur;
        if (getrlimit(RLIMIT_CPU, &cur) < 0)
            return CHILD_FAIL(ctx, "RLIMIT_CPU");
        struct rlimit r = {s, s + 1};
        if (cur.rlim_max != RLIM_INFINITY && r.rlim_max > cur.rlim_max)
            r.rlim_max = cur.rlim_max;
        if (r.rlim_cur > r.rlim_max)
            r.rlim_cur = r.rlim_max;
        if (setrlimit(RLIMIT_CPU, &r) < 0)
            return CHILD_FAIL(ctx, "RLIMIT_CPU");
        ctx->enforced |= FEAT(CELL_F_CPU_RLIMIT);
    }
    if (lim->memory_bytes && !cgroup_memory) {
        if (cap_limit(RLIMIT_AS, (rlim_t)lim->memory_bytes) < 0)
            return CHILD_FAIL(ctx, "RLIMIT_AS");
        ctx->enforced |= FEAT(CELL_F_MEMORY_RLIMIT);
        ctx->unavailable |= FEAT(CELL_F_MEMORY);
    }
    if (lim->pids && !cgroup_pids) {
        if (cap_limit(RLIMIT_NPROC, (rlim_t)lim->pids) < 0)
            return CHILD_FAIL(ctx, "RLIMIT_NPROC");
        ctx->enforced |= FEAT(CELL_F_PIDS_RLIMIT);
        ctx->unavailable |= FEAT(CELL_F_PIDS);
    }
    return 0;
}
