/* cgroup: memory and pids limits for a cell. cgroup v2: a child of a delegated parent
 * ($AGENTBOX_CGROUP, or our own cgroup) that pid 1 is cloned into (CLONE_INTO_CGROUP), or v1:
 * the memory and pids hierarchies, which pid 1 is moved into. Cells' cgroups are named after their
 * slot ("u<UID>-s<N>") below an "agentbox" cgroup and kept, empty, for the slot's next cell
 * (its limits rewritten, its figures reset); one found holding tasks (a SIGKILLed owner's) is
 * killed and removed by the next holder of that slot, or by anyone who finds the slot's lock
 * free (sweep). Never shares a cgroup between a cell and anything else. Never fails a cell:
 * what cannot be enforced is reported, and limits.c falls back. */
#include "cell_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define V2_ROOT     "/sys/fs/cgroup"
#define V2_ALT_ROOT "/sys/fs/cgroup/unified"
#define V1_MEMORY   "/sys/fs/cgroup/memory"
#define V1_PIDS     "/sys/fs/cgroup/pids"

static int put(const char *dir, const char *file, const char *text)
{
    char path[640];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int r = write_all(fd, text, strlen(text));
    if (close(fd) < 0)
        r = -1;
    return r;
}

static int get(const char *dir, const char *file, char *buf, size_t bufsz)
{
    char path[640];
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = read(fd, buf, bufsz - 1);
    (void)close(fd);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return 0;
}

static bool has_word(const char *text, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = text; (p = strstr(p, word)); p += n)
        if ((p == text || p[-1] == ' ' || p[-1] == '\n') &&
            (p[n] == ' ' || p[n] == '\n' || p[n] == '\0'))
            return true;
    return false;
}

/* "memory" in a v1 controller list like "cpu,cpuacct" or "memory". */
static bool has_word_list(const char *list, const char *word)
{
    size_t n = strlen(word);
    for (const char *p = list; (p = strstr(p, word)); p += n)
        if ((p == list || p[-1] == ',') && (p[n] == ',' || p[n] == '\0'))
            return true;
    return false;
}

int cgroup_parse_own_path(const char *proc_cgroup, const char *key, char *out, size_t outsz)
{
    char buf[4096];
    if (snprintf(buf, sizeof(buf), "%s", proc_cgroup) >= (int)sizeof(buf))
        return -1;
    char *save = NULL;
    for (char *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        char *c1 = strchr(line, ':');
        char *c2 = c1 ? strchr(c1 + 1, ':') : NULL;
        if (!c2)
            continue;
        *c1 = *c2 = '\0'; /* line: the hierarchy id ("0" is v2's); c1 + 1: its controllers */
        const char *ctrls = c1 + 1;
        bool match = key[0] ? has_word_list(ctrls, key) : (strcmp(line, "0") == 0 && !*ctrls);
        if (match) {
            snprintf(out, outsz, "%s", strcmp(c2 + 1, "/") == 0 ? "" : c2 + 1);
            return 0;
        }
    }
    return -1;
}

/* /proc/self/cgroup, read once per cgroup_create ("" when unreadable: no hierarchy matches). */
static void read_own_cgroups(char *buf, size_t bufsz)
{
    if (get("/proc/self", "cgroup", buf, bufsz) < 0)
        buf[0] = '\0';
}

/* How long removal waits in line for the last tasks to be reaped (the janitor waits longer). */
#define RM_WAIT_MS 200
/* How often a cell's set-up sweeps for cgroups that dead holders left (see sweep). */
#define SWEEP_PERIOD_S 10.0

