/* serve_task: the supervisor's side of each task: starting its runner (policy cache, model
 * chain, state dir), feeding its events to metrics and subscribers, finishing it (result,
 * journal, waiters), the results of tasks no runner finished, and recovery from the journal.
 * Never reads from a client; what goes to subscribers and waiters passes serve_client.c. */
#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "crashpoint.h"
#include "json.h"
#include "task_egress.h"
#include "log.h"
#include "safedir.h"
#include "statefile.h"
#include "util.h"
#include "serve.h"
#include "serve_log.h"
#include "serve_artifact.h"
#include "taskprep.h"

/* ---------------------------------------------------------------- small helpers */

/* By fd below the state dir: symlinks are removed, never followed. */
void serve_remove_tree(struct server *s, const char *id)
{
    if (remove_tree_at(s->state_dfd, id) < 0)
        log_warn("cannot remove %s/%s: %s", s->state_dir, id, strerror(errno));
}

/* ---------------------------------------------------------------- results */

/* A result for a task that no runner finished (cancelled in the queue, failed to start,
 * interrupted by a restart): the result's full shape, every field present. */
static cJSON *synth_result(const struct server *s, const struct stask *t, enum task_status st,
                           const char *error_type, const char *message)
{
    char ev[STATEFILE_PATH_MAX];
    if (statefile_path(s->state_dir, t->id, "events.jsonl", ev, sizeof(ev)) < 0)
        return NULL;
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(t->task_json, "model");
    /* 0 for a task that never ran here (queued, or running before a restart) */
    double elapsed = t->start_mono > 0 ? fmax(0, monotonic_s() - t->start_mono) : 0;
    return runner_result_unrun(t->id, task_status_name(st),
                               broker_error_object(error_type, message, NULL), elapsed,
                               cJSON_IsString(model) ? model->valuestring : NULL, ev,
                               cJSON_GetObjectItemCaseSensitive(t->task_json, "metadata"));
}

/* ---------------------------------------------------------------- events */

