/* batch_loop: see batch_loop.h. */
#include "batch_loop.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "batch_report.h"
#include "grow.h"
#include "json.h"
#include "util.h"

/* The result of a task that never got a cell (its set-up failed, or it was killed on a
 * second signal): the result's full shape, with what is known. */
static cJSON *synthetic_result(const struct task *t, const char *status, const char *etype,
                               const char *message, double elapsed)
{
    return runner_result_unrun(t->id, status,
                               etype ? broker_error_object(etype, message, NULL) : NULL, elapsed,
                               NULL, NULL, t->metadata);
}

void batch_clear_bar(struct batch *b)
{
    if (b->tty)
        fputs("\r\033[K", stderr);
}

static unsigned term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

static void draw_bar(struct batch *b, bool force)
{
    double now = monotonic_s();
    if (!b->tty || (!force && now - b->last_draw < BATCH_REDRAW_S))
        return;
    b->last_draw = now;
    double tokens = b->tokens_done, cost = b->cost_done;
    for (unsigned i = 0; i < b->a.jobs; i++)
        if (b->slots[i].job) {
            tokens += b->slots[i].tokens;
            cost += b->slots[i].cost_usd;
        }
    double elapsed[BATCH_JOBS_MAX], rate_wait = 0;
    unsigned n = 0;
    for (unsigned i = 0; i < b->a.jobs; i++)
        if (b->slots[i].job && b->slots[i].runner) {
            elapsed[n++] = now - b->slots[i].started;
            if (b->slots[i].rate_wait_until - now > rate_wait)
                rate_wait = b->slots[i].rate_wait_until - now;
        }
    unsigned queued = b->to_run - b->done_run - b->running;
    double eta =
        b->done_run ? batch_eta(b->time_done / b->done_run, queued, b->a.jobs, elapsed, n) : -1;
    unsigned done = b->done_before + b->done_run, failed = b->failed_before + b->failed_run;
    char line[512];
    unsigned w = term_width();
    batch_progress_format(line, sizeof(line), w - 1, done, (unsigned)b->njobs, failed, b->running,
                          eta, tokens, cost, rate_wait);
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
}

static void report_task(struct batch *b, const cJSON *r)
{
    if (b->a.quiet)
        return;
    enum batch_outcome o = batch_outcome_of(r);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(r, "execution_time");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    /* on a terminal only what needs attention scrolls; in a CI log every task has a line */
    if (b->tty && o == BATCH_SUCCEEDED)
        return;
    batch_clear_bar(b);
    unsigned done = b->done_before + b->done_run;
    fprintf(stderr, "agentbox batch: [%u/%zu] %s %s %.1fs%s%.300s\n", done, b->njobs,
            cJSON_IsString(id) ? id->valuestring : "?", batch_outcome_name(o),
            cJSON_IsNumber(et) ? et->valuedouble : 0.0, cJSON_IsString(msg) ? ": " : "",
            cJSON_IsString(msg) ? msg->valuestring : "");
}

static void finish_job(struct batch *b, struct batch_job *j, cJSON *result)
{
    if (!result) /* out of memory: still a line, so that the task is not lost */
        result = synthetic_result(&j->item->task, "failed", "UNKNOWN_ERROR", "out of memory", 0);
    j->result = result;
    b->done_run++;
    if (batch_outcome_of(result) != BATCH_SUCCEEDED)
        b->failed_run++;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(result, "usage");
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(u, "total_tokens");
    const cJSON *cu = cJSON_GetObjectItemCaseSensitive(u, "cost_usd");
    b->tokens_done += cJSON_IsNumber(tt) ? tt->valuedouble : 0;
    b->cost_done += cJSON_IsNumber(cu) ? cu->valuedouble : 0;
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(result, "execution_time");
    b->time_done += cJSON_IsNumber(et) && et->valuedouble > 0 ? et->valuedouble : 0;
    if (result && !b->out_broken && batch_write_line(b->out_fd, result) < 0) {
        batch_clear_bar(b);
        fprintf(stderr, "agentbox batch: cannot write results to %s: %s; cancelling\n",
                b->a.out ? b->a.out : "stdout", strerror(errno));
        b->out_broken = true;
    }
    report_task(b, result);
}

/* ---- slots ---- */

/* A call waits for a model's rate limit (the ':free' ones allow 20 requests a minute): the
 * bar shows the wait; a log (not a terminal) gets a line, so a slow batch is not a mystery. */
static void slot_rate_wait(struct slot *s, const char *line)
{
    cleanup_json cJSON *ev = cJSON_Parse(line);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(ev, "wait_s");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "model");
    if (!cJSON_IsNumber(w))
        return;
    s->rate_wait_until = monotonic_s() + w->valuedouble;
    if (s->b->a.quiet)
        return;
    if (s->b->tty) {
        draw_bar(s->b, true);
        return;
    }
    long secs = (long)(w->valuedouble + 0.5);
    fprintf(stderr, "agentbox batch: %s: waiting for the rate limit of %s: %ld second%s\n",
            s->job->item->task.id, cJSON_IsString(m) ? m->valuestring : "the model", secs,
            secs == 1 ? "" : "s");
}

