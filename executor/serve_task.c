/* serve_task: the supervisor's side of each task: starting its runner (policy cache, model
 * chain, state dir), feeding its events to metrics and subscribers, finishing it (result,
 * journal, waiters), the results of tasks no runner finished, and recovery from the journal.
 * Never reads from a client; what goes to subscribers and waiters passes serve_client.c. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "json.h"
#include "log.h"
#include "util.h"
#include "serve.h"
#include "serve_artifact.h"
#include "taskprep.h"

/* ---------------------------------------------------------------- small helpers */

static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    if (remove(path) < 0 && errno != ENOENT)
        log_warn("cannot remove %s: %s", path, strerror(errno));
    return 0;
}

/* Symlinks are removed, never followed (FTW_PHYS). */
void serve_remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    (void)nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void serve_task_dir(const struct server *s, const char *id, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", s->state_dir, id);
}

/* ---------------------------------------------------------------- results */

cJSON *serve_load_result(const struct server *s, const char *id)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s/result.json", s->state_dir, id);
    return json_read_object_file(path, SERVE_RESULT_MAX_BYTES);
}

/* A result for a task that no runner finished (cancelled in the queue, failed to start,
 * interrupted by a restart): SPEC's shape, every field present. */
static cJSON *synth_result(const struct server *s, const struct stask *t, enum task_status st,
                           const char *error_type, const char *message)
{
    char dir[4400], ev[4500];
    serve_task_dir(s, t->id, dir, sizeof(dir));
    snprintf(ev, sizeof(ev), "%s/events.jsonl", dir);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(t->task_json, "model");
    /* 0 for a task that never ran here (queued, or running before a restart) */
    double elapsed = t->start_mono > 0 ? fmax(0, monotonic_s() - t->start_mono) : 0;
    return runner_result_unrun(t->id, task_status_name(st),
                               broker_error_object(error_type, message, NULL), elapsed,
                               cJSON_IsString(model) ? model->valuestring : NULL, ev,
                               cJSON_GetObjectItemCaseSensitive(t->task_json, "metadata"));
}

/* ---------------------------------------------------------------- events */

static const char *const terminal_events[] = {"task_completed", "task_failed", "task_timeout",
                                              "task_cancelled", "task_escalated"};

static bool is_terminal_event(const char *type)
{
    for (size_t i = 0; i < ARRAY_SIZE(terminal_events); i++)
        if (strcmp(type, terminal_events[i]) == 0)
            return true;
    return false;
}

/* Every event of every task passes here: metrics, the cell's pid, live subscribers. */
static void on_event(struct server *s, struct stask *t, const char *line, size_t len)
{
    cleanup_json cJSON *ev = cJSON_ParseWithLength(line, len);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    bool terminal = false;
    if (cJSON_IsString(type)) {
        metrics_observe_event(&s->metrics, ev);
        if (strcmp(type->valuestring, "task_started") == 0) {
            const cJSON *pid = cJSON_GetObjectItemCaseSensitive(ev, "cell_pid");
            if (cJSON_IsNumber(pid))
                t->cell_pid = (long)pid->valuedouble;
        }
        terminal = is_terminal_event(type->valuestring);
    }
    for (struct client *c = s->clients; c; c = c->next) {
        if (c->dead || c->pending != P_STREAM || !c->live)
            continue;
        if (!c->all && strcmp(c->id, t->id) != 0)
            continue;
        serve_client_queue(c, line, len);
        if (terminal && !c->all)
            serve_stream_end(c);
    }
}

static void slot_event_sink(void *opaque, const char *line, size_t len)
{
    struct slot *sl = opaque;
    on_event(sl->srv, sl->t, line, len);
}

/* Events of a task that no runner produced go to its events file and to subscribers. */
static void emit_own_event(struct server *s, struct stask *t, const char *type, cJSON *fields)
{
    char path[4500];
    snprintf(path, sizeof(path), "%s/%s/events.jsonl", s->state_dir, t->id);
    cleanup_fd int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | O_NOFOLLOW, 0600);
    struct event_log log;
    events_init(&log, t->id);
    /* continue the task's seq numbers when a runner wrote some already */
    cleanup_free char *old = NULL;
    size_t oldlen = 0;
    if (read_file(path, 64u << 20, &old, &oldlen) == 0)
        for (size_t i = 0; i < oldlen; i++)
            log.seq += old[i] == '\n';
    if (fd >= 0)
        (void)events_add_fd(&log, fd);
    struct slot tmp = {.srv = s, .t = t};
    (void)events_add_callback(&log, slot_event_sink, &tmp);
    (void)events_emit(&log, type, fields);
}