void cgroup_remove(const char *path, int version, int wait_ms)
{
    if (version == 2)
        (void)put(path, "cgroup.kill", "1"); /* Linux 5.14 */
    else {
        char procs[4096];
        if (get(path, "cgroup.procs", procs, sizeof(procs)) == 0)
            for (char *sv = NULL, *l = strtok_r(procs, "\n", &sv); l; l = strtok_r(NULL, "\n", &sv))
                if (atoi(l) > 1)
                    (void)kill(atoi(l), SIGKILL);
    }
    /* Tasks leave the cgroup only once fully reaped; a short retry covers that. */
    for (int i = 0; i < wait_ms; i++) {
        if (rmdir(path) == 0 || errno == ENOENT)
            break;
        if (errno != EBUSY)
            return;
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
    /* The shared "agentbox" parent goes too once no cell uses it (ENOTEMPTY otherwise). */
    char parent[640];
    snprintf(parent, sizeof(parent), "%s", path);
    char *slash = strrchr(parent, '/');
    if (slash && strcmp(slash, "/agentbox") != 0) {
        *slash = '\0';
        slash = strrchr(parent, '/');
        if (slash && strcmp(slash, "/agentbox") == 0)
            (void)rmdir(parent);
    }
}

static bool holds_no_task(const char *dir, int version, bool pids);

/* Removes cgroups that hold tasks while their slot's lock is free: their holder died with its
 * janitor. Empty ones are slots' kept cgroups (see cgroup_release), left for their next cell. */
static void sweep(const char *parent, int version, bool pids, const struct cell_slot *mine)
{
    DIR *d = opendir(parent);
    if (!d)
        return;
    char prefix[32];
    snprintf(prefix, sizeof(prefix), "u%u-s", (unsigned)geteuid());
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, prefix, strlen(prefix)) != 0)
            continue;
        uint64_t idx;
        if (uint_parse(e->d_name + strlen(prefix), 65535, &idx) < 0 || (int)idx == mine->index)
            continue;
        char path[640];
        snprintf(path, sizeof(path), "%s/%s", parent, e->d_name);
        struct cell_slot other = {.index = -1, .lock_fd = -1};
        if (holds_no_task(path, version, pids) || slot_try((int)idx, &other) != 1)
            continue;
        cgroup_remove(path, version, RM_WAIT_MS);
        slot_release(&other);
    }
    (void)closedir(d);
}

/* Whether a cgroup holds no task. Where it has the pids controller, pids.current, which also
 * counts tasks not yet reaped; else cgroup.procs. */
static bool holds_no_task(const char *dir, int version, bool pids)
{
    char buf[256];
    if (pids)
        return get(dir, "pids.current", buf, sizeof(buf)) == 0 && strtoull(buf, NULL, 10) == 0;
    if (version == 2)
        return get(dir, "cgroup.events", buf, sizeof(buf)) == 0 && strstr(buf, "populated 0");
    return get(dir, "cgroup.procs", buf, sizeof(buf)) == 0 && buf[0] == '\0';
}

/* The slot's cgroup parent/u<UID>-s<N>: the one its last cell left if it holds no task
 * (*kept), else made afresh (one with tasks belonged to a holder that died with its janitor:
 * killed and removed first). The parent is removed by whoever empties it, so it may vanish
 * between the two mkdirs: retry. v2: `enable` is written to the parent's subtree_control. */
static int slot_cgroup(const char *parent, const char *enable, const struct cell_slot *slot,
                       int version, bool pids, char *out, size_t outsz, bool *kept)
{
    snprintf(out, outsz, "%s/u%u-s%d", parent, (unsigned)geteuid(), slot->index);
    *kept = false;
    for (int attempt = 0; attempt < 4; attempt++) {
        if (mkdir(parent, 0755) < 0 && errno != EEXIST)
            return -1;
        if (enable && put(parent, "cgroup.subtree_control", enable) < 0) {
            if (errno == ENOENT)
                continue;
            return -1;
        }
        if (mkdir(out, 0755) == 0)
            return 0;
        int e = errno;
        if (e == EEXIST && holds_no_task(out, version, pids)) {
            *kept = true;
            return 0;
        }
        if (e == EEXIST)
            cgroup_remove(out, version, RM_WAIT_MS);
        else if (e != ENOENT)
            return -1;
    }
    return -1;
}

static uint64_t field(const char *text, const char *key);

static void close_fds(struct cell_cgroup *cg)
{
    if (cg->dir_fd >= 0)
        (void)close(cg->dir_fd);
    if (cg->peak_fd >= 0)
        (void)close(cg->peak_fd);
    cg->dir_fd = cg->peak_fd = -1;
}

