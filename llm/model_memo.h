/* model_memo: which models answered "unavailable" (404, "No endpoints found",
 * availability.retryable false), remembered for the rest of the task that met it and, for
 * every other task of the process, for a TTL. Bounded: 64 models, a ring of 1024 tasks.
 * Decides nothing and does no I/O: the LLM client asks it before picking a model. */
#ifndef AGENTBOX_MODEL_MEMO_H
#define AGENTBOX_MODEL_MEMO_H

#include <stdbool.h>

#define MODEL_MEMO_MODELS 64
#define MODEL_MEMO_TASKS  1024

struct model_memo {
    struct {
        char id[128];
        double until; /* monotonic: skipped by every task till then */
    } models[MODEL_MEMO_MODELS];
    int nmodels;
    struct {
        char task_id[128];
        unsigned long long dead; /* bit i: models[i] */
    } tasks[MODEL_MEMO_TASKS];
    int ntasks, next_task;
};

/* Records that model was unavailable to task at monotonic time now; ttl_s 0: this task only. */
void model_memo_mark(struct model_memo *m, const char *task_id, const char *model, double now,
                     double ttl_s);
bool model_memo_dead(const struct model_memo *m, const char *task_id, const char *model,
                     double now);

#endif
