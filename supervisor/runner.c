/* runner: see runner.h. Status, usage and models_tried come from what the supervisor saw
 * itself (its own LLM outcomes, its own clock, the kernel's record of the cell); from the
 * cell it takes only the agent's report (final message, end reason, iterations, files,
 * diff, outputs), each field checked and bounded. */
#include "runner.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "channel.h"
#include "crashpoint.h"
#include "egress.h"
#include "json.h"
#include "log.h"
#include "result_report.h"
#include "status.h"
#include "runner_post.h"
#include "utf8.h"
#include "util.h"

#define RUNNER_OVERHEAD_SAMPLES 4096
#define LLM_MESSAGES_MAX        5000

struct llm_ctx;

struct runner {
    struct runner_opts o;
    struct cell *cell;
    int chan;
    int events_fd;
    int outputs_dirfd;
    struct channel_reader rd;
    double start_mono, start_wall, deadline, kill_at;
    bool cancel_sent, kill_sent, cancelled, timed_out, chan_closed, reaped;
    unsigned chan_seen;  /* channel types received (channel_dispatch) */
    char violation[128]; /* the cell broke the channel protocol: how ("" = it did not) */
    /* LLM accounting, all from the supervisor's own view */
    bool llm_inflight;
    struct llm_ctx *llm_pending; /* the call in flight, detached if the runner goes first */
    unsigned llm_calls, llm_call_cap;
    double broker_s; /* time this side spent on the calls (HTTP excluded): its overhead */
    double client_s; /* of which inside the client (not overhead) */
    double call_s;   /* this call's overhead so far */
    float overhead_ms[RUNNER_OVERHEAD_SAMPLES];
    size_t noverhead;
    double prompt_tokens, completion_tokens, total_tokens, cost_usd;
    bool mock_used;
    char last_model[256];
    cJSON *models_tried;
    cJSON *last_outcome;
    /* the conversation as the cell sent it: each message validated once and kept
     * serialized, so a step costs what it adds, not the size of the whole history */
    char **msg_text;
    size_t *msg_len;
    size_t nmsg, msg_cap;
    char *msgs_buf; /* "[m0,m1,...]", rebuilt per call */
    size_t msgs_cap, msgs_len;
    /* the agent's report */
    cJSON *report;
    struct result_cut cut; /* what result_report_clean cut from the report */
    size_t output_bytes, output_files;
    struct cell_record rec;
    cJSON *result;
    struct egress *egress; /* the cell's proxy helper, NULL without egress */
    cJSON *network;        /* its summary, once the cell is reaped */
    int exit_code;
    bool result_saved;     /* result.json is durable */
    unsigned outputs_lost; /* output files the disk refused (not the limits) */
    int outputs_errno;
    char outputs_path[4096];
    char events_path[4096];
    struct runner_post post; /* git workspace, patch, verify */
};

/* The proxy's net_connect / net_denied, into the task's event stream. */
static void egress_event(void *opaque, const char *type, cJSON *fields)
{
    struct runner *r = opaque;
    events_emit(r->o.events, type, fields);
}

static void send_to_cell(struct runner *r, enum channel_type type, cJSON *fields)
{
    if (r->chan < 0 || r->chan_closed) {
        cJSON_Delete(fields);
        return;
    }
    if (channel_send_kind(r->chan, type, fields, NULL, 0) < 0 && errno != EPIPE)
        log_debug("task %s: channel send failed: %s", r->o.task->id, strerror(errno));
}

