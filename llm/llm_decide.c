/* llm_decide: what the outcome of an attempt of the LLM client means: success (the reply,
 * redacted of any echo of the key), or an error classified and answered by the recovery
 * chain: retry after a backoff, fall back to the next model, condense, escalate, fail.
 * Never sends a request itself: it schedules the next attempt or finishes the call. */
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

bool llm_redact_key_fragments(char *text, const char *key)
{
    static const char mark[] = "[REDACTED]";
    size_t kl = key ? strlen(key) : 0;
    bool changed = false;
    if (!text || kl < LLM_KEY_FRAGMENT_MIN)
        return false;
    for (size_t g = 0; g + LLM_KEY_FRAGMENT_MIN <= kl; g++) {
        char *p = text;
        while ((p = memmem(p, strlen(p), key + g, LLM_KEY_FRAGMENT_MIN))) {
            size_t len = LLM_KEY_FRAGMENT_MIN, back = 0;
            while (key[g + len] && p[len] == key[g + len])
                len++;
            while (p - back > text && back < g && p[-(ptrdiff_t)back - 1] == key[g - back - 1])
                back++;
            char *start = p - back;
            len += back;
            memcpy(start, mark, sizeof(mark) - 1);
            memmove(start + sizeof(mark) - 1, start + len, strlen(start + len) + 1);
            p = start + sizeof(mark) - 1;
            changed = true;
        }
    }
    return changed;
}

/* an upstream that echoes the key (or most of it) must not get it into a cell, a result or
 * an event */
static void redact_message(struct llm_client *c, cJSON **msg)
{
    if (!c->key || !*msg)
        return;
    char *text = cJSON_PrintUnformatted(*msg);
    if (!text)
        return;
    log_redact(text);
    if (!llm_redact_key_fragments(text, c->key) && !strstr(text, "[REDACTED]")) {
        free(text);
        return;
    }
    cJSON *clean = cJSON_Parse(text);
    free(text);
    if (!clean)
        return;
    cJSON_Delete(*msg);
    *msg = clean;
}

static bool counts_against_breaker(const struct llm_error_info *e)
{
    return e->type == CONNECTION_ERROR || e->type == TIMEOUT_ERROR || e->type == RATE_LIMIT_ERROR ||
           e->type == SDK_ERROR;
}

static void on_success(struct call *k, struct llm_reply *r, long status)
{
    struct llm_client *c = k->c;
    double now = monotonic_s();
    if (k->admitted) {
        enum breaker_state before = k->ms->br.state;
        (void)breaker_success(&k->ms->br, now);
        k->admitted = false;
        llmc_breaker_event(k, k->ms, before);
    }
    struct llm_outcome *o = k->out;
    if (r->has_usage) {
        o->usage.prompt_tokens += r->usage.prompt_tokens;
        o->usage.completion_tokens += r->usage.completion_tokens;
        o->usage.total_tokens += r->usage.total_tokens;
        o->usage.cost_usd += r->usage.cost_usd;
    }
    o->message = steal_pointer(&r->message);
    redact_message(c, &o->message);
    llm_redact_key_fragments(r->finish_reason, c->key);
    if (r->finish_reason[0])
        o->finish_reason = strdup(r->finish_reason);
    cJSON *f = cJSON_CreateObject();
    if (f) {
        cJSON_AddStringToObject(f, "model", k->models[k->cur]);
        cJSON_AddNumberToObject(f, "http_status", (double)status);
        cJSON_AddStringToObject(f, "finish_reason", r->finish_reason);
        cJSON_AddNumberToObject(f, "latency_ms", (now - k->attempt_started) * 1000.0);
        if (r->has_usage)
            cJSON_AddItemToObject(f, "usage", llmc_usage_json(&r->usage));
    }
    llmc_emit(k, "llm_response", f);
    llmc_finish(k, LLM_OK);
}

