/* llm_client: see llm_client.h. One struct call per logical call; it is either waiting (on
 * a backoff or the rate limiter, in c->waiting) or in flight (an easy handle in the multi).
 * Callbacks fire only from llm_client_step, after the call has left every list, so a
 * callback may start the next call at once. The key lives in c->key and in the header list,
 * both wiped in llm_client_free. */
#include "llm_client.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "backoff.h"
#include "breaker.h"
#include "curl_dl.h"
#include "llm_request.h"
#include "log.h"
#include "model_memo.h"
#include "sse.h"
#include "util.h"

#define CLIENT_MODELS_MAX 64

struct model_state {
    char id[LLM_MODEL_NAME_MAX];
    struct breaker br;
    double rpm, tokens, refilled_at;
};

struct call {
    struct llm_client *c;
    struct call *prev, *next; /* c->calls: every pending call */
    char task_id[128];
    struct event_log *events;
    cJSON *body;
    char *messages_json; /* pre-serialized messages, or NULL */
    size_t messages_len;
    char models[LLM_CALL_MODELS_MAX][LLM_MODEL_NAME_MAX];
    bool dead[LLM_CALL_MODELS_MAX]; /* fallen back from, tripped or unavailable */
    int nmodels, cur;
    double deadline, started, wake_at;
    bool stream, in_flight, waiting;
    llm_done_fn done;
    void *opaque;
    struct recovery_cursor cursor;
    struct llm_outcome *out;
    struct llm_error_info last; /* last classified error */
    bool has_last;
    /* the attempt in flight */
    CURL *easy;
    char *req;
    struct sse_buf resp;
    struct sse_parser sse;
    bool is_sse, admitted;
    double retry_after_hdr, attempt_started;
    struct model_state *ms;
};

struct sock {
    curl_socket_t fd;
    int what;
};

struct llm_client {
    const struct curl_api *curl;
    CURLM *multi;
    struct curl_slist *headers; /* holds the Authorization header: wiped before free */
    char *key;
    struct agentbox_config cfg; /* copy; cfg.api_key is NULL here */
    char url[CONFIG_URL_MAX + 32];
    struct backoff_params bp;
    struct breaker_params brp;
    struct model_state models[CLIENT_MODELS_MAX];
    int nmodels;
    struct call *calls;
    struct sock *socks;
    int nsocks, capsocks;
    struct pollfd *pfds;
    int cappfds;
    double curl_deadline; /* < 0: no libcurl timer */
    CURL *idle[64];       /* easy handles kept for reuse */
    int nidle;
    struct llm_client_stats st;
    struct model_memo memo; /* models found unavailable */
};

static const char *const status_names[] = {"succeeded", "failed",  "escalated",
                                           "mock",      "timeout", "condense"};

const char *llm_status_name(enum llm_status s)
{
    return (unsigned)s < ARRAY_SIZE(status_names) ? status_names[s] : "failed";
}

/* ---------- events ---------- */

static void emit(struct call *k, const char *type, cJSON *fields)
{
    if (k->events)
        (void)events_emit(k->events, type, fields);
    else
        cJSON_Delete(fields);
}

static cJSON *usage_json(const struct llm_usage *u)
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

/* ---------- per-model state: breaker and rate limit, shared by every call ---------- */

static bool is_free_model(const char *id)
{
    size_t l = strlen(id);
    return (l > 5 && !strcmp(id + l - 5, ":free")) || !strcmp(id, "openrouter/free");
}

static struct model_state *model_state(struct llm_client *c, const char *id)
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
static double rate_wait(struct llm_client *c, struct model_state *m, double now)
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

static void breaker_event(struct call *k, struct model_state *m, enum breaker_state before)
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
    emit(k, "circuit_state", f);
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
static void remember_unavailable(struct call *k, const struct llm_error_info *e, double now)
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

static int next_model(struct call *k, double now)
{
    for (int j = k->cur + 1; j < k->nmodels; j++)
        if (!k->dead[j] && model_usable(k->c, k->models[j], now))
            return j;
    return -1;
}

/* ---------- finishing ---------- */

