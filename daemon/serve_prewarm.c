/* serve_prewarm: `serve --prewarm N`: the pool of cells made ahead (supervisor/prewarm.h)
 * for the tasks that name no policy, set no limits, no seed, no git workspace, no network
 * and no egress: the server's default policy (held in the policy cache for the server's
 * life) and its limits. Starts, refills and ends the pool; never gives a cell to a task
 * itself (the runner takes one when the task's cell would be made exactly so). */
#include <string.h>

#include "log.h"
#include "serve.h"
#include "taskprep.h"

int serve_prewarm_start(struct server *s, char *err, size_t errsz)
{
    if (!s->prewarm_n)
        return 0;
    struct task dflt;
    memset(&dflt, 0, sizeof(dflt));
    dflt.seed_fd = -1;
    struct policy_entry *pe = NULL;
    if (serve_policy_get(s, &dflt, &pe, err, errsz) < 0)
        return -1;
    struct policy_limits lim = pe->pol->limits;
    taskprep_apply_limits(&lim, &dflt);
    if (prewarm_new(s->prewarm_n, pe->pol, &pe->prog, &lim, runner_cell_env(), &s->prewarm, err,
                    errsz) < 0)
        return -1;
    pe->refs++; /* never evicted: the pool's cells were made with it */
    prewarm_fill(s->prewarm);
    log_info("prewarm: %u cells of policy '%s' made ahead", s->prewarm_n,
             pe->pol->name ? pe->pol->name : "default");
    return 0;
}

void serve_prewarm_step(struct server *s)
{
    if (s->prewarm && !s->draining)
        prewarm_fill(s->prewarm);
}

void serve_prewarm_stop(struct server *s)
{
    prewarm_free(s->prewarm);
    s->prewarm = NULL;
}
