/* broker: the supervisor's side of an agent's LLM calls. A cell asks for a chat call with
 * nothing but its messages; the broker adds what only the trusted side decides (the task's
 * model chain, tools, max_tokens, the key inside the HTTP client) and runs the recovery
 * machinery, whose state (breakers, rate limits) is shared by every task of the process.
 * Two sources: the live OpenRouter client, or a replay file of recorded replies (offline,
 * labelled as such in every outcome). Never passes the key or the client's state to a cell. */
#ifndef AGENTBOX_BROKER_H
#define AGENTBOX_BROKER_H

#include <cjson/cJSON.h>
#include <poll.h>
#include <stdbool.h>

#include "config.h"
#include "events.h"

struct broker;

struct broker_call {
    const char *task_id;
    struct event_log *events;
    const char *messages_json; /* the messages as a JSON array text, validated by the
                                  caller (borrowed; the client copies it) */
    size_t messages_len;
    bool native_tools;         /* send the tool schemas (else they are in the prompt) */
    const char *const *models; /* primary then fallbacks, NULL-terminated */
    unsigned max_tokens;       /* per reply */
    double deadline_mono;      /* the task's deadline */
};

/* The outcome handed to the done callback (owned by the callee) is a JSON object:
 * {"status": "ok"|"failed"|"escalated"|"mock"|"timeout"|"condense",
 *  "message": {...} (ok/mock), "model", "models_tried", "finish_reason",
 *  "usage": {"prompt_tokens","completion_tokens","total_tokens","cost_usd"},
 *  "error": null | {"type","message","strategies"}} */
typedef void (*broker_done_fn)(void *opaque, cJSON *outcome);

/* An outcome that carries only an error: {"status", "error": {"type", "message",
 * "strategies": []}} (refusals, cancellations, an exhausted replay). */
cJSON *broker_error_outcome(const char *status, const char *type, const char *message);
/* The error object alone (the result's error), strategies copied when given. */
cJSON *broker_error_object(const char *type, const char *message, const cJSON *strategies);

int broker_new_live(const struct agentbox_config *cfg, struct broker **out, char *err,
                    size_t errsz);
/* Replay file: {"description": str, "replies": [assistant message, ...]} where each reply is
 * {"content": str|null, "tool_calls": [...], "usage": {...}?}. Each call of a task takes
 * that task's next reply: every task replays the file from its start. */
int broker_new_replay(const char *path, struct broker **out, char *err, size_t errsz);
void broker_free(struct broker *b);
bool broker_is_replay(const struct broker *b);
const char *broker_replay_path(const struct broker *b);

/* done fires exactly once, always from broker_step, never from inside broker_call. */
int broker_call(struct broker *b, const struct broker_call *call, broker_done_fn done, void *opaque,
                char *err, size_t errsz);
void broker_cancel_task(struct broker *b, const char *task_id);
int broker_poll_fds(struct broker *b, struct pollfd *fds, int max);
long broker_timeout_ms(struct broker *b); /* -1: nothing pending */
int broker_step(struct broker *b);        /* non-blocking: performs and fires callbacks */

#endif
