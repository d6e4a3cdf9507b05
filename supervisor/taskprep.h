/* taskprep: turns a validated task into the runner's options: its policy and seccomp
 * program, its effective limits, its resolved model chain and its clocks. Shared by every
 * command that runs agent tasks (run, batch, serve) so that a task means the same thing
 * whichever way it arrives. Never starts anything; of the API key it only wipes the
 * environment's copy (config keeps the one that is used). */
#ifndef AGENTBOX_TASKPREP_H
#define AGENTBOX_TASKPREP_H

#include <linux/filter.h>

#include "catalog.h"
#include "config.h"
#include "policy.h"
#include "runner.h"
#include "task.h"

#define TASKPREP_DEFAULT_MAX_ITER 100

struct taskprep {
    struct policy *policy;
    struct sock_fprog prog;
    int seed_fd; /* the task's seed opened with this process's rights (valid if have_seed) */
    bool have_seed;
    struct egress_rules egress; /* opts.egress points here when the cell gets egress */
    char models[RUNNER_MODELS_MAX][CONFIG_MODEL_MAX];
    /* filled except state_dir, events and broker, which belong to the caller */
    struct runner_opts opts;
};

/* Checks what task_parse cannot check alone (the policy exists, it allows the network the
 * task asks for, this process may read the seed directory) without building anything: cheap enough
 * to run on every line of a batch before the first task starts. Errors name the field
 * ("task.policy: ..."). */
int taskprep_check(const struct task *t, char *err, size_t errsz);
/* Only the seed part of taskprep_check (opened with this process's rights, then closed). */
int taskprep_check_seed(const struct task *t, char *err, size_t errsz);
/* The task's policy: task.policy_inline parsed, or task.policy (a name, or a path for the
 * operator's own commands) loaded; "default" when neither. */
int taskprep_policy_load(const struct task *t, struct policy **out, char *err, size_t errsz);
/* Loads the policy, compiles its filter, resolves models (cat may be NULL), opens the seed
 * with this process's rights unless the task already holds it open (seed_fd). tp must be
 * zeroed; release with taskprep_free whether this succeeds or not. tp must not move while
 * a runner uses tp->opts (it points into tp). */
int taskprep_build(struct taskprep *tp, const struct task *t, const struct agentbox_config *cfg,
                   const struct catalog *cat, char *err, size_t errsz);
void taskprep_free(struct taskprep *tp);
/* The task's own limits over the policy's (the fields the task set; see LIMIT_SET_*). */
void taskprep_apply_limits(struct policy_limits *l, const struct task *t);
/* Wipes OPENROUTER_API_KEY from this process's environment in place (so /proc/PID/environ
 * of the supervisor and of everything it starts never shows it); call after config_load. */

#endif
