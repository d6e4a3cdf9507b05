/* llm_call: the LLM client's private state, shared by its files and by nobody else: the
 * client (llm_client.c: the public calls, libcurl's socket and timer callbacks), one
 * logical call (struct call), and the steps a call goes through: the per-model breaker and
 * rate limit (llm_models.c), an HTTP attempt (llm_attempt.c), the decision on its outcome
 * (llm_decide.c), finishing (llm_finish.c). The key lives in struct llm_client only; no
 * other file of the tree may include this header. */
#ifndef AGENTBOX_LLM_CALL_H
#define AGENTBOX_LLM_CALL_H

#include <stdbool.h>
#include <stddef.h>

#include "backoff.h"
#include "breaker.h"
#include "curl_dl.h"
#include "llm_classify.h"
#include "llm_client.h"
#include "model_memo.h"
#include "recovery.h"
#include "sse.h"

#define CLIENT_MODELS_MAX 64
/* libcurl's sockets watched at once: one a call in flight (`llm --parallel` at most 10000) */
#define LLM_CLIENT_SOCKS_MAX 65536

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
    bool resp_over_cap; /* the body passed LLM_RESPONSE_MAX_BYTES: the attempt was cut */
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
    int nsocks;
    size_t capsocks; /* at most LLM_CLIENT_SOCKS_MAX */
    struct pollfd *pfds;
    int cappfds;
    double curl_deadline; /* < 0: no libcurl timer */
    CURL *idle[64];       /* easy handles kept for reuse */
    int nidle;
    struct llm_client_stats st;
    struct model_memo memo; /* models found unavailable */
};

/* events (llm_finish.c) */
void llmc_emit(struct call *k, const char *type, cJSON *fields);
cJSON *llmc_usage_json(const struct llm_usage *u);

/* per-model state: breaker, rate limit, models remembered unavailable (llm_models.c) */
struct model_state *llmc_model_state(struct llm_client *c, const char *id);
double llmc_rate_wait(struct llm_client *c, struct model_state *m, double now);
void llmc_breaker_event(struct call *k, struct model_state *m, enum breaker_state before);
void llmc_remember_unavailable(struct call *k, const struct llm_error_info *e, double now);
int llmc_next_model(struct call *k, double now);
void llmc_skip_unusable(struct call *k, double now);

/* finishing a call: its outcome handed to the caller (llm_finish.c) */
void llmc_push_strategy(struct call *k, enum recovery_strategy s);
void llmc_release_attempt(struct call *k);
void llmc_unlink_call(struct call *k);
void llmc_set_error(struct call *k, enum llm_error_type t, long http, const char *msg);
void llmc_finish(struct call *k, enum llm_status status);
void llmc_finish_timeout(struct call *k, const char *when);
void llmc_finish_mock(struct call *k);

/* an attempt: one HTTP request of a call (llm_attempt.c) */
void llmc_make_waiting(struct call *k, double at);
void llmc_try_attempt(struct call *k);

/* what an attempt's outcome means for the call (llm_decide.c) */
void llmc_on_done(struct call *k, CURLcode cc);

#endif