static void decide(struct call *k, const struct llm_error_info *e)
{
    struct llm_client *c = k->c;
    double now = monotonic_s();
    /* OPENHANDS_MAX_ATTEMPTS bounds HTTP attempts only: once it is reached, the chain's
     * steps that would send another request (retries, the next model) are skipped, its
     * other steps (CIRCUIT_BREAK, FALLBACK_MOCK, ESCALATE) still apply */
    bool capped = k->out->attempts >= c->cfg.max_attempts;
    struct llm_error_info no_more_http = *e;
    no_more_http.retryable = false;
    const struct llm_error_info *chain_e = capped ? &no_more_http : e;
    for (int guard = 0; guard < 4 * RECOVERY_CHAIN_MAX; guard++) {
        struct recovery_decision d;
        bool have_next = !capped && llmc_next_model(k, now) >= 0;
        recovery_next(&c->cfg.recovery, &k->cursor, chain_e, have_next, c->cfg.fallback_to_mock,
                      &d);
        double delay = 0;
        if (d.action == ACT_RETRY) {
            if (d.strategy == RETRY_WITH_BACKOFF)
                delay = backoff_delay(&c->bp, d.retry_n, e->retry_after_s, backoff_random());
            else if (e->retry_after_s >= 0)
                delay = backoff_delay(&c->bp, 0, e->retry_after_s, 0);
        }
        cJSON *f = cJSON_CreateObject();
        if (f) {
            cJSON_AddStringToObject(f, "model", k->models[k->cur]);
            cJSON_AddStringToObject(f, "error_type", llm_error_type_name(e->type));
            cJSON_AddStringToObject(f, "strategy",
                                    d.action == ACT_CONDENSE ? "CONDENSE"
                                                             : recovery_strategy_name(d.strategy));
            cJSON_AddNumberToObject(f, "http_status", (double)e->http_status);
            cJSON_AddStringToObject(f, "message", e->message);
            cJSON_AddNumberToObject(f, "attempt", k->out->attempts);
            if (d.action == ACT_RETRY)
                cJSON_AddNumberToObject(f, "retry_in_s", delay);
        }
        llmc_emit(k, "llm_error", f);
        llmc_push_strategy(k, d.strategy);
        switch (d.action) {
        case ACT_RETRY:
            k->out->retries++;
            if (k->deadline > 0 && now + delay >= k->deadline) {
                llmc_finish_timeout(k, "before the retry was due");
                return;
            }
            llmc_make_waiting(k, now + delay);
            return;
        case ACT_FALLBACK: {
            int to = llmc_next_model(k, now);
            if (to < 0) {
                llmc_finish(k, LLM_FAILED);
                return;
            }
            k->out->fallbacks++;
            cJSON *g = cJSON_CreateObject();
            if (g) {
                cJSON_AddStringToObject(g, "from", k->models[k->cur]);
                cJSON_AddStringToObject(g, "to", k->models[to]);
                cJSON_AddStringToObject(g, "reason", llm_error_type_name(e->type));
            }
            llmc_emit(k, "model_fallback", g);
            k->dead[k->cur] = true;
            k->cur = to;
            recovery_cursor_reset(&k->cursor);
            llmc_make_waiting(k, now);
            return;
        }
        case ACT_STOP_MODEL:
            /* this call stops asking the model; whether the model is shut off for every call
             * is the shared breaker's decision (its threshold has counted each failure).
             * Forcing it open here would let two 429s of one call lock out the whole
             * process for OPENHANDS_CB_OPEN_SECONDS. */
            k->dead[k->cur] = true;
            continue; /* the chain says what comes after */
        case ACT_MOCK:
            llmc_finish_mock(k);
            return;
        case ACT_ESCALATE: {
            char msg[600];
            snprintf(msg, sizeof(msg), "escalated to a human: %s", e->message);
            llmc_set_error(k, e->type, e->http_status, msg);
            llmc_finish(k, LLM_ESCALATED);
            return;
        }
        case ACT_CONDENSE:
            llmc_set_error(k, e->type, e->http_status, e->message);
            llmc_finish(k, LLM_CONDENSE);
            return;
        case ACT_FAIL:
            if (capped) {
                char msg[600];
                snprintf(msg, sizeof(msg),
                         "gave up after %u attempts (OPENHANDS_MAX_ATTEMPTS); last: %s",
                         k->out->attempts, e->message);
                llmc_set_error(k, e->type, e->http_status, msg);
            }
            llmc_finish(k, LLM_FAILED);
            return;
        }
    }
    llmc_finish(k, LLM_FAILED);
}

