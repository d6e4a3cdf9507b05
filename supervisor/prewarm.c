/* prewarm: see prewarm.h. The pool is the loop thread's; each entry being made belongs to
 * its spawner job until the job's eventfd says it ran (spawner.c's rule). The pool never
 * reads a task: a prepared cell is made from the pool's own configuration, before any task
 * exists, and handed out at most once; a cell found dead (killed, out of memory) is reaped
 * and dropped, one older than PREWARM_MAX_AGE_S replaced. Failures are retried no faster
 * than once a second. */
#include "prewarm.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "spawner.h"
#include "util.h"

#define PREWARM_RETRY_S 1.0
/* A prepared agent waits 30 s for its task (agent.c) and then ends: a cell is replaced well
 * before, so that none is handed out just as it gives up. */
#define PREWARM_MAX_AGE_S 20.0
/* A cell taken is replaced this long after, not at once: making a cell costs both CPUs for a
 * few ms, which would otherwise fall just when the taken cell's agent starts on its task. */
#define PREWARM_REFILL_DELAY_S 0.02

struct warm {
    struct spawn_job job; /* first: the job is the entry */
    struct prewarm *pool;
    bool used, making, ready;
    double ready_at; /* monotonic */
    struct cell *cell;
    int chan;
    int rc;
    char err[ERR_MSG_MAX];
};

struct prewarm {
    unsigned n;
    const struct policy *policy;
    const struct sock_fprog *seccomp;
    struct policy_limits limits;
    char *const *envp;
    double retry_at;
    double refill_at; /* monotonic: no new cell before (PREWARM_REFILL_DELAY_S after a take) */
    struct warm w[PREWARM_MAX];
};

static void make_warm(struct spawn_job *j)
{
    struct warm *w = (struct warm *)j;
    const struct prewarm *p = w->pool;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        w->rc = errf(w->err, sizeof(w->err), "socketpair: %s", strerror(errno));
        return;
    }
    struct cell_config cc = {
        .policy = p->policy,
        .seccomp = p->seccomp,
        .limits = p->limits,
        .pid1 = CELL_PID1_AGENT,
        .envp = p->envp,
        .channel_fd = sv[1],
        .stdout_fd = -1,
        .stderr_fd = -1,
    };
    w->rc = cell_spawn(&cc, &w->cell, w->err, sizeof(w->err));
    (void)close(sv[1]);
    w->chan = sv[0];
    if (w->rc == 0 && fcntl(w->chan, F_SETFL, O_NONBLOCK) < 0)
        w->rc = errf(w->err, sizeof(w->err), "fcntl: %s", strerror(errno));
}

static void drop(struct warm *w);

struct reaper {
    struct spawn_job job; /* first */
    struct cell *cell;
    int chan;
};

/* On a spawner thread: the cell is killed and reaped (its cgroups and slot released). */
static void reap_run(struct spawn_job *j)
{
    struct reaper *rp = (struct reaper *)j;
    (void)cell_kill(rp->cell);
    cell_free(rp->cell);
    if (rp->chan >= 0)
        (void)close(rp->chan);
    free(rp);
}

/* A ready cell that is replaced: killed and reaped off the loop (waiting for a live cell
 * to die is the slow part); by drop, on the loop, when a reaper cannot be had. */
static void drop_live(struct warm *w)
{
    struct reaper *rp = calloc(1, sizeof(*rp));
    char err[ERR_MSG_MAX];
    if (rp) {
        *rp = (struct reaper){.cell = w->cell, .chan = w->chan};
        if (spawner_submit_detached(&rp->job, reap_run, err, sizeof(err)) == 0) {
            w->cell = NULL; /* the reaper's now */
            w->chan = -1;
        } else
            free(rp);
    }
    drop(w);
}

static void drop(struct warm *w)
{
    if (w->cell) {
        (void)cell_kill(w->cell);
        cell_free(w->cell); /* reaps it */
    }
    if (w->chan >= 0)
        (void)close(w->chan);
    spawner_job_close(&w->job);
    w->cell = NULL;
    w->chan = -1;
    w->used = w->making = w->ready = false;
}