static int make_state_dir(struct runner *r, char *err, size_t errsz)
{
    const char *dir = r->o.state_dir;
    if (mkdir(dir, 0700) < 0) {
        if (errno == EEXIST)
            return errf(err, errsz,
                        "%s already exists: task id '%s' has results there already (remove it "
                        "or choose another id)",
                        dir, r->o.task->id);
        return errf(err, errsz, "cannot create %s: %s", dir, strerror(errno));
    }
    (void)fsync_parent_dir(dir); /* the task's directory survives a power loss with its result */
    snprintf(r->events_path, sizeof(r->events_path), "%s/events.jsonl", dir);
    r->events_fd = open(r->events_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (r->events_fd < 0)
        return errf(err, errsz, "cannot create %s: %s", r->events_path, strerror(errno));
    if (events_add_fd(r->o.events, r->events_fd) < 0)
        return errf(err, errsz, "too many event sinks");
    snprintf(r->outputs_path, sizeof(r->outputs_path), "%s/outputs", dir);
    if (mkdir(r->outputs_path, 0700) < 0)
        return errf(err, errsz, "cannot create %s: %s", r->outputs_path, strerror(errno));
    r->outputs_dirfd = open(r->outputs_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (r->outputs_dirfd < 0)
        return errf(err, errsz, "cannot open %s: %s", r->outputs_path, strerror(errno));
    return 0;
}

/* What the cell needs to know of its task; host-only fields (from_dir, metadata, models,
 * budgets) stay outside. */
static cJSON *task_for_cell(const struct runner *r)
{
    const struct task *t = r->o.task;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "id", t->id);
    cJSON_AddStringToObject(j, "prompt", t->prompt);
    cJSON_AddNumberToObject(j, "max_iterations", r->o.max_iterations);
    cJSON_AddNumberToObject(j, "timeout_s", r->o.timeout_s);
    cJSON_AddBoolToObject(j, "native_tools", r->o.native_tools);
    cJSON_AddNumberToObject(j, "context_tokens", (double)r->o.context_tokens);
    cJSON_AddBoolToObject(j, "seeded", t->workspace_from != NULL);
    post_task_fields(&r->post, j);
    if (t->files)
        cJSON_AddItemToObject(j, "files", cJSON_Duplicate(t->files, 1));
    if (r->o.egress) { /* the agent tells the model which hosts it can reach */
        cJSON *na = cJSON_AddArrayToObject(j, "network_allow");
        char buf[EGRESS_HOST_MAX + 16];
        for (size_t i = 0; na && i < r->o.egress->nrules; i++) {
            egress_rule_str(&r->o.egress->rules[i], buf, sizeof(buf));
            cJSON_AddItemToArray(na, cJSON_CreateString(buf));
        }
    }
    cJSON *outs = cJSON_AddArrayToObject(j, "outputs");
    for (size_t i = 0; i < t->noutputs; i++)
        cJSON_AddItemToArray(outs, cJSON_CreateString(t->outputs[i]));
    return j;
}

int runner_start(const struct runner_opts *opts, struct runner **out, char *err, size_t errsz)
{
    struct runner *r = calloc(1, sizeof(*r));
    if (!r)
        return errf(err, errsz, "out of memory");
    r->o = *opts;
    r->chan = r->events_fd = r->outputs_dirfd = -1;
    channel_reader_init(&r->rd);
    r->models_tried = cJSON_CreateArray();
    r->start_mono = monotonic_s();
    r->start_wall = wallclock_s();
    r->deadline = r->start_mono + opts->timeout_s;
    /* a compromised agent must not be able to make unbounded paid calls */
    r->llm_call_cap = opts->max_iterations * 2 + 10;
    r->exit_code = EXIT_FAILURE;
    if (!r->models_tried || make_state_dir(r, err, errsz) < 0) {
        runner_free(r);
        return -1;
    }
    cJSON *f = cJSON_CreateObject();
    /* a supervisor with a queue says when the task entered it; the event is written here,
     * where the task's event file begins */
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "queued_at", opts->queued_at > 0 ? opts->queued_at : r->start_wall);
    events_emit(r->o.events, "task_queued", q);
    if (post_prepare(&r->post, opts->task, r->o.events, err, errsz) < 0) {
        cJSON_Delete(f);
        runner_free(r);
        return -1;
    }

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        cJSON_Delete(f);
        runner_free(r);
        return errf(err, errsz, "socketpair: %s", strerror(errno));
    }
#ifdef __SANITIZE_ADDRESS__
    /* the sanitizer build's agent: LeakSanitizer needs ptrace, which the cell's seccomp
     * filter denies, so leaks are checked in the supervisor and the unit tests instead */
    static char *asan_env[32];
    if (!asan_env[0]) {
        size_t n = 0;
        for (char *const *e = cell_default_env(); *e && n < ARRAY_SIZE(asan_env) - 2; e++)
            asan_env[n++] = *e;
        asan_env[n] = "ASAN_OPTIONS=detect_leaks=0";
    }
    char *const *cell_env = asan_env;
#else
    char *const *cell_env = NULL;
#endif
    cleanup_free char **egress_env =
        opts->egress ? egress_cell_env(cell_env ? cell_env : cell_default_env()) : NULL;
    if (egress_env)
        cell_env = egress_env;
    /* a git workspace seeds from the supervisor's own clone of it, opened here like any seed */
    cleanup_fd int git_seed_fd =
        r->post.git.top[0] ? open(r->post.git.tree, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                           : -1;
    struct cell_config cc = {
        .policy = opts->policy,
        .seccomp = opts->seccomp,
        .limits = opts->limits,
        .network_host = opts->network_host,
        .egress = opts->egress != NULL,
        .workspace_from = post_seed(&r->post),
        .seed_fd = r->post.git.top[0] ? git_seed_fd : opts->seed_fd,
        .pid1 = CELL_PID1_AGENT,
        .argv = NULL,
        .envp = cell_env,
        .channel_fd = sv[1],
        .stdio_passthrough = false,
        .stdout_fd = -1,
        .stderr_fd = -1,
    };
    /* the supervisor enforces the wall clock itself (with a grace period for the agent to
     * hand over its results), so the cell gets none of its own */
    cc.limits.timeout_s = 0;
    char cerr[ERR_MSG_MAX];
    int rc = cell_spawn(&cc, &r->cell, cerr, sizeof(cerr));
    (void)close(sv[1]);
    r->chan = sv[0];
    if (rc == 0 && opts->egress &&
        egress_start(opts->egress, cell_take_proxy_fd(r->cell), &r->egress, cerr, sizeof(cerr)) < 0)
        rc = -1;
    if (rc < 0) {
        cJSON_Delete(f);
        errf(err, errsz, "%s", cerr);
        runner_free(r);
        return -1;
    }
    if (fcntl(r->chan, F_SETFL, O_NONBLOCK) < 0) {
        cJSON_Delete(f);
        runner_free(r);
        return errf(err, errsz, "fcntl: %s", strerror(errno));
    }
    cJSON_AddNumberToObject(f, "cell_pid", cell_pid(r->cell));
    cJSON_AddStringToObject(f, "model", opts->models[0] ? opts->models[0] : "");
    cJSON_AddNumberToObject(f, "timeout_s", opts->timeout_s);
    events_emit(r->o.events, "task_started", f);
    cJSON *tf = cJSON_CreateObject();
    cJSON_AddItemToObject(tf, "task", task_for_cell(r));
    /* the first frame is small and the socket buffer empty: this does not block */
    send_to_cell(r, CH_TASK, tf);
    *out = r;
    return 0;
}

