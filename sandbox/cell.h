/* cell: one disposable sandbox. cell.c sets it up in order, one file
 * per mechanism does each step; the parent side waits for it, kills it and writes its record.
 * Never holds or passes the API key: a cell gets only what cell_config names. */
#ifndef AGENTBOX_CELL_H
#define AGENTBOX_CELL_H

#include <cjson/cJSON.h>
#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "policy.h"

/* Inside the cell: the unprivileged user every process runs as, and fixed paths. */
#define CELL_UID              1000u
#define CELL_GID              1000u
#define CELL_WORKSPACE        "/workspace"
#define CELL_SEED_DIR         "/run/agentbox/seed"
#define CELL_AGENT_BIN        "/run/agentbox/agentbox"
#define CELL_CHANNEL_FD       3
#define CELL_HOSTNAME         "agentbox"
#define CELL_PROXY_PORT       3128  /* egress: the proxy's listening socket on 127.0.0.1 */
#define CELL_SETUP_TIMEOUT_MS 60000 /* a cell not running by then is killed (a big seed copy) */

enum cell_pid1 { CELL_PID1_COMMAND, CELL_PID1_AGENT };

struct cell_config {
    const struct policy *policy;
    const struct sock_fprog *seccomp; /* built by the caller; installed last in the cell; NULL
                                         = no filter (tests only; "seccomp" not enforced) */
    struct policy_limits limits;      /* effective limits (policy defaults overridden) */
    bool network_host;                /* false: own empty netns with lo up */
    const char *workspace_from;       /* host dir to seed /workspace from (for messages), or NULL */
    int seed_fd; /* with workspace_from: that directory, opened by seed_open() with the rights
                    of whoever asked for it; the cell never resolves the host path itself */
    /* own netns, plus a socket listening on 127.0.0.1:CELL_PROXY_PORT in it, for the
     * supervisor's egress proxy: cell_take_proxy_fd */
    bool egress;
    enum cell_pid1 pid1;
    char *const *argv; /* CELL_PID1_COMMAND: the command (PATH searched inside the cell);
                          CELL_PID1_AGENT: extra arguments after `agentbox __agent`, or NULL */
    char *const *envp; /* NULL = cell_default_env() */
    int channel_fd;    /* CELL_PID1_AGENT: becomes fd 3 of pid 1; -1 otherwise */
    bool stdio_passthrough;
    bool stdin_set; /* when !stdio_passthrough: stdin_fd is stdin (else /dev/null) */
    int stdin_fd;
    int stdout_fd, stderr_fd; /* when !stdio_passthrough (-1 = /dev/null) */
};

/* The names that can appear in a record's enforced/unavailable lists (docs/sandbox.md). */
enum cell_feature {
    CELL_F_USERNS,
    CELL_F_PIDNS,
    CELL_F_MOUNTNS,
    CELL_F_NETNS,
    CELL_F_IPCNS,
    CELL_F_UTSNS,
    CELL_F_CGROUPNS,
    CELL_F_UID, /* runs as an unprivileged uid (a per-cell host uid when root) */
    CELL_F_SETSID,
    CELL_F_CAPS,
    CELL_F_NO_NEW_PRIVS,
    CELL_F_LANDLOCK,
    CELL_F_SECCOMP,
    CELL_F_DISK_QUOTA,    /* /workspace tmpfs size= */
    CELL_F_INODE_QUOTA,   /* /workspace tmpfs nr_inodes= */
    CELL_F_MEMORY,        /* cgroup memory limit */
    CELL_F_PIDS,          /* cgroup pids limit */
    CELL_F_MEMORY_RLIMIT, /* RLIMIT_AS fallback */
    CELL_F_PIDS_RLIMIT,   /* RLIMIT_NPROC fallback (per user namespace since Linux 5.14) */
    CELL_F_CPU_RLIMIT,
    CELL_F_FSIZE_RLIMIT,
    CELL_F_NOFILE_RLIMIT,
    CELL_F_TIMEOUT,
    CELL_F_UCOUNTS, /* the cell's own share of the per-user kernel counters (limits.c) */
    CELL_F_COUNT
};
const char *cell_feature_name(enum cell_feature f);

