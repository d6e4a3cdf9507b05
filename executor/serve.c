/* serve: `agentbox serve`, the supervisor daemon. One epoll loop over the listening socket,
 * the clients, the runners' fds (cell channel, pidfd), the broker's sockets and a signalfd;
 * --jobs cells at once behind a FIFO queue; one broker (breakers, rate limits) shared by
 * every task; a journal so that a restart after a crash knows every task. Never blocks on a
 * client: a slow reader is disconnected at its queue bound, a stalled writer costs nothing. */
#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <getopt.h>
#include <grp.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "broker.h"
#include "catalog.h"
#include "commands.h"
#include "config.h"
#include "journal.h"
#include "json.h"
#include "log.h"
#include "metrics.h"
#include "policy.h"
#include "protocol.h"
#include "runner.h"
#include "task.h"
#include "taskstore.h"
#include "util.h"

#define SERVE_DEFAULT_JOBS         4
#define SERVE_DEFAULT_RETAIN       1000
#define SERVE_DEFAULT_GRACE_S      30.0
#define SERVE_DEFAULT_QUEUE_MAX    100000
#define SERVE_DEFAULT_CLIENT_QUEUE (16u << 20)
#define SERVE_CLIENTS_MAX          4096
#define SERVE_ALLOW_MAX            64
#define SERVE_POLICY_CACHE_MAX     16
#define SERVE_DEFAULT_MAX_ITER     100
#define SERVE_READ_CHUNK           65536
#define SERVE_REPLAY_LOW_WATER     (256u << 10)
#define SERVE_RESULT_MAX_BYTES     (256u << 20)
#define SERVE_EXIT_FLUSH_S         2.0
#define SERVE_EPOLL_BATCH          256

enum kind { K_LISTEN = 1, K_SIGNAL, K_CLIENT, K_RUNNER, K_BROKER };

struct tag {
    enum kind kind;
};

enum pending { P_NONE, P_WAIT, P_STREAM };

struct client {
    struct tag tag;
    struct server *srv;
    int fd;
    uid_t uid;
    char *in;
    size_t inlen, incap;
    bool discarding; /* dropping the rest of an oversized line */
    char *out;
    size_t outlen, outoff, outcap;
    uint32_t interest;
    bool dead;
    bool eof; /* the peer shut down its writing side: answer what it asked, then close */
    enum pending pending;
    char id[TASK_ID_MAX + 1];
    bool all, follow, live;
    double deadline; /* wait: monotonic, 0 = none */
    int replay_fd;
    char *carry; /* a replayed line not yet complete */
    size_t carrylen;
    struct client *prev, *next;
};

struct slot;
struct fdtag {
    struct tag tag; /* K_RUNNER */
    struct slot *sl;
    int idx;
};

struct slot {
    struct fdtag ftags[4]; /* epoll says which fd fired through its own tag */
    struct server *srv;
    struct stask *t;
    struct runner *runner;
    struct broker *own_broker; /* --replay: each task reads its own trajectory */
    struct event_log events;
    int fds[4];
    short revents[4];
    int nfds;
    bool ready;
    char models[RUNNER_MODELS_MAX][CONFIG_MODEL_MAX];
    char state_dir[4400]; /* the runner borrows it for its whole life */
    struct slot *prev, *next;
};

struct policy_entry {
    char name[256];
    bool network_none;
    struct policy *pol;
    struct sock_fprog prog;
};

struct server {
    const char *socket_path, *replay;
    char state_dir[CONFIG_URL_MAX];
    unsigned jobs;
    unsigned long retain, queue_max;
    size_t client_queue;
    double grace_s;
    bool requeue;
    uid_t allow_uid[SERVE_ALLOW_MAX];
    gid_t allow_gid[SERVE_ALLOW_MAX];
    int nallow_uid, nallow_gid;
    mode_t socket_mode;

    struct agentbox_config cfg;
    struct catalog cat;
    struct broker *broker; /* shared (live); NULL with --replay */
    struct journal journal;
    struct taskstore store;
    struct metrics metrics;
    struct policy_entry policies[SERVE_POLICY_CACHE_MAX];
    int npolicies;

    int ep, lfd, sigfd, bep;
    struct tag listen_tag, signal_tag, broker_tag;
    int bfds[256];
    int nbfds;
    struct client *clients;
    int nclients;
    struct slot *running;
    unsigned nrunning;
    struct stask *qhead, *qtail;
    unsigned long nqueued;
    double started_mono;
    bool draining, cancelled_all, exiting;
    double drain_deadline, exit_deadline;
};

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
static void remove_tree(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return;
    (void)nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

static void task_dir(const struct server *s, const char *id, char *out, size_t outsz)
{
    snprintf(out, outsz, "%s/%s", s->state_dir, id);
}

static int ensure_dir(const char *path)
{
    if (mkdir(path, 0700) == 0 || errno == EEXIST) {
        struct stat st;
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            return 0;
        errno = ENOTDIR;
    }
    return -1;
}

static cJSON *time_or_null(double t)
{
    return t > 0 ? cJSON_CreateNumber(t) : cJSON_CreateNull();
}

static cJSON *task_summary(const struct stask *t)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    cJSON_AddStringToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "status", task_status_name(t->status));
    cJSON_AddItemToObject(o, "submitted", time_or_null(t->submitted));
    cJSON_AddItemToObject(o, "started", time_or_null(t->started));
    cJSON_AddItemToObject(o, "ended", time_or_null(t->ended));
    return o;
}

/* ---------------------------------------------------------------- clients: output */

static void client_close(struct client *c);

static void set_interest(struct client *c)
{
    if (c->dead)
        return;
    uint32_t want = 0;
    if (!c->eof)
        want |= EPOLLRDHUP; /* level-triggered: asked for only until seen */
    if (c->pending == P_NONE && !c->eof)
        want |= EPOLLIN;
    if (c->outlen > c->outoff)
        want |= EPOLLOUT;
    if (want == c->interest)
        return;
    struct epoll_event ev = {.events = want, .data.ptr = c};
    if (epoll_ctl(c->srv->ep, EPOLL_CTL_MOD, c->fd, &ev) == 0)
        c->interest = want;
}

