/* wire_calls: the tool calls of an assistant message made fit for the history that goes back
 * to the server: every call gets an id unique within the conversation (a missing, empty or
 * repeated id is replaced) and arguments that are valid JSON object text (anything else is
 * kept, verbatim, inside {"invalid_json": "..."}). Strict OpenAI-compatible servers answer
 * 400 to a history with duplicate ids or unparseable arguments. Never drops or reorders a
 * call: the i-th normalized call is the i-th call of the reply. */
#ifndef AGENTBOX_WIRE_CALLS_H
#define AGENTBOX_WIRE_CALLS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#define WIRE_ID_MAX          64 /* longer ids are replaced too */
#define WIRE_INVALID_ARG_KEY "invalid_json"

/* The ids a conversation has used so far, and the counter for generated ones. */
struct wire_ids {
    char **ids;
    size_t n, cap;
    unsigned long next;
};

void wire_ids_free(struct wire_ids *s);
bool wire_ids_has(const struct wire_ids *s, const char *id);
/* Generated ids are 9 characters [a-z0-9] ("ab" and 7 base-36 digits): the strictest
 * providers accept only that shape. */
#define WIRE_GENERATED_ID_LEN 9

/* True when text is a JSON object (what function.arguments must encode). */
bool wire_args_valid(const char *text);
/* A normalized deep copy of an OpenAI tool_calls array (each id recorded in s), or NULL when
 * out of memory. Each call: {"id", "type":"function", "function":{"name","arguments"}};
 * arguments given as an object are printed; empty or absent arguments become "{}". */
cJSON *wire_calls_normalize(struct wire_ids *s, const cJSON *calls);

#endif