/* v2: memory.peak reset for this cell through a descriptor kept for cgroup_stats (Linux 6.12
 * resets it for reads through the descriptor that wrote it). Where the kernel cannot, the
 * cgroup is not kept (cgroup_release): its next cell would see this one's peak. The
 * memory.events counters cannot be reset: the cell's OOM kills are the rise from its base. */
static int v2_open_peak(struct cell_cgroup *cg)
{
    char path[640], buf[512];
    snprintf(path, sizeof(path), "%s/memory.peak", cg->path);
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return -1;
    /* written on a new cgroup too: whether the kernel can reset it decides keeping it */
    if (write(fd, "reset\n", 6) != 6) {
        (void)close(fd);
        return -1;
    }
    if (get(cg->path, "memory.events", buf, sizeof(buf)) < 0) {
        (void)close(fd);
        return -1;
    }
    cg->oom_base = field(buf, "oom_kill");
    cg->peak_fd = fd;
    return 0;
}

/* v1: the peak is reset by writing 0 (to the current usage: the page cache earlier cells of
 * the slot left charged here, reclaimable); the OOM count is the rise from here. */
static int v1_reset_memory_stats(struct cell_cgroup *cg)
{
    char buf[512];
    if (put(cg->path, "memory.max_usage_in_bytes", "0") < 0 ||
        get(cg->path, "memory.oom_control", buf, sizeof(buf)) < 0)
        return -1;
    cg->oom_base = field(buf, "oom_kill");
    return 0;
}

static bool try_v2(struct cell_cgroup *cg, const struct cell_slot *slot,
                   const struct policy_limits *lim, bool sweep_now)
{
    char base[512], own[256], ctrls[512], parent[560];
    const char *env = getenv("AGENTBOX_CGROUP");
    if (env && env[0] == '/')
        snprintf(base, sizeof(base), "%s", env);
    else {
        const char *root = access(V2_ROOT "/cgroup.controllers", F_OK) == 0 ? V2_ROOT : V2_ALT_ROOT;
        char procs[4096];
        read_own_cgroups(procs, sizeof(procs));
        if (cgroup_parse_own_path(procs, "", own, sizeof(own)) < 0)
            return false;
        snprintf(base, sizeof(base), "%s%s", root, own);
    }
    if (get(base, "cgroup.controllers", ctrls, sizeof(ctrls)) < 0)
        return false;
    bool want_mem = lim->memory_bytes && has_word(ctrls, "memory");
    bool want_pids = lim->pids && has_word(ctrls, "pids");
    if (!want_mem && !want_pids)
        return false;
    char enable[32];
    snprintf(enable, sizeof(enable), "%s%s", want_mem ? "+memory " : "", want_pids ? "+pids" : "");
    snprintf(parent, sizeof(parent), "%s/agentbox", base);
    /* Fails with EBUSY when base holds processes (the no-internal-process rule); then the
     * parent must be delegated with AGENTBOX_CGROUP. Already-enabled is fine. */
    (void)put(base, "cgroup.subtree_control", enable);
    char on[512];
    if (get(base, "cgroup.subtree_control", on, sizeof(on)) < 0 ||
        (want_mem && !has_word(on, "memory")) || (want_pids && !has_word(on, "pids")))
        return false;
    if (sweep_now)
        sweep(parent, 2, false, slot);
    bool kept;
    if (slot_cgroup(parent, enable, slot, 2, false, cg->path, sizeof(cg->path), &kept) < 0)
        return false;
    if (want_mem && v2_open_peak(cg) < 0 && kept) {
        /* cannot be reset (or not kept by a kernel before 6.12): a fresh cgroup then */
        cgroup_remove(cg->path, 2, RM_WAIT_MS);
        if (slot_cgroup(parent, enable, slot, 2, false, cg->path, sizeof(cg->path), &kept) < 0)
            return false;
        (void)v2_open_peak(cg);
    }
    char v[32];
    if (want_mem) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->memory_bytes);
        cg->memory = put(cg->path, "memory.max", v) == 0;
        /* also on a kept one: its last cell may have had no memory limit */
        (void)put(cg->path, "memory.swap.max", "0");
        (void)put(cg->path, "memory.oom.group", "1"); /* an OOM kill takes the whole cell */
    } else if (kept)
        (void)put(cg->path, "memory.max", "max"); /* a limit of the slot's last cell */
    if (want_pids) {
        snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->pids);
        cg->pids = put(cg->path, "pids.max", v) == 0;
    } else if (kept)
        (void)put(cg->path, "pids.max", "max");
    cg->dir_fd = open(cg->path, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (cg->dir_fd < 0 || (!cg->memory && !cg->pids)) {
        cgroup_remove(cg->path, 2, RM_WAIT_MS);
        close_fds(cg);
        cg->memory = cg->pids = false;
        return false;
    }
    cg->version = 2;
    return true;
}