/* Every event of every task passes here: metrics, the cell's pid, live subscribers. */
static void on_event(struct server *s, struct stask *t, const char *line, size_t len)
{
    cleanup_json cJSON *ev = cJSON_ParseWithLength(line, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    bool terminal = false;
    if (cJSON_IsString(type)) {
        metrics_observe_event(&s->metrics, ev);
        serve_log_task_event(ev);
        if (strcmp(type->valuestring, "task_started") == 0) {
            const cJSON *pid = cJSON_GetObjectItemCaseSensitive(ev, "cell_pid");
            if (cJSON_IsNumber(pid))
                t->cell_pid = (long)pid->valuedouble;
        }
        terminal = serve_is_terminal_event(type->valuestring);
    }
    s->publish.event(s, t, line, len, terminal);
}

void serve_slot_event_sink(void *opaque, const char *line, size_t len)
{
    struct slot *sl = opaque;
    on_event(sl->srv, sl->t, line, len);
}

/* ---------------------------------------------------------------- finishing */

/* The task is finished in memory (waiters answered); its result and journal record are
 * made durable here, or retried later when the disk refuses them. */
static void record_finished(struct server *s, struct stask *t, enum task_status st, cJSON *res,
                            bool result_saved)
{
    t->ended = wallclock_s();
    serve_upload_remove(s, t->id); /* an uploaded workspace lives as long as its task */
    taskstore_set_status(&s->store, t, st);
    cJSON_Delete(t->result);
    t->result = res;
    t->result_saved = result_saved;
    t->journal_saved = false;
    if (t->started > 0)
        metrics_task_finished(&s->metrics, t->ended - t->started);
    serve_persist_finished(s, t);
    if (t->parsed) {
        task_free(&t->task);
        t->parsed = false;
    }
    s->publish.finished(s, t);
    /* the journal keeps the task for a restart; memory need not */
    cJSON_Delete(t->task_json);
    t->task_json = NULL;
}

/* A task ends without a runner: result.json, then the terminal event, then the journal. */
void serve_finish_without_runner(struct server *s, struct stask *t, enum task_status st,
                                 const char *error_type, const char *message)
{
    if (mkdirat(s->state_dfd, t->id, 0700) < 0 && errno != EEXIST)
        log_warn("%s/%s: %s", s->state_dir, t->id, strerror(errno));
    cJSON *res = synth_result(s, t, st, error_type, message);
    bool saved = res && serve_save_result(s, t->id, res, "synth-result-half");
    crashpoint("synth-after-result");
    cJSON *f = serve_terminal_fields(res);
    cJSON_ReplaceItemInObjectCaseSensitive(f, "status", cJSON_CreateString(task_status_name(st)));
    serve_emit_own_event(s, t, serve_terminal_event_type(st), f);
    crashpoint("synth-after-event");
    record_finished(s, t, st, res, saved);
}

void serve_unregister_slot_fds(struct slot *sl)
{
    for (int i = 0; i < sl->nfds; i++)
        if (sl->fds[i] >= 0)
            (void)epoll_ctl(sl->srv->ep, EPOLL_CTL_DEL, sl->fds[i], NULL);
    sl->nfds = 0;
}

void serve_slot_free(struct slot *sl)
{
    broker_free(sl->own_broker);
    free(sl->egress);
    free(sl);
}

static void finish_running(struct server *s, struct slot *sl)
{
    struct stask *t = sl->t;
    const cJSON *r = runner_result(sl->runner);
    cJSON *res = r ? cJSON_Duplicate(r, 1) : NULL;
    bool saved = runner_result_saved(sl->runner);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
    int status = cJSON_IsString(st) ? task_status_parse(st->valuestring) : -1;
    serve_unregister_slot_fds(sl);
    runner_free(sl->runner);
    serve_policy_put(sl->pe);
    if (sl->prev)
        sl->prev->next = sl->next;
    else
        s->running = sl->next;
    if (sl->next)
        sl->next->prev = sl->prev;
    s->nrunning--;
    t->slot = NULL;
    serve_slot_free(sl);
    if (!res) {
        serve_finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR",
                                    "the task ended without a result");
        return;
    }
    record_finished(s, t, status < 0 ? TS_FAILED : (enum task_status)status, res, saved);
}

/* ---------------------------------------------------------------- starting tasks */

/* A task queued again after a supervisor restart whose workspace needs its submitter's
 * rights, which were not kept: why it cannot start, or NULL. */
static const char *restart_lost_rights(const struct task *tk)
{
    if (tk->workspace_from && tk->seed_fd < 0) /* the seed was opened at submission */
        return "task.workspace.from_dir: the seed is opened with the submitter's rights at "
               "submission; after a supervisor restart it cannot be, submit the task again";
    if (tk->git && !tk->requester_set) /* a git workspace is read as the requester */
        return "task.workspace.git: the requester is not known after a supervisor restart; "
               "submit the task again";
    return NULL;
}

/* epoll watches what the runner polls: the spawn's completion fd first, then the channel,
 * pidfd and proxy once the cell is there; the runner stops watching its channel at EOF, so
 * must epoll (level-triggered). A tag keeps its index: a dropped fd leaves a hole. */
static void sync_slot_fds(struct server *s, struct slot *sl)
{
    struct pollfd pfd[4];
    int n = runner_poll_fds(sl->runner, pfd, 4);
    for (int j = 0; j < sl->nfds; j++) {
        bool listed = sl->fds[j] < 0;
        for (int i = 0; i < n; i++)
            listed |= pfd[i].fd == sl->fds[j];
        if (!listed) {
            (void)epoll_ctl(s->ep, EPOLL_CTL_DEL, sl->fds[j], NULL);
            sl->fds[j] = -1;
        }
    }
    for (int i = 0; i < n; i++) {
        bool have = false;
        for (int j = 0; j < sl->nfds; j++)
            have |= sl->fds[j] == pfd[i].fd;
        int j = 0;
        while (j < sl->nfds && sl->fds[j] >= 0)
            j++;
        if (have || j >= 4)
            continue;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sl->ftags[j]};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, pfd[i].fd, &ev) < 0) {
            log_error("epoll_ctl: %s", strerror(errno));
            continue;
        }
        sl->fds[j] = pfd[i].fd;
        sl->revents[j] = 0;
        if (j == sl->nfds)
            sl->nfds++;
    }
}