int runner_poll_fds(struct runner *r, struct pollfd *fds, int max)
{
    int n = 0;
    if (r->reaped) {
        if (post_poll_fd(&r->post) >= 0 && max > 0)
            fds[n++] = (struct pollfd){.fd = post_poll_fd(&r->post), .events = POLLIN};
        return n;
    }
    if (!r->chan_closed && n < max)
        fds[n++] = (struct pollfd){.fd = r->chan, .events = POLLIN};
    if (n < max)
        fds[n++] = (struct pollfd){.fd = cell_pidfd(r->cell), .events = POLLIN};
    if (r->egress && n < max)
        fds[n++] = (struct pollfd){.fd = egress_fd(r->egress), .events = POLLIN};
    return n;
}

double runner_next_wakeup(const struct runner *r)
{
    /* once the kill is sent only the pidfd matters: a past time here would spin a loop */
    if (r->reaped)
        return post_wakeup(&r->post);
    if (r->kill_sent)
        return 0;
    return r->cancel_sent ? r->kill_at : r->deadline;
}

static void wrap_up(struct runner *r, const char *reason)
{
    if (r->cancel_sent)
        return;
    r->cancel_sent = true;
    r->kill_at = monotonic_s() + RUNNER_GRACE_S;
    broker_cancel_task(r->o.broker, r->o.task->id);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "reason", reason);
    send_to_cell(r, CH_CANCEL, f);
    /* the agent reads its channel only between steps; SIGTERM reaches it inside a tool too
     * (tool_bash polls the flag the handler sets), so it stops the command and reports */
    (void)kill(cell_pid(r->cell), SIGTERM);
}

void runner_cancel(struct runner *r)
{
    if (r->reaped && post_verifying(&r->post)) {
        r->cancelled = true;
        post_kill(&r->post);
    }
    if (r->reaped || r->timed_out)
        return;
    r->cancelled = true;
    wrap_up(r, "cancelled");
}

/* ---- LLM calls ---- */

struct llm_ctx {
    struct runner *r;
    double id;
};

static void reply_llm(struct runner *r, double id, cJSON *outcome)
{
    cJSON *f = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "id", id);
    cJSON *budget = cJSON_CreateObject();
    cJSON_AddNumberToObject(budget, "total_tokens", r->total_tokens);
    cJSON_AddNumberToObject(budget, "cost_usd", r->cost_usd);
    cJSON_AddItemToObject(outcome, "spent", budget);
    cJSON_AddItemToObject(f, "outcome", outcome);
    send_to_cell(r, CH_LLM_REPLY, f);
}

static double num_or_zero(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble > 0 ? v->valuedouble : 0;
}

static void llm_done(void *opaque, cJSON *outcome)
{
    double t0 = monotonic_s();
    struct llm_ctx *ctx = opaque;
    struct runner *r = ctx->r;
    double id = ctx->id;
    free(ctx);
    if (!r) { /* the runner was freed while the call was in flight */
        cJSON_Delete(outcome);
        return;
    }
    r->llm_inflight = false;
    r->llm_pending = NULL;
    if (!outcome)
        outcome = broker_error_outcome("failed", "UNKNOWN_ERROR", "out of memory");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(outcome, "usage");
    r->prompt_tokens += num_or_zero(usage, "prompt_tokens");
    r->completion_tokens += num_or_zero(usage, "completion_tokens");
    r->total_tokens += num_or_zero(usage, "total_tokens");
    r->cost_usd += num_or_zero(usage, "cost_usd") + num_or_zero(usage, "cost");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(outcome, "model");
    if (cJSON_IsString(model) && model->valuestring[0])
        snprintf(r->last_model, sizeof(r->last_model), "%s", model->valuestring);
    const cJSON *tried = cJSON_GetObjectItemCaseSensitive(outcome, "models_tried");
    const cJSON *m;
    cJSON_ArrayForEach(m, tried)
    {
        if (!cJSON_IsString(m))
            continue;
        /* every model asked, once, in the order first asked */
        bool seen = false;
        const cJSON *t;
        cJSON_ArrayForEach(t, r->models_tried)
        {
            if (strcmp(t->valuestring, m->valuestring) == 0)
                seen = true;
        }
        if (!seen)
            cJSON_AddItemToArray(r->models_tried, cJSON_CreateString(m->valuestring));
    }
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(outcome, "status");
    if (cJSON_IsString(st) && strcmp(st->valuestring, "mock") == 0)
        r->mock_used = true;
    cJSON_Delete(r->last_outcome);
    r->last_outcome = cJSON_Duplicate(outcome, 1);
    reply_llm(r, id, outcome);
    double post = monotonic_s() - t0;
    r->broker_s += post;
    if (r->noverhead < RUNNER_OVERHEAD_SAMPLES)
        r->overhead_ms[r->noverhead++] = (float)((r->call_s + post) * 1000.0);
}

static bool message_is_valid(const cJSON *m)
{
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(m, "role");
    if (!cJSON_IsObject(m) || !cJSON_IsString(role))
        return false;
    const char *rs = role->valuestring;
    return strcmp(rs, "system") == 0 || strcmp(rs, "user") == 0 || strcmp(rs, "assistant") == 0 ||
           strcmp(rs, "tool") == 0;
}