static void slot_events(void *opaque, const char *line, size_t len)
{
    struct slot *s = opaque;
    (void)len;
    if (strstr(line, "\"type\":\"rate_limit_wait\"")) {
        slot_rate_wait(s, line);
        return;
    }
    if (!strstr(line, "\"type\":\"llm_response\""))
        return; /* the only events the progress bar needs; most are never parsed */
    cleanup_json cJSON *ev = cJSON_Parse(line);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(ev, "usage");
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(u, "total_tokens");
    const cJSON *cu = cJSON_GetObjectItemCaseSensitive(u, "cost_usd");
    if (cJSON_IsNumber(tt) && tt->valuedouble > 0)
        s->tokens += tt->valuedouble;
    if (cJSON_IsNumber(cu) && cu->valuedouble > 0)
        s->cost_usd += cu->valuedouble;
}

static struct broker *slot_broker(const struct slot *s)
{
    return s->own_broker ? s->own_broker : s->b->shared;
}

void batch_slot_release(struct slot *s)
{
    if (s->runner) {
        /* a call still in flight for this task must not complete into a freed runner */
        broker_cancel_task(slot_broker(s), s->job->item->task.id);
        runner_free(s->runner);
        s->runner = NULL;
    }
    broker_free(s->own_broker);
    s->own_broker = NULL;
    if (s->events_fd >= 0)
        (void)close(s->events_fd);
    s->events_fd = -1;
    taskprep_free(&s->tp);
    s->job = NULL;
    s->tokens = s->cost_usd = s->rate_wait_until = 0;
}

static int slot_start(struct batch *b, struct slot *s, struct batch_job *j, char *err, size_t errsz)
{
    const struct task *t = &j->item->task;
    memset(&s->tp, 0, sizeof(s->tp));
    s->job = j;
    s->events_fd = -1;
    s->tokens = s->cost_usd = 0;
    s->started = monotonic_s();
    if (taskprep_build(&s->tp, t, &b->cfg, b->have_cat ? &b->cat : NULL, err, errsz) < 0)
        return -1;
    events_init(&s->events, t->id);
    if (b->a.events_dir) {
        char path[PATH_MAX + 200];
        snprintf(path, sizeof(path), "%s/%s.jsonl", b->a.events_dir, t->id);
        s->events_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->events_fd < 0)
            return errf(err, errsz, "--events-dir: %s: %s", path, strerror(errno));
        (void)events_add_fd(&s->events, s->events_fd);
    }
    (void)events_add_callback(&s->events, slot_events, s);
    if (b->a.replay && broker_new_replay(b->a.replay, &s->own_broker, err, errsz) < 0)
        return -1;
    snprintf(s->state_dir, sizeof(s->state_dir), "%s/%s", b->state_root, t->id);
    struct runner_opts o = s->tp.opts;
    o.state_dir = s->state_dir;
    o.events = &s->events;
    o.broker = slot_broker(s);
    o.queued_at = wallclock_s() - (monotonic_s() - b->t0); /* every task is queued at start */
    return runner_start_async(&o, &s->runner, err, errsz); /* the cell: off the loop */
}

static void start_more(struct batch *b)
{
    for (unsigned i = 0; i < b->a.jobs && !b->interrupted && !b->out_broken; i++) {
        struct slot *s = &b->slots[i];
        if (s->job)
            continue;
        while (b->next < b->njobs && b->jobs[b->next].result)
            b->next++;
        if (b->next >= b->njobs)
            return;
        struct batch_job *j = &b->jobs[b->next++];
        char err[ERR_MSG_MAX];
        double t0 = monotonic_s();
        if (slot_start(b, s, j, err, sizeof(err)) < 0) {
            finish_job(b, j,
                       synthetic_result(&j->item->task, "failed", "UNKNOWN_ERROR", err,
                                        monotonic_s() - t0));
            batch_slot_release(s);
            i--; /* the slot is free again: give it the next task */
            continue;
        }
        b->running++;
    }
}

static void slot_done(struct batch *b, struct slot *s)
{
    const cJSON *r = runner_result(s->runner);
    cJSON *copy = r ? cJSON_Duplicate(r, 1) : NULL;
    if (!r)
        copy = synthetic_result(&s->job->item->task, "failed", "UNKNOWN_ERROR",
                                "the task ended without a result", 0);
    struct batch_job *j = s->job;
    batch_slot_release(s);
    b->running--;
    finish_job(b, j, copy);
}

/* The second signal: no more grace; every cell is killed now and its task recorded as
 * cancelled (its state dir keeps no result, so --resume runs it again). */
