/* model_memo: see model_memo.h. Past its 64 models or 1024 tasks it forgets (the oldest
 * task, a model it has no slot for): a model asked once more, never a wrong refusal. */
#include "model_memo.h"

#include <stdio.h>
#include <string.h>

static int model_index(struct model_memo *m, const char *model, bool create)
{
    for (int i = 0; i < m->nmodels; i++)
        if (!strcmp(m->models[i].id, model))
            return i;
    if (!create || m->nmodels >= MODEL_MEMO_MODELS || strlen(model) >= sizeof(m->models[0].id))
        return -1;
    snprintf(m->models[m->nmodels].id, sizeof(m->models[0].id), "%s", model);
    m->models[m->nmodels].until = 0;
    return m->nmodels++;
}

static int task_index(const struct model_memo *m, const char *task_id)
{
    for (int i = 0; i < m->ntasks; i++)
        if (!strcmp(m->tasks[i].task_id, task_id))
            return i;
    return -1;
}

void model_memo_mark(struct model_memo *m, const char *task_id, const char *model, double now,
                     double ttl_s)
{
    int mi = model_index(m, model, true);
    if (mi < 0)
        return;
    if (ttl_s > 0 && now + ttl_s > m->models[mi].until)
        m->models[mi].until = now + ttl_s;
    int ti = task_index(m, task_id);
    if (ti < 0) {
        ti = m->next_task;
        m->next_task = (m->next_task + 1) % MODEL_MEMO_TASKS;
        if (m->ntasks < MODEL_MEMO_TASKS)
            m->ntasks++;
        snprintf(m->tasks[ti].task_id, sizeof(m->tasks[0].task_id), "%s", task_id);
        m->tasks[ti].dead = 0;
    }
    m->tasks[ti].dead |= 1ull << mi;
}

bool model_memo_dead(const struct model_memo *m, const char *task_id, const char *model, double now)
{
    int mi = model_index((struct model_memo *)m, model, false);
    if (mi < 0)
        return false;
    if (m->models[mi].until > now)
        return true;
    int ti = task_index(m, task_id);
    return ti >= 0 && (m->tasks[ti].dead & (1ull << mi));
}
