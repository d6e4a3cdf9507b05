/* policy: a cell's policy file (policies/NAME.json): the seccomp rules, the host paths
 * bound read-only into the cell, /tmp and /dev/shm sizes, and default limits.
 * policy.c parses and validates (every refusal names the field); seccomp.c compiles the
 * rules to BPF in the parent so the child only has to install them.
 * The format is documented in docs/policy.md. */
#ifndef AGENTBOX_POLICY_H
#define AGENTBOX_POLICY_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Default limits a policy gives a cell; each can be overridden by an option or task field.
 * 0 means "no limit of this kind" except where noted. */
struct policy_limits {
    uint64_t disk_bytes;   /* /workspace tmpfs size= */
    uint64_t inodes;       /* /workspace tmpfs nr_inodes= */
    uint64_t memory_bytes; /* cgroup memory limit (RLIMIT_AS fallback) */
    uint64_t pids;         /* cgroup pids.max (RLIMIT_NPROC fallback) */
    uint64_t nofile;       /* RLIMIT_NOFILE */
    uint64_t fsize_bytes;  /* RLIMIT_FSIZE */
    double cpu_s;          /* RLIMIT_CPU */
    double timeout_s;      /* wall clock */
};

struct policy_bind {
    char *path;    /* absolute host path, bound read-only at the same path in the cell */
    bool optional; /* skip silently if missing on this host */
};

struct policy_rule; /* one seccomp rule; private to policy.c/seccomp.c */

struct policy {
    char *name;   /* "default", or the file's basename */
    char *source; /* the path it was loaded from */
    struct policy_bind *binds;
    size_t nbinds;
    uint64_t tmp_bytes;      /* size of the cell's /tmp tmpfs */
    uint64_t shm_bytes;      /* size of the cell's /dev/shm tmpfs */
    bool allow_network_host; /* may a task ask for --network host under this policy */
    bool landlock;           /* restrict writes to /workspace, /tmp, /dev/shm with Landlock */
    struct policy_limits limits;
    struct policy_rule *rules;
    size_t nrules;
    int default_errno; /* errno returned by "errno" actions that name none */
};

/* Loads NAME (a file policies/NAME.json found with data_path) or a PATH (contains '/' or
 * ends in .json). On error returns -1 and err says which file, line or field is wrong. */
int policy_load(const char *name_or_path, struct policy **out, char *err, size_t errsz);
void policy_free(struct policy *p);

/* Compiles the policy's seccomp filter (plus socket-family denies when network_none, plus
 * the fixed baseline every policy gets) into a BPF program, in the parent, before clone.
 * prog->filter is malloc'd; free it with policy_bpf_free. */
int policy_seccomp_build(const struct policy *p, bool network_none, struct sock_fprog *prog,
                         char *err, size_t errsz);
void policy_bpf_free(struct sock_fprog *prog);

#endif
