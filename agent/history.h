/* history: the conversation of one task as OpenAI chat messages, its size estimate and its
 * condensation. Owns every message (cJSON) and, per message, its serialized JSON text, so
 * the per-step request body is one memcpy per message instead of a 2 MB re-serialization.
 * Never splits an assistant tool_call message from its tool results; never drops the
 * system message, the task message or the most recent turns. */
#ifndef AGENTBOX_HISTORY_H
#define AGENTBOX_HISTORY_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define HISTORY_MAX_MESSAGES        100000
#define HISTORY_CONDENSE_MIN_CHARS  200 /* shorter observations are not worth condensing */
#define HISTORY_ARGS_CONDENSE_CHARS 1000
#define HISTORY_MSG_OVERHEAD_TOKENS 4

struct history;

/* Optional per-message rewrite applied when a message is serialized for requests (e.g.
 * fncall_text_convert_message for models without native tool calling). Returns a new
 * message or NULL (then the original is used). */
typedef cJSON *(*history_transform_fn)(const cJSON *msg, void *ctx);

struct history *history_new(void);
void history_free(struct history *h);
/* Sets the transform and re-serializes every message. */
int history_set_transform(struct history *h, history_transform_fn fn, void *ctx);

/* Appending. All return 0 or -1 (out of memory, or a malformed message). */
int history_add_system(struct history *h, const char *text);
int history_add_user(struct history *h, const char *text);
/* content may be NULL; tool_calls (an array in OpenAI format) may be NULL and is copied,
 * normalized by wire_calls_normalize: a missing, empty or repeated id is replaced by one
 * unique in this conversation, arguments that are not a JSON object are kept as text inside
 * {"invalid_json": "..."}. The stored calls (history_message of the last index) carry the
 * ids the tool results must answer. */
int history_add_assistant(struct history *h, const char *content, const cJSON *tool_calls);
int history_add_tool_result(struct history *h, const char *tool_call_id, const char *name,
                            const char *content);
/* Any message object with a string "role"; takes ownership of msg (also on failure). */
int history_add_message(struct history *h, cJSON *msg);

size_t history_count(const struct history *h);
const cJSON *history_message(const struct history *h, size_t i);
/* Bytes of the serialized messages array. */
size_t history_chars(const struct history *h);
/* Estimated prompt tokens of the messages: ~4 ASCII bytes per token, one token per non-ASCII
 * character, a few per message. Cached: O(1). */
size_t history_tokens(const struct history *h);

struct history_condense_stats {
    size_t observations_condensed; /* tool results replaced by a placeholder */
    size_t arguments_condensed;    /* large tool-call arguments replaced */
    size_t messages_dropped;       /* whole old turns removed */
    size_t tokens_before, tokens_after;
};

/* If history_tokens() > budget_tokens, condenses the oldest unprotected messages (first
 * observations, then large call arguments, then whole turns) until it fits. keep_turns is
 * how many of the latest assistant turns stay untouched (at least 1). Returns 0 when the
 * history now fits (stats say what was done; all zero if nothing was needed), 1 when it
 * still does not fit after condensing everything allowed, -1 when out of memory. */
int history_condense(struct history *h, size_t budget_tokens, size_t keep_turns,
                     struct history_condense_stats *stats);

/* The request body: the members of params (model, tools, temperature, ...) followed by
 * "messages". malloc'd, NUL-terminated; *len gets its length. NULL when out of memory. */
char *history_build_request(const struct history *h, const cJSON *params, size_t *len);
/* The same, in a buffer the history owns and reuses (the per-step hot path): valid until
 * the next call or history_free. NULL when out of memory. */
const char *history_request(struct history *h, const cJSON *params, size_t *len);
/* Message i as sent in requests (serialized, transformed); NULL past the end. Valid until
 * the history changes. */
const char *history_message_text(const struct history *h, size_t i, size_t *len);
/* A copy of the messages as a cJSON array (untransformed). */
cJSON *history_to_json(const struct history *h);

#endif