/* A job that ran: its cell is ready, or the entry is freed. */
static void settle(struct prewarm *p, struct warm *w)
{
    if (!w->making || !spawner_job_done(&w->job))
        return;
    w->making = false;
    if (w->rc == 0) {
        w->ready = true;
        w->ready_at = monotonic_s();
        return;
    }
    log_warn("prewarm: a cell could not be made: %s", w->err);
    p->retry_at = monotonic_s() + PREWARM_RETRY_S;
    w->cell = NULL; /* cell_spawn left nothing on failure */
    drop(w);
}

/* A prepared cell whose pid 1 is gone (killed from outside, its memory) is of no use. */
static bool alive(const struct warm *w)
{
    struct pollfd pf = {.fd = cell_pidfd(w->cell), .events = POLLIN};
    return poll(&pf, 1, 0) == 0;
}

int prewarm_new(unsigned n, const struct policy *policy, const struct sock_fprog *seccomp,
                const struct policy_limits *limits, char *const *envp, struct prewarm **out,
                char *err, size_t errsz)
{
    if (n > PREWARM_MAX)
        return errf(err, errsz, "--prewarm: at most %d", PREWARM_MAX);
    struct prewarm *p = calloc(1, sizeof(*p));
    if (!p)
        return errf(err, errsz, "out of memory");
    p->n = n;
    p->policy = policy;
    p->seccomp = seccomp;
    p->limits = *limits;
    p->limits.timeout_s = 0; /* the runner enforces the wall clock */
    p->envp = envp;
    for (unsigned i = 0; i < PREWARM_MAX; i++) {
        p->w[i].chan = p->w[i].job.done_fd = -1;
        p->w[i].pool = p;
    }
    *out = p;
    return 0;
}

void prewarm_fill(struct prewarm *p)
{
    if (!p)
        return;
    unsigned have = 0;
    double now = monotonic_s();
    for (unsigned i = 0; i < p->n; i++) {
        struct warm *w = &p->w[i];
        settle(p, w);
        if (w->ready && now - w->ready_at > PREWARM_MAX_AGE_S)
            drop_live(w); /* replaced below */
        have += w->used;
    }
    if (have >= p->n || now < p->retry_at || now < p->refill_at)
        return;
    for (unsigned i = 0; i < p->n; i++) {
        struct warm *w = &p->w[i];
        if (w->used)
            continue;
        char err[ERR_MSG_MAX];
        if (spawner_job_init(&w->job, make_warm, err, sizeof(err)) < 0 ||
            spawner_submit(&w->job, err, sizeof(err)) < 0) {
            log_warn("prewarm: %s", err);
            spawner_job_close(&w->job);
            p->retry_at = monotonic_s() + PREWARM_RETRY_S;
            return;
        }
        w->used = w->making = true;
    }
}

bool prewarm_take(struct prewarm *p, const struct policy *policy, const struct sock_fprog *seccomp,
                  const struct policy_limits *limits, char *const *envp, struct cell **cell,
                  int *chan)
{
    if (!p || policy != p->policy || seccomp != p->seccomp || envp != p->envp)
        return false;
    struct policy_limits l = *limits;
    l.timeout_s = 0;
    if (memcmp(&l, &p->limits, sizeof(l)) != 0)
        return false;
    for (unsigned i = 0; i < p->n; i++) {
        struct warm *w = &p->w[i];
        settle(p, w);
        if (!w->ready || monotonic_s() - w->ready_at > PREWARM_MAX_AGE_S)
            continue;
        if (!alive(w)) {
            log_warn("prewarm: a prepared cell died before its task came");
            drop(w);
            continue;
        }
        *cell = w->cell;
        *chan = w->chan;
        w->cell = NULL; /* the runner's now */
        w->chan = -1;
        drop(w);
        p->refill_at = monotonic_s() + PREWARM_REFILL_DELAY_S;
        return true;
    }
    return false;
}

double prewarm_next_fill(const struct prewarm *p)
{
    return p && p->refill_at > 0 ? p->refill_at : 0;
}

unsigned prewarm_ready(struct prewarm *p)
{
    unsigned n = 0;
    for (unsigned i = 0; p && i < p->n; i++) {
        settle(p, &p->w[i]);
        n += p->w[i].ready;
    }
    return n;
}

void prewarm_free(struct prewarm *p)
{
    if (!p)
        return;
    for (unsigned i = 0; i < p->n; i++) {
        struct warm *w = &p->w[i];
        if (w->making) {
            spawner_job_wait(&w->job);
            w->making = false;
            if (w->rc < 0)
                w->cell = NULL;
        }
        drop(w);
    }
    free(p);
}
