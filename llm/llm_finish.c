/* llm_finish: how a call of the LLM client ends: its events, the error it carries, the
 * recovery strategies tried, and the outcome handed to the caller's callback (always from
 * llm_client_step, after the call left every list). Never starts an attempt. */
#include "llm_call.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "llm_request.h"
#include "llm_response.h"
#include "util.h"

void llmc_emit(struct call *k, const char *type, cJSON *fields)
{
    if (k->events)
        (void)events_emit(k->events, type, fields);
    else
        cJSON_Delete(fields);
}

cJSON *llmc_usage_json(const struct llm_usage *u)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddNumberToObject(j, "prompt_tokens", u->prompt_tokens);
    cJSON_AddNumberToObject(j, "completion_tokens", u->completion_tokens);
    cJSON_AddNumberToObject(j, "total_tokens", u->total_tokens);
    cJSON_AddNumberToObject(j, "cost_usd", u->cost_usd);
    return j;
}

/* ---------- finishing ---------- */

void llmc_push_strategy(struct call *k, enum recovery_strategy s)
{
    if (s != STRAT_NONE && k->out->n_strategies < LLM_STRATEGIES_MAX)
        k->out->strategies[k->out->n_strategies++] = s;
}

void llmc_release_attempt(struct call *k)
{
    struct llm_client *c = k->c;
    if (k->easy) {
        (void)c->curl->multi_remove_handle(c->multi, k->easy);
        if (c->nidle < (int)ARRAY_SIZE(c->idle))
            c->idle[c->nidle++] = k->easy;
        else
            c->curl->easy_cleanup(k->easy);
        k->easy = NULL;
        c->st.in_flight--;
    }
    /* an admitted half-open probe that never reported would wedge the breaker half-open */
    if (k->admitted && k->ms)
        breaker_release(&k->ms->br);
    k->admitted = false;
    k->in_flight = false;
    free(k->req);
    k->req = NULL;
    free(k->resp.p);
    memset(&k->resp, 0, sizeof(k->resp));
    sse_free(&k->sse);
    k->is_sse = false;
    k->resp_over_cap = false;
}

void llmc_unlink_call(struct call *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        k->c->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
}

void llmc_set_error(struct call *k, enum llm_error_type t, long http, const char *msg)
{
    struct llm_outcome *o = k->out;
    o->has_error = true;
    o->error_type = t;
    o->error_http_status = http;
    size_t l = strlen(msg);
    if (l > sizeof(o->error_message) - 1)
        l = sizeof(o->error_message) - 1;
    memcpy(o->error_message, msg, l);
    o->error_message[l] = '\0';
    log_redact(o->error_message);
}

void llmc_finish(struct call *k, enum llm_status status)
{
    struct llm_client *c = k->c;
    llmc_release_attempt(k);
    llmc_unlink_call(k);
    struct llm_outcome *o = k->out;
    o->status = status;
    o->elapsed_s = monotonic_s() - k->started;
    if (status != LLM_OK && !o->has_error) {
        if (k->has_last)
            llmc_set_error(k, k->last.type, k->last.http_status, k->last.message);
        else
            llmc_set_error(k, UNKNOWN_ERROR, 0, "no model could be asked");
    }
    c->st.calls_done++;
    c->st.pending--;
    llm_done_fn done = k->done;
    void *opaque = k->opaque;
    cJSON_Delete(k->body);
    free(k->messages_json);
    free(k);
    done(opaque, o);
}

void llmc_finish_timeout(struct call *k, const char *when)
{
    char msg[400];
    snprintf(msg, sizeof(msg), "the task's deadline passed %s%s%s", when,
             k->has_last ? "; last error: " : "",
             k->has_last ? llm_error_type_name(k->last.type) : "");
    llmc_set_error(k, TIMEOUT_ERROR, 0, msg);
    llmc_finish(k, LLM_TIMEOUT);
}

void llmc_finish_mock(struct call *k)
{
    cJSON *m = cJSON_CreateObject();
    if (m) {
        cJSON_AddStringToObject(m, "role", "assistant");
        cJSON_AddStringToObject(m, "content",
                                "[agentbox MOCK response: no model answered and "
                                "OPENHANDS_FALLBACK_TO_MOCK is enabled; nothing was done]");
        cJSON *meta = cJSON_AddObjectToObject(m, "metadata");
        if (meta)
            cJSON_AddBoolToObject(meta, "mock", true);
    }
    k->out->message = m;
    snprintf(k->out->model, sizeof(k->out->model), "mock");
    llmc_finish(k, LLM_MOCK);
}
