/* cell_internal: the interfaces between cell.c (the set-up story) and the one-file-per-
 * mechanism modules. Child-side functions run between clone and exec: they return -1 with
 * errno set and name the failed step in ctx->step; they never allocate with malloc
 * (the parent's heap may be in any state) except where marked. */
#ifndef AGENTBOX_CELL_INTERNAL_H
#define AGENTBOX_CELL_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>

#include "cell.h"

#define FEAT(f) (1u << (f))

/* ---- child side ---- */
struct cell_child {
    const struct cell_config *cfg;
    const char *step;        /* the step that failed */
    int setup_fd;            /* SOCK_SEQPACKET end to the parent, close-on-exec */
    int seed_fd;             /* the seed dir as the parent opened it (seed_open), -1 */
    int seed_tree_fd;        /* root: a detached clone of its mount (open_tree), else -1 */
    int exe_fd;              /* O_PATH of this binary (CELL_PID1_AGENT, unprivileged), -1 */
    int exe_tree_fd;         /* root: a detached clone of its mount (open_tree), else -1 */
    bool root_caller;        /* the parent runs as host root (per-slot uid mapping) */
    bool undumpable_parent;  /* unprivileged parent with PR_SET_DUMPABLE 0 */
    bool cgroup_v2;          /* cloned into its v2 cgroup */
    bool cg_memory, cg_pids; /* which limits a cgroup holds (else rlimits) */
    uint32_t enforced, unavailable;
    int landlock_abi;
    const char *seed_mode;
};
#define CHILD_FAIL(ctx, name) ((ctx)->step = (name), -1)

/* cell_steps.c: steps of the set-up list (child_steps in cell.c) */
int reset_signals(struct cell_child *ctx);
int parent_death_signal(struct cell_child *ctx);
int open_agent_binary(struct cell_child *ctx);
int parent_death_signal_again(struct cell_child *ctx); /* after the uid change, and alive? */
int new_session(struct cell_child *ctx);
int apply_limits(struct cell_child *ctx);
int no_new_privs(struct cell_child *ctx);
int init_undumpable(struct cell_child *ctx);
int load_seccomp(struct cell_child *ctx);

/* namespaces.c */
uint64_t ns_clone_flags(const struct cell_config *cfg);
int ns_become_user(struct cell_child *ctx); /* setgroups/setresgid/setresuid, caps kept */
/* Parent, as root: clone3 with this thread's effective uid and gid switched to the cell's
 * host ids for the call, so the new user namespace belongs to them: the kernel charges what
 * the cell holds of the per-user counters (inotify, queued signals, ...) to that uid, never
 * to root. Returns as clone3; the ids are restored in the parent (abort if they cannot be). */
struct clone_args;
long ns_clone3_as(struct clone_args *ca, uid_t uid, gid_t gid);
int ns_set_hostname_and_lo(struct cell_child *ctx);
/* egress_listen.c: a listening TCP socket on 127.0.0.1:CELL_PROXY_PORT in the cell's
 * network namespace (lo must be up), close-on-exec; -1 and ctx->step on failure. */
int egress_listen_child(struct cell_child *ctx);
/* mounts.c: the new root, built under a tmpfs while the host's tree is still visible;
 * then pivot_root onto it, the old root detached, cwd /workspace. */
int mounts_build_root(struct cell_child *ctx);
int mounts_enter_root(struct cell_child *ctx);
/* Adds mount attributes (MOUNT_ATTR_*), never clears any; remount fallback before 5.12. */
int mounts_restrict(const char *path, unsigned attrs, bool recursive);
/* workspace.c: mounts the /workspace tmpfs under newroot, seeds it (overlay or copy) and
 * exposes the seed read-only at CELL_SEED_DIR. */
int workspace_mount(struct cell_child *ctx, const char *newroot);
/* Unprivileged parent: the seed descriptor it opened belongs to its mount namespace, which
 * this one cannot bind from. The child (same rights) opens the name again, before the new
 * root hides it, and keeps it only if it is the same directory (device and inode), so a
 * swap in between fails. No-op when root's parent passed a cloned mount. */