static bool try_v1(struct cell_cgroup *cg, const struct cell_slot *slot,
                   const struct policy_limits *lim, bool sweep_now)
{
    char own[256], parent[560], v[32], procs[4096];
    read_own_cgroups(procs, sizeof(procs));
    if (lim->memory_bytes && access(V1_MEMORY "/memory.limit_in_bytes", F_OK) == 0 &&
        cgroup_parse_own_path(procs, "memory", own, sizeof(own)) == 0) {
        snprintf(parent, sizeof(parent), V1_MEMORY "%s/agentbox", own);
        if (access(V1_MEMORY, W_OK) == 0) {
            if (sweep_now)
                sweep(parent, 1, false, slot);
            bool kept;
            if (slot_cgroup(parent, NULL, slot, 1, false, cg->path, sizeof(cg->path), &kept) == 0) {
                snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->memory_bytes);
                /* memory+swap too where swap accounting is on, or the limit leaks to swap; it
                 * may never be below the memory limit, so a kept one's is lifted first */
                if (kept)
                    (void)put(cg->path, "memory.memsw.limit_in_bytes", "-1");
                cg->memory = put(cg->path, "memory.limit_in_bytes", v) == 0;
                (void)put(cg->path, "memory.memsw.limit_in_bytes", v);
                /* a kept one whose figures cannot be reset would report earlier cells' */
                if (cg->memory && kept && v1_reset_memory_stats(cg) < 0)
                    cg->memory = false;
                if (!cg->memory)
                    cgroup_remove(cg->path, 1, RM_WAIT_MS);
            }
        }
    }
    if (!cg->memory)
        cg->path[0] = '\0';
    /* The root of a hierarchy has no pids.max: test for the controller's own file. */
    if (lim->pids && access(V1_PIDS "/cgroup.procs", F_OK) == 0 && access(V1_PIDS, W_OK) == 0 &&
        cgroup_parse_own_path(procs, "pids", own, sizeof(own)) == 0) {
        snprintf(parent, sizeof(parent), V1_PIDS "%s/agentbox", own);
        if (sweep_now)
            sweep(parent, 1, true, slot);
        bool kept;
        if (slot_cgroup(parent, NULL, slot, 1, true, cg->pids_path, sizeof(cg->pids_path), &kept) ==
            0) {
            snprintf(v, sizeof(v), "%llu", (unsigned long long)lim->pids);
            cg->pids = put(cg->pids_path, "pids.max", v) == 0;
            if (!cg->pids)
                cgroup_remove(cg->pids_path, 1, RM_WAIT_MS);
        }
    }
    if (!cg->pids)
        cg->pids_path[0] = '\0';
    if (cg->memory || cg->pids)
        cg->version = 1;
    return cg->version == 1;
}

void cgroup_create(struct cell_cgroup *cg, int version, const struct cell_slot *slot,
                   const struct policy_limits *lim)
{
    memset(cg, 0, sizeof(*cg));
    cg->dir_fd = cg->peak_fd = -1;
    if ((!lim->memory_bytes && !lim->pids) || slot->index < 0)
        return;
    /* The sweep reads every kept cgroup (hundreds after a busy serve: 9 ms of CPU a cell
     * here); it is a backstop for the janitor, so once per SWEEP_PERIOD_S is enough. */
    bool sweep_now = slot_sweep_due(SWEEP_PERIOD_S);
    if (version == 2)
        (void)try_v2(cg, slot, lim, sweep_now);
    else
        (void)try_v1(cg, slot, lim, sweep_now);
}

