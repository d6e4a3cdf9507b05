/* llm_client: the OpenRouter client of one process: a libcurl multi handle (non-blocking,
 * connection reuse, hundreds of calls in flight on one thread), per-model circuit breakers
 * and rate limits shared by every task of the process, and the recovery chains that turn a
 * failed attempt into a retry, a fallback, a trip, a mock, an escalation or a failure.
 * Holds the only copy of the API key outside config; never passes it to a child, an event,
 * a log line or an outcome (all upstream text is redacted). */
#ifndef AGENTBOX_LLM_CLIENT_H
#define AGENTBOX_LLM_CLIENT_H

#include <cjson/cJSON.h>
#include <poll.h>
#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "events.h"
#include "llm_classify.h"
#include "llm_response.h"
#include "recovery.h"

#define LLM_MODELS_TRIED_MAX 16
#define LLM_STRATEGIES_MAX   64
#define LLM_CALL_MODELS_MAX  16

enum llm_status { LLM_OK, LLM_FAILED, LLM_ESCALATED, LLM_MOCK, LLM_TIMEOUT, LLM_CONDENSE };

struct llm_client;

/* One logical chat call of one task: possibly many HTTP attempts over several models. */
struct llm_call {
    const char *task_id;
    struct event_log *events;  /* may be NULL */
    const cJSON *body;         /* messages, tools, max_tokens...; copied; "model" set per attempt */
    const char *messages_json; /* when set: the messages as validated JSON array text (copied),
                                  spliced into every attempt's body instead of body.messages */
    size_t messages_len;
    const char *const *models; /* IDs, primary then fallbacks; NULL-terminated; copied */
    double deadline_mono;      /* monotonic_s() deadline of the task; 0 = none */
    bool stream;
};

struct llm_outcome {
    enum llm_status status;
    cJSON *message;                 /* the assistant message when OK or MOCK (owned) */
    char *finish_reason;            /* owned; NULL when none */
    char model[LLM_MODEL_NAME_MAX]; /* model that answered (or was asked) last */
    char models_tried[LLM_MODELS_TRIED_MAX][LLM_MODEL_NAME_MAX];
    int n_models_tried;
    struct llm_usage usage; /* summed over every attempt that reported usage */
    unsigned attempts;      /* HTTP requests sent */
    unsigned retries, fallbacks, breaker_trips;
    bool has_error; /* set for every status but OK (and for OK after recovered errors: no) */
    enum llm_error_type error_type;
    long error_http_status;
    char error_message[512]; /* redacted */
    enum recovery_strategy strategies[LLM_STRATEGIES_MAX];
    int n_strategies;
    double elapsed_s;
};

typedef void (*llm_done_fn)(void *opaque, struct llm_outcome *outcome /* callee owns it */);

struct llm_client_stats {
    unsigned long http_requests, calls_started, calls_done, breaker_trips;
    unsigned in_flight, max_in_flight; /* HTTP requests on the wire */
    unsigned pending;                  /* logical calls not yet done */
};

/* Loads libcurl (dlopen) and copies the key. The catalog is not needed here: callers pass
 * resolved model IDs. */
int llm_client_new(const struct agentbox_config *cfg, struct llm_client **out, char *err,
                   size_t errsz);
/* Ends every pending call without firing its callback; wipes the key copy. */
void llm_client_free(struct llm_client *c);

/* Starts a call; `done` fires exactly once, from llm_client_step (never from inside
 * llm_call_start). Returns -1 only for an invalid call (no models, no messages). */
int llm_call_start(struct llm_client *c, const struct llm_call *call, llm_done_fn done,
                   void *opaque, char *err, size_t errsz);
/* Ends every pending call of a task now: its outcome is LLM_FAILED "cancelled". */
void llm_client_cancel(struct llm_client *c, const char *task_id);

/* Event-loop integration. Either call llm_client_step(c, T) alone (it polls libcurl's
 * sockets itself for up to T ms), or put llm_client_poll_fds() into your own poll() with a
 * timeout no longer than llm_client_timeout_ms(), then call llm_client_step(c, 0). */
int llm_client_poll_fds(struct llm_client *c, struct pollfd *fds, int max); /* count needed */
long llm_client_timeout_ms(struct llm_client *c); /* -1: nothing pending */
int llm_client_step(struct llm_client *c, int timeout_ms);
void llm_client_get_stats(const struct llm_client *c, struct llm_client_stats *st);
/* For health and metrics: {"http_requests","calls_started","calls_done","pending",
 * "in_flight","max_in_flight","breaker_trips","models":[{"model","breaker","failures",
 * "trips","rate_limit_rpm","tokens"}]} */
cJSON *llm_client_state_json(const struct llm_client *c);

/* Replaces every run of LLM_KEY_FRAGMENT_MIN or more consecutive characters of key found
 * in text (a prefix, the key minus a character, ...) by "[REDACTED]", in place; exact-match
 * redaction alone would let an upstream that echoes most of the key leak it. Returns true
 * when something was replaced. */
#define LLM_KEY_FRAGMENT_MIN 12
bool llm_redact_key_fragments(char *text, const char *key);

void llm_outcome_free(struct llm_outcome *o);
const char *llm_status_name(enum llm_status s);
/* {"status","model","models_tried","usage","attempts","finish_reason","message",
 *  "error": null | {"type","message","strategies"}, "strategies", "metadata"} */
cJSON *llm_outcome_to_json(const struct llm_outcome *o);

#endif