int workspace_reopen_seed(struct cell_child *ctx);
/* limits.c */
int limits_apply(struct cell_child *ctx, bool cgroup_memory, bool cgroup_pids);
/* Lowers the cell's user namespace's inotify and fanotify counters (sys_user_dir: its
 * /proc/sys/user, from a procfs mounted inside the cell's namespaces) to the cell's share. */
int limits_cap_ucounts(struct cell_child *ctx, const char *sys_user_dir);
/* caps.c: securebits locked, bounding/inheritable/ambient/effective/permitted cleared. */
int caps_drop_all(struct cell_child *ctx);
/* landlock.c: writes only below /workspace /tmp /dev/shm (and to /dev's nodes). Records the
 * ABI used in ctx->landlock_abi; skips (and records "landlock" unavailable) without it. */
int landlock_apply(struct cell_child *ctx);

/* ---- parent side ---- */
/* namespaces.c: root: inside CELL_UID -> host_uid; otherwise "deny" setgroups and map the
 * caller. */
int ns_write_maps(pid_t pid, uid_t host_uid, gid_t host_gid, bool root_caller, char *err,
                  size_t errsz);

/* slot.c: a per-cell slot, as isolate's box ids: a flock'ed lock file, so a dead holder
 * releases it with no clean-up needed. As root the slot picks the cell's host uid. */
struct cell_slot {
    int index; /* -1 = none */
    int lock_fd;
    uid_t uid;
    gid_t gid;
};
int slot_acquire(struct cell_slot *s, char *err, size_t errsz);
/* Tries to lock slot index (non-blocking); 1 if it was free (now held in *s), 0 if busy. */
int slot_try(int index, struct cell_slot *s);
void slot_release(struct cell_slot *s);
/* Whether the cgroup sweep (cgroup.c) is due: true at most once per period_s for this user,
 * across processes (the mtime of a stamp file in the lock directory, set when true). */
bool slot_sweep_due(double period_s);
unsigned slot_count(void);

/* cgroup.c: v2 (a child of a delegated parent) or v1 (memory and pids
 * hierarchies); neither -> none, and limits.c falls back to rlimits. */
struct cell_cgroup {
    int version;         /* 0 none, 1, 2 */
    int dir_fd;          /* v2: the cell cgroup (for CLONE_INTO_CGROUP), else -1 */
    char path[512];      /* v2: the cell cgroup; v1: the memory one */
    char pids_path[512]; /* v1 */
    bool memory, pids;
    int peak_fd;         /* v2, a kept cgroup: memory.peak as reset for this cell, else -1 */
    uint64_t oom_base;   /* a kept cgroup: its OOM kill count before this cell */
    uint64_t janitor_id; /* registered with the janitor (janitor.c); 0 = not */
};
/* Our own cgroup path in hierarchy key ("" for v2, "memory", "pids") from the text of
 * /proc/self/cgroup ("" for the root); -1 if that hierarchy is not listed. */
int cgroup_parse_own_path(const char *proc_cgroup, const char *key, char *out, size_t outsz);
/* The cgroup named after the slot, with this cell's limits: the one the slot's last cell left
 * if it holds no task (its peak reset, its OOM count taken as the base), else made afresh;
 * version 0 when not possible (never an error: the record says what was unavailable).
 * Sweeps cgroups of dead holders.
 * version 2: before clone, for CLONE_INTO_CGROUP; version 1: after clone, then attach. */
void cgroup_create(struct cell_cgroup *cg, int version, const struct cell_slot *slot,
                   const struct policy_limits *lim);
/* Child side, v1: moves the calling thread into the cgroups at these paths ("" = none) by
 * writing "0" to their "tasks" files. A thread moving itself skips the kernel's global
 * cgroup_threadgroup_rwsem (cgroup_procs_write_start), whose write side waits for an RCU
 * grace period: milliseconds per cell when the parent moved pid 1 by pid. The files must be
 * writable by the cell's uid (cgroup_grant_tasks) and visible (before pivot_root). */
