/* llm_models: the LLM client's per-model state, shared by every call of the process: the
 * circuit breaker, the rate limit (requests per minute, its own for :free models), and the
 * models remembered unavailable; and which model of a call's chain is tried next. Never sends
 * a request and never finishes a call. */
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

/* ---------- per-model state: breaker and rate limit, shared by every call ---------- */

static bool is_free_model(const char *id)
{
    size_t l = strlen(id);
    return (l > 5 && !strcmp(id + l - 5, ":free")) || !strcmp(id, "openrouter/free");
}

struct model_state *llmc_model_state(struct llm_client *c, const char *id)
{
    for (int i = 0; i < c->nmodels; i++)
        if (!strcmp(c->models[i].id, id))
            return &c->models[i];
    if (c->nmodels >= CLIENT_MODELS_MAX)
        return &c->models[CLIENT_MODELS_MAX - 1]; /* shared overflow slot; bounded memory */
    struct model_state *m = &c->models[c->nmodels++];
    memset(m, 0, sizeof(*m));
    snprintf(m->id, sizeof(m->id), "%s", id);
    breaker_init(&m->br, &c->brp);
    m->rpm = is_free_model(id) ? c->cfg.rate_limit_free_rpm : c->cfg.rate_limit_rpm;
    m->tokens = c->cfg.rate_limit_burst;
    m->refilled_at = monotonic_s();
    return m;
}

/* seconds until a request may go out (0: take a token now) */
double llmc_rate_wait(struct llm_client *c, struct model_state *m, double now)
{
    if (m->rpm <= 0)
        return 0;
    double burst = c->cfg.rate_limit_burst;
    m->tokens += (now - m->refilled_at) * m->rpm / 60.0;
    if (m->tokens > burst)
        m->tokens = burst;
    m->refilled_at = now;
    if (m->tokens >= 1) {
        m->tokens -= 1;
        return 0;
    }
    return (1 - m->tokens) * 60.0 / m->rpm;
}

void llmc_breaker_event(struct call *k, struct model_state *m, enum breaker_state before)
{
    if (m->br.state == before)
        return;
    if (m->br.state == BREAKER_OPEN) {
        k->c->st.breaker_trips++;
        k->out->breaker_trips++;
    }
    cJSON *f = cJSON_CreateObject();
    if (f) {
        cJSON_AddStringToObject(f, "model", m->id);
        cJSON_AddStringToObject(f, "state", breaker_state_name(m->br.state));
        cJSON_AddStringToObject(f, "previous", breaker_state_name(before));
    }
    llmc_emit(k, "circuit_state", f);
}

static bool model_usable(struct llm_client *c, const char *id, double now)
{
    if (!c->cfg.circuit_breaker)
        return true;
    for (int i = 0; i < c->nmodels; i++)
        if (!strcmp(c->models[i].id, id))
            return breaker_peek(&c->models[i].br, now);
    return true;
}

/* A model that answered "unavailable" (404, "No endpoints found", availability.retryable
 * false): this task never asks it again, other tasks not for OPENHANDS_MODEL_UNAVAILABLE_TTL.
 * "No endpoints that support tool use" is about tools, not the model (the agent goes on in
 * text mode with the same model): not remembered. */
void llmc_remember_unavailable(struct call *k, const struct llm_error_info *e, double now)
{
    if (!e->model_unavailable || strcasestr(e->message, "tool use") || !k->ms)
        return;
    model_memo_mark(&k->c->memo, k->task_id, k->ms->id, now, k->c->cfg.model_unavailable_ttl_s);
}

static bool remembered_unavailable(struct call *k, const char *id, double now)
{
    return model_memo_dead(&k->c->memo, k->task_id, id, now);
}

/* Models remembered unavailable are skipped while a model after them is not: the memory
 * never leaves a call with nothing to ask. */
static bool skip_remembered(struct call *k, int j, double now)
{
    if (!remembered_unavailable(k, k->models[j], now))
        return false;
    for (int i = j + 1; i < k->nmodels; i++)
        if (!k->dead[i] && model_usable(k->c, k->models[i], now) &&
            !remembered_unavailable(k, k->models[i], now))
            return true;
    return false;
}

int llmc_next_model(struct call *k, double now)
{
    for (int j = k->cur + 1; j < k->nmodels; j++)
        if (!k->dead[j] && model_usable(k->c, k->models[j], now))
            return j;
    return -1;
}

/* Moves k->cur past models this call gave up on, models whose breaker is open and models
 * found unavailable before (each passed-over model is a model_fallback event). */
void llmc_skip_unusable(struct call *k, double now)
{
    struct llm_client *c = k->c;
    while (k->cur < k->nmodels && (k->dead[k->cur] || !model_usable(c, k->models[k->cur], now) ||
                                   skip_remembered(k, k->cur, now))) {
        int from = k->cur;
        bool open = !k->dead[k->cur];
        const char *why = model_usable(c, k->models[from], now) ? "unavailable" : "circuit_open";
        k->cur++;
        while (k->cur < k->nmodels && k->dead[k->cur])
            k->cur++;
        if (open) {
            /* a model remembered unavailable is passed over quietly (an event, no strategy:
             * this call met no error); an open breaker is this call's fallback */
            if (strcmp(why, "circuit_open") == 0) {
                llmc_push_strategy(k, FALLBACK_MODEL);
                k->out->fallbacks++;
            }
            cJSON *f = cJSON_CreateObject();
            if (f) {
                cJSON_AddStringToObject(f, "from", k->models[from]);
                if (k->cur < k->nmodels)
                    cJSON_AddStringToObject(f, "to", k->models[k->cur]);
                else
                    cJSON_AddNullToObject(f, "to");
                cJSON_AddStringToObject(f, "reason", why);
            }
            llmc_emit(k, "model_fallback", f);
        }
    }
}