/* The task's egress rules, kept in the slot only when the task has egress (most have not,
 * and the rules are large). -1 + err. */
static int slot_egress(struct slot *sl, const struct task *tk, const struct policy *pol, char *err,
                       size_t errsz)
{
    struct egress_rules *rules = calloc(1, sizeof(*rules));
    if (!rules)
        return errf(err, errsz, "out of memory");
    bool on = false;
    int rc = task_egress_rules(tk, pol, rules, &on, err, errsz);
    if (rc < 0 || !on) {
        free(rules);
        return rc;
    }
    sl->egress = rules;
    return 0;
}

static void start_task(struct server *s, struct stask *t)
{
    char err[ERR_MSG_MAX];
    const struct task *tk = &t->task;
    struct policy_entry *pe = NULL;
    if (serve_policy_get(s, tk, &pe, err, sizeof(err)) < 0) {
        serve_finish_without_runner(s, t, TS_FAILED, "VALIDATION_ERROR", err);
        return;
    }
    const char *lost = restart_lost_rights(tk);
    if (lost) {
        serve_finish_without_runner(s, t, TS_FAILED, "VALIDATION_ERROR", lost);
        serve_policy_put(pe);
        return;
    }
    struct slot *sl = calloc(1, sizeof(*sl));
    if (!sl) {
        serve_finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR", "out of memory");
        return;
    }
    for (int i = 0; i < 4; i++)
        sl->ftags[i] = (struct fdtag){.tag.kind = K_RUNNER, .sl = sl, .idx = i};
    sl->srv = s;
    sl->t = t;
    if (s->replay && broker_new_replay(s->replay, &sl->own_broker, err, sizeof(err)) < 0) {
        serve_slot_free(sl);
        serve_finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR", err);
        return;
    }
    const char *primary = tk->model ? tk->model : s->cfg.model;
    const char *extra[TASK_MODELS_MAX + 1] = {0};
    for (size_t i = 0; i < tk->nfallback; i++)
        extra[i] = tk->fallback_models[i];
    int nmodels =
        catalog_model_chain(&s->cat, &s->cfg, primary, extra, sl->models, RUNNER_MODELS_MAX);
    const struct catalog_model *cm = catalog_find(&s->cat, primary);
    if (statefile_path(s->state_dir, t->id, NULL, sl->state_dir, sizeof(sl->state_dir)) < 0) {
        serve_slot_free(sl);
        serve_finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR", strerror(errno));
        return;
    }
    struct runner_opts o = {
        .task = tk,
        .policy = pe->pol,
        .seccomp = &pe->prog,
        .limits = pe->pol->limits,
        .network_host = tk->network_host,
        .seed_fd = tk->seed_fd,
        .timeout_s = tk->timeout_s > 0 ? tk->timeout_s : s->cfg.timeout_s,
        .max_iterations =
            tk->max_iterations ? (unsigned)tk->max_iterations : SERVE_DEFAULT_MAX_ITER,
        .max_tokens_per_call = s->cfg.max_tokens,
        .context_tokens = cm && cm->context_length ? cm->context_length : 32768,
        .native_tools = cm ? cm->tool_calls : true,
        .state_dir = sl->state_dir,
        .events = &sl->events,
        .broker = sl->own_broker ? sl->own_broker : s->broker,
        .queued_at = t->submitted,
        .prewarm = s->prewarm,
    };
    for (int i = 0; i < nmodels && i < RUNNER_MODELS_MAX; i++)
        o.models[i] = sl->models[i];
    /* checked again at start: a task requeued after a restart meets today's ceiling */
    if (serve_egress_check(s, tk, err, sizeof(err)) < 0 ||
        slot_egress(sl, tk, pe->pol, err, sizeof(err)) < 0) {
        serve_slot_free(sl);
        serve_finish_without_runner(s, t, TS_FAILED, "VALIDATION_ERROR", err);
        return;
    }
    o.egress = sl->egress;
    taskprep_apply_limits(&o.limits, tk);
    events_init(&sl->events, t->id);
    (void)events_add_callback(&sl->events, serve_slot_event_sink, sl);

    t->started = wallclock_s();
    t->start_mono = monotonic_s();
    if (journal_started(&s->journal, t->id, t->started) < 0)
        log_error("journal: %s", strerror(errno));
    taskstore_set_status(&s->store, t, TS_RUNNING);
    /* the cell is made on a spawner thread: the loop goes on serving meanwhile */
    if (runner_start_async(&o, &sl->runner, err, sizeof(err)) < 0) {
        serve_slot_free(sl);
        serve_finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR", err);
        return;
    }
    sync_slot_fds(s, sl);
    sl->pe = pe; /* held until finish_running: the cache cannot evict it meanwhile */
    pe->refs++;
    sl->next = s->running;
    if (s->running)
        s->running->prev = sl;
    s->running = sl;
    s->nrunning++;
    t->slot = sl;
    if (t->cancel_requested)
        runner_cancel(sl->runner);
}