/* ---------------------------------------------------------------- finishing */

static int write_result_file(const struct server *s, const char *id, const cJSON *res)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s/result.json", s->state_dir, id);
    cleanup_free char *text = cJSON_Print(res);
    cleanup_fd int fd =
        text ? open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
    if (fd < 0 || write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0)
        return -1;
    return close(steal_fd(&fd));
}

static void record_finished(struct server *s, struct stask *t, enum task_status st, cJSON *res)
{
    t->ended = wallclock_s();
    serve_upload_remove(s, t->id); /* an uploaded workspace lives as long as its task */
    taskstore_set_status(&s->store, t, st);
    cJSON_Delete(t->result);
    t->result = res;
    if (t->started > 0)
        metrics_task_finished(&s->metrics, t->ended - t->started);
    if (journal_finished(&s->journal, t->id, task_status_name(st), t->ended) < 0)
        log_error("journal: %s", strerror(errno));
    if (t->parsed) {
        task_free(&t->task);
        t->parsed = false;
    }
    /* the journal keeps the task for a restart; memory need not */
    cJSON_Delete(t->task_json);
    t->task_json = NULL;
    serve_answer_waiters(s, t);
}

/* A task ends without a runner: result.json and the terminal event written here. */
void serve_finish_without_runner(struct server *s, struct stask *t, enum task_status st,
                                 const char *error_type, const char *message)
{
    char dir[4400];
    serve_task_dir(s, t->id, dir, sizeof(dir));
    if (dir_ensure(dir) < 0)
        log_warn("%s: %s", dir, strerror(errno));
    cJSON *res = synth_result(s, t, st, error_type, message);
    if (res && write_result_file(s, t->id, res) < 0 && errno != EEXIST)
        log_warn("task %s: cannot write its result: %s", t->id, strerror(errno));
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", task_status_name(st));
    cJSON_AddNumberToObject(f, "iterations", 0);
    if (res)
        cJSON_AddItemToObject(f, "error",
                              cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(res, "error"), 1));
    emit_own_event(s, t, st == TS_CANCELLED ? "task_cancelled" : "task_failed", f);
    record_finished(s, t, st, res);
}

void serve_unregister_slot_fds(struct slot *sl)
{
    for (int i = 0; i < sl->nfds; i++)
        if (sl->fds[i] >= 0)
            (void)epoll_ctl(sl->srv->ep, EPOLL_CTL_DEL, sl->fds[i], NULL);
    sl->nfds = 0;
}

static void finish_running(struct server *s, struct slot *sl)
{
    struct stask *t = sl->t;
    const cJSON *r = runner_result(sl->runner);
    cJSON *res = r ? cJSON_Duplicate(r, 1) : NULL;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
    int status = cJSON_IsString(st) ? task_status_parse(st->valuestring) : -1;
    serve_unregister_slot_fds(sl);
    runner_free(sl->runner);
    broker_free(sl->own_broker);
    if (sl->prev)
        sl->prev->next = sl->next;
    else
        s->running = sl->next;
    if (sl->next)
        sl->next->prev = sl->prev;
    s->nrunning--;
    t->slot = NULL;
    free(sl);
    if (!res) {
        serve_finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR",
                                    "the task ended without a result");
        return;
    }
    record_finished(s, t, status < 0 ? TS_FAILED : (enum task_status)status, res);
}

/* ---------------------------------------------------------------- starting tasks */

int serve_policy_get(struct server *s, const char *name, bool network_none,
                     struct policy_entry **out, char *err, size_t errsz)
{
    for (int i = 0; i < s->npolicies; i++)
        if (s->policies[i].network_none == network_none && strcmp(s->policies[i].name, name) == 0) {
            *out = &s->policies[i];
            return 0;
        }
    struct policy *pol = NULL;
    if (policy_load(name, &pol, err, errsz) < 0)
        return -1;
    if (!network_none && !pol->allow_network_host) {
        errf(err, errsz, "task.network: policy '%s' does not allow network host", pol->name);
        policy_free(pol);
        return -1;
    }
    struct sock_fprog prog = {0};
    if (policy_seccomp_build(pol, network_none, &prog, err, errsz) < 0) {
        policy_free(pol);
        return -1;
    }
    if (s->npolicies == SERVE_POLICY_CACHE_MAX) {
        /* the cache holds what tasks borrow: a full cache refuses new policies */
        policy_bpf_free(&prog);
        policy_free(pol);
        return errf(err, errsz, "task.policy: more than %d distinct policies in use",
                    SERVE_POLICY_CACHE_MAX);
    }
    struct policy_entry *e = &s->policies[s->npolicies++];
    snprintf(e->name, sizeof(e->name), "%s", name);
    e->network_none = network_none;
    e->pol = pol;
    e->prog = prog;
    *out = e;
    return 0;
}