int cgroup_enter(struct cell_child *ctx, const char *memory_path, const char *pids_path);
/* Parent side, v1 as root: lets the cell's host uid write the "tasks" files. */
int cgroup_grant_tasks(const struct cell_cgroup *cg, uid_t uid, gid_t gid);
/* After the cell is gone: peak memory in kB (0 unknown) and whether the OOM killer ran. */
void cgroup_stats(const struct cell_cgroup *cg, uint64_t *peak_kb, bool *oom_killed);
/* After the cell: keeps the slot's cgroups for its next cell (cgroup_create reuses them) when
 * they hold no task, else kills what is left and removes them. The janitor's registration is
 * cell.c's (drop_cgroups): cgroup.c never calls the janitor, which calls cgroup_remove. */
void cgroup_release(struct cell_cgroup *cg);
/* Removes one cgroup (v1: kills what is left in it; v2: cgroup.kill) and the shared "agentbox"
 * parent once empty, waiting up to wait_ms for the last tasks to be reaped. */
void cgroup_remove(const char *path, int version, int wait_ms);
/* janitor.c: registers the cgroups with this process's janitor (started on first use), which
 * removes them should agentbox die without cgroup_release; it holds slot_lock_fd's lock until
 * then. *id for janitor_unregister. -1 only if no janitor can be started. */
int janitor_register(const struct cell_cgroup *cg, int slot_lock_fd, uint64_t *id);
void janitor_unregister(uint64_t id);

/* ---- cell.c and cell_reap.c: the parent's handle on a cell and the set-up socket ---- */

#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef P_PIDFD
#define P_PIDFD 3
#endif

/* ---- the set-up socket: a handful of fixed-size messages, child -> parent ---- */
enum {
    MSG_FAIL = 'F',      /* a set-up step failed: step, err */
    MSG_WORKSPACE = 'W', /* carries an O_PATH fd of /workspace (SCM_RIGHTS) */
    MSG_READY = 'R',     /* every restriction is in place: enforced, unavailable, ... */
    MSG_EXEC = 'E',      /* the command could not be exec'd: err */
    MSG_STATUS = 'X',    /* the command's wait status, from pid 1 (CELL_PID1_COMMAND) */
    MSG_DUMPABLE = 'D',  /* the child made itself dumpable: its maps can be written */
    MSG_PROXYFD = 'P',   /* carries the egress proxy's listening socket (SCM_RIGHTS) */
};

struct setup_msg {
    char kind;
    int32_t err;
    int32_t value;
    uint32_t enforced, unavailable;
    int32_t landlock_abi;
    char seed_mode; /* 'o' overlay, 'c' copy, 0 */
    char step[96];
};

/* parent -> child, after the maps: which limits the cgroups hold and (v1) where they are */
struct go_msg {
    char kind; /* 'G' */
    char memory, pids;
    char memory_path[512], pids_path[512];
};

struct cell {
    pid_t pid;
    int pidfd;
    int setup_fd;
    int ws_fd;               /* keeps the workspace's superblock for the final statfs */
    int exe_tree, seed_tree; /* root, until clone: detached copies of the mounts (open_tree) */
    int proxy_fd; /* cfg->egress: the listening socket in the cell's netns, until taken */
    enum cell_pid1 mode;
    struct cell_slot slot;
    struct cell_cgroup cg;
    double start;
    bool timed_out, reaped;
    uint32_t enforced, unavailable;
    int landlock_abi;
    const char *seed_mode;
};

/* cell.c, for cell_reap.c: one set-up message from pid 1 (1, 0 at EOF, -1 with errno; a
 * descriptor only with a whole workspace or proxy message), and the release of everything a
 * cell holds (killed and reaped first if it still runs). */
int cell_recv_msg(int fd, struct setup_msg *m, int *passed_fd);
void cell_cleanup(struct cell *c);

#endif