static void drop_messages_from(struct runner *r, size_t keep)
{
    while (r->nmsg > keep)
        free(r->msg_text[--r->nmsg]);
}

static int grow_messages(struct runner *r, size_t need)
{
    if (need <= r->msg_cap)
        return 0;
    size_t cap = need * 2;
    char **t = realloc(r->msg_text, cap * sizeof(*t));
    if (!t)
        return -1;
    r->msg_text = t;
    size_t *l = realloc(r->msg_len, cap * sizeof(*l));
    if (!l)
        return -1;
    r->msg_len = l;
    r->msg_cap = cap;
    return 0;
}

/* Applies one request's delta: the first `keep` messages of the last request stay, the
 * parsed `fresh` ones follow. Each new message is checked and re-serialized here (what goes
 * upstream is our encoding, never the cell's bytes). Returns 0, or -1 for a bad delta. */
static int apply_messages(struct runner *r, double keep, const cJSON *fresh)
{
    if (!cJSON_IsArray(fresh) || keep < 0 || keep != floor(keep) || keep > (double)r->nmsg)
        return -1;
    size_t nfresh = (size_t)cJSON_GetArraySize(fresh);
    if ((size_t)keep + nfresh == 0 || (size_t)keep + nfresh > LLM_MESSAGES_MAX)
        return -1;
    const cJSON *m;
    cJSON_ArrayForEach(m, fresh)
    {
        if (!message_is_valid(m))
            return -1;
    }
    /* the common step only appends: the array text grows at its end, nothing is copied */
    bool append = (size_t)keep == r->nmsg && r->msgs_len >= 2;
    drop_messages_from(r, (size_t)keep);
    if (grow_messages(r, r->nmsg + nfresh) < 0)
        return -1;
    size_t first_new = r->nmsg;
    size_t add = 0;
    cJSON_ArrayForEach(m, fresh)
    {
        char *text = cJSON_PrintUnformatted(m);
        if (!text)
            return -1;
        r->msg_len[r->nmsg] = strlen(text);
        add += r->msg_len[r->nmsg] + 1;
        r->msg_text[r->nmsg++] = text;
    }
    size_t total = append ? r->msgs_len + add + 1 : 2;
    if (!append)
        for (size_t i = 0; i < r->nmsg; i++)
            total += r->msg_len[i] + 1;
    if (total > r->msgs_cap) {
        size_t cap = total * 2;
        char *b = realloc(r->msgs_buf, cap);
        if (!b)
            return -1;
        r->msgs_buf = b;
        r->msgs_cap = cap;
    }
    char *p = r->msgs_buf;
    size_t from = 0;
    if (append) {
        p += r->msgs_len - 1; /* over the closing ']' */
        from = first_new;
    } else {
        *p++ = '[';
    }
    for (size_t i = from; i < r->nmsg; i++) {
        if (i)
            *p++ = ',';
        memcpy(p, r->msg_text[i], r->msg_len[i]);
        p += r->msg_len[i];
    }
    *p++ = ']';
    r->msgs_len = (size_t)(p - r->msgs_buf);
    return 0;
}

/* A request carries only what changed since the last one: header {id, native_tools, keep},
 * payload the JSON array of the messages that follow the first `keep` of the previous
 * request (the whole history after a condensation). */
static void handle_llm_timed(struct runner *r, const struct channel_msg *m);

static void handle_llm(struct runner *r, const struct channel_msg *m)
{
    double t0 = monotonic_s();
    r->client_s = 0;
    handle_llm_timed(r, m);
    /* the client's own work (building the body, starting the transfer) is what a direct
     * call does too: it is not the broker's overhead */
    r->call_s = monotonic_s() - t0 - r->client_s;
    r->broker_s += r->call_s;
}

static void handle_llm_timed(struct runner *r, const struct channel_msg *m)
{
    const cJSON *h = m->header;
    const cJSON *idj = cJSON_GetObjectItemCaseSensitive(h, "id");
    double id = cJSON_IsNumber(idj) ? idj->valuedouble : -1;
    const cJSON *keepj = cJSON_GetObjectItemCaseSensitive(h, "keep");
    cleanup_json cJSON *fresh =
        m->payload ? cJSON_ParseWithLength(m->payload, m->payload_len) : NULL;
    if (r->cancel_sent) {
        reply_llm(r, id, broker_error_outcome("failed", "UNKNOWN_ERROR", "the task is ending"));
        return;
    }
    if (r->llm_inflight || !cJSON_IsNumber(keepj) ||
        apply_messages(r, keepj->valuedouble, fresh) < 0) {
        drop_messages_from(r, 0); /* the cell must send everything again */
        r->msgs_len = 0;
        reply_llm(r, id,
                  broker_error_outcome("failed", "VALIDATION_ERROR", "malformed llm request"));
        return;
    }
    const struct task *t = r->o.task;
    if (r->llm_calls >= r->llm_call_cap) {
        reply_llm(r, id,
                  broker_error_outcome("budget", "VALIDATION_ERROR", "LLM call limit reached"));
        return;
    }
    if ((t->max_tokens && r->total_tokens >= (double)t->max_tokens) ||
        (t->max_cost_usd > 0 && r->cost_usd >= t->max_cost_usd)) {
        reply_llm(r, id,
                  broker_error_outcome("budget", "VALIDATION_ERROR", "the task's budget is spent"));
        return;
    }
    const cJSON *nt = cJSON_GetObjectItemCaseSensitive(h, "native_tools");
    struct broker_call call = {
        .task_id = t->id,
        .events = r->o.events,
        .messages_json = r->msgs_buf,
        .messages_len = r->msgs_len,
        .native_tools = cJSON_IsBool(nt) ? cJSON_IsTrue(nt) : r->o.native_tools,
        .models = r->o.models,
        .max_tokens = r->o.max_tokens_per_call,
        .deadline_mono = r->deadline,
    };
    struct llm_ctx *ctx = calloc(1, sizeof(*ctx));
    char err[ERR_MSG_MAX];
    if (!ctx) {
        reply_llm(r, id, broker_error_outcome("failed", "UNKNOWN_ERROR", "out of memory"));
        return;
    }
    ctx->r = r;
    ctx->id = id;
    r->llm_calls++;
    r->llm_inflight = true;
    r->llm_pending = ctx;
    double tc = monotonic_s();
    int brc = broker_call(r->o.broker, &call, llm_done, ctx, err, sizeof(err));
    r->client_s += monotonic_s() - tc;
    if (brc < 0) {
        free(ctx);
        r->llm_inflight = false;
        r->llm_pending = NULL;
        reply_llm(r, id, broker_error_outcome("failed", "VALIDATION_ERROR", err));
    }
}