static void start_task(struct server *s, struct stask *t)
{
    char err[ERR_MSG_MAX];
    const struct task *tk = &t->task;
    struct policy_entry *pe = NULL;
    if (serve_policy_get(s, tk->policy ? tk->policy : "default", !tk->network_host, &pe, err,
                         sizeof(err)) < 0) {
        serve_finish_without_runner(s, t, TS_FAILED, "VALIDATION_ERROR", err);
        return;
    }
    if (tk->git && !tk->requester_set) { /* re-queued by a restart: whose rights is unknown */
        serve_finish_without_runner(s, t, TS_FAILED, "VALIDATION_ERROR",
                                    "task.workspace.git: the requester is not known after a "
                                    "supervisor restart; submit the task again");
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
        free(sl);
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
    serve_task_dir(s, t->id, sl->state_dir, sizeof(sl->state_dir));
    struct runner_opts o = {
        .task = tk,
        .policy = pe->pol,
        .seccomp = &pe->prog,
        .limits = pe->pol->limits,
        .network_host = tk->network_host,
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
    };
    for (int i = 0; i < nmodels && i < RUNNER_MODELS_MAX; i++)
        o.models[i] = sl->models[i];
    taskprep_apply_limits(&o.limits, tk);
    events_init(&sl->events, t->id);
    (void)events_add_callback(&sl->events, slot_event_sink, sl);

    t->started = wallclock_s();
    t->start_mono = monotonic_s();
    if (journal_started(&s->journal, t->id, t->started) < 0)
        log_error("journal: %s", strerror(errno));
    taskstore_set_status(&s->store, t, TS_RUNNING);
    if (runner_start(&o, &sl->runner, err, sizeof(err)) < 0) {
        broker_free(sl->own_broker);
        free(sl);
        serve_finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR", err);
        return;
    }
    struct pollfd pfd[4];
    int n = runner_poll_fds(sl->runner, pfd, 4);
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &sl->ftags[sl->nfds]};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, pfd[i].fd, &ev) == 0)
            sl->fds[sl->nfds++] = pfd[i].fd;
        else
            log_error("epoll_ctl: %s", strerror(errno));
    }
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

/* Runners whose fds fired, or whose timers are due; then the ones that finished. */
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
            runner_handle(sl->runner, pfd, n);
        } else {
            double wake = runner_next_wakeup(sl->runner);
            /* a handled wake-up stays in the past until the cell is reaped (the kill was
             * sent, its pidfd will say when it is gone): look again only now and then */
            if (wake > 0 && now >= wake && (wake != sl->woken_for || now >= sl->rewake_at)) {
                sl->woken_for = wake;
                sl->rewake_at = now + SERVE_REWAKE_S;
                runner_handle(sl->runner, NULL, 0);
            }
        }
        if (runner_done(sl->runner)) {
            finish_running(s, sl);
            continue;
        }
        /* the runner stops watching its channel at EOF: so must epoll (level-triggered) */
        n = runner_poll_fds(sl->runner, pfd, 4);
        for (int j = 0; j < sl->nfds;) {
            bool listed = sl->fds[j] < 0;
            for (int i = 0; i < n; i++)
                listed |= pfd[i].fd == sl->fds[j];
            if (listed) {
                j++;
                continue;
            }
            (void)epoll_ctl(s->ep, EPOLL_CTL_DEL, sl->fds[j], NULL);
            sl->fds[j] = -1; /* tags keep their index: leave a hole */
            j++;
        }
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
        /* the runner may have written its result just before the crash */
        cJSON *res = serve_load_result(s, t->id);
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(res, "status");
        st = cJSON_IsString(rs) ? task_status_parse(rs->valuestring) : -1;
        if (st >= 0) {
            record_finished(s, t, (enum task_status)st, res);
            finished++;
            continue;
        }
        cJSON_Delete(res);
        char dir[4400], perr[ERR_MSG_MAX];
        serve_task_dir(s, t->id, dir, sizeof(dir));
        if (s->requeue && task_parse(t->task_json, &t->task, perr, sizeof(perr)) == 0) {
            t->parsed = true;
            serve_remove_tree(dir);
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
    if (n)
        log_info("journal: %zu tasks known (%lu finished, %lu interrupted and failed, %lu "
                 "queued again)",
                 n, finished, failed, requeued);
    return 0;
}