void serve_start_queued(struct server *s)
{
    while (!s->draining && s->qhead && s->nrunning < s->jobs) {
        struct stask *t = s->qhead;
        s->qhead = t->qnext;
        if (!s->qhead)
            s->qtail = NULL;
        t->qnext = NULL;
        s->nqueued--;
        start_task(s, t);
    }
}

void serve_enqueue(struct server *s, struct stask *t)
{
    t->qnext = NULL;
    if (s->qtail)
        s->qtail->qnext = t;
    else
        s->qhead = t;
    s->qtail = t;
    s->nqueued++;
}

void serve_dequeue(struct server *s, struct stask *t)
{
    struct stask **pp = &s->qhead, *prev = NULL;
    while (*pp && *pp != t) {
        prev = *pp;
        pp = &(*pp)->qnext;
    }
    if (!*pp)
        return;
    *pp = t->qnext;
    if (s->qtail == t)
        s->qtail = prev;
    t->qnext = NULL;
    s->nqueued--;
}

/* Runners whose fds fired, or whose timers are due; then the ones that finished. A runner
 * may close fds inside runner_handle (a reaped cell's pidfd, the proxy's, the verify
 * cell's): epoll lets go of them first. A registration is dropped only with the last
 * reference to its file, and a cell being made on a spawner thread holds a copy of every fd
 * until its set-up closes them: a closed but still registered pidfd would go on reporting
 * with its old tag (a freed slot, or a new one at the same address and fd number). */
void serve_step_runners(struct server *s)
{
    double now = monotonic_s();
    for (struct slot *sl = s->running, *next; sl; sl = next) {
        next = sl->next;
        if (sl->own_broker && broker_timeout_ms(sl->own_broker) >= 0)
            (void)broker_step(sl->own_broker);
        struct pollfd pfd[4];
        int n = 0;
        if (sl->ready) {
            n = runner_poll_fds(sl->runner, pfd, 4);
            for (int i = 0; i < n; i++) {
                pfd[i].revents = 0;
                for (int j = 0; j < sl->nfds; j++)
                    if (sl->fds[j] == pfd[i].fd)
                        pfd[i].revents = sl->revents[j];
            }
            memset(sl->revents, 0, sizeof(sl->revents));
            sl->ready = false;
            serve_unregister_slot_fds(sl); /* see below */
            runner_handle(sl->runner, pfd, n);
        } else {
            double wake = runner_next_wakeup(sl->runner);
            /* a handled wake-up stays in the past until the cell is reaped (the kill was
             * sent, its pidfd will say when it is gone): look again only now and then */
            if (wake > 0 && now >= wake && (wake != sl->woken_for || now >= sl->rewake_at)) {
                sl->woken_for = wake;
                sl->rewake_at = now + SERVE_REWAKE_S;
                serve_unregister_slot_fds(sl);
                runner_handle(sl->runner, NULL, 0);
            }
        }
        if (runner_done(sl->runner)) {
            finish_running(s, sl);
            continue;
        }
        sync_slot_fds(s, sl);
    }
}