/* ---- events, outputs, report ---- */

static const char *const cell_event_types[] = {"tool_call", "tool_result",   "condensed",
                                               "stuck",     "agent_message", "nudge",
                                               "step",      "tool_mode",     NULL};

static void handle_event(struct runner *r, cJSON *h)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(h, "type");
    if (!cJSON_IsString(type))
        return;
    const char *const *ok = cell_event_types;
    while (*ok && strcmp(*ok, type->valuestring) != 0)
        ok++;
    if (!*ok) {
        log_debug("task %s: dropped an event of unknown type from the cell", r->o.task->id);
        return;
    }
    char name[32];
    snprintf(name, sizeof(name), "%s", type->valuestring);
    cJSON *fields = cJSON_Duplicate(h, 1);
    if (!fields)
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(fields, "t");
    cJSON_DeleteItemFromObjectCaseSensitive(fields, "type");
    events_emit(r->o.events, name, fields);
}

static int open_parent_dirs(int dirfd, char *rel, const char **leaf)
{
    int fd = dup(dirfd);
    if (fd < 0)
        return -1;
    char *p = rel;
    for (char *slash; (slash = strchr(p, '/')) != NULL; p = slash + 1) {
        *slash = '\0';
        if (mkdirat(fd, p, 0700) < 0 && errno != EEXIST) {
            (void)close(fd);
            return -1;
        }
        /* O_NOFOLLOW: whatever is there must be the directory we (or an earlier file of
         * this task) made, never a link elsewhere */
        int next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        (void)close(fd);
        if (next < 0)
            return -1;
        fd = next;
    }
    *leaf = p;
    return fd;
}

static void handle_output(struct runner *r, const struct channel_msg *m)
{
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(m->header, "path");
    if (!cJSON_IsString(path) || !task_path_is_safe(path->valuestring)) {
        log_warn("task %s: refused an output file with an unsafe path", r->o.task->id);
        return;
    }
    if (r->output_files >= RUNNER_OUTPUT_MAX_FILES ||
        r->output_bytes + m->payload_len > RUNNER_OUTPUT_MAX_BYTES) {
        log_warn("task %s: output limit reached; %s not saved", r->o.task->id, path->valuestring);
        return;
    }
    cleanup_free char *rel = strdup(path->valuestring);
    const char *leaf = NULL;
    cleanup_fd int dfd = rel ? open_parent_dirs(r->outputs_dirfd, rel, &leaf) : -1;
    if (dfd < 0) {
        log_warn("task %s: cannot save output %s: %s", r->o.task->id, path->valuestring,
                 strerror(errno));
        return;
    }
    cleanup_fd int fd =
        openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, m->payload ? m->payload : "", m->payload_len) < 0) {
        int e = errno;
        log_warn("task %s: cannot save output %s: %s", r->o.task->id, path->valuestring,
                 strerror(e));
        if (fd >= 0)
            (void)unlinkat(dfd, leaf, 0); /* no half file that looks saved */
        r->outputs_lost++;                /* the result says so: a success must not hide a loss */
        r->outputs_errno = e;
        return;
    }
    r->output_files++;
    r->output_bytes += m->payload_len;
}

static void handle_report(struct runner *r, cJSON *h)
{
    if (r->report)
        return; /* one report per task; a second is ignored */
    r->report = cJSON_Duplicate(h, 1);
    /* checked, bounded and made valid UTF-8 once, before anything is written */
    result_report_clean(r->report, &r->cut);
}

static void on_llm(void *ctx, struct channel_msg *m)
{
    handle_llm(ctx, m);
}
static void on_event(void *ctx, struct channel_msg *m)
{
    handle_event(ctx, m->header);
}
static void on_output(void *ctx, struct channel_msg *m)
{
    handle_output(ctx, m);
}
static void on_result(void *ctx, struct channel_msg *m)
{
    handle_report(ctx, m->header);
}

static void on_patch(void *ctx, struct channel_msg *m)
{
    struct runner *r = ctx;
    post_on_patch(&r->post, m);
}

