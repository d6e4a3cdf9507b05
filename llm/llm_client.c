/* llm_client: see llm_client.h. The client's public calls and libcurl's socket and timer
 * callbacks; a call's steps are in llm_models.c, llm_attempt.c, llm_decide.c and
 * llm_finish.c (over llm_call.h). One struct call per logical call; it is either waiting (on
 * a backoff or the rate limiter, in c->waiting) or in flight (an easy handle in the multi).
 * Callbacks fire only from llm_client_step, after the call has left every list, so a
 * callback may start the next call at once. The key lives in c->key and in the header list,
 * both wiped in llm_client_free. */
#include "llm_client.h"
#include "llm_call.h"

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
#include "grow.h"
#include "log.h"
#include "model_memo.h"
#include "sse.h"
#include "util.h"

static const char *const status_names[] = {"succeeded", "failed",  "escalated",
                                           "mock",      "timeout", "condense"};

const char *llm_status_name(enum llm_status s)
{
    return (unsigned)s < ARRAY_SIZE(status_names) ? status_names[s] : "failed";
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
        if (GROW(c->socks, (size_t)c->nsocks, c->capsocks, 64, LLM_CLIENT_SOCKS_MAX) < 0) {
            log_warn("llm: more than %d sockets at once; libcurl's socket refused",
                     LLM_CLIENT_SOCKS_MAX);
            return -1;
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
        llmc_release_attempt(k);
        llmc_unlink_call(k);
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
    llmc_make_waiting(k, k->started);
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
        llmc_set_error(k, UNKNOWN_ERROR, 0, "cancelled");
        llmc_finish(k, LLM_FAILED);
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
            llmc_on_done(k, msg->data.result);
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
        llmc_try_attempt(k);
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
    cJSON_AddItemToObject(j, "usage", llmc_usage_json(&o->usage));
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
