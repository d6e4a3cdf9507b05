/* llm_response: parses a non-streaming chat completion into an llm_reply (the SSE parser
 * produces the same struct). Hostile input: every field is type-checked and sizes bounded;
 * tool-call arguments are kept verbatim as the string the model sent, for the caller to
 * validate. Never sees the API key. */
#ifndef AGENTBOX_LLM_RESPONSE_H
#define AGENTBOX_LLM_RESPONSE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define LLM_RESPONSE_MAX_BYTES (16u << 20)
#define LLM_TOOL_CALLS_MAX     64
#define LLM_MODEL_NAME_MAX     128

struct llm_usage {
    double prompt_tokens, completion_tokens, total_tokens, cost_usd;
};

struct llm_reply {
    cJSON *message; /* {"role":"assistant","content":str|null,"tool_calls":[...]?}; NULL if none */
    char finish_reason[32];
    char model[LLM_MODEL_NAME_MAX];
    bool has_usage;
    struct llm_usage usage;
    cJSON *error; /* the upstream error object when one came inside a 200 (or mid-stream) */
};

/* 0: parsed (reply->error may be set); -1: malformed or empty (err says why). */
int llm_response_parse(const char *body, size_t len, struct llm_reply *reply, char *err,
                       size_t errsz);
/* Parses an error body of a non-2xx answer; returns the "error" object (caller frees) or
 * NULL when the body is not OpenRouter-shaped. */
cJSON *llm_response_error(const char *body, size_t len);
/* A fresh tool-call id for a call the server sent without one (or with ""):
 * "call_" and 16 random hex digits. */
#define LLM_TOOL_CALL_ID_SIZE 24
void llm_tool_call_id(char out[LLM_TOOL_CALL_ID_SIZE]);
/* True when a body is an event stream whatever its Content-Type said: it starts (after
 * a byte order mark and blank space) with "data:", "event:" or a ":" comment line. A JSON
 * body starts with '{' or '[', so the two cannot be confused. */
bool llm_body_is_sse(const char *body, size_t len);
/* usage {"prompt_tokens","completion_tokens","total_tokens","cost"} into u; false if absent. */
bool llm_usage_parse(const cJSON *usage, struct llm_usage *u);
void llm_reply_free(struct llm_reply *reply);
/* cJSON ends a string at a decoded NUL, which would silently cut a model's text short: drops
 * every \u0000 escape from JSON text in place (escape-aware: "\\u0000" is kept). Returns
 * the new length. */
size_t llm_json_drop_nul_escapes(char *text, size_t len);

#endif
