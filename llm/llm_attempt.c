/* llm_attempt: one HTTP attempt of a call of the LLM client: the model it goes to (breaker
 * and rate limit permitting), the request body, libcurl's options and the response's body
 * and headers as they arrive. Never decides what a failed attempt means (llm_decide.c). */
#include "llm_call.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "grow.h"
#include "log.h"
#include "llm_request.h"
#include "llm_response.h"
#include "util.h"

/* ---------- attempts ---------- */

void llmc_make_waiting(struct call *k, double at)
{
    k->waiting = true;
    k->wake_at = at;
}

static size_t on_body(char *ptr, size_t size, size_t n, void *opaque)
{
    struct call *k = opaque;
    size_t len = size * n;
    if (k->is_sse) {
        if (sse_feed(&k->sse, ptr, len) < 0)
            return len; /* keep reading; sse_finish reports the failure */
        return len;
    }
    /* room up to the NUL after the new bytes, never past LLM_RESPONSE_MAX_BYTES (+ NUL);
     * a refusal is CURLE_WRITE_ERROR, classified as SDK_ERROR with resp_over_cap saying why */
    if (len > LLM_RESPONSE_MAX_BYTES - k->resp.len) {
        k->resp_over_cap = true;
        return 0;
    }
    if (grow_to_fit(&k->resp.p, k->resp.len + len, &k->resp.cap, 1, 4096,
                    (size_t)LLM_RESPONSE_MAX_BYTES + 1) < 0)
        return 0;
    memcpy(k->resp.p + k->resp.len, ptr, len);
    k->resp.len += len;
    k->resp.p[k->resp.len] = '\0';
    return len;
}

static bool header_is(const char *h, size_t len, const char *name, const char **value)
{
    size_t nl = strlen(name);
    if (len <= nl || strncasecmp(h, name, nl) != 0 || h[nl] != ':')
        return false;
    *value = h + nl + 1;
    return true;
}

static size_t on_header(char *ptr, size_t size, size_t n, void *opaque)
{
    struct call *k = opaque;
    size_t len = size * n;
    const char *v;
    char buf[128];
    if (len >= 5 && !strncmp(ptr, "HTTP/", 5)) { /* a new response (after 100 Continue) */
        k->retry_after_hdr = -1;
        k->is_sse = false;
    } else if (header_is(ptr, len, "retry-after", &v)) {
        size_t vl = len - (size_t)(v - ptr);
        if (vl < sizeof(buf)) {
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            buf[strcspn(buf, "\r\n")] = '\0';
            k->retry_after_hdr = llm_retry_after_parse(buf, wallclock_s());
        }
    } else if (header_is(ptr, len, "content-type", &v)) {
        size_t vl = len - (size_t)(v - ptr);
        if (vl < sizeof(buf)) {
            memcpy(buf, v, vl);
            buf[vl] = '\0';
            if (strcasestr(buf, "text/event-stream") && !k->is_sse) {
                k->is_sse = true;
                sse_init(&k->sse);
            }
        }
    }
    return len;
}

static CURL *get_easy(struct llm_client *c)
{
    if (c->nidle > 0) {
        CURL *h = c->idle[--c->nidle];
        c->curl->easy_reset(h);
        return h;
    }
    return c->curl->easy_init();
}

/* an admitted half-open probe is given back by release_attempt (via finish) */
static void attempt_failed_setup(struct call *k, const char *why)
{
    llmc_set_error(k, SDK_ERROR, 0, why);
    llmc_finish(k, LLM_FAILED);
}

/* The attempt's libcurl options; non-zero when libcurl refused one. */
static int set_options(struct call *k, CURL *h, long timeout_ms)
{
    struct llm_client *c = k->c;
    const struct curl_api *cu = c->curl;
    long connect_ms = (long)(c->cfg.connect_timeout_s * 1000.0);
    int bad = 0;
    bad |= cu->easy_setopt(h, CURLOPT_URL, c->url);
    bad |= cu->easy_setopt(h, CURLOPT_HTTPHEADER, c->headers);
    bad |= cu->easy_setopt(h, CURLOPT_POSTFIELDS, k->req);
    bad |= cu->easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)strlen(k->req));
    bad |= cu->easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    bad |= cu->easy_setopt(h, CURLOPT_WRITEDATA, k);
    bad |= cu->easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    bad |= cu->easy_setopt(h, CURLOPT_HEADERDATA, k);
    bad |= cu->easy_setopt(h, CURLOPT_PRIVATE, k);
    bad |= cu->easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);
    bad |= cu->easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                           connect_ms < timeout_ms ? connect_ms : timeout_ms);
    bad |= cu->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    /* never follow a redirect: it would carry the Authorization header elsewhere */
    bad |= cu->easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L);
    bad |= cu->easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    bad |= cu->easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    bad |= cu->easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    /* over TLS, wait for the HTTP/2 connection and multiplex onto it instead of opening one
     * TLS connection per concurrent call */
    if (!strncasecmp(c->url, "https://", 8))
        bad |= cu->easy_setopt(h, CURLOPT_PIPEWAIT, 1L);
    return bad;
}

/* The call ends here when its deadline passed, its attempts are spent or no model is left
 * (a mock when configured); true then. */