/* What the supervisor accepts from a cell; anything else ends the task. */
static const struct channel_rule cell_rules[] = {
    {CH_LLM, CH_FROM_CELL, false, on_llm},       {CH_EVENT, CH_FROM_CELL, false, on_event},
    {CH_OUTPUT, CH_FROM_CELL, false, on_output}, {CH_PATCH, CH_FROM_CELL, true, on_patch},
    {CH_RESULT, CH_FROM_CELL, true, on_result},
};

/* The cell sent what the protocol does not permit: it is not trusted to say anything more.
 * The channel is closed, the cell killed, and the task fails saying why (decide_status). */
static void protocol_violation(struct runner *r, const char *what)
{
    snprintf(r->violation, sizeof(r->violation), "%s", what);
    log_warn("task %s: the cell broke the channel protocol (%s): killing it", r->o.task->id, what);
    r->chan_closed = true;
    broker_cancel_task(r->o.broker, r->o.task->id);
    if (!r->kill_sent)
        (void)cell_kill(r->cell);
    r->kill_sent = true;
}

static void handle_channel(struct runner *r)
{
    for (int budget = 64; budget > 0; budget--) {
        struct channel_msg m;
        int rc = channel_read(&r->rd, r->chan, &m);
        if (rc == 0)
            return;
        if (rc < 0) {
            if (errno)
                log_debug("task %s: channel closed: %s", r->o.task->id, strerror(errno));
            r->chan_closed = true;
            return;
        }
        /* Every string out of the cell is valid UTF-8 before it goes anywhere (events, the
         * LLM request, logs); the report gets its own treatment (escaped names, marks). */
        if (m.kind != CH_RESULT && utf8_fix_json(m.header) != 0) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(m.header, "t");
            m.type = cJSON_IsString(t) ? t->valuestring : ""; /* the old one may be freed */
        }
        char why[100];
        int drc = channel_dispatch(cell_rules, ARRAY_SIZE(cell_rules), &r->chan_seen, r, &m, why,
                                   sizeof(why));
        channel_msg_clear(&m);
        if (drc < 0) {
            protocol_violation(r, why);
            return;
        }
    }
}

/* ---- the result record ---- */

static const char *report_string(const cJSON *rep, const char *name, size_t max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rep, name);
    if (!cJSON_IsString(v) || strlen(v->valuestring) > max)
        return NULL;
    return v->valuestring;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double overhead_median_ms(struct runner *r)
{
    if (!r->noverhead)
        return 0;
    qsort(r->overhead_ms, r->noverhead, sizeof(float), cmp_float);
    return r->overhead_ms[r->noverhead / 2];
}

/* Decides status and error from what the supervisor knows; returns the terminal event. */
static const char *decide_status(struct runner *r, const char **status, cJSON **error)
{
    const cJSON *rep = r->report;
    const char *end = rep ? report_string(rep, "end", 64) : NULL;
    char msg[600];
    *error = NULL;
    if (r->timed_out) {
        snprintf(msg, sizeof(msg), "the task's wall clock (%g s) ran out", r->o.timeout_s);
        *status = "timeout";
        *error = broker_error_object("TIMEOUT_ERROR", msg, NULL);
        return "task_timeout";
    }
    if (r->cancelled) {
        *status = "cancelled";
        return "task_cancelled";
    }
    if (r->violation[0]) {
        snprintf(msg, sizeof(msg), "the cell broke the channel protocol: %s", r->violation);
        *status = "failed";
        *error = broker_error_object("SDK_ERROR", msg, NULL);
        cJSON_AddStringToObject(*error, "reason", "protocol_violation");
        return "task_failed";
    }
    if (!rep || !end) {
        const char *how = r->rec.status == CELL_MEMORY ? "hit its memory limit" : "ended";
        snprintf(msg, sizeof(msg),
                 "the cell %s without a result (status %s, exit code %d, "
                 "signal %d)",
                 how, cell_status_name(r->rec.status), r->rec.exit_code, r->rec.signal);
        *status = "failed";
        *error = broker_error_object("SDK_ERROR", msg, NULL);
        return "task_failed";
    }
    if (strcmp(end, "finished") == 0 && r->outputs_lost) {
        snprintf(msg, sizeof(msg),
                 "the agent finished, but %u of its output files could not be saved (%s): "
                 "they are lost",
                 r->outputs_lost, strerror(r->outputs_errno));
        *status = "failed";
        *error = broker_error_object("UNKNOWN_ERROR", msg, NULL);
        cJSON_AddStringToObject(*error, "reason", "not_saved");
        return "task_failed";
    }
    if (strcmp(end, "finished") == 0) {
        if (r->mock_used) {
            /* the mock answered the last call: its error says why (strategies end in
             * FALLBACK_MOCK) */
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->last_outcome, "error");
            if (cJSON_IsObject(e))
                *error = cJSON_Duplicate(e, 1);
            *status = "mock";
            return "task_failed";
        }
        *status = "succeeded";
        return "task_completed";
    }
    if (strcmp(end, "llm_error") == 0 && r->last_outcome) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->last_outcome, "status");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->last_outcome, "error");
        const char *s = cJSON_IsString(st) ? st->valuestring : "failed";
        if (cJSON_IsObject(e))
            *error = cJSON_Duplicate(e, 1);
        if (strcmp(s, "escalated") == 0) {
            *status = "escalated";
            return "task_escalated";
        }
        if (strcmp(s, "mock") == 0) {
            *status = "mock";
            return "task_failed";
        }
        if (strcmp(s, "timeout") == 0) {
            *status = "timeout";
            return "task_timeout";
        }
        *status = "failed";
        return "task_failed";
    }
    /* the agent's own endings (stuck, no_tool_calls, max_iterations, budget, error): no LLM
     * error, so error.reason names the ending; the task's budget is a limit of the request
     * (VALIDATION_ERROR, as the refused call says), the others the agent loop's (SDK_ERROR) */
    const char *why = report_string(rep, "error", 1000);
    snprintf(msg, sizeof(msg), "%s", why ? why : end);
    *status = "failed";
    *error = broker_error_object(strcmp(end, "budget") == 0 ? "VALIDATION_ERROR" : "SDK_ERROR", msg,
                                 NULL);
    cJSON_AddStringToObject(*error, "reason", end);
    return "task_failed";
}