static void push_strategy(struct call *k, enum recovery_strategy s)
{
    if (s != STRAT_NONE && k->out->n_strategies < LLM_STRATEGIES_MAX)
        k->out->strategies[k->out->n_strategies++] = s;
}

static void release_attempt(struct call *k)
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
}

static void unlink_call(struct call *k)
{
    if (k->prev)
        k->prev->next = k->next;
    else
        k->c->calls = k->next;
    if (k->next)
        k->next->prev = k->prev;
    k->prev = k->next = NULL;
}

static void set_error(struct call *k, enum llm_error_type t, long http, const char *msg)
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

static void finish(struct call *k, enum llm_status status)
{
    struct llm_client *c = k->c;
    release_attempt(k);
    unlink_call(k);
    struct llm_outcome *o = k->out;
    o->status = status;
    o->elapsed_s = monotonic_s() - k->started;
    if (status != LLM_OK && !o->has_error) {
        if (k->has_last)
            set_error(k, k->last.type, k->last.http_status, k->last.message);
        else
            set_error(k, UNKNOWN_ERROR, 0, "no model could be asked");
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

static void finish_timeout(struct call *k, const char *when)
{
    char msg[400];
    snprintf(msg, sizeof(msg), "the task's deadline passed %s%s%s", when,
             k->has_last ? "; last error: " : "",
             k->has_last ? llm_error_type_name(k->last.type) : "");
    set_error(k, TIMEOUT_ERROR, 0, msg);
    finish(k, LLM_TIMEOUT);
}

static void finish_mock(struct call *k)
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
    finish(k, LLM_MOCK);
}

/* ---------- attempts ---------- */

static void make_waiting(struct call *k, double at)
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
    if (k->resp.len + len > LLM_RESPONSE_MAX_BYTES)
        return 0; /* CURLE_WRITE_ERROR: classified as SDK_ERROR */
    if (k->resp.len + len + 1 > k->resp.cap) {
        size_t cap = k->resp.cap ? k->resp.cap : 4096;
        while (cap < k->resp.len + len + 1)
            cap *= 2;
        char *p = realloc(k->resp.p, cap);
        if (!p)
            return 0;
        k->resp.p = p;
        k->resp.cap = cap;
    }
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

static void try_attempt(struct call *k);

/* an admitted half-open probe is given back by release_attempt (via finish) */
static void attempt_failed_setup(struct call *k, const char *why)
{
    set_error(k, SDK_ERROR, 0, why);
    finish(k, LLM_FAILED);
}

/* Moves k->cur past models this call gave up on, models whose breaker is open and models
 * found unavailable before (each passed-over model is a model_fallback event). */
static void skip_unusable(struct call *k, double now)
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
                push_strategy(k, FALLBACK_MODEL);
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
            emit(k, "model_fallback", f);
        }
    }
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

