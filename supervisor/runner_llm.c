/* runner_llm: a task's LLM calls on the supervisor side: the conversation as the cell sent
 * it (each message validated and re-serialized once), the call cap and the task's budget,
 * the call through the broker, the reply to the cell and the accounting (usage, models
 * tried, the broker's overhead) from the supervisor's own view. Never trusts a count the
 * cell reports; never writes the result (runner_result.c does). */
#include "runner_internal.h"

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

#include "grow.h"
#include "json.h"
#include "log.h"
#include "util.h"

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
    runner_send_to_cell(r, CH_LLM_REPLY, f);
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
    if (GROW(r->overhead_ms, r->noverhead, r->overhead_cap, 16, RUNNER_OVERHEAD_SAMPLES) == 0)
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

void runner_handle_llm(struct runner *r, const struct channel_msg *m)
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

void runner_llm_detach(struct runner *r)
{
    if (!r->llm_pending)
        return;
    /* its callback may still come (cancelled): it must not find this runner */
    r->llm_pending->r = NULL;
    r->llm_pending = NULL;
    broker_cancel_task(r->o.broker, r->o.task->id);
}

void runner_llm_free(struct runner *r)
{
    drop_messages_from(r, 0);
    free(r->msg_text);
    free(r->msg_len);
    free(r->msgs_buf);
}
