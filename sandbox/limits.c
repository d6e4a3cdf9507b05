/* limits: the cell's rlimits (core dumps off, open files, file size, CPU seconds), and the
 * fallbacks for memory and process counts when no cgroup can hold them: RLIMIT_AS and
 * RLIMIT_NPROC (which counts per user namespace since Linux 5.14, so each cell's own userns
 * gives it its own count). Never raises a limit above what the cell inherited. */
#include "cell_internal.h"

#include <math.h>
#include <sys/resource.h>

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

int limits_apply(struct cell_child *ctx, bool cgroup_memory, bool cgroup_pids)
{
    const struct policy_limits *lim = &ctx->cfg->limits;
    if (cap_limit(RLIMIT_CORE, 0) < 0)
        return CHILD_FAIL(ctx, "RLIMIT_CORE");
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