static void kill_all(struct batch *b)
{
    for (unsigned i = 0; i < b->a.jobs; i++) {
        struct slot *s = &b->slots[i];
        if (!s->job)
            continue;
        struct batch_job *j = s->job;
        double elapsed = monotonic_s() - s->started;
        batch_slot_release(s); /* runner_free kills and reaps the cell */
        b->running--;
        finish_job(b, j, synthetic_result(&j->item->task, "cancelled", NULL, NULL, elapsed));
    }
}

static void on_signal(struct batch *b, int sigfd)
{
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (b->interrupted) {
            batch_clear_bar(b);
            fprintf(stderr, "agentbox batch: killing %u running task%s now\n", b->running,
                    b->running == 1 ? "" : "s");
            b->killed = true;
            kill_all(b);
            return;
        }
        b->interrupted = true;
        batch_clear_bar(b);
        fprintf(stderr,
                "agentbox batch: %s: cancelling %u running task%s (again to kill at once); "
                "--resume runs the rest later\n",
                strsignal((int)si.ssi_signo), b->running, b->running == 1 ? "" : "s");
        for (unsigned i = 0; i < b->a.jobs; i++)
            if (b->slots[i].runner)
                runner_cancel(b->slots[i].runner);
    }
}

/* ---- the loop ---- */

/* Room for want more entries after n: the array is created with its bound (fds_max). */
static int add_fds(struct pollfd **fds, size_t *cap, size_t n, size_t want, size_t max)
{
    return grow_to_fit(fds, n + want - 1, cap, sizeof(**fds), 64, max);
}

void batch_run_loop(struct batch *b, int sigfd)
{
    /* the signalfd, up to 8 per cell, the shared broker's connections */
    size_t fds_max = 1 + 8 * (size_t)b->a.jobs + (size_t)b->cfg.max_connections + 16;
    size_t cap = 0;
    struct pollfd *fds = NULL;
    (void)add_fds(&fds, &cap, 0, 1 + 4 * (size_t)b->a.jobs, fds_max);
    int *first = calloc(b->a.jobs, sizeof(*first));
    int *count = calloc(b->a.jobs, sizeof(*count));
    if (!fds || !first || !count) {
        fprintf(stderr, "agentbox batch: out of memory\n");
        b->interrupted = true;
        goto out;
    }
    for (;;) {
        if (b->out_broken && !b->interrupted) {
            b->interrupted = true;
            for (unsigned i = 0; i < b->a.jobs; i++)
                if (b->slots[i].runner)
                    runner_cancel(b->slots[i].runner);
        }
        start_more(b);
        if (b->running == 0)
            break;
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
        long timeout = b->tty ? (long)(BATCH_REDRAW_S * 1000) : 1000;
        double now = monotonic_s();
        for (unsigned i = 0; i < b->a.jobs; i++) {
            struct slot *s = &b->slots[i];
            first[i] = (int)n;
            count[i] = 0;
            if (!s->runner)
                continue;
            if (add_fds(&fds, &cap, n, 8, fds_max) < 0)
                break;
            count[i] = runner_poll_fds(s->runner, fds + n, (int)(cap - n));
            n += (size_t)count[i];
            double wake = runner_next_wakeup(s->runner);
            if (wake > 0) {
                long ms = (long)ceil((wake - now) * 1000);
                timeout = ms < 0 ? 0 : (ms < timeout ? ms : timeout);
            }
            if (s->own_broker) {
                long bt = broker_timeout_ms(s->own_broker);
                if (bt >= 0 && bt < timeout)
                    timeout = bt;
            }
        }
        if (b->shared) {
            size_t want = (size_t)b->cfg.max_connections + 16;
            if (add_fds(&fds, &cap, n, want, fds_max) == 0)
                n += (size_t)broker_poll_fds(b->shared, fds + n, (int)want);
            long bt = broker_timeout_ms(b->shared);
            if (bt >= 0 && bt < timeout)
                timeout = bt;
        }
        int pr = poll(fds, (nfds_t)n, (int)timeout);
        if (pr < 0 && errno != EINTR) {
            fprintf(stderr, "agentbox batch: poll: %s\n", strerror(errno));
            b->interrupted = true;
            kill_all(b);
            break;
        }
        if (pr > 0 && (fds[0].revents & POLLIN)) {
            on_signal(b, sigfd);
            if (b->killed)
                break;
        }
        if (b->shared)
            (void)broker_step(b->shared);
        for (unsigned i = 0; i < b->a.jobs; i++) {
            struct slot *s = &b->slots[i];
            if (!s->runner)
                continue;
            if (s->own_broker)
                (void)broker_step(s->own_broker);
            runner_handle(s->runner, fds + first[i], count[i]);
            if (runner_done(s->runner))
                slot_done(b, s);
        }
        draw_bar(b, false);
    }
out:
    free(fds);
    free(first);
    free(count);
}