static void try_attempt(struct call *k)
{
    struct llm_client *c = k->c;
    const struct curl_api *cu = c->curl;
    double now = monotonic_s();
    k->waiting = false;
    if (k->deadline > 0 && now >= k->deadline) {
        finish_timeout(k, "before the next attempt");
        return;
    }
    if (k->out->attempts >= c->cfg.max_attempts) {
        char msg[600];
        snprintf(msg, sizeof(msg), "gave up after %u attempts (OPENHANDS_MAX_ATTEMPTS)%s%s",
                 k->out->attempts, k->has_last ? "; last: " : "",
                 k->has_last ? k->last.message : "");
        set_error(k, k->has_last ? k->last.type : UNKNOWN_ERROR, 0, msg);
        finish(k, LLM_FAILED);
        return;
    }
    skip_unusable(k, now);
    if (k->cur >= k->nmodels) {
        if (!k->has_last || k->out->n_strategies == 0 ||
            k->out->strategies[k->out->n_strategies - 1] != CIRCUIT_BREAK)
            push_strategy(k, CIRCUIT_BREAK);
        char msg[600];
        snprintf(msg, sizeof(msg), "no model left to ask (circuit open or given up)%s%s",
                 k->has_last ? "; last: " : "", k->has_last ? k->last.message : "");
        set_error(k, k->has_last ? k->last.type : CONNECTION_ERROR, 0, msg);
        if (c->cfg.fallback_to_mock) {
            push_strategy(k, FALLBACK_MOCK);
            finish_mock(k);
        } else
            finish(k, LLM_FAILED);
        return;
    }
    const char *model = k->models[k->cur];
    struct model_state *m = model_state(c, model);
    double wait = rate_wait(c, m, now);
    if (wait > 0) {
        if (k->deadline > 0 && now + wait >= k->deadline) {
            finish_timeout(k, "while waiting for the model's rate limit");
            return;
        }
        if (wait >= 1) { /* visible: a batch shows it, else a free model just looks hung */
            cJSON *f = cJSON_CreateObject();
            if (f && cJSON_AddStringToObject(f, "model", model))
                cJSON_AddNumberToObject(f, "wait_s", (double)(long)(wait * 10 + 0.5) / 10);
            emit(k, "rate_limit_wait", f);
        }
        make_waiting(k, now + wait);
        return;
    }
    k->ms = m;
    k->admitted = false;
    if (c->cfg.circuit_breaker) {
        enum breaker_state before = m->br.state;
        if (!breaker_allow(&m->br, now)) { /* half-open with every probe taken */
            make_waiting(k, now + 0.05);
            return;
        }
        k->admitted = true;
        breaker_event(k, m, before);
    }
    char err[ERR_MSG_MAX];
    k->req = k->messages_json
                 ? llm_request_body_spliced(k->body, k->messages_json, k->messages_len, model,
                                            k->stream, c->cfg.max_tokens, err, sizeof(err))
                 : llm_request_body(k->body, model, k->stream, c->cfg.max_tokens, err, sizeof(err));
    if (!k->req) {
        attempt_failed_setup(k, err);
        return;
    }
    CURL *h = get_easy(c);
    if (!h) {
        attempt_failed_setup(k, "cannot create a libcurl handle");
        return;
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
        return;
    }
    CURLMcode mc = cu->multi_add_handle(c->multi, h);
    if (mc != CURLM_OK) {
        cu->easy_cleanup(h);
        attempt_failed_setup(k, cu->multi_strerror(mc));
        return;
    }
    k->easy = h;
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
    emit(k, "llm_request", f);
}

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
        breaker_event(k, k->ms, before);
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
            cJSON_AddItemToObject(f, "usage", usage_json(&r->usage));
    }
    emit(k, "llm_response", f);
    finish(k, LLM_OK);
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
        bool have_next = !capped && next_model(k, now) >= 0;
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
        emit(k, "llm_error", f);
        push_strategy(k, d.strategy);
        switch (d.action) {
        case ACT_RETRY:
            k->out->retries++;
            if (k->deadline > 0 && now + delay >= k->deadline) {
                finish_timeout(k, "before the retry was due");
                return;
            }
            make_waiting(k, now + delay);
            return;
        case ACT_FALLBACK: {
            int to = next_model(k, now);
            if (to < 0) {
                finish(k, LLM_FAILED);
                return;
            }
            k->out->fallbacks++;
            cJSON *g = cJSON_CreateObject();
            if (g) {
                cJSON_AddStringToObject(g, "from", k->models[k->cur]);
                cJSON_AddStringToObject(g, "to", k->models[to]);
                cJSON_AddStringToObject(g, "reason", llm_error_type_name(e->type));
            }
            emit(k, "model_fallback", g);
            k->dead[k->cur] = true;
            k->cur = to;
            recovery_cursor_reset(&k->cursor);
            make_waiting(k, now);
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
            finish_mock(k);
            return;
        case ACT_ESCALATE: {
            char msg[600];
            snprintf(msg, sizeof(msg), "escalated to a human: %s", e->message);
            set_error(k, e->type, e->http_status, msg);
            finish(k, LLM_ESCALATED);
            return;
        }
        case ACT_CONDENSE:
            set_error(k, e->type, e->http_status, e->message);
            finish(k, LLM_CONDENSE);
            return;
        case ACT_FAIL:
            if (capped) {
                char msg[600];
                snprintf(msg, sizeof(msg),
                         "gave up after %u attempts (OPENHANDS_MAX_ATTEMPTS); last: %s",
                         k->out->attempts, e->message);
                set_error(k, e->type, e->http_status, msg);
            }
            finish(k, LLM_FAILED);
            return;
        }
    }
    finish(k, LLM_FAILED);
}