static int enter(const char *dir)
{
    char path[640];
    snprintf(path, sizeof(path), "%s/tasks", dir);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    ssize_t n = write(fd, "0", 1);
    int e = errno;
    if (close(fd) < 0 && n == 1)
        return -1;
    errno = e;
    return n == 1 ? 0 : -1;
}

int cgroup_enter(struct cell_child *ctx, const char *memory_path, const char *pids_path)
{
    if (memory_path[0] && enter(memory_path) < 0)
        return CHILD_FAIL(ctx, "enter memory cgroup");
    if (pids_path[0] && enter(pids_path) < 0)
        return CHILD_FAIL(ctx, "enter pids cgroup");
    return 0;
}

int cgroup_grant_tasks(const struct cell_cgroup *cg, uid_t uid, gid_t gid)
{
    const char *dirs[] = {cg->memory ? cg->path : "", cg->pids ? cg->pids_path : ""};
    for (size_t i = 0; i < 2; i++) {
        char path[640];
        if (!dirs[i][0])
            continue;
        snprintf(path, sizeof(path), "%s/tasks", dirs[i]);
        if (chown(path, uid, gid) < 0)
            return -1;
    }
    return 0;
}

static uint64_t field(const char *text, const char *key)
{
    size_t n = strlen(key);
    for (const char *p = text; (p = strstr(p, key)); p += n)
        if ((p == text || p[-1] == '\n') && p[n] == ' ')
            return strtoull(p + n + 1, NULL, 10);
    return 0;
}

void cgroup_stats(const struct cell_cgroup *cg, uint64_t *peak_kb, bool *oom_killed)
{
    char buf[1024];
    *peak_kb = 0;
    *oom_killed = false;
    if (!cg->memory)
        return;
    if (cg->version == 2) {
        ssize_t n = cg->peak_fd >= 0 ? pread(cg->peak_fd, buf, sizeof(buf) - 1, 0) : -1;
        if (n > 0)
            buf[n] = '\0';
        if (n > 0 || get(cg->path, "memory.peak", buf, sizeof(buf)) == 0) /* Linux 5.19 */
            *peak_kb = strtoull(buf, NULL, 10) / 1024;
        if (get(cg->path, "memory.events", buf, sizeof(buf)) == 0)
            *oom_killed = field(buf, "oom_kill") > cg->oom_base;
    } else {
        if (get(cg->path, "memory.max_usage_in_bytes", buf, sizeof(buf)) == 0)
            *peak_kb = strtoull(buf, NULL, 10) / 1024;
        if (get(cg->path, "memory.oom_control", buf, sizeof(buf)) == 0) /* oom_kill: 4.13 */
            *oom_killed = field(buf, "oom_kill") > cg->oom_base;
    }
}

/* A cgroup kept for the slot's next cell must hold no task: else it goes (what is left in it
 * is killed). */
static void keep_or_remove(const char *path, int version, bool pids)
{
    if (!holds_no_task(path, version, pids))
        cgroup_remove(path, version, RM_WAIT_MS);
}

void cgroup_release(struct cell_cgroup *cg)
{
    /* v2 without a resettable memory.peak: not kept (see v2_open_peak) */
    bool keep = !(cg->version == 2 && cg->memory && cg->peak_fd < 0);
    close_fds(cg);
    if (cg->version && cg->path[0] && !keep)
        cgroup_remove(cg->path, cg->version, RM_WAIT_MS);
    else if (cg->version && cg->path[0])
        keep_or_remove(cg->path, cg->version, cg->version == 2 && cg->pids);
    if (cg->version == 1 && cg->pids_path[0])
        keep_or_remove(cg->pids_path, 1, true);
    cg->version = 0;
    cg->memory = cg->pids = false;
}
