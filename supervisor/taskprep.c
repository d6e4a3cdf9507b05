/* taskprep: see taskprep.h. Mirrors what `agentbox run` decides for its one task, so that
 * a batch line and a --task-file give the same cell, limits and models. */
#include "taskprep.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "task_egress.h"
#include "util.h"

void taskprep_apply_limits(struct policy_limits *l, const struct task *t)
{
    const struct policy_limits over = {.disk_bytes = t->disk_bytes,
                                       .inodes = t->inodes,
                                       .memory_bytes = t->memory_bytes,
                                       .pids = t->pids,
                                       .cpu_s = t->cpu_s};
    policy_limits_override(l, t->limits_set & ~(unsigned)LIMIT_SET_TIMEOUT, &over);
    /* a single file may not be larger than the whole workspace the task asked for */
    if ((t->limits_set & LIMIT_SET_DISK) && (!l->fsize_bytes || l->fsize_bytes > l->disk_bytes))
        l->fsize_bytes = l->disk_bytes;
}

int taskprep_policy_load(const struct task *t, struct policy **out, char *err, size_t errsz)
{
    const char *name = t->policy ? t->policy : "default";
    char perr[ERR_MSG_MAX];
    if (t->policy_inline) {
        cleanup_free char *text = cJSON_PrintUnformatted(t->policy_inline);
        if (!text)
            return errf(err, errsz, "out of memory");
        if (policy_parse(text, strlen(text), "task.policy", out, perr, sizeof(perr)) < 0)
            return errf(err, errsz, "task.policy (inline): %s", perr);
        return 0;
    }
    if (policy_load(name, out, perr, sizeof(perr)) < 0)
        return errf(err, errsz, "task.policy: %s", perr);
    return 0;
}

static int load_policy(const struct task *t, struct policy **out, char *err, size_t errsz)
{
    if (taskprep_policy_load(t, out, err, errsz) < 0)
        return -1;
    if (t->network_host && !(*out)->allow_network_host) {
        errf(err, errsz, "task.network: policy '%s' does not allow network host", (*out)->name);
        policy_free(*out);
        *out = NULL;
        return -1;
    }
    return 0;
}

int taskprep_check(const struct task *t, char *err, size_t errsz)
{
    struct policy *p = NULL;
    if (load_policy(t, &p, err, errsz) < 0)
        return -1;
    struct egress_rules *eg = malloc(sizeof(*eg));
    bool on;
    int r = eg ? task_egress_rules(t, p, eg, &on, err, errsz) : errf(err, errsz, "out of memory");
    free(eg);
    policy_free(p);
    if (r < 0)
        return -1;
    return taskprep_check_seed(t, err, errsz);
}

int taskprep_check_seed(const struct task *t, char *err, size_t errsz)
{
    if (t->workspace_from && t->seed_fd < 0) {
        char why[ERR_MSG_MAX];
        int fd = seed_open(t->workspace_from, NULL, why, sizeof(why));
        if (fd < 0)
            return errf(err, errsz, "task.workspace.from_dir: %s", why);
        (void)close(fd);
    }
    return 0;
}

int taskprep_build(struct taskprep *tp, const struct task *t, const struct agentbox_config *cfg,
                   const struct catalog *cat, char *err, size_t errsz)
{
    if (load_policy(t, &tp->policy, err, errsz) < 0)
        return -1;
    bool egress_on = false;
    if (task_egress_rules(t, tp->policy, &tp->egress, &egress_on, err, errsz) < 0 ||
        policy_seccomp_build(tp->policy, !t->network_host, &tp->prog, err, errsz) < 0)
        return -1;
    const char *primary = t->model ? t->model : cfg->model;
    const char *extra[TASK_MODELS_MAX + 1] = {0};
    for (size_t i = 0; i < t->nfallback && i < TASK_MODELS_MAX; i++)
        extra[i] = t->fallback_models[i];
    int nmodels = catalog_model_chain(cat, cfg, primary, extra, tp->models, RUNNER_MODELS_MAX);
    if (nmodels <= 0)
        return errf(err, errsz, "task.model: no model to ask");
    const struct catalog_model *cm = cat ? catalog_find(cat, primary) : NULL;
    struct runner_opts *o = &tp->opts;
    memset(o, 0, sizeof(*o));
    o->task = t;
    o->policy = tp->policy;
    o->seccomp = &tp->prog;
    o->limits = tp->policy->limits;
    o->network_host = t->network_host;
    o->egress = egress_on ? &tp->egress : NULL;
    o->timeout_s = t->timeout_s > 0 ? t->timeout_s : cfg->timeout_s;
    o->max_iterations = t->max_iterations ? (unsigned)t->max_iterations : TASKPREP_DEFAULT_MAX_ITER;
    o->max_tokens_per_call = cfg->max_tokens;
    o->context_tokens = cm && cm->context_length ? cm->context_length : 32768;
    o->native_tools = cm ? cm->tool_calls : true;
    for (int i = 0; i < nmodels; i++)
        o->models[i] = tp->models[i];
    o->models[nmodels] = NULL;
    taskprep_apply_limits(&o->limits, t);
    o->seed_fd = t->seed_fd;
    if (t->workspace_from && t->seed_fd < 0) {
        char why[ERR_MSG_MAX];
        tp->seed_fd = seed_open(t->workspace_from, NULL, why, sizeof(why));
        if (tp->seed_fd < 0)
            return errf(err, errsz, "task.workspace.from_dir: %s", why);
        tp->have_seed = true;
        o->seed_fd = tp->seed_fd;
    }
    return 0;
}

void taskprep_free(struct taskprep *tp)
{
    if (tp->prog.filter)
        policy_bpf_free(&tp->prog);
    policy_free(tp->policy);
    tp->policy = NULL;
    if (tp->have_seed)
        (void)close(tp->seed_fd);
    tp->have_seed = false;
}