/* The fields of a terminal event for a result replaced by save_result. */
static cJSON *terminal_fields(const struct runner *r, double iters)
{
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", "failed");
    cJSON_AddNumberToObject(f, "iterations", fmin(iters, r->llm_calls));
    cJSON_AddNumberToObject(f, "execution_time", monotonic_s() - r->start_mono);
    cJSON_AddNumberToObject(f, "llm_calls", r->llm_calls);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->result, "error");
    if (cJSON_IsObject(e))
        cJSON_AddItemToObject(f, "error", cJSON_Duplicate(e, 1));
    return f;
}

/* Writes result.json atomically. When the disk refuses it (full), the result becomes a
 * small failed one that says what was lost, saved if there is room for that. Returns false
 * when the result was replaced. */
static bool save_result(struct runner *r)
{
    char path[4200];
    snprintf(path, sizeof(path), "%s/result.json", r->o.state_dir);
    if (runner_write_result(path, r->result, "result-half") == 0) {
        r->result_saved = true;
        return true;
    }
    int e = errno;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->result, "status");
    char msg[700];
    snprintf(msg, sizeof(msg),
             "the task's result could not be saved (%s): it ended '%s', and its output, diff, "
             "file list and output files are lost",
             strerror(e), cJSON_IsString(st) ? st->valuestring : "failed");
    log_warn("task %s: %s", r->o.task->id, msg);
    cJSON *err = broker_error_object("UNKNOWN_ERROR", msg, NULL);
    cJSON_AddStringToObject(err, "reason", "not_saved");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(r->result, "metadata");
    cJSON *small = runner_result_unrun(r->o.task->id, "failed", err, monotonic_s() - r->start_mono,
                                       r->last_model, r->events_path, md);
    if (small) {
        cJSON_Delete(r->result);
        r->result = small;
    }
    r->exit_code = 1;
    r->result_saved = small && runner_write_result(path, small, NULL) == 0;
    return false;
}

static void build_result(struct runner *r)
{
    const struct task *t = r->o.task;
    const char *status = "failed";
    cJSON *error = NULL;
    const char *terminal = decide_status(r, &status, &error);
    post_decide(&r->post, &status, &terminal, &error);
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "id", t->id);
    cJSON_AddStringToObject(res, "status", status);
    cJSON_AddBoolToObject(res, "success", strcmp(status, "succeeded") == 0);
    const char *output =
        r->report ? report_string(r->report, "output", RESULT_OUTPUT_MAX_BYTES) : NULL;
    cJSON_AddStringToObject(res, "output", output ? output : "");
    cJSON_AddNumberToObject(res, "execution_time", monotonic_s() - r->start_mono);
    cJSON_AddItemToObject(res, "error", error ? error : cJSON_CreateNull());
    const cJSON *it = r->report ? cJSON_GetObjectItemCaseSensitive(r->report, "iterations") : NULL;
    double iters = cJSON_IsNumber(it) && it->valuedouble >= 0 ? floor(it->valuedouble) : 0;
    cJSON_AddNumberToObject(res, "iterations", fmin(iters, r->llm_calls));
    cJSON_AddStringToObject(res, "model", r->last_model);
    cJSON_AddItemToObject(res, "models_tried", cJSON_Duplicate(r->models_tried, 1));
    cJSON *usage = cJSON_AddObjectToObject(res, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(usage, "completion_tokens", r->completion_tokens);
    cJSON_AddNumberToObject(usage, "total_tokens", r->total_tokens);
    cJSON_AddNumberToObject(usage, "cost_usd", r->cost_usd);
    const cJSON *files = r->report ? cJSON_GetObjectItemCaseSensitive(r->report, "files") : NULL;
    cJSON_AddItemToObject(res, "files", files ? cJSON_Duplicate(files, 1) : cJSON_CreateArray());
    const char *diff = r->report ? report_string(r->report, "diff", RESULT_DIFF_MAX_BYTES) : NULL;
    cJSON_AddStringToObject(res, "diff", diff ? diff : "");
    result_report_add_cut(res, r->report ? &r->cut : NULL);
    if (r->output_files)
        cJSON_AddStringToObject(res, "outputs_dir", r->outputs_path);
    else
        cJSON_AddNullToObject(res, "outputs_dir");
    cJSON_AddStringToObject(res, "events_file", r->events_path);
    cJSON_AddItemToObject(res, "sandbox", cell_record_to_json(&r->rec));
    if (r->network)
        cJSON_AddItemToObject(res, "network", cJSON_Duplicate(r->network, 1));
    post_result(&r->post, res, r->o.state_dir);
    cJSON *md = t->metadata ? cJSON_Duplicate(t->metadata, 1) : cJSON_CreateObject();
    if (strcmp(status, "mock") == 0)
        cJSON_AddBoolToObject(md, "mock", true);
    if (broker_is_replay(r->o.broker)) {
        cJSON_AddBoolToObject(md, "offline_replay", true);
        cJSON_AddStringToObject(md, "replay_file", broker_replay_path(r->o.broker));
    }
    cJSON_AddItemToObject(res, "metadata", md);
    r->result = res;
    r->exit_code = task_status_exit_code(status);

    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", status);
    cJSON_AddNumberToObject(f, "iterations", fmin(iters, r->llm_calls));
    cJSON_AddNumberToObject(f, "execution_time", monotonic_s() - r->start_mono);
    if (strcmp(status, "mock") == 0)
        cJSON_AddBoolToObject(f, "mock", true);
    cJSON_AddNumberToObject(f, "llm_calls", r->llm_calls);
    /* what brokering cost per call on this side (validation, serialization, channel), the
     * HTTP exchange itself excluded */
    cJSON_AddNumberToObject(f, "broker_overhead_ms", overhead_median_ms(r));
    cJSON_AddNumberToObject(f, "broker_overhead_mean_ms",
                            r->llm_calls ? r->broker_s * 1000.0 / r->llm_calls : 0);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(res, "error");
    if (cJSON_IsObject(e))
        cJSON_AddItemToObject(f, "error", cJSON_Duplicate(e, 1));
    /* durable first: a terminal event is a promise that the result can be read */
    if (!save_result(r)) {
        cJSON_Delete(f);
        f = terminal_fields(r, iters);
        terminal = "task_failed";
    }
    crashpoint("after-result");
    events_emit(r->o.events, terminal, f);
    crashpoint("after-event");
}