static void on_done(struct call *k, CURLcode cc)
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
        if (cc != CURLE_OK)
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
        breaker_event(k, k->ms, before);
    }
    remember_unavailable(k, &e, now);
    k->last = e;
    k->has_last = true;
    release_attempt(k);
    if (cut) {
        char when[LLM_MODEL_NAME_MAX + 32];
        snprintf(when, sizeof(when), "during the call to %s", k->models[k->cur]);
        finish_timeout(k, when);
        return;
    }
    decide(k, &e);
}

/* ---------- libcurl's socket and timer callbacks ---------- */

static int on_socket(CURL *easy, curl_socket_t fd, int what, void *opaque, void *sockp)
{
    (void)easy;
    (void)sockp;
    struct llm_client *c = opaque;
    int i;
    for (i = 0; i < c->nsocks; i++)
        if (c->socks[i].fd == fd)
            break;
    if (what == CURL_POLL_REMOVE) {
        if (i < c->nsocks)
            c->socks[i] = c->socks[--c->nsocks];
        return 0;
    }
    if (i == c->nsocks) {
        if (c->nsocks == c->capsocks) {
            int cap = c->capsocks ? c->capsocks * 2 : 64;
            struct sock *p = realloc(c->socks, (size_t)cap * sizeof(*p));
            if (!p)
                return -1;
            c->socks = p;
            c->capsocks = cap;
        }
        c->socks[c->nsocks++].fd = fd;
    }
    c->socks[i].what = what;
    return 0;
}

static int on_timer(CURLM *multi, long timeout_ms, void *opaque)
{
    (void)multi;
    struct llm_client *c = opaque;
    c->curl_deadline = timeout_ms < 0 ? -1 : monotonic_s() + (double)timeout_ms / 1000.0;
    return 0;
}

/* ---------- public ---------- */

int llm_client_new(const struct agentbox_config *cfg, struct llm_client **out, char *err,
                   size_t errsz)
{
    const struct curl_api *cu = curl_dl_load(err, errsz);
    if (!cu)
        return -1;
    struct llm_client *c = calloc(1, sizeof(*c));
    if (!c)
        return errf(err, errsz, "out of memory");
    c->curl = cu;
    c->cfg = *cfg;
    c->cfg.api_key = NULL;
    c->curl_deadline = -1;
    snprintf(c->url, sizeof(c->url), "%s/chat/completions", cfg->base_url);
    c->bp = (struct backoff_params){cfg->retry_base_s, cfg->retry_max_s, cfg->retry_after_max_s};
    c->brp = (struct breaker_params){cfg->breaker_failures, cfg->breaker_open_s,
                                     cfg->breaker_half_open_calls, cfg->breaker_successes};
    c->multi = cu->multi_init();
    if (!c->multi) {
        free(c);
        return errf(err, errsz, "curl_multi_init failed");
    }
    long maxconn = (long)cfg->max_connections;
    if (cu->multi_setopt(c->multi, CURLMOPT_SOCKETFUNCTION, on_socket) ||
        cu->multi_setopt(c->multi, CURLMOPT_SOCKETDATA, c) ||
        cu->multi_setopt(c->multi, CURLMOPT_TIMERFUNCTION, on_timer) ||
        cu->multi_setopt(c->multi, CURLMOPT_TIMERDATA, c) ||
        cu->multi_setopt(c->multi, CURLMOPT_MAXCONNECTS, maxconn) ||
        cu->multi_setopt(c->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, maxconn)) {
        llm_client_free(c);
        return errf(err, errsz, "libcurl refused a multi option");
    }
    struct curl_slist *h = NULL;
    if (cfg->api_key) {
        c->key = strdup(cfg->api_key);
        char *auth = c->key ? llm_request_auth_header(c->key) : NULL;
        if (!auth) {
            llm_client_free(c);
            return errf(err, errsz, "out of memory");
        }
        h = cu->slist_append(h, auth);
        explicit_bzero(auth, strlen(auth));
        free(auth);
        c->headers = h;
        if (!h) {
            llm_client_free(c);
            return errf(err, errsz, "out of memory");
        }
    }
    char line[CONFIG_URL_MAX + 32];
    const char *fixed[4] = {"Content-Type: application/json", "Expect:", NULL, NULL};
    char title[CONFIG_MODEL_MAX + 16];
    if (cfg->http_referer[0]) {
        snprintf(line, sizeof(line), "HTTP-Referer: %s", cfg->http_referer);
        fixed[2] = line;
    }
    if (cfg->app_title[0]) {
        snprintf(title, sizeof(title), "X-Title: %s", cfg->app_title);
        fixed[3] = title;
    }
    for (size_t i = 0; i < ARRAY_SIZE(fixed); i++) {
        if (!fixed[i])
            continue;
        struct curl_slist *n = cu->slist_append(c->headers, fixed[i]);
        if (!n) {
            llm_client_free(c);
            return errf(err, errsz, "out of memory");
        }
        c->headers = n;
    }
    *out = c;
    return 0;
}

