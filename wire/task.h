/* task: the task object: parsed from JSON (a --task-file, a batch line, a submit),
 * validated field by field (every refusal names the field), and turned back into the JSON
 * the cell receives. Host-only fields (workspace.from_dir) never go to the cell. */
#ifndef AGENTBOX_TASK_H
#define AGENTBOX_TASK_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "policy.h"
#include "seed_open.h"

#define TASK_ID_MAX           128
#define TASK_PROMPT_MAX_BYTES (1u << 20)
#define TASK_FILES_MAX        1000
#define TASK_FILES_MAX_BYTES  (64u << 20)
#define TASK_OUTPUTS_MAX      64
#define TASK_MODELS_MAX       8

struct task {
    char id[TASK_ID_MAX + 1];
    char *prompt;
    char *model; /* NULL: the configured default */
    char *fallback_models[TASK_MODELS_MAX];
    size_t nfallback;
    uint64_t max_iterations; /* 0: default */
    double timeout_s;        /* 0: default */
    char *policy;            /* NULL: "default" (or policy_inline) */
    cJSON *policy_inline;    /* "policy": {...}: a whole policy object, validated on use */
    bool network_host;
    bool network_set;
    cJSON *egress;       /* task.network as an object ({"allow", "resolve", caps}; task_egress.c);
                            NULL when network is a string or absent */
    unsigned limits_set; /* LIMIT_SET_* (policy.h): the limits the task set itself */
    uint64_t disk_bytes, inodes, memory_bytes, pids;
    double cpu_s;
    char *workspace_from; /* host directory (absolute after task_parse, not resolved) */
    int seed_fd;          /* -1, or workspace_from opened for its submitter (task_open_seed) */
    cJSON *files;         /* object: relative path -> content */
    char *outputs[TASK_OUTPUTS_MAX];
    size_t noutputs;
    double max_cost_usd; /* 0: none */
    uint64_t max_tokens; /* 0: none (budget of total tokens for the task) */
    cJSON *metadata;     /* the caller's, returned unchanged */
    /* workspace.git (git_workspace.h) and verify (verify.h), or NULL */
    struct git_ws_spec *git;
    struct verify_spec *verify;
    /* who asked (serve: the client's SO_PEERCRED); unset: this process's own ids */
    bool requester_set;
    uid_t requester_uid;
    gid_t requester_gid;
};

/* Parses and validates; on error fills err with "task.FIELD: why" and returns -1. */
int task_parse(const cJSON *json, struct task *out, char *err, size_t errsz);
int task_parse_text(const char *text, struct task *out, char *err, size_t errsz);
void task_free(struct task *t);
/* Opens workspace_from (if any, and not yet open) into seed_fd with the rights of who (NULL:
 * this process's own; see seed_open.h). Errors name the field. */
int task_open_seed(struct task *t, const struct seed_requester *who, char *err, size_t errsz);
/* Makes a fresh id ("task-" + 16 hex digits) when the caller gave none. */
void task_make_id(char *buf, size_t bufsz);
/* A relative path that stays inside its root: no "..", no absolute, no empty or "."
 * components after normalisation, no NUL, bounded length. */
bool task_path_is_safe(const char *rel);
bool task_id_is_valid(const char *id);

#endif