static void flush_out(struct client *c)
{
    while (!c->dead && c->outlen > c->outoff) {
        ssize_t n =
            send(c->fd, c->out + c->outoff, c->outlen - c->outoff, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
            c->outoff += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        c->dead = true; /* EPIPE, ECONNRESET: the peer is gone */
        return;
    }
    if (c->outoff == c->outlen)
        c->outoff = c->outlen = 0;
    else if (c->outoff > (1u << 20)) {
        memmove(c->out, c->out + c->outoff, c->outlen - c->outoff);
        c->outlen -= c->outoff;
        c->outoff = 0;
    }
}

/* Queues bytes for the client; a reader that lets its queue pass the bound is dropped
 * (one message is always accepted into an empty queue, however large). */
static void queue_bytes(struct client *c, const char *p, size_t n)
{
    if (c->dead)
        return;
    size_t queued = c->outlen - c->outoff;
    if (queued > 0 && queued + n > c->srv->client_queue) {
        log_info("client uid %u: output queue over %zu bytes, disconnected", (unsigned)c->uid,
                 c->srv->client_queue);
        c->dead = true;
        return;
    }
    if (c->outlen + n > c->outcap) {
        size_t ncap = c->outcap ? c->outcap : 4096;
        while (ncap < c->outlen + n)
            ncap *= 2;
        char *no = realloc(c->out, ncap);
        if (!no) {
            c->dead = true;
            return;
        }
        c->out = no;
        c->outcap = ncap;
    }
    memcpy(c->out + c->outlen, p, n);
    c->outlen += n;
    flush_out(c);
}

static void queue_line(struct client *c, char *line)
{
    if (!line) {
        c->dead = true;
        return;
    }
    queue_bytes(c, line, strlen(line));
    free(line);
}

static void reply_error(struct client *c, enum protocol_error code, const char *msg)
{
    queue_line(c, protocol_error_line(code, msg));
}

static void reply_ok(struct client *c, cJSON *fields)
{
    queue_line(c, protocol_ok_line(fields));
}

/* ---------------------------------------------------------------- results */

static cJSON *load_result(const struct server *s, const char *id)
{
    char path[4400];
    snprintf(path, sizeof(path), "%s/%s/result.json", s->state_dir, id);
    cleanup_free char *text = NULL;
    if (read_file(path, SERVE_RESULT_MAX_BYTES, &text, NULL) < 0)
        return NULL;
    cJSON *r = cJSON_Parse(text);
    if (!cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}

/* A result for a task that no runner finished (cancelled in the queue, failed to start,
 * interrupted by a restart): SPEC's shape, every field present. */
static cJSON *synth_result(const struct server *s, const struct stask *t, enum task_status st,
                           const char *error_type, const char *message)
{
    cJSON *r = cJSON_CreateObject();
    if (!r)
        return NULL;
    char dir[4400];
    task_dir(s, t->id, dir, sizeof(dir));
    cJSON_AddStringToObject(r, "id", t->id);
    cJSON_AddStringToObject(r, "status", task_status_name(st));
    cJSON_AddBoolToObject(r, "success", false);
    cJSON_AddStringToObject(r, "output", "");
    /* 0 for a task that never ran here (queued, or running before a restart) */
    cJSON_AddNumberToObject(r, "execution_time",
                            t->start_mono > 0 ? fmax(0, monotonic_s() - t->start_mono) : 0);
    cJSON *e = cJSON_AddObjectToObject(r, "error");
    cJSON_AddStringToObject(e, "type", error_type);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddArrayToObject(e, "strategies");
    cJSON_AddNumberToObject(r, "iterations", 0);
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(t->task_json, "model");
    cJSON_AddStringToObject(r, "model", cJSON_IsString(model) ? model->valuestring : "");
    cJSON_AddArrayToObject(r, "models_tried");
    cJSON *u = cJSON_AddObjectToObject(r, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", 0);
    cJSON_AddNumberToObject(u, "completion_tokens", 0);
    cJSON_AddNumberToObject(u, "total_tokens", 0);
    cJSON_AddNumberToObject(u, "cost_usd", 0);
    cJSON_AddArrayToObject(r, "files");
    cJSON_AddStringToObject(r, "diff", "");
    cJSON_AddNullToObject(r, "outputs_dir");
    char ev[4500];
    snprintf(ev, sizeof(ev), "%s/events.jsonl", dir);
    cJSON_AddStringToObject(r, "events_file", ev);
    cJSON_AddNullToObject(r, "sandbox");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(t->task_json, "metadata");
    cJSON_AddItemToObject(r, "metadata",
                          cJSON_IsObject(md) ? cJSON_Duplicate(md, 1) : cJSON_CreateObject());
    return r;
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

static void stream_end(struct client *c);

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
        queue_bytes(c, line, len);
        if (terminal && !c->all)
            stream_end(c);
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

static void answer_waiters(struct server *s, struct stask *t);
static void process_input(struct client *c);

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
    answer_waiters(s, t);
}

/* A task ends without a runner: result.json and the terminal event written here. */
static void finish_without_runner(struct server *s, struct stask *t, enum task_status st,
                                  const char *error_type, const char *message)
{
    char dir[4400];
    task_dir(s, t->id, dir, sizeof(dir));
    if (ensure_dir(dir) < 0)
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

static void unregister_slot_fds(struct slot *sl)
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
    unregister_slot_fds(sl);
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
        finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR", "the task ended without a result");
        return;
    }
    record_finished(s, t, status < 0 ? TS_FAILED : (enum task_status)status, res);
}

/* ---------------------------------------------------------------- starting tasks */

static int policy_get(struct server *s, const char *name, bool network_none,
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

static void limits_from_task(struct policy_limits *l, const struct task *t)
{
    if (t->limits_set & TASK_LIMIT_DISK)
        l->disk_bytes = t->disk_bytes;
    if (t->limits_set & TASK_LIMIT_INODES)
        l->inodes = t->inodes;
    if (t->limits_set & TASK_LIMIT_MEMORY)
        l->memory_bytes = t->memory_bytes;
    if (t->limits_set & TASK_LIMIT_PIDS)
        l->pids = t->pids;
    if (t->limits_set & TASK_LIMIT_CPU)
        l->cpu_s = t->cpu_s;
    if ((t->limits_set & TASK_LIMIT_DISK) && (!l->fsize_bytes || l->fsize_bytes > l->disk_bytes))
        l->fsize_bytes = l->disk_bytes;
}

static void start_task(struct server *s, struct stask *t)
{
    char err[ERR_MSG_MAX];
    const struct task *tk = &t->task;
    struct policy_entry *pe = NULL;
    if (policy_get(s, tk->policy ? tk->policy : "default", !tk->network_host, &pe, err,
                   sizeof(err)) < 0) {
        finish_without_runner(s, t, TS_FAILED, "VALIDATION_ERROR", err);
        return;
    }
    struct slot *sl = calloc(1, sizeof(*sl));
    if (!sl) {
        finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR", "out of memory");
        return;
    }
    for (int i = 0; i < 4; i++)
        sl->ftags[i] = (struct fdtag){.tag.kind = K_RUNNER, .sl = sl, .idx = i};
    sl->srv = s;
    sl->t = t;
    if (s->replay && broker_new_replay(s->replay, &sl->own_broker, err, sizeof(err)) < 0) {
        free(sl);
        finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR", err);
        return;
    }
    const char *primary = tk->model ? tk->model : s->cfg.model;
    const char *extra[TASK_MODELS_MAX + 1] = {0};
    for (size_t i = 0; i < tk->nfallback; i++)
        extra[i] = tk->fallback_models[i];
    int nmodels =
        catalog_model_chain(&s->cat, &s->cfg, primary, extra, sl->models, RUNNER_MODELS_MAX);
    const struct catalog_model *cm = catalog_find(&s->cat, primary);
    task_dir(s, t->id, sl->state_dir, sizeof(sl->state_dir));
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
    };
    for (int i = 0; i < nmodels && i < RUNNER_MODELS_MAX; i++)
        o.models[i] = sl->models[i];
    limits_from_task(&o.limits, tk);
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
        finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR", err);
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

static void start_queued(struct server *s)
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

static void enqueue(struct server *s, struct stask *t)
{
    t->qnext = NULL;
    if (s->qtail)
        s->qtail->qnext = t;
    else
        s->qhead = t;
    s->qtail = t;
    s->nqueued++;
}

static void dequeue(struct server *s, struct stask *t)
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
static void step_runners(struct server *s)
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
            if (wake > 0 && now >= wake)
                runner_handle(sl->runner, NULL, 0);
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

/* ---------------------------------------------------------------- ops */

static void stream_pump(struct client *c);

static void stream_end(struct client *c)
{
    if (c->replay_fd >= 0)
        (void)close(c->replay_fd);
    c->replay_fd = -1;
    free(c->carry);
    c->carry = NULL;
    c->carrylen = 0;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddBoolToObject(f, "end", true);
    reply_ok(c, f);
    c->pending = P_NONE;
    c->live = false;
    set_interest(c);
}

static void op_submit(struct client *c, const struct request *req)
{
    struct server *s = c->srv;
    if (s->draining) {
        reply_error(c, PERR_SHUTTING_DOWN, "the server is draining: no new tasks");
        return;
    }
    if (s->nqueued >= s->queue_max) {
        reply_error(c, PERR_QUEUE_FULL, "the queue is full; try again later");
        return;
    }
    char err[ERR_MSG_MAX];
    struct task tk;
    if (task_parse(req->task, &tk, err, sizeof(err)) < 0) {
        reply_error(c, PERR_INVALID_TASK, err);
        return;
    }
    struct policy_entry *pe = NULL;
    if (policy_get(s, tk.policy ? tk.policy : "default", !tk.network_host, &pe, err, sizeof(err)) <
        0) {
        task_free(&tk);
        reply_error(c, PERR_INVALID_TASK, err);
        return;
    }
    char dir[4400];
    task_dir(s, tk.id, dir, sizeof(dir));
    struct stat st;
    if (taskstore_find(&s->store, tk.id) || lstat(dir, &st) == 0) {
        snprintf(err, sizeof(err), "task id '%s' is already known to this server", tk.id);
        task_free(&tk);
        reply_error(c, PERR_DUPLICATE_ID, err);
        return;
    }
    cJSON *json = cJSON_Duplicate(req->task, 1);
    if (json) {
        cJSON_DeleteItemFromObjectCaseSensitive(json, "id");
        cJSON_AddStringToObject(json, "id", tk.id);
    }
    struct stask *t = json ? taskstore_add(&s->store, tk.id) : NULL;
    if (!t) {
        cJSON_Delete(json);
        task_free(&tk);
        reply_error(c, PERR_INTERNAL, "out of memory");
        return;
    }
    t->task = tk;
    t->parsed = true;
    t->task_json = json;
    t->submitted = wallclock_s();
    if (journal_submitted(&s->journal, t->id, json, t->submitted) < 0) {
        snprintf(err, sizeof(err), "journal: %s", strerror(errno));
        taskstore_remove(&s->store, t);
        reply_error(c, PERR_INTERNAL, err);
        return;
    }
    enqueue(s, t);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "id", t->id);
    reply_ok(c, f);
    start_queued(s);
}

static void send_result(struct client *c, struct stask *t)
{
    /* results of tasks from before a restart are read on demand and not kept: retention
     * bounds the disk, and this bounds the memory */
    cleanup_json cJSON *loaded = t->result ? NULL : load_result(c->srv, t->id);
    const cJSON *res = t->result ? t->result : loaded;
    if (!res) {
        reply_error(c, PERR_INTERNAL, "the task's result.json is missing or unreadable");
        return;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddItemToObject(f, "result", cJSON_Duplicate(res, 1));
    reply_ok(c, f);
}

static void answer_waiters(struct server *s, struct stask *t)
{
    for (struct client *c = s->clients; c; c = c->next) {
        if (c->dead || c->pending != P_WAIT || strcmp(c->id, t->id) != 0)
            continue;
        c->pending = P_NONE;
        send_result(c, t);
        set_interest(c);
    }
}

static void op_wait(struct client *c, const struct request *req)
{
    struct stask *t = taskstore_find(&c->srv->store, req->id);
    if (!t) {
        reply_error(c, PERR_NOT_FOUND, "no such task");
        return;
    }
    if (task_status_terminal(t->status)) {
        send_result(c, t);
        return;
    }
    if (req->timeout_s == 0) {
        reply_error(c, PERR_TIMEOUT, "the task has not finished");
        return;
    }
    c->pending = P_WAIT;
    snprintf(c->id, sizeof(c->id), "%s", t->id);
    c->deadline = req->timeout_s > 0 ? monotonic_s() + req->timeout_s : 0;
}

static void op_cancel(struct client *c, const struct request *req)
{
    struct server *s = c->srv;
    struct stask *t = taskstore_find(&s->store, req->id);
    if (!t) {
        reply_error(c, PERR_NOT_FOUND, "no such task");
        return;
    }
    bool cancelling = false;
    if (t->status == TS_QUEUED) {
        dequeue(s, t);
        finish_without_runner(s, t, TS_CANCELLED, "UNKNOWN_ERROR", "cancelled before it started");
    } else if (t->status == TS_RUNNING) {
        t->cancel_requested = true;
        cancelling = true;
        struct slot *sl = t->slot;
        if (sl)
            runner_cancel(sl->runner);
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", task_status_name(t->status));
    cJSON_AddBoolToObject(f, "cancelling", cancelling);
    reply_ok(c, f);
}

static void op_events(struct client *c, const struct request *req)
{
    struct server *s = c->srv;
    struct stask *t = NULL;
    if (!req->all && !(t = taskstore_find(&s->store, req->id))) {
        reply_error(c, PERR_NOT_FOUND, "no such task");
        return;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddBoolToObject(f, "stream", true);
    reply_ok(c, f);
    c->pending = P_STREAM;
    c->all = req->all;
    c->follow = req->follow;
    c->live = false;
    c->id[0] = '\0';
    if (req->all) {
        /* every task's live events from now on; no replay of the whole history */
        if (!req->follow)
            stream_end(c);
        else
            c->live = true;
        return;
    }
    snprintf(c->id, sizeof(c->id), "%s", t->id);
    char path[4500];
    snprintf(path, sizeof(path), "%s/%s/events.jsonl", s->state_dir, t->id);
    c->replay_fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    /* a queued task has no events file yet: nothing to replay */
    stream_pump(c);
}

/* Replays the events file in chunks while the client keeps up; at its end (everything
 * emitted so far is in the file: the loop is single-threaded and the file written
 * synchronously) the client turns live, or the stream ends. */
static void stream_pump(struct client *c)
{
    while (!c->dead && c->pending == P_STREAM && !c->live &&
           c->outlen - c->outoff < SERVE_REPLAY_LOW_WATER) {
        ssize_t n = -1;
        char buf[SERVE_READ_CHUNK];
        if (c->replay_fd >= 0) {
            n = read(c->replay_fd, buf, sizeof(buf));
            if (n < 0 && errno == EINTR)
                continue;
        }
        if (n > 0) {
            char *joined = realloc(c->carry, c->carrylen + (size_t)n);
            if (!joined) {
                c->dead = true;
                return;
            }
            memcpy(joined + c->carrylen, buf, (size_t)n);
            c->carry = joined;
            c->carrylen += (size_t)n;
            char *last = memrchr(c->carry, '\n', c->carrylen);
            if (last) {
                size_t whole = (size_t)(last - c->carry) + 1;
                queue_bytes(c, c->carry, whole);
                memmove(c->carry, c->carry + whole, c->carrylen - whole);
                c->carrylen -= whole;
            }
            continue;
        }
        /* end of the file */
        if (c->replay_fd >= 0)
            (void)close(c->replay_fd);
        c->replay_fd = -1;
        free(c->carry);
        c->carry = NULL;
        c->carrylen = 0;
        struct stask *t = taskstore_find(&c->srv->store, c->id);
        if (!c->follow || !t || task_status_terminal(t->status))
            stream_end(c);
        else
            c->live = true;
    }
}

static void op_status(struct client *c, const struct request *req)
{
    struct stask *t = taskstore_find(&c->srv->store, req->id);
    if (!t) {
        reply_error(c, PERR_NOT_FOUND, "no such task");
        return;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddItemToObject(f, "task", task_summary(t));
    reply_ok(c, f);
}

static void op_list(struct client *c)
{
    cJSON *f = cJSON_CreateObject();
    cJSON *arr = cJSON_AddArrayToObject(f, "tasks");
    for (struct stask *t = c->srv->store.head; t; t = t->next)
        cJSON_AddItemToArray(arr, task_summary(t));
    reply_ok(c, f);
}

static void op_health(struct client *c)
{
    struct server *s = c->srv;
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", s->draining ? "draining" : "ok");
    cJSON_AddStringToObject(f, "version", AGENTBOX_VERSION);
    cJSON_AddNumberToObject(f, "running", s->nrunning);
    cJSON_AddNumberToObject(f, "queued", (double)s->nqueued);
    cJSON_AddNumberToObject(f, "jobs", s->jobs);
    cJSON_AddNumberToObject(f, "uptime_s", monotonic_s() - s->started_mono);
    cJSON_AddBoolToObject(f, "replay", s->replay != NULL);
    cJSON_AddItemToObject(f, "breaker", metrics_breakers_json(&s->metrics));
    reply_ok(c, f);
}

static void op_metrics(struct client *c)
{
    struct server *s = c->srv;
    const char *names[TS_NSTATUS];
    for (int i = 0; i < TS_NSTATUS; i++)
        names[i] = task_status_name((enum task_status)i);
    struct metrics_gauges g = {
        .status_names = names,
        .status_counts = s->store.by_status,
        .nstatus = TS_NSTATUS,
        .queue_depth = s->nqueued,
        .running_cells = s->nrunning,
    };
    cleanup_free char *text = metrics_format(&s->metrics, &g);
    if (!text) {
        reply_error(c, PERR_INTERNAL, "out of memory");
        return;
    }
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "text", text);
    reply_ok(c, f);
}

static void handle_request(struct client *c, const char *line, size_t len)
{
    struct request req;
    enum protocol_error code;
    char err[ERR_MSG_MAX];
    if (protocol_parse(line, len, &req, &code, err, sizeof(err)) < 0) {
        reply_error(c, code, err);
        return;
    }
    switch (req.op) {
    case OP_SUBMIT:
        op_submit(c, &req);
        break;
    case OP_STATUS:
        op_status(c, &req);
        break;
    case OP_WAIT:
        op_wait(c, &req);
        break;
    case OP_CANCEL:
        op_cancel(c, &req);
        break;
    case OP_EVENTS:
        op_events(c, &req);
        break;
    case OP_LIST:
        op_list(c);
        break;
    case OP_HEALTH:
        op_health(c);
        break;
    case OP_METRICS:
        op_metrics(c);
        break;
    }
    request_free(&req);
}

/* ---------------------------------------------------------------- clients: input */

/* One request at a time per connection: while a wait or a stream is pending, the next
 * lines stay in the buffer (and the socket is not read: the peer's writes block). */
static void process_input(struct client *c)
{
    size_t off = 0;
    while (!c->dead && c->pending == P_NONE && off < c->inlen) {
        char *nl = memchr(c->in + off, '\n', c->inlen - off);
        if (!nl)
            break;
        size_t len = (size_t)(nl - (c->in + off));
        if (c->discarding)
            c->discarding = false;
        else if (len > 0 && !(len == 1 && c->in[off] == '\r'))
            handle_request(c, c->in + off, len);
        off += len + 1;
    }
    if (off) {
        memmove(c->in, c->in + off, c->inlen - off);
        c->inlen -= off;
    }
    if (!c->dead && c->pending == P_NONE && c->inlen > PROTOCOL_REQUEST_MAX_BYTES) {
        if (!c->discarding) {
            char msg[128];
            snprintf(msg, sizeof(msg), "request: longer than %u bytes", PROTOCOL_REQUEST_MAX_BYTES);
            reply_error(c, PERR_TOO_LARGE, msg);
        }
        c->discarding = true;
        c->inlen = 0;
    }
    set_interest(c);
}

static void client_read(struct client *c)
{
    /* bounded per wake-up so one fast writer cannot starve the others */
    for (int rounds = 0; rounds < 16 && !c->dead && c->pending == P_NONE; rounds++) {
        if (c->incap - c->inlen < SERVE_READ_CHUNK) {
            size_t ncap = c->incap ? c->incap * 2 : SERVE_READ_CHUNK * 2;
            char *ni = realloc(c->in, ncap);
            if (!ni) {
                c->dead = true;
                return;
            }
            c->in = ni;
            c->incap = ncap;
        }
        ssize_t n = recv(c->fd, c->in + c->inlen, c->incap - c->inlen, MSG_DONTWAIT);
        if (n == 0) {
            c->eof = true;
            set_interest(c);
            return;
        }
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                c->dead = true;
            return;
        }
        c->inlen += (size_t)n;
        process_input(c);
    }
}

static void client_close(struct client *c)
{
    struct server *s = c->srv;
    (void)epoll_ctl(s->ep, EPOLL_CTL_DEL, c->fd, NULL);
    (void)close(c->fd);
    if (c->replay_fd >= 0)
        (void)close(c->replay_fd);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->nclients--;
    free(c->in);
    free(c->out);
    free(c->carry);
    free(c);
}

static bool peer_allowed(const struct server *s, const struct ucred *cr)
{
    if (cr->uid == 0 || cr->uid == geteuid())
        return true;
    for (int i = 0; i < s->nallow_uid; i++)
        if (s->allow_uid[i] == cr->uid)
            return true;
    for (int i = 0; i < s->nallow_gid; i++)
        if (s->allow_gid[i] == cr->gid)
            return true;
    return false;
}

static void accept_clients(struct server *s)
{
    for (;;) {
        int fd = accept4(s->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno == EINTR || errno == ECONNABORTED)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                log_warn("accept: %s", strerror(errno));
            return;
        }
        struct ucred cr;
        socklen_t crlen = sizeof(cr);
        if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cr, &crlen) < 0 || !peer_allowed(s, &cr)) {
            cleanup_free char *line =
                protocol_error_line(PERR_FORBIDDEN, "this uid/gid may not use the server");
            if (line)
                (void)send(fd, line, strlen(line), MSG_NOSIGNAL | MSG_DONTWAIT);
            log_info("refused a client (uid %u gid %u)", (unsigned)cr.uid, (unsigned)cr.gid);
            (void)close(fd);
            continue;
        }
        struct client *c = s->nclients < SERVE_CLIENTS_MAX ? calloc(1, sizeof(*c)) : NULL;
        if (!c) {
            (void)close(fd);
            continue;
        }
        c->tag.kind = K_CLIENT;
        c->srv = s;
        c->fd = fd;
        c->uid = cr.uid;
        c->replay_fd = -1;
        c->interest = EPOLLIN | EPOLLRDHUP;
        struct epoll_event ev = {.events = c->interest, .data.ptr = c};
        if (epoll_ctl(s->ep, EPOLL_CTL_ADD, fd, &ev) < 0) {
            (void)close(fd);
            free(c);
            continue;
        }
        c->next = s->clients;
        if (s->clients)
            s->clients->prev = c;
        s->clients = c;
        s->nclients++;
    }
}

/* ---------------------------------------------------------------- the loop */

static void sync_broker_fds(struct server *s)
{
    if (!s->broker)
        return;
    struct pollfd pfd[256];
    int n = broker_poll_fds(s->broker, pfd, (int)ARRAY_SIZE(pfd));
    if (n > (int)ARRAY_SIZE(pfd))
        n = (int)ARRAY_SIZE(pfd);
    /* only broker fds live in s->bep, so a stale number can only ever be one of them */
    for (int j = 0; j < s->nbfds; j++) {
        bool listed = false;
        for (int i = 0; i < n; i++)
            listed |= pfd[i].fd == s->bfds[j];
        if (!listed)
            (void)epoll_ctl(s->bep, EPOLL_CTL_DEL, s->bfds[j], NULL);
    }
    for (int i = 0; i < n; i++) {
        struct epoll_event ev = {.events = 0, .data.fd = pfd[i].fd};
        if (pfd[i].events & POLLIN)
            ev.events |= EPOLLIN;
        if (pfd[i].events & POLLOUT)
            ev.events |= EPOLLOUT;
        if (epoll_ctl(s->bep, EPOLL_CTL_MOD, pfd[i].fd, &ev) < 0 &&
            epoll_ctl(s->bep, EPOLL_CTL_ADD, pfd[i].fd, &ev) < 0)
            log_debug("broker fd %d: %s", pfd[i].fd, strerror(errno));
        s->bfds[i] = pfd[i].fd;
    }
    s->nbfds = n;
}

static long loop_timeout_ms(struct server *s)
{
    double now = monotonic_s();
    double next = now + 1.0;
    if (s->broker) {
        long bt = broker_timeout_ms(s->broker);
        if (bt >= 0)
            next = fmin(next, now + (double)bt / 1000.0);
    }
    for (struct slot *sl = s->running; sl; sl = sl->next) {
        double w = runner_next_wakeup(sl->runner);
        if (w > 0)
            next = fmin(next, w);
        if (sl->own_broker && broker_timeout_ms(sl->own_broker) >= 0)
            next = now;
    }
    for (struct client *c = s->clients; c; c = c->next)
        if (c->pending == P_WAIT && c->deadline > 0)
            next = fmin(next, c->deadline);
    if (s->draining && !s->cancelled_all)
        next = fmin(next, s->drain_deadline);
    long ms = (long)ceil((next - now) * 1000.0);
    return ms < 0 ? 0 : ms;
}

static void cancel_queued(struct server *s, const char *why)
{
    while (s->qhead) {
        struct stask *t = s->qhead;
        dequeue(s, t);
        finish_without_runner(s, t, TS_CANCELLED, "UNKNOWN_ERROR", why);
    }
}

static void handle_signal(struct server *s)
{
    struct signalfd_siginfo si;
    while (read(s->sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (s->draining)
            continue;
        log_info("signal %u: draining (%u running, %lu queued cancelled; grace %.0f s)",
                 si.ssi_signo, s->nrunning, s->nqueued, s->grace_s);
        s->draining = true;
        s->drain_deadline = monotonic_s() + s->grace_s;
        cancel_queued(s, "cancelled: the server is shutting down");
    }
}

static void housekeeping(struct server *s)
{
    double now = monotonic_s();
    for (struct client *c = s->clients; c; c = c->next)
        if (!c->dead && c->pending == P_WAIT && c->deadline > 0 && now >= c->deadline) {
            c->pending = P_NONE;
            reply_error(c, PERR_TIMEOUT, "the task has not finished");
            set_interest(c);
        }
    for (struct client *c = s->clients, *next; c; c = next) {
        next = c->next;
        if (!c->dead && c->pending == P_NONE && c->inlen)
            process_input(c);
        if (!c->dead && c->pending == P_STREAM && !c->live)
            stream_pump(c);
        if (!c->dead && c->eof && c->pending == P_NONE && c->outlen == c->outoff &&
            (c->inlen == 0 || !memchr(c->in, '\n', c->inlen)))
            c->dead = true; /* all asked is answered; a torn last line is dropped */
        if (!c->dead)
            set_interest(c);
        if (c->dead)
            client_close(c);
    }
    struct stask *old;
    while ((old = taskstore_evictable(&s->store, s->retain)) != NULL) {
        char dir[4400];
        task_dir(s, old->id, dir, sizeof(dir));
        remove_tree(dir);
        if (journal_forget(&s->journal, old->id) < 0)
            log_error("journal: %s", strerror(errno));
        taskstore_remove(&s->store, old);
    }
    if (s->draining && !s->cancelled_all && now >= s->drain_deadline) {
        s->cancelled_all = true;
        for (struct slot *sl = s->running; sl; sl = sl->next) {
            sl->t->cancel_requested = true;
            runner_cancel(sl->runner);
        }
    }
    if (s->draining && !s->exiting && s->nrunning == 0) {
        s->exiting = true;
        s->exit_deadline = now + SERVE_EXIT_FLUSH_S;
        for (struct client *c = s->clients; c; c = c->next)
            if (!c->dead && c->pending == P_STREAM) {
                c->live = true;
                stream_end(c);
            } else if (!c->dead && c->pending == P_WAIT) {
                c->pending = P_NONE;
                reply_error(c, PERR_SHUTTING_DOWN, "the server stopped before the task ended");
            }
    }
}

static bool all_flushed(const struct server *s)
{
    for (const struct client *c = s->clients; c; c = c->next)
        if (!c->dead && c->outlen > c->outoff)
            return false;
    return true;
}

static void run_loop(struct server *s)
{
    struct epoll_event evs[SERVE_EPOLL_BATCH];
    while (!(s->exiting && (all_flushed(s) || monotonic_s() >= s->exit_deadline))) {
        sync_broker_fds(s);
        int n = epoll_wait(s->ep, evs, SERVE_EPOLL_BATCH, (int)loop_timeout_ms(s));
        if (n < 0 && errno != EINTR) {
            log_error("epoll_wait: %s", strerror(errno));
            break;
        }
        for (int i = 0; i < n; i++) {
            struct tag *tag = evs[i].data.ptr;
            switch (tag->kind) {
            case K_LISTEN:
                accept_clients(s);
                break;
            case K_SIGNAL:
                handle_signal(s);
                break;
            case K_BROKER:
                break; /* broker_step below */
            case K_RUNNER: {
                struct fdtag *ft = (struct fdtag *)tag;
                /* EPOLLIN/OUT/ERR/HUP have poll(2)'s values */
                ft->sl->revents[ft->idx] |= (short)(evs[i].events & 0xffff);
                ft->sl->ready = true;
                break;
            }
            case K_CLIENT: {
                struct client *c = (struct client *)tag;
                if (evs[i].events & EPOLLOUT)
                    flush_out(c);
                if (evs[i].events & EPOLLIN)
                    client_read(c);
                /* HUP: both directions are gone, nobody to answer; RDHUP alone: a
                 * half-close (`nc -q`), the answers still go out */
                if (evs[i].events & (EPOLLHUP | EPOLLERR))
                    c->dead = true;
                else if ((evs[i].events & EPOLLRDHUP) && !(evs[i].events & EPOLLIN)) {
                    c->eof = true;
                    set_interest(c);
                }
                break;
            }
            }
        }
        if (s->broker)
            (void)broker_step(s->broker);
        step_runners(s);
        start_queued(s);
        housekeeping(s);
    }
}

/* ---------------------------------------------------------------- start-up */

/* Every task the journal knows comes back: finished ones as they ended; interrupted ones
 * failed (or queued again). Their cells died with the old supervisor (PDEATHSIG), and with
 * them their mount namespaces: nothing else to clean. */
static int recover(struct server *s, char *err, size_t errsz)
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
        cJSON *res = load_result(s, t->id);
        const cJSON *rs = cJSON_GetObjectItemCaseSensitive(res, "status");
        st = cJSON_IsString(rs) ? task_status_parse(rs->valuestring) : -1;
        if (st >= 0) {
            record_finished(s, t, (enum task_status)st, res);
            finished++;
            continue;
        }
        cJSON_Delete(res);
        char dir[4400], perr[ERR_MSG_MAX];
        task_dir(s, t->id, dir, sizeof(dir));
        if (s->requeue && task_parse(t->task_json, &t->task, perr, sizeof(perr)) == 0) {
            t->parsed = true;
            remove_tree(dir);
            t->started = 0;
            enqueue(s, t);
            requeued++;
            continue;
        }
        finish_without_runner(s, t, TS_FAILED, "UNKNOWN_ERROR",
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

static int open_socket(struct server *s, char *err, size_t errsz)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(s->socket_path) >= sizeof(sa.sun_path))
        return errf(err, errsz, "--socket %s: path too long", s->socket_path);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", s->socket_path);
    struct stat st;
    if (lstat(s->socket_path, &st) == 0) {
        if (!S_ISSOCK(st.st_mode))
            return errf(err, errsz, "--socket %s: exists and is not a socket", s->socket_path);
        /* a live server answers; a stale socket file from a crash does not */
        cleanup_fd int probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (probe >= 0 && connect(probe, (struct sockaddr *)&sa, sizeof(sa)) == 0)
            return errf(err, errsz, "--socket %s: another server is listening there",
                        s->socket_path);
        if (unlink(s->socket_path) < 0)
            return errf(err, errsz, "--socket %s: %s", s->socket_path, strerror(errno));
    }
    s->lfd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (s->lfd < 0)
        return errf(err, errsz, "socket: %s", strerror(errno));
    /* the socket file is born with the right mode: no window where others may connect */
    mode_t old = umask(0777 & ~s->socket_mode);
    int rc = bind(s->lfd, (struct sockaddr *)&sa, sizeof(sa));
    umask(old);
    if (rc < 0)
        return errf(err, errsz, "--socket %s: %s", s->socket_path, strerror(errno));
    if (chmod(s->socket_path, s->socket_mode) < 0 || listen(s->lfd, 512) < 0)
        return errf(err, errsz, "--socket %s: %s", s->socket_path, strerror(errno));
    return 0;
}

static void usage(FILE *out)
{
    fprintf(out,
            "usage: agentbox serve --socket PATH [OPTIONS]\n\n"
            "The supervisor daemon: tasks arrive on a Unix socket (docs/protocol.md).\n\n"
            "  --socket PATH          listen there (created with --socket-mode)\n"
            "  --jobs N               cells at once (default %d); a FIFO queue behind them\n"
            "  --state-dir DIR        results and the journal (default OPENHANDS_WORKSPACE_ROOT)\n"
            "  --allow-uid UID        also serve this uid (repeatable; root and the server's\n"
            "                         own uid are always served)\n"
            "  --allow-gid GID        also serve callers whose primary gid is GID (repeatable)\n"
            "  --socket-mode 0660|0600  (default 0660)\n"
            "  --retain N             finished tasks kept, results and all (default %d)\n"
            "  --queue-max N          queued tasks accepted (default %d)\n"
            "  --grace SECONDS        on SIGTERM, running tasks get this long (default %.0f)\n"
            "  --client-queue SIZE    a client's unread output bound (default 16M)\n"
            "  --requeue-interrupted  after a crash, queue interrupted tasks again (default:\n"
            "                         mark them failed)\n"
            "  --replay FILE          offline: every task takes its LLM replies from FILE\n\n"
            "SIGTERM/SIGINT: stop intake, cancel the queue, let running tasks finish (up to\n"
            "--grace), then exit 0.\n",
            SERVE_DEFAULT_JOBS, SERVE_DEFAULT_RETAIN, SERVE_DEFAULT_QUEUE_MAX,
            SERVE_DEFAULT_GRACE_S);
}

static int parse_args(int argc, char **argv, struct server *s)
{
    enum {
        O_SOCKET = 256,
        O_JOBS,
        O_STATE,
        O_AUID,
        O_AGID,
        O_MODE,
        O_RETAIN,
        O_QMAX,
        O_GRACE,
        O_CQUEUE,
        O_REQUEUE,
        O_REPLAY,
        O_HELP
    };
    static const struct option opts[] = {
        {"socket", required_argument, 0, O_SOCKET},
        {"jobs", required_argument, 0, O_JOBS},
        {"state-dir", required_argument, 0, O_STATE},
        {"allow-uid", required_argument, 0, O_AUID},
        {"allow-gid", required_argument, 0, O_AGID},
        {"socket-mode", required_argument, 0, O_MODE},
        {"retain", required_argument, 0, O_RETAIN},
        {"queue-max", required_argument, 0, O_QMAX},
        {"grace", required_argument, 0, O_GRACE},
        {"client-queue", required_argument, 0, O_CQUEUE},
        {"requeue-interrupted", no_argument, 0, O_REQUEUE},
        {"replay", required_argument, 0, O_REPLAY},
        {"help", no_argument, 0, O_HELP},
        {0, 0, 0, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    uint64_t u;
    while ((c = getopt_long(argc, argv, "+", opts, NULL)) != -1) {
        switch (c) {
        case O_SOCKET:
            s->socket_path = optarg;
            break;
        case O_JOBS:
            if (uint_parse(optarg, 4096, &u) < 0 || u == 0) {
                fprintf(stderr, "agentbox serve: --jobs: expected 1 to 4096\n");
                return -1;
            }
            s->jobs = (unsigned)u;
            break;
        case O_STATE:
            snprintf(s->state_dir, sizeof(s->state_dir), "%s", optarg);
            break;
        case O_AUID:
        case O_AGID:
            if (uint_parse(optarg, UINT32_MAX - 1, &u) < 0) {
                fprintf(stderr, "agentbox serve: %s: expected a number\n",
                        c == O_AUID ? "--allow-uid" : "--allow-gid");
                return -1;
            }
            if ((c == O_AUID ? s->nallow_uid : s->nallow_gid) >= SERVE_ALLOW_MAX) {
                fprintf(stderr, "agentbox serve: at most %d of each allow option\n",
                        SERVE_ALLOW_MAX);
                return -1;
            }
            if (c == O_AUID)
                s->allow_uid[s->nallow_uid++] = (uid_t)u;
            else
                s->allow_gid[s->nallow_gid++] = (gid_t)u;
            break;
        case O_MODE:
            if (strcmp(optarg, "0660") && strcmp(optarg, "0600") && strcmp(optarg, "660") &&
                strcmp(optarg, "600")) {
                fprintf(stderr, "agentbox serve: --socket-mode: 0660 or 0600\n");
                return -1;
            }
            s->socket_mode = strstr(optarg, "660") ? 0660 : 0600;
            break;
        case O_RETAIN:
        case O_QMAX:
            if (uint_parse(optarg, 100000000, &u) < 0 || (c == O_QMAX && u == 0)) {
                fprintf(stderr, "agentbox serve: %s: expected a whole number\n",
                        c == O_RETAIN ? "--retain" : "--queue-max");
                return -1;
            }
            if (c == O_RETAIN)
                s->retain = u;
            else
                s->queue_max = u;
            break;
        case O_GRACE:
            if (seconds_parse(optarg, &s->grace_s) < 0) {
                fprintf(stderr, "agentbox serve: --grace: expected seconds\n");
                return -1;
            }
            break;
        case O_CQUEUE:
            if (size_parse(optarg, &u) < 0 || u < 4096) {
                fprintf(stderr, "agentbox serve: --client-queue: expected a size >= 4K\n");
                return -1;
            }
            s->client_queue = (size_t)u;
            break;
        case O_REQUEUE:
            s->requeue = true;
            break;
        case O_REPLAY:
            s->replay = optarg;
            break;
        case O_HELP:
            usage(stdout);
            return 1;
        default:
            fprintf(stderr, "agentbox serve: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "agentbox serve: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    if (!s->socket_path) {
        fprintf(stderr, "agentbox serve: --socket PATH is required (see --help)\n");
        return -1;
    }
    return 0;
}

static void scrub_key_from_environment(void)
{
    extern char **environ;
    static const char prefix[] = "OPENROUTER_API_KEY=";
    for (char **e = environ; e && *e; e++)
        if (strncmp(*e, prefix, sizeof(prefix) - 1) == 0)
            explicit_bzero(*e + sizeof(prefix) - 1, strlen(*e + sizeof(prefix) - 1));
    (void)unsetenv("OPENROUTER_API_KEY");
}

static int add_fd(int ep, int fd, struct tag *tag)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = tag};
    return epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev);
}

static void teardown(struct server *s)
{
    while (s->running) {
        struct slot *sl = s->running;
        s->running = sl->next;
        unregister_slot_fds(sl);
        runner_free(sl->runner); /* kills and reaps the cell */
        broker_free(sl->own_broker);
        sl->t->slot = NULL;
        free(sl);
    }
    while (s->clients)
        client_close(s->clients);
    taskstore_free(&s->store);
    journal_close(&s->journal);
    broker_free(s->broker);
    for (int i = 0; i < s->npolicies; i++) {
        policy_bpf_free(&s->policies[i].prog);
        policy_free(s->policies[i].pol);
    }
    if (s->lfd >= 0) {
        (void)close(s->lfd);
        (void)unlink(s->socket_path);
    }
    for (int *fd = (int[]){s->sigfd, s->bep, s->ep}, i = 0; i < 3; i++)
        if (fd[i] >= 0)
            (void)close(fd[i]);
    config_free(&s->cfg);
}

int cmd_serve(int argc, char **argv)
{
    static struct server srv;
    struct server *s = &srv;
    memset(s, 0, sizeof(*s));
    s->jobs = SERVE_DEFAULT_JOBS;
    s->retain = SERVE_DEFAULT_RETAIN;
    s->queue_max = SERVE_DEFAULT_QUEUE_MAX;
    s->grace_s = SERVE_DEFAULT_GRACE_S;
    s->client_queue = SERVE_DEFAULT_CLIENT_QUEUE;
    s->socket_mode = 0660;
    s->ep = s->lfd = s->sigfd = s->bep = -1;
    s->journal.fd = -1;
    int prc = parse_args(argc, argv, s);
    if (prc != 0)
        return prc > 0 ? 0 : EXIT_USAGE;
    char err[ERR_MSG_MAX];
    if (config_load(&s->cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox serve: %s\n", err);
        config_free(&s->cfg);
        return EXIT_USAGE;
    }
    scrub_key_from_environment();
    int rc = EXIT_USAGE;
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, NULL);
    (void)signal(SIGPIPE, SIG_IGN);
    metrics_init(&s->metrics);
    if (taskstore_init(&s->store) < 0) {
        snprintf(err, sizeof(err), "out of memory");
        goto fail;
    }
    if (!s->state_dir[0])
        snprintf(s->state_dir, sizeof(s->state_dir), "%.*s", (int)sizeof(s->state_dir) - 1,
                 s->cfg.workspace_root);
    if (ensure_dir(s->state_dir) < 0) {
        snprintf(err, sizeof(err), "state dir %.300s: %s", s->state_dir, strerror(errno));
        goto fail;
    }
    if (catalog_load(&s->cat, NULL, err, sizeof(err)) < 0)
        goto fail;
    if (s->replay) {
        /* checked once here so a bad file is a usage error, not 1000 failed tasks */
        struct broker *probe = NULL;
        if (broker_new_replay(s->replay, &probe, err, sizeof(err)) < 0)
            goto fail;
        broker_free(probe);
        log_info("OFFLINE REPLAY: every task's LLM replies come from %s", s->replay);
    } else {
        if (!s->cfg.api_key) {
            snprintf(err, sizeof(err),
                     "OPENROUTER_API_KEY is not set: set it, or pass --replay "
                     "FILE for offline tasks");
            goto fail;
        }
        if (broker_new_live(&s->cfg, &s->broker, err, sizeof(err)) < 0)
            goto fail;
    }
    s->ep = epoll_create1(EPOLL_CLOEXEC);
    s->bep = epoll_create1(EPOLL_CLOEXEC);
    s->sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (s->ep < 0 || s->bep < 0 || s->sigfd < 0) {
        snprintf(err, sizeof(err), "epoll/signalfd: %s", strerror(errno));
        goto fail;
    }
    if (recover(s, err, sizeof(err)) < 0 || open_socket(s, err, sizeof(err)) < 0)
        goto fail;
    s->listen_tag.kind = K_LISTEN;
    s->signal_tag.kind = K_SIGNAL;
    s->broker_tag.kind = K_BROKER;
    if (add_fd(s->ep, s->lfd, &s->listen_tag) < 0 || add_fd(s->ep, s->sigfd, &s->signal_tag) < 0 ||
        add_fd(s->ep, s->bep, &s->broker_tag) < 0) {
        snprintf(err, sizeof(err), "epoll_ctl: %s", strerror(errno));
        goto fail;
    }
    s->started_mono = monotonic_s();
    log_info("serving on %s: %u jobs, state in %s", s->socket_path, s->jobs, s->state_dir);
    start_queued(s);
    run_loop(s);
    log_info("drained; exiting");
    rc = 0;
    teardown(s);
    return rc;
fail:
    fprintf(stderr, "agentbox serve: %s\n", err);
    teardown(s);
    return rc;
}