void llm_client_free(struct llm_client *c)
{
    if (!c)
        return;
    while (c->calls) {
        struct call *k = c->calls;
        k->admitted = false;
        release_attempt(k);
        unlink_call(k);
        llm_outcome_free(k->out);
        cJSON_Delete(k->body);
        free(k->messages_json);
        free(k);
    }
    for (int i = 0; i < c->nidle; i++)
        c->curl->easy_cleanup(c->idle[i]);
    if (c->multi)
        (void)c->curl->multi_cleanup(c->multi);
    for (struct curl_slist *s = c->headers; s; s = s->next)
        if (s->data)
            explicit_bzero(s->data, strlen(s->data));
    if (c->headers)
        c->curl->slist_free_all(c->headers);
    if (c->key) {
        explicit_bzero(c->key, strlen(c->key));
        free(c->key);
    }
    free(c->socks);
    free(c->pfds);
    explicit_bzero(c, sizeof(*c));
    free(c);
}

int llm_call_start(struct llm_client *c, const struct llm_call *call, llm_done_fn done,
                   void *opaque, char *err, size_t errsz)
{
    if (!done)
        return errf(err, errsz, "llm_call_start: no callback");
    if (!call->models || !call->models[0])
        return errf(err, errsz, "llm call: no model to ask");
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(call->body, "messages");
    if (!cJSON_IsObject(call->body))
        return errf(err, errsz, "llm call: body must be an object");
    if (call->messages_json ? call->messages_len < 2
                            : !cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0)
        return errf(err, errsz, "llm call: body.messages must be a non-empty array");
    struct call *k = calloc(1, sizeof(*k));
    struct llm_outcome *o = calloc(1, sizeof(*o));
    cJSON *body = cJSON_Duplicate(call->body, true);
    if (!k || !o || !body) {
        free(k);
        free(o);
        cJSON_Delete(body);
        return errf(err, errsz, "out of memory");
    }
    for (int i = 0; call->models[i] && k->nmodels < LLM_CALL_MODELS_MAX; i++) {
        if (strlen(call->models[i]) >= LLM_MODEL_NAME_MAX || !call->models[i][0]) {
            free(k);
            free(o);
            cJSON_Delete(body);
            return errf(err, errsz, "llm call: model name empty or too long");
        }
        snprintf(k->models[k->nmodels++], LLM_MODEL_NAME_MAX, "%s", call->models[i]);
    }
    if (call->messages_json) {
        k->messages_json = malloc(call->messages_len + 1);
        if (!k->messages_json) {
            free(k);
            free(o);
            cJSON_Delete(body);
            return errf(err, errsz, "out of memory");
        }
        memcpy(k->messages_json, call->messages_json, call->messages_len);
        k->messages_json[call->messages_len] = '\0';
        k->messages_len = call->messages_len;
    }
    k->c = c;
    k->body = body;
    k->out = o;
    snprintf(k->task_id, sizeof(k->task_id), "%s", call->task_id ? call->task_id : "");
    k->events = call->events;
    k->deadline = call->deadline_mono;
    k->stream = call->stream;
    k->done = done;
    k->opaque = opaque;
    k->started = monotonic_s();
    o->error_type = UNKNOWN_ERROR;
    snprintf(o->model, sizeof(o->model), "%s", k->models[0]);
    k->next = c->calls;
    if (c->calls)
        c->calls->prev = k;
    c->calls = k;
    c->st.calls_started++;
    c->st.pending++;
    make_waiting(k, k->started);
    return 0;
}