enum cell_status {
    CELL_EXITED,
    CELL_SIGNALED,
    CELL_TIMEOUT,
    CELL_MEMORY,
    CELL_SETUP_ERROR,
};

/* The cell record: one producer (cell_reap), one printer (cell_record_to_json). */
struct cell_record {
    enum cell_status status;
    bool has_exit_code;
    int exit_code;  /* the command's exit code (CELL_EXITED) */
    int signal;     /* the signal that killed the command, 0 = none */
    int exec_errno; /* CELL_PID1_COMMAND: errno of a failed exec of the command, else 0 */
    double wall_s, cpu_s;
    uint64_t max_rss_kb;
    uint64_t disk_bytes; /* bytes used in /workspace at the end (the tmpfs's own statfs) */
    uint64_t disk_inodes;
    uint32_t enforced, unavailable; /* bit (1u << enum cell_feature) */
    const char *workspace_seed;     /* "overlay", "copy" or NULL (static strings) */
    const char *cgroup;             /* "v2", "v1" or NULL */
    int landlock_abi;               /* 0 = not applied */
    int slot;                       /* uid slot, -1 = none */
};

struct cell;

/* Threads: the cell functions are not thread-safe (janitor bookkeeping, the clone3 child);
 * drive every cell from one thread, the one that spawns and reaps it.
 *
 * Returns once the cell is fully set up and running (pid 1 is running the command's init or
 * has exec'd the agent), or -1 with "set-up failed at STEP: strerror" in err; nothing of the
 * cell is left then. Call from the thread that will reap: PR_SET_PDEATHSIG fires when the
 * thread that created pid 1 exits.
 * CELL_PID1_AGENT: pid 1 execs CELL_AGENT_BIN (a read-only, nosuid bind of this binary, so
 * /proc/self/exe cannot be used to overwrite the host binary: CVE-2019-5736) as
 * `agentbox __agent ARGS...`. exec resets the dumpable flag, so the agent code must call
 * prctl(PR_SET_DUMPABLE, 0) itself first thing, before it reads anything from its channel. */
int cell_spawn(const struct cell_config *cfg, struct cell **out, char *err, size_t errsz);
int cell_pidfd(const struct cell *c); /* readable when pid 1 has exited */
/* The cell's /workspace (a directory fd; -1 if it never came), valid until cell_reap: dup it
 * to read the workspace after pid 1 exited (the tmpfs lives while a descriptor holds it). */
int cell_workspace_fd(const struct cell *c);
pid_t cell_pid(const struct cell *c);
/* cfg->egress: the listening socket made in the cell's network namespace (caller owns it;
 * accept() on it gets the cell's connections to 127.0.0.1:CELL_PROXY_PORT); -1 otherwise. */
int cell_take_proxy_fd(struct cell *c);
/* SIGKILL to pid 1: the kernel then kills every process of the pid namespace. */
int cell_kill(struct cell *c);
/* Marks the end as a timeout (status "timeout") and kills. */
int cell_timeout(struct cell *c);
/* After the pidfd is readable (blocks otherwise): fills rec, removes the cgroup, releases
 * the slot. */
int cell_reap(struct cell *c, struct cell_record *rec);
/* spawn + wait (cfg->limits.timeout_s, 0 = none) + reap. On set-up failure returns -1 with
 * rec->status CELL_SETUP_ERROR and the message in err. */
int cell_run(const struct cell_config *cfg, struct cell_record *rec, char *err, size_t errsz);
void cell_free(struct cell *c);

/* The environment a cell gets when cfg->envp is NULL (static storage). */
char *const *cell_default_env(void);

cJSON *cell_record_to_json(const struct cell_record *rec);
const char *cell_status_name(enum cell_status s);

#endif