static bool call_over(struct call *k, double now)
{
    struct llm_client *c = k->c;
    if (k->deadline > 0 && now >= k->deadline) {
        llmc_finish_timeout(k, "before the next attempt");
        return true;
    }
    if (k->out->attempts >= c->cfg.max_attempts) {
        char msg[600];
        snprintf(msg, sizeof(msg), "gave up after %u attempts (OPENHANDS_MAX_ATTEMPTS)%s%s",
                 k->out->attempts, k->has_last ? "; last: " : "",
                 k->has_last ? k->last.message : "");
        llmc_set_error(k, k->has_last ? k->last.type : UNKNOWN_ERROR, 0, msg);
        llmc_finish(k, LLM_FAILED);
        return true;
    }
    llmc_skip_unusable(k, now);
    if (k->cur < k->nmodels)
        return false;
    if (!k->has_last || k->out->n_strategies == 0 ||
        k->out->strategies[k->out->n_strategies - 1] != CIRCUIT_BREAK)
        llmc_push_strategy(k, CIRCUIT_BREAK);
    char msg[600];
    snprintf(msg, sizeof(msg), "no model left to ask (circuit open or given up)%s%s",
             k->has_last ? "; last: " : "", k->has_last ? k->last.message : "");
    llmc_set_error(k, k->has_last ? k->last.type : CONNECTION_ERROR, 0, msg);
    if (c->cfg.fallback_to_mock) {
        llmc_push_strategy(k, FALLBACK_MOCK);
        llmc_finish_mock(k);
    } else
        llmc_finish(k, LLM_FAILED);
    return true;
}

/* The model's rate limit and breaker let a request go now: true; else the call waits (or
 * times out waiting) and false. */
static bool model_admits(struct call *k, const char *model, double now)
{
    struct llm_client *c = k->c;
    struct model_state *m = llmc_model_state(c, model);
    double wait = llmc_rate_wait(c, m, now);
    if (wait > 0) {
        if (k->deadline > 0 && now + wait >= k->deadline) {
            llmc_finish_timeout(k, "while waiting for the model's rate limit");
            return false;
        }
        if (wait >= 1) { /* visible: a batch shows it, else a free model just looks hung */
            cJSON *f = cJSON_CreateObject();
            if (f && cJSON_AddStringToObject(f, "model", model))
                cJSON_AddNumberToObject(f, "wait_s", (double)(long)(wait * 10 + 0.5) / 10);
            llmc_emit(k, "rate_limit_wait", f);
        }
        llmc_make_waiting(k, now + wait);
        return false;
    }
    k->ms = m;
    k->admitted = false;
    if (c->cfg.circuit_breaker) {
        enum breaker_state before = m->br.state;
        if (!breaker_allow(&m->br, now)) { /* half-open with every probe taken */
            llmc_make_waiting(k, now + 0.05);
            return false;
        }
        k->admitted = true;
        llmc_breaker_event(k, m, before);
    }
    return true;
}

/* The request built and handed to libcurl's multi: true; else the attempt failed (said). */
static bool send_request(struct call *k, const char *model, double now)
{
    struct llm_client *c = k->c;
    const struct curl_api *cu = c->curl;
    char err[ERR_MSG_MAX];
    k->req = k->messages_json
                 ? llm_request_body_spliced(k->body, k->messages_json, k->messages_len, model,
                                            k->stream, c->cfg.max_tokens, err, sizeof(err))
                 : llm_request_body(k->body, model, k->stream, c->cfg.max_tokens, err, sizeof(err));
    if (!k->req) {
        attempt_failed_setup(k, err);
        return false;
    }
    CURL *h = get_easy(c);
    if (!h) {
        attempt_failed_setup(k, "cannot create a libcurl handle");
        return false;
    }
    double left = c->cfg.llm_timeout_s;
    if (k->deadline > 0 && k->deadline - now < left)
        left = k->deadline - now;
    long timeout_ms = (long)(left * 1000.0);
    if (timeout_ms < 1)
        timeout_ms = 1;
    k->retry_after_hdr = -1;
    k->is_sse = false;
    int bad = set_options(k, h, timeout_ms);
    if (bad) {
        cu->easy_cleanup(h);
        attempt_failed_setup(k, "libcurl refused an option");
        return false;
    }
    CURLMcode mc = cu->multi_add_handle(c->multi, h);
    if (mc != CURLM_OK) {
        cu->easy_cleanup(h);
        attempt_failed_setup(k, cu->multi_strerror(mc));
        return false;
    }
    k->easy = h;
    return true;
}

/* An attempt in flight: counted, the model among those tried, an llm_request event. */
static void record_sent(struct call *k, const char *model, double now)
{
    struct llm_client *c = k->c;
    k->in_flight = true;
    k->attempt_started = now;
    k->out->attempts++;
    c->st.http_requests++;
    if (++c->st.in_flight > c->st.max_in_flight)
        c->st.max_in_flight = c->st.in_flight;
    struct llm_outcome *o = k->out;
    bool seen = false;
    for (int i = 0; i < o->n_models_tried; i++)
        seen |= !strcmp(o->models_tried[i], model);
    if (!seen && o->n_models_tried < LLM_MODELS_TRIED_MAX)
        snprintf(o->models_tried[o->n_models_tried++], LLM_MODEL_NAME_MAX, "%s", model);
    snprintf(o->model, sizeof(o->model), "%s", model);
    cJSON *f = cJSON_CreateObject();
    if (f) {
        cJSON_AddStringToObject(f, "model", model);
        cJSON_AddNumberToObject(f, "attempt", o->attempts);
        cJSON_AddBoolToObject(f, "stream", k->stream);
    }
    llmc_emit(k, "llm_request", f);
}

void llmc_try_attempt(struct call *k)
{
    double now = monotonic_s();
    k->waiting = false;
    if (call_over(k, now))
        return;
    const char *model = k->models[k->cur];
    if (!model_admits(k, model, now) || !send_request(k, model, now))
        return;
    record_sent(k, model, now);
}