void llm_client_cancel(struct llm_client *c, const char *task_id)
{
    for (;;) {
        struct call *k = c->calls;
        while (k && strcmp(k->task_id, task_id) != 0)
            k = k->next;
        if (!k)
            return;
        set_error(k, UNKNOWN_ERROR, 0, "cancelled");
        finish(k, LLM_FAILED);
    }
}

int llm_client_poll_fds(struct llm_client *c, struct pollfd *fds, int max)
{
    for (int i = 0; i < c->nsocks && i < max; i++) {
        fds[i].fd = c->socks[i].fd;
        fds[i].events = (short)(((c->socks[i].what & CURL_POLL_IN) ? POLLIN : 0) |
                                ((c->socks[i].what & CURL_POLL_OUT) ? POLLOUT : 0));
        fds[i].revents = 0;
    }
    return c->nsocks;
}

long llm_client_timeout_ms(struct llm_client *c)
{
    double now = monotonic_s(), next = -1;
    if (c->curl_deadline >= 0)
        next = c->curl_deadline;
    for (struct call *k = c->calls; k; k = k->next)
        if (k->waiting && (next < 0 || k->wake_at < next))
            next = k->wake_at;
    if (next < 0)
        return -1;
    double ms = (next - now) * 1000.0;
    return ms <= 0 ? 0 : (long)ms + 1;
}

static void drain_messages(struct llm_client *c)
{
    CURLMsg *msg;
    int left;
    while ((msg = c->curl->multi_info_read(c->multi, &left))) {
        if (msg->msg != CURLMSG_DONE)
            continue;
        struct call *k = NULL;
        (void)c->curl->easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, (char **)&k);
        if (k)
            on_done(k, msg->data.result);
    }
}

