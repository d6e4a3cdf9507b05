/* broker: see broker.h. The live path is a thin adapter over llm_client; the replay path
 * answers from a file, one reply per call, through the same asynchronous callback so that
 * the runner cannot tell the two apart except by the outcome's "replay" label. */
#include "broker.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "json.h"
#include "llm_client.h"
#include "llm_request.h"
#include "tools.h"
#include "log.h"
#include "util.h"

#define REPLAY_FILE_MAX_BYTES (16u << 20)
#define REPLAY_CURSORS_MAX    1024

struct pending {
    broker_done_fn done;
    void *opaque;
    cJSON *outcome;
    struct event_log *events;
    char task_id[128];
};

struct live_ctx {
    broker_done_fn done;
    void *opaque;
    struct live_ctx *next, **pprev; /* pending live calls, so broker_free can end them */
};

struct broker {
    struct llm_client *llm;
    struct live_ctx *live; /* calls started and not yet done */
    /* replay */
    char *replay_path;
    cJSON *replies;
    /* each task replays the file from its first reply: one cursor per task id (a ring, so
     * a long-running supervisor's table stays bounded) */
    struct replay_cursor {
        char task_id[128];
        int next;
    } cursors[REPLAY_CURSORS_MAX];
    size_t ncursors, cursor_next;
    struct pending *pending;
    size_t npending, cap;
};

bool broker_is_replay(const struct broker *b)
{
    return b->replies != NULL;
}

const char *broker_replay_path(const struct broker *b)
{
    return b->replay_path;
}

int broker_new_live(const struct agentbox_config *cfg, struct broker **out, char *err, size_t errsz)
{
    struct broker *b = calloc(1, sizeof(*b));
    if (!b)
        return errf(err, errsz, "out of memory");
    if (llm_client_new(cfg, &b->llm, err, errsz) < 0) {
        free(b);
        return -1;
    }
    *out = b;
    return 0;
}

static int check_reply(const cJSON *r, int i, const char *path, char *err, size_t errsz)
{
    if (!cJSON_IsObject(r))
        return errf(err, errsz, "%s: replies[%d]: expected an assistant message object", path, i);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(r, "content");
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(r, "tool_calls");
    if (content && !cJSON_IsString(content) && !cJSON_IsNull(content))
        return errf(err, errsz, "%s: replies[%d].content: expected a string or null", path, i);
    if (calls && !cJSON_IsArray(calls))
        return errf(err, errsz, "%s: replies[%d].tool_calls: expected an array", path, i);
    if (!cJSON_IsString(content) && cJSON_GetArraySize(calls) == 0)
        return errf(err, errsz, "%s: replies[%d]: needs content or tool_calls", path, i);
    return 0;
}

int broker_new_replay(const char *path, struct broker **out, char *err, size_t errsz)
{
    cleanup_free char *text = NULL;
    if (read_file(path, REPLAY_FILE_MAX_BYTES, &text, NULL) < 0)
        return errf(err, errsz, "--replay %s: %s", path, strerror(errno));
    cleanup_json cJSON *doc = cJSON_Parse(text);
    if (!doc)
        return errf(err, errsz, "--replay %s: not valid JSON", path);
    cJSON *replies = cJSON_GetObjectItemCaseSensitive(doc, "replies");
    if (!cJSON_IsArray(replies) || cJSON_GetArraySize(replies) == 0)
        return errf(err, errsz, "%s: replies: expected a non-empty array", path);
    int i = 0;
    const cJSON *r;
    cJSON_ArrayForEach(r, replies)
    {
        if (check_reply(r, i++, path, err, errsz) < 0)
            return -1;
    }
    struct broker *b = calloc(1, sizeof(*b));
    if (!b || !(b->replay_path = strdup(path))) {
        free(b);
        return errf(err, errsz, "out of memory");
    }
    b->replies = cJSON_DetachItemViaPointer(doc, replies);
    *out = b;
    return 0;
}

cJSON *broker_error_object(const char *type, const char *message, const cJSON *strategies)
{
    cJSON *e = cJSON_CreateObject();
    cJSON_AddStringToObject(e, "type", type);
    cJSON_AddStringToObject(e, "message", message);
    cJSON_AddItemToObject(e, "strategies",
                          strategies ? cJSON_Duplicate(strategies, 1) : cJSON_CreateArray());
    return e;
}

cJSON *broker_error_outcome(const char *status, const char *type, const char *message)
{
    cJSON *o = cJSON_CreateObject();
    cJSON_AddStringToObject(o, "status", status);
    cJSON_AddItemToObject(o, "error", broker_error_object(type, message, NULL));
    return o;
}

static cJSON *cancelled_outcome(void)
{
    return broker_error_outcome("failed", "UNKNOWN_ERROR", "cancelled");
}