void serve_cancel_queued(struct server *s, const char *why)
{
    while (s->qhead) {
        struct stask *t = s->qhead;
        serve_dequeue(s, t);
        serve_finish_without_runner(s, t, TS_CANCELLED, "UNKNOWN_ERROR", why);
    }
}

/* A task the journal does not call finished may have ended before the crash: its result
 * saved (maybe without its terminal event yet), or its terminal event out (so its result
 * was durable; if it is unreadable now it is rebuilt). Such a task is finished here, with
 * exactly one terminal event; true when it was. One whose terminal event went out is
 * never run again, --requeue-interrupted or not. */
static bool recover_ended(struct server *s, struct stask *t)
{
    cleanup_json cJSON *ev = serve_terminal_event(s, t->id);
    cJSON *res = serve_load_result(s, t->id);
    bool saved = res != NULL;
    if (!res && !ev)
        return false;
    if (!res)
        res = serve_rebuild_result(s, t, ev);
    if (!res)
        return false;
    if (!saved)
        saved = serve_save_result(s, t->id, res, "recovery-result-half");
    if (!ev) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
        int code = cJSON_IsString(st) ? task_status_parse(st->valuestring) : TS_FAILED;
        serve_emit_own_event(s, t, serve_terminal_event_type((enum task_status)code),
                             serve_terminal_fields(res));
        crashpoint("recovery-after-event");
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
    int code = cJSON_IsString(st) ? task_status_parse(st->valuestring) : -1;
    record_finished(s, t, code < 0 ? TS_FAILED : (enum task_status)code, res, saved);
    return true;
}

/* Every task the journal knows comes back: finished ones as they ended; interrupted ones
 * failed (or queued again). Their cells died with the old supervisor (PDEATHSIG), and with
 * them their mount namespaces: nothing else to clean. */
int serve_recover(struct server *s, char *err, size_t errsz)
{
    struct journal_entry *e = NULL;
    size_t n = 0;
    if (journal_open(&s->journal, s->state_dir, &e, &n, err, errsz) < 0)
        return -1;
    unsigned long finished = 0, failed = 0, requeued = 0;
    for (size_t i = 0; i < n; i++) {
        struct stask *t = taskstore_add(&s->store, e[i].id);
        if (!t)
            continue;
        t->submitted = e[i].submitted;
        t->started = e[i].started;
        t->owner = e[i].owner;
        t->task_json = steal_pointer(&e[i].task);
        int st = e[i].status[0] ? task_status_parse(e[i].status) : -1;
        if (st >= 0) {
            t->ended = e[i].ended;
            taskstore_set_status(&s->store, t, (enum task_status)st);
            cJSON_Delete(t->task_json);
            t->task_json = NULL;
            finished++;
            continue;
        }
        if (recover_ended(s, t)) {
            finished++;
            continue;
        }
        char perr[ERR_MSG_MAX];
        if (s->requeue && task_parse(t->task_json, &t->task, perr, sizeof(perr)) == 0) {
            t->parsed = true;
            serve_remove_tree(s, t->id);
            t->started = 0;
            serve_enqueue(s, t);
            requeued++;
            continue;
        }
        serve_finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR",
                                    "interrupted by a supervisor restart");
        failed++;
    }
    journal_entries_free(e, n);
    if (!n)
        log_info("journal: no earlier tasks to recover");
    else
        log_info("journal: %zu task%s known (%lu finished, %lu interrupted and failed, %lu "
                 "queued again)",
                 n, n == 1 ? "" : "s", finished, failed, requeued);
    return 0;
}
