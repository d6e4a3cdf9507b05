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

struct egress_rules;

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

/* Which limits a caller set itself (a task's `limits`, exec's options): the one mask. */
enum {
    LIMIT_SET_DISK = 1 << 0,
    LIMIT_SET_INODES = 1 << 1,
    LIMIT_SET_MEMORY = 1 << 2,
    LIMIT_SET_PIDS = 1 << 3,
    LIMIT_SET_CPU = 1 << 4,
    LIMIT_SET_TIMEOUT = 1 << 5,
};
/* Copies the limits named in set (LIMIT_SET_*) from over into l; the rest stay l's (a
 * policy's defaults). */
void policy_limits_override(struct policy_limits *l, unsigned set,
                            const struct policy_limits *over);

struct policy_bind {
    char *path;    /* absolute host path, bound read-only at the same path in the cell */
    bool optional; /* skip silently if missing on this host */
    char *dest;    /* where in the cell (exec --ro-bind SRC:DST); NULL: path */
};

/* Seccomp actions, weakest first (the order the kernel ranks them in, reversed). */
enum policy_action {
    POLICY_ACT_ALLOW,
    POLICY_ACT_LOG, /* allow, and log to the audit log */
    POLICY_ACT_ERRNO,
    POLICY_ACT_KILL_PROCESS,
};

enum policy_op {
    POLICY_OP_EQ,
    POLICY_OP_NE,
    POLICY_OP_LT,
    POLICY_OP_LE,
    POLICY_OP_GT,
    POLICY_OP_GE,
    POLICY_OP_MASKED_EQ
};

struct policy_arg {
    unsigned index; /* 0-5 */
    enum policy_op op;
    uint64_t value;
    uint64_t mask; /* POLICY_OP_MASKED_EQ only */
};

#define POLICY_SYSCALL_NAME_MAX 40
#define POLICY_WHERE_MAX        160

/* One seccomp rule for one syscall: a file rule naming N syscalls becomes N of these. All
 * args must hold for the rule to match. Read by seccomp.c; built only by policy.c. */
struct policy_rule {
    int nr; /* libseccomp's number (negative: a syscall of another architecture only) */
    char syscall[POLICY_SYSCALL_NAME_MAX];
    enum policy_action action;
    int errno_value; /* POLICY_ACT_ERRNO */
    unsigned nargs;
    struct policy_arg args[6];
    char where[POLICY_WHERE_MAX]; /* "policies/x.json: seccomp.rules[2]", for messages */
};

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
    /* Added with the parser; not in the first version of this header. */
    enum policy_action default_action; /* for syscalls no rule names */
    bool loopback; /* with --network none, may the cell still make IPv4/IPv6 sockets (they
                      reach only the cell's own loopback)? false: socket() says EAFNOSUPPORT */
    char *description;
    struct egress_rules *egress; /* network.egress: hosts every cell of this policy may reach
                                    through the egress proxy, and its caps; NULL = none */
};

/* Built-in values of fields a policy file leaves out (docs/policy.md; default.json states
 * the same values explicitly). */
#define POLICY_DEFAULT_DISK_BYTES   (1ull << 30)
#define POLICY_DEFAULT_INODES       65536ull
#define POLICY_DEFAULT_MEMORY_BYTES (2ull << 30)
#define POLICY_DEFAULT_PIDS         512ull
#define POLICY_DEFAULT_NOFILE       1024ull
#define POLICY_DEFAULT_FSIZE_BYTES  (1ull << 30)
#define POLICY_DEFAULT_CPU_S        0.0
#define POLICY_DEFAULT_TIMEOUT_S    300.0
/* Below these a cell cannot run a shell or the agent (8M: the agent under RLIMIT_AS, where
 * no cgroup can be used): refused as usage errors, not set-up failures. */
#define POLICY_MIN_DISK_BYTES    4096ull
#define POLICY_MIN_MEMORY_BYTES  (8ull << 20)
#define POLICY_MIN_PIDS          2ull
#define POLICY_DEFAULT_TMP_BYTES (256ull << 20)
#define POLICY_DEFAULT_SHM_BYTES (64ull << 20)
#define POLICY_FILE_MAX_BYTES    (1u << 20)
#define POLICY_EXTENDS_DEPTH_MAX 4

/* Loads NAME (a file policies/NAME.json found with data_path) or a PATH (contains '/' or
 * ends in .json). On error returns -1 and err says which file, line or field is wrong. */
int policy_load(const char *name_or_path, struct policy **out, char *err, size_t errsz);
/* Parses policy text already in memory (text[len] must be '\0'); source names it in
 * messages. "extends" still loads the base policy by name. */
int policy_parse(const char *text, size_t len, const char *source, struct policy **out, char *err,
                 size_t errsz);
void policy_free(struct policy *p);
/* policy_egress.c: "network.egress" {"allow": [...], "resolve": {...}, "max_connections": N,
 * "max_bytes": N} into p->egress (replacing a base policy's). -1 + err. */
struct cJSON;
int policy_parse_egress(const struct cJSON *o, struct policy *p, char *err, size_t errsz);
/* The cell's rules: pol->egress (if any) plus allow/resolve. *on: egress is used (some host
 * is allowed and the network is not "host"/"none" by request). network: -1 not given, 0
 * none, 1 host. -1 + err when the request is contradictory ("host" with allowed hosts). */
int policy_egress_rules(const struct policy *pol, int network, const char *const *allow,
                        size_t nallow, const char *const *resolve, size_t nresolve,
                        struct egress_rules *out, bool *on, char *err, size_t errsz);

/* The effective policy ("extends" resolved) as a policy file that loads back to the same
 * policy; NULL when out of memory. */
struct cJSON *policy_to_json(const struct policy *p);
/* "allow", "log", "errno", "kill_process". */
const char *policy_action_name(enum policy_action a);

/* Compiles the policy's seccomp filter (plus socket-family denies when network_none, plus
 * the fixed baseline every policy gets) into a BPF program, in the parent, before clone.
 * prog->filter is malloc'd; free it with policy_bpf_free.
 * It is ONE program (the baseline, argument allow-lists and the policy's rules linked so
 * that the strictest verdict wins): install it once, with seccomp(SECCOMP_SET_MODE_FILTER,
 * 0, prog) after PR_SET_NO_NEW_PRIVS. network_none && !p->loopback also refuses IPv4/IPv6
 * sockets. Takes about 0.2 ms the first time; later builds of the same rules in this process
 * copy the program made then (seccomp_cache.c; safe from several threads). */
int policy_seccomp_build(const struct policy *p, bool network_none, struct sock_fprog *prog,
                         char *err, size_t errsz);
void policy_bpf_free(struct sock_fprog *prog);
/* The policy's own filter in libseccomp's readable pseudo-code, for `agentbox policy show`
 * (the baseline is C code, documented in docs/policy.md). */
int policy_seccomp_export_pfc(const struct policy *p, int fd, char *err, size_t errsz);

#endif