/* Every call still pending gets its one callback (a cancelled outcome) before the broker
 * goes, so no caller is left waiting or holding memory for an answer that never comes. */
void broker_free(struct broker *b)
{
    if (!b)
        return;
    while (b->live) {
        struct live_ctx *ctx = b->live;
        b->live = ctx->next;
        ctx->done(ctx->opaque, cancelled_outcome());
        free(ctx);
    }
    if (b->llm)
        llm_client_free(b->llm);
    for (size_t i = 0; i < b->npending; i++) {
        cJSON_Delete(b->pending[i].outcome);
        b->pending[i].done(b->pending[i].opaque, cancelled_outcome());
    }
    free(b->pending);
    cJSON_Delete(b->replies);
    free(b->replay_path);
    free(b);
}

static const char *status_word(enum llm_status s)
{
    switch (s) {
    case LLM_OK:
        return "ok";
    case LLM_ESCALATED:
        return "escalated";
    case LLM_MOCK:
        return "mock";
    case LLM_TIMEOUT:
        return "timeout";
    case LLM_CONDENSE:
        return "condense";
    case LLM_FAILED:
    default:
        return "failed";
    }
}

static void live_done(void *opaque, struct llm_outcome *o)
{
    struct live_ctx *ctx = opaque;
    *ctx->pprev = ctx->next;
    if (ctx->next)
        ctx->next->pprev = ctx->pprev;
    cJSON *json = llm_outcome_to_json(o);
    if (json) {
        cJSON_DeleteItemFromObjectCaseSensitive(json, "status");
        cJSON_AddStringToObject(json, "status", status_word(o->status));
    }
    llm_outcome_free(o);
    ctx->done(ctx->opaque, json);
    free(ctx);
}

static int *replay_cursor(struct broker *b, const char *task_id)
{
    const char *id = task_id ? task_id : "";
    for (size_t i = 0; i < b->ncursors; i++)
        if (strcmp(b->cursors[i].task_id, id) == 0)
            return &b->cursors[i].next;
    struct replay_cursor *c = &b->cursors[b->cursor_next];
    b->cursor_next = (b->cursor_next + 1) % REPLAY_CURSORS_MAX;
    if (b->ncursors < REPLAY_CURSORS_MAX)
        b->ncursors++;
    snprintf(c->task_id, sizeof(c->task_id), "%s", id);
    c->next = 0;
    return &c->next;
}

static cJSON *replay_outcome(struct broker *b, const struct broker_call *call)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    char label[300];
    snprintf(label, sizeof(label), "replay:%s", b->replay_path);
    cJSON_AddStringToObject(o, "model", label);
    cJSON *tried = cJSON_AddArrayToObject(o, "models_tried");
    cJSON_AddItemToArray(tried, cJSON_CreateString(label));
    cJSON_AddBoolToObject(o, "replay", true);
    if (call->deadline_mono > 0 && monotonic_s() >= call->deadline_mono) {
        cJSON_AddStringToObject(o, "status", "timeout");
        cJSON_AddItemToObject(
            o, "error",
            broker_error_object("TIMEOUT_ERROR", "the task's wall clock ran out", NULL));
        return o;
    }
    int *cursor = replay_cursor(b, call->task_id);
    cJSON *reply = cJSON_GetArrayItem(b->replies, *cursor);
    if (!reply) {
        cJSON_AddStringToObject(o, "status", "failed");
        cJSON_AddItemToObject(
            o, "error",
            broker_error_object("SDK_ERROR", "the replay has no more recorded replies", NULL));
        return o;
    }
    (*cursor)++;
    cJSON *msg = cJSON_CreateObject();
    cJSON_AddStringToObject(msg, "role", "assistant");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(reply, "content");
    if (cJSON_IsString(content))
        cJSON_AddStringToObject(msg, "content", content->valuestring);
    else
        cJSON_AddNullToObject(msg, "content");
    const cJSON *calls = cJSON_GetObjectItemCaseSensitive(reply, "tool_calls");
    if (cJSON_GetArraySize(calls) > 0)
        cJSON_AddItemToObject(msg, "tool_calls", cJSON_Duplicate(calls, 1));
    cJSON_AddStringToObject(o, "status", "ok");
    cJSON_AddItemToObject(o, "message", msg);
    cJSON_AddStringToObject(o, "finish_reason",
                            cJSON_GetArraySize(calls) > 0 ? "tool_calls" : "stop");
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(reply, "usage");
    cJSON_AddItemToObject(o, "usage", usage ? cJSON_Duplicate(usage, 1) : cJSON_CreateObject());
    cJSON_AddNullToObject(o, "error");
    return o;
}

