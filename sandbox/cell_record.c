/* cell_record: the one printer of the cell record (`--meta FILE`, and `sandbox` inside a
 * result), and the names of the features it lists. Never invents a value: what is unknown
 * is null or absent. */
#include "cell.h"

#include <math.h>

static const char *const feature_names[CELL_F_COUNT] = {
    [CELL_F_USERNS] = "userns",
    [CELL_F_PIDNS] = "pidns",
    [CELL_F_MOUNTNS] = "mountns",
    [CELL_F_NETNS] = "netns",
    [CELL_F_IPCNS] = "ipcns",
    [CELL_F_UTSNS] = "utsns",
    [CELL_F_CGROUPNS] = "cgroupns",
    [CELL_F_UID] = "uid",
    [CELL_F_SETSID] = "setsid",
    [CELL_F_CAPS] = "caps",
    [CELL_F_NO_NEW_PRIVS] = "no_new_privs",
    [CELL_F_LANDLOCK] = "landlock",
    [CELL_F_SECCOMP] = "seccomp",
    [CELL_F_DISK_QUOTA] = "disk_quota",
    [CELL_F_INODE_QUOTA] = "inode_quota",
    [CELL_F_MEMORY] = "memory",
    [CELL_F_PIDS] = "pids",
    [CELL_F_MEMORY_RLIMIT] = "memory_rlimit",
    [CELL_F_PIDS_RLIMIT] = "pids_rlimit",
    [CELL_F_CPU_RLIMIT] = "cpu_rlimit",
    [CELL_F_FSIZE_RLIMIT] = "fsize_rlimit",
    [CELL_F_NOFILE_RLIMIT] = "nofile_rlimit",
    [CELL_F_TIMEOUT] = "timeout",
    [CELL_F_UCOUNTS] = "ucounts",
};

const char *cell_feature_name(enum cell_feature f)
{
    return (unsigned)f < CELL_F_COUNT ? feature_names[f] : "unknown";
}

const char *cell_status_name(enum cell_status s)
{
    switch (s) {
    case CELL_EXITED:
        return "exited";
    case CELL_SIGNALED:
        return "signaled";
    case CELL_TIMEOUT:
        return "timeout";
    case CELL_MEMORY:
        return "memory";
    case CELL_SETUP_ERROR:
        return "setup_error";
    }
    return "setup_error";
}

static cJSON *names(uint32_t bits)
{
    cJSON *a = cJSON_CreateArray();
    for (int f = 0; a && f < CELL_F_COUNT; f++)
        if (bits & (1u << f)) {
            cJSON *s = cJSON_CreateString(feature_names[f]);
            if (!s || !cJSON_AddItemToArray(a, s)) {
                cJSON_Delete(s);
                cJSON_Delete(a);
                return NULL;
            }
        }
    return a;
}

/* Rounded to the microsecond: a record is read by people and diffed by scripts. */
static double round6(double v)
{
    return isfinite(v) && v > 0 ? round(v * 1e6) / 1e6 : 0;
}

static bool add(cJSON *o, const char *key, cJSON *v)
{
    if (!v)
        return false;
    if (!cJSON_AddItemToObject(o, key, v)) {
        cJSON_Delete(v);
        return false;
    }
    return true;
}

cJSON *cell_record_to_json(const struct cell_record *rec)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok =
        add(o, "status", cJSON_CreateString(cell_status_name(rec->status))) &&
        add(o, "exit_code",
            rec->has_exit_code ? cJSON_CreateNumber(rec->exit_code) : cJSON_CreateNull()) &&
        add(o, "signal", rec->signal > 0 ? cJSON_CreateNumber(rec->signal) : cJSON_CreateNull()) &&
        add(o, "wall_s", cJSON_CreateNumber(round6(rec->wall_s))) &&
        add(o, "cpu_s", cJSON_CreateNumber(round6(rec->cpu_s))) &&
        add(o, "max_rss_kb", cJSON_CreateNumber((double)rec->max_rss_kb)) &&
        add(o, "disk_bytes", cJSON_CreateNumber((double)rec->disk_bytes)) &&
        add(o, "disk_inodes", cJSON_CreateNumber((double)rec->disk_inodes)) &&
        add(o, "enforced", names(rec->enforced)) &&
        add(o, "unavailable", names(rec->unavailable)) &&
        add(o, "workspace_seed",
            rec->workspace_seed ? cJSON_CreateString(rec->workspace_seed) : cJSON_CreateNull()) &&
        add(o, "cgroup", rec->cgroup ? cJSON_CreateString(rec->cgroup) : cJSON_CreateNull()) &&
        add(o, "landlock_abi", cJSON_CreateNumber(rec->landlock_abi)) &&
        add(o, "exec_errno",
            rec->exec_errno ? cJSON_CreateNumber(rec->exec_errno) : cJSON_CreateNull());
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