void runner_handle(struct runner *r, const struct pollfd *fds, int nfds)
{
    if (r->reaped) {
        if (post_verifying(&r->post) && post_step(&r->post, r->o.events))
            build_result(r);
        return;
    }
    bool pid_ready = false;
    for (int i = 0; i < nfds; i++) {
        if (fds[i].fd == r->chan && fds[i].revents)
            handle_channel(r);
        else if (fds[i].fd == cell_pidfd(r->cell) && fds[i].revents)
            pid_ready = true;
        else if (r->egress && fds[i].fd == egress_fd(r->egress) && fds[i].revents)
            egress_read(r->egress, egress_event, r);
    }
    double now = monotonic_s();
    if (!r->cancel_sent && now >= r->deadline) {
        r->timed_out = true;
        wrap_up(r, "timeout");
    } else if (r->cancel_sent && !r->kill_sent && now >= r->kill_at) {
        if (r->timed_out)
            (void)cell_timeout(r->cell);
        else
            (void)cell_kill(r->cell);
        r->kill_sent = true;
    }
    if (!pid_ready)
        return;
    /* drain what the agent sent before it exited */
    if (!r->chan_closed)
        handle_channel(r);
    if (r->egress) {
        r->network = egress_finish(r->egress, egress_event, r);
        r->egress = NULL;
    }
    if (cell_reap(r->cell, &r->rec) < 0)
        log_warn("task %s: reaping the cell failed: %s", r->o.task->id, strerror(errno));
    r->reaped = true;
    const char *end = r->report ? report_string(r->report, "end", 64) : NULL;
    bool finished =
        end && strcmp(end, "finished") == 0 && !r->timed_out && !r->cancelled && !r->mock_used;
    if (!post_start_verify(&r->post, finished, r->o.policy, r->o.seccomp, &r->o.limits,
                           r->o.state_dir, r->o.events))
        build_result(r);
}

bool runner_done(const struct runner *r)
{
    return r->reaped && !post_verifying(&r->post);
}

const cJSON *runner_result(const struct runner *r)
{
    return r->result;
}

bool runner_result_saved(const struct runner *r)
{
    return r->result_saved;
}

int runner_exit_code(const struct runner *r)
{
    return r->exit_code;
}

void runner_free(struct runner *r)
{
    if (!r)
        return;
    if (r->llm_pending) {
        /* its callback may still come (cancelled): it must not find this runner */
        r->llm_pending->r = NULL;
        broker_cancel_task(r->o.broker, r->o.task->id);
    }
    if (r->egress)
        cJSON_Delete(egress_finish(r->egress, NULL, NULL));
    cJSON_Delete(r->network);
    if (r->cell) {
        if (!r->reaped) {
            (void)cell_kill(r->cell);
            struct cell_record rec;
            (void)cell_reap(r->cell, &rec);
        }
        cell_free(r->cell);
    }
    if (r->chan >= 0)
        (void)close(r->chan);
    if (r->events_fd >= 0)
        (void)close(r->events_fd);
    if (r->outputs_dirfd >= 0)
        (void)close(r->outputs_dirfd);
    channel_reader_free(&r->rd);
    post_free(&r->post);
    drop_messages_from(r, 0);
    free(r->msg_text);
    free(r->msg_len);
    free(r->msgs_buf);
    cJSON_Delete(r->models_tried);
    cJSON_Delete(r->last_outcome);
    cJSON_Delete(r->report);
    cJSON_Delete(r->result);
    free(r);
}
