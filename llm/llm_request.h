/* llm_request: builds the chat-completions body and headers OpenRouter expects: tools on every
 * turn, max_tokens always, stream_options for usage in streams, usage accounting on. The key goes
 * only into the Authorization header string, never into the body; the caller wipes that string. */
#ifndef AGENTBOX_LLM_REQUEST_H
#define AGENTBOX_LLM_REQUEST_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define LLM_REQUEST_MAX_BYTES (32u << 20)

/* A body for one attempt: a copy of `base` (messages, tools, ...) with "model" set, "stream"
 * and "stream_options" per `stream`, "max_tokens" set to default_max_tokens when absent, and
 * "usage": {"include": true}. Refuses a base without a non-empty messages array. Returns a
 * malloc'd compact JSON string. */
char *llm_request_body(const cJSON *base, const char *model, bool stream,
                       unsigned default_max_tokens, char *err, size_t errsz);

/* The same with the messages given as pre-serialized JSON array text (a supervisor that keeps
 * each task's messages serialized splices them in instead of re-encoding megabytes per
 * attempt); base must then hold no "messages". messages_json must be a JSON array text that
 * the caller has validated. */
char *llm_request_body_spliced(const cJSON *base, const char *messages_json, size_t messages_len,
                               const char *model, bool stream, unsigned default_max_tokens,
                               char *err, size_t errsz);

/* The agent's tools as OpenAI function schemas (execute_bash, str_replace_editor, think,
 * finish), or only `think` when minimal. Caller frees. */
cJSON *llm_request_tools(bool minimal);

/* "Authorization: Bearer KEY" into a malloc'd string the caller must explicit_bzero. */
char *llm_request_auth_header(const char *key);

#endif