static cJSON *live_body(const struct broker_call *call, const struct broker *b)
{
    (void)b;
    cJSON *body = cJSON_CreateObject();
    if (!body)
        return NULL;
    if (call->native_tools)
        cJSON_AddItemToObject(body, "tools", tools_schema());
    cJSON_AddNumberToObject(body, "max_tokens", call->max_tokens);
    return body;
}

int broker_call(struct broker *b, const struct broker_call *call, broker_done_fn done, void *opaque,
                char *err, size_t errsz)
{
    if (!b->replies) {
        struct live_ctx *ctx = calloc(1, sizeof(*ctx));
        cJSON *body = live_body(call, b);
        if (!ctx || !body) {
            free(ctx);
            cJSON_Delete(body);
            return errf(err, errsz, "out of memory");
        }
        ctx->done = done;
        ctx->opaque = opaque;
        struct llm_call lc = {
            .task_id = call->task_id,
            .events = call->events,
            .body = body,
            .messages_json = call->messages_json,
            .messages_len = call->messages_len,
            .models = call->models,
            .deadline_mono = call->deadline_mono,
            .stream = false,
        };
        int rc = llm_call_start(b->llm, &lc, live_done, ctx, err, errsz);
        cJSON_Delete(body);
        if (rc < 0) {
            free(ctx);
            return rc;
        }
        ctx->next = b->live;
        ctx->pprev = &b->live;
        if (b->live)
            b->live->pprev = &ctx->next;
        b->live = ctx;
        return 0;
    }
    if (GROW(b->pending, b->npending, b->cap, 8, (size_t)1 << 20) < 0)
        return errf(err, errsz, "too many calls pending: %s", strerror(errno));
    cJSON *o = replay_outcome(b, call);
    if (!o)
        return errf(err, errsz, "out of memory");
    if (call->events) {
        cJSON *f = cJSON_CreateObject();
        cJSON_AddStringToObject(f, "model", cJSON_GetObjectItem(o, "model")->valuestring);
        cJSON_AddBoolToObject(f, "replay", true);
        events_emit(call->events, "llm_request", f);
    }
    struct pending *p = &b->pending[b->npending++];
    p->done = done;
    p->opaque = opaque;
    p->outcome = o;
    p->events = call->events;
    snprintf(p->task_id, sizeof(p->task_id), "%s", call->task_id ? call->task_id : "");
    return 0;
}

void broker_cancel_task(struct broker *b, const char *task_id)
{
    if (b->llm) {
        llm_client_cancel(b->llm, task_id);
        return;
    }
    /* the callbacks still fire (at the next step), with a cancelled outcome */
    for (size_t i = 0; i < b->npending; i++) {
        if (strcmp(b->pending[i].task_id, task_id) == 0) {
            cJSON_Delete(b->pending[i].outcome);
            b->pending[i].outcome = cancelled_outcome();
        }
    }
}

int broker_poll_fds(struct broker *b, struct pollfd *fds, int max)
{
    return b->llm ? llm_client_poll_fds(b->llm, fds, max) : 0;
}

long broker_timeout_ms(struct broker *b)
{
    if (b->llm)
        return llm_client_timeout_ms(b->llm);
    return b->npending ? 0 : -1;
}

int broker_step(struct broker *b)
{
    if (b->llm)
        return llm_client_step(b->llm, 0);
    /* fire what was queued before this step; callbacks may queue more for the next one */
    size_t n = b->npending;
    if (n == 0)
        return 0;
    struct pending *batch = malloc((n ? n : 1) * sizeof(*batch));
    if (!batch)
        return -1;
    memcpy(batch, b->pending, n * sizeof(*batch));
    memmove(b->pending, b->pending + n, (b->npending - n) * sizeof(*batch));
    b->npending -= n;
    for (size_t i = 0; i < n; i++) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(batch[i].outcome, "status");
        if (batch[i].events && cJSON_IsString(st) && strcmp(st->valuestring, "ok") == 0) {
            /* the same event the live client emits for an answer */
            cJSON *f = cJSON_CreateObject();
            const cJSON *m = cJSON_GetObjectItemCaseSensitive(batch[i].outcome, "model");
            const cJSON *u = cJSON_GetObjectItemCaseSensitive(batch[i].outcome, "usage");
            cJSON_AddStringToObject(f, "model", cJSON_IsString(m) ? m->valuestring : "");
            cJSON_AddItemToObject(f, "usage", u ? cJSON_Duplicate(u, 1) : cJSON_CreateObject());
            cJSON_AddBoolToObject(f, "replay", true);
            events_emit(batch[i].events, "llm_response", f);
        }
        batch[i].done(batch[i].opaque, batch[i].outcome);
    }
    free(batch);
    return 0;
}