void llmc_on_done(struct call *k, CURLcode cc)
{
    struct llm_client *c = k->c;
    long status = 0;
    (void)c->curl->easy_getinfo(k->easy, CURLINFO_RESPONSE_CODE, &status);
    struct llm_signal s = {
        .curl_code = (int)cc, .http_status = status, .retry_after_hdr_s = k->retry_after_hdr};
    struct llm_reply r = {0};
    cJSON *uperr = NULL;
    char perr[ERR_MSG_MAX] = "";
    char detail[ERR_MSG_MAX] = "";
    if (cc == CURLE_OK && status >= 200 && status < 300) {
        int rc;
        if (!k->is_sse && llm_body_is_sse(k->resp.p, k->resp.len)) {
            /* an event stream under a wrong Content-Type (text/plain, application/json):
             * the body decides, it cannot be JSON anyway */
            k->is_sse = true;
            sse_init(&k->sse);
            (void)sse_feed(&k->sse, k->resp.p, k->resp.len);
        }
        if (k->is_sse) {
            rc = sse_finish(&k->sse, &r, perr, sizeof(perr));
            s.truncated = rc == -2;
            s.body_malformed = rc == -1;
            s.midstream = rc == 0 && r.error;
        } else {
            rc = llm_response_parse(k->resp.p, k->resp.len, &r, perr, sizeof(perr));
            s.body_empty = rc < 0 && k->resp.len == 0;
            s.body_malformed = rc < 0 && k->resp.len > 0;
            s.in_200 = rc == 0 && r.error;
        }
        if (rc == 0 && !r.error && r.message) {
            on_success(k, &r, status);
            llm_reply_free(&r);
            return;
        }
        if (rc == 0 && !r.error && !r.message)
            s.body_malformed = true;
        s.error = r.error;
        if (perr[0])
            snprintf(detail, sizeof(detail), "%s", perr);
    } else {
        if (cc == CURLE_WRITE_ERROR && k->resp_over_cap)
            snprintf(detail, sizeof(detail), "response body larger than %u bytes; refused",
                     LLM_RESPONSE_MAX_BYTES);
        else if (cc != CURLE_OK)
            snprintf(detail, sizeof(detail), "%s", c->curl->easy_strerror(cc));
        if (k->is_sse) { /* an error status with an event-stream body: unusual; take its error */
            (void)sse_finish(&k->sse, &r, perr, sizeof(perr));
            s.error = r.error;
        } else {
            uperr = llm_response_error(k->resp.p, k->resp.len);
            s.error = uperr;
        }
    }
    s.detail = detail[0] ? detail : NULL;
    struct llm_error_info e;
    llm_classify(&s, &e);
    log_redact(e.message);
    llm_redact_key_fragments(e.message, c->key);
    llm_reply_free(&r);
    cJSON_Delete(uperr);
    double now = monotonic_s();
    bool cut = k->deadline > 0 && now >= k->deadline;
    if (k->admitted && cut) {
        breaker_release(&k->ms->br); /* our deadline, not the model's failure */
        k->admitted = false;
    }
    if (k->admitted) {
        enum breaker_state before = k->ms->br.state;
        if (counts_against_breaker(&e))
            (void)breaker_failure(&k->ms->br, now);
        else
            (void)breaker_success(&k->ms->br, now); /* it answered; the request was wrong */
        k->admitted = false;
        llmc_breaker_event(k, k->ms, before);
    }
    llmc_remember_unavailable(k, &e, now);
    k->last = e;
    k->has_last = true;
    llmc_release_attempt(k);
    if (cut) {
        char when[LLM_MODEL_NAME_MAX + 32];
        snprintf(when, sizeof(when), "during the call to %s", k->models[k->cur]);
        llmc_finish_timeout(k, when);
        return;
    }
    decide(k, &e);
}