int llm_client_step(struct llm_client *c, int timeout_ms)
{
    long t = llm_client_timeout_ms(c);
    int wait = timeout_ms;
    if (t >= 0 && (wait < 0 || t < wait))
        wait = (int)t;
    if (c->cappfds < c->nsocks) {
        struct pollfd *p = realloc(c->pfds, (size_t)c->nsocks * sizeof(*p));
        if (!p)
            return -1;
        c->pfds = p;
        c->cappfds = c->nsocks;
    }
    int n = llm_client_poll_fds(c, c->pfds, c->cappfds);
    if (n == 0 && wait < 0)
        return 0; /* nothing to wait for */
    int r = poll(c->pfds, (nfds_t)n, wait);
    if (r < 0 && errno != EINTR)
        return -1;
    int running;
    for (int i = 0; r > 0 && i < n; i++) {
        short re = c->pfds[i].revents;
        if (!re)
            continue;
        int ev = ((re & POLLIN) ? CURL_CSELECT_IN : 0) | ((re & POLLOUT) ? CURL_CSELECT_OUT : 0) |
                 ((re & (POLLERR | POLLHUP | POLLNVAL)) ? CURL_CSELECT_ERR : 0);
        (void)c->curl->multi_socket_action(c->multi, c->pfds[i].fd, ev, &running);
    }
    double now = monotonic_s();
    if (c->curl_deadline >= 0 && now >= c->curl_deadline) {
        c->curl_deadline = -1;
        (void)c->curl->multi_socket_action(c->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    drain_messages(c);
    /* calls whose wait is over; restart the scan after each, since an attempt or a callback
     * can add and remove calls */
    for (;;) {
        now = monotonic_s();
        struct call *k = c->calls;
        while (k && !(k->waiting && (k->wake_at <= now || (k->deadline > 0 && now >= k->deadline))))
            k = k->next;
        if (!k)
            break;
        try_attempt(k);
    }
    drain_messages(c);
    return 0;
}

void llm_client_get_stats(const struct llm_client *c, struct llm_client_stats *st)
{
    *st = c->st;
}

cJSON *llm_client_state_json(const struct llm_client *c)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddNumberToObject(j, "http_requests", (double)c->st.http_requests);
    cJSON_AddNumberToObject(j, "calls_started", (double)c->st.calls_started);
    cJSON_AddNumberToObject(j, "calls_done", (double)c->st.calls_done);
    cJSON_AddNumberToObject(j, "pending", c->st.pending);
    cJSON_AddNumberToObject(j, "in_flight", c->st.in_flight);
    cJSON_AddNumberToObject(j, "max_in_flight", c->st.max_in_flight);
    cJSON_AddNumberToObject(j, "breaker_trips", (double)c->st.breaker_trips);
    cJSON_AddBoolToObject(j, "circuit_breaker", c->cfg.circuit_breaker);
    cJSON *arr = cJSON_AddArrayToObject(j, "models");
    for (int i = 0; arr && i < c->nmodels; i++) {
        const struct model_state *m = &c->models[i];
        cJSON *o = cJSON_CreateObject();
        if (!o)
            break;
        cJSON_AddStringToObject(o, "model", m->id);
        cJSON_AddStringToObject(o, "breaker", breaker_state_name(m->br.state));
        cJSON_AddNumberToObject(o, "failures", m->br.failures);
        cJSON_AddNumberToObject(o, "trips", m->br.trips);
        cJSON_AddNumberToObject(o, "rate_limit_rpm", m->rpm);
        cJSON_AddNumberToObject(o, "tokens", m->tokens);
        cJSON_AddItemToArray(arr, o);
    }
    return j;
}

void llm_outcome_free(struct llm_outcome *o)
{
    if (!o)
        return;
    cJSON_Delete(o->message);
    free(o->finish_reason);
    free(o);
}

cJSON *llm_outcome_to_json(const struct llm_outcome *o)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "status", llm_status_name(o->status));
    cJSON_AddBoolToObject(j, "success", o->status == LLM_OK);
    cJSON_AddStringToObject(j, "model", o->model);
    cJSON *mt = cJSON_AddArrayToObject(j, "models_tried");
    for (int i = 0; mt && i < o->n_models_tried; i++)
        cJSON_AddItemToArray(mt, cJSON_CreateString(o->models_tried[i]));
    cJSON_AddItemToObject(j, "usage", usage_json(&o->usage));
    cJSON_AddNumberToObject(j, "attempts", o->attempts);
    cJSON_AddNumberToObject(j, "retries", o->retries);
    cJSON_AddNumberToObject(j, "fallbacks", o->fallbacks);
    cJSON_AddNumberToObject(j, "breaker_trips", o->breaker_trips);
    if (o->finish_reason)
        cJSON_AddStringToObject(j, "finish_reason", o->finish_reason);
    else
        cJSON_AddNullToObject(j, "finish_reason");
    if (o->message)
        cJSON_AddItemToObject(j, "message", cJSON_Duplicate(o->message, true));
    else
        cJSON_AddNullToObject(j, "message");
    cJSON *strategies = cJSON_CreateArray();
    for (int i = 0; strategies && i < o->n_strategies; i++)
        cJSON_AddItemToArray(strategies,
                             cJSON_CreateString(recovery_strategy_name(o->strategies[i])));
    if (o->has_error) {
        cJSON *e = cJSON_AddObjectToObject(j, "error");
        if (e) {
            cJSON_AddStringToObject(e, "type", llm_error_type_name(o->error_type));
            cJSON_AddStringToObject(e, "message", o->error_message);
            if (o->error_http_status)
                cJSON_AddNumberToObject(e, "http_status", (double)o->error_http_status);
            cJSON_AddItemToObject(e, "strategies", cJSON_Duplicate(strategies, true));
        }
    } else
        cJSON_AddNullToObject(j, "error");
    cJSON_AddItemToObject(j, "strategies", strategies);
    if (o->status == LLM_CONDENSE)
        cJSON_AddBoolToObject(j, "condense", true);
    cJSON *meta = cJSON_AddObjectToObject(j, "metadata");
    if (meta && o->status == LLM_MOCK)
        cJSON_AddBoolToObject(meta, "mock", true);
    cJSON_AddNumberToObject(j, "elapsed_s", o->elapsed_s);
    return j;
}
