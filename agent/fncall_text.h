/* fncall_text: tool calling for models without native support, as OpenHands'
 * fn_call_converter does it: tool descriptions rendered into the system prompt, replies
 * parsed from `<function=NAME><parameter=P>V</parameter></function>` text, and past tool
 * calls and results rendered back into plain messages. Treats the reply as hostile text:
 * bounded, names checked, nested or duplicated markup refused; never executes anything. */
#ifndef AGENTBOX_FNCALL_TEXT_H
#define AGENTBOX_FNCALL_TEXT_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define FNCALL_TEXT_MAX_NAME   64
#define FNCALL_TEXT_MAX_PARAMS 32

struct fncall_text_call {
    char *name;         /* the function name as written */
    char *arguments;    /* a JSON object text, typed by the tools schema where possible */
    char *content;      /* the reply's text before the call (reasoning), possibly "" */
    size_t extra_calls; /* further <function= blocks after the first (ignored: one at a time) */
};

/* The system-prompt suffix describing tools (an OpenAI `tools` array). malloc'd. */
char *fncall_text_system_suffix(const cJSON *tools);

/* Parses a reply. Returns 1 with *out filled when it holds a call, 0 when it holds none
 * (a plain message), -1 when it holds a malformed call (err says what, for the model). */
int fncall_text_parse(const char *text, const cJSON *tools, struct fncall_text_call *out, char *err,
                      size_t errsz);
void fncall_text_call_free(struct fncall_text_call *c);

/* One message in native form -> its text form (a history_transform_fn): the system prompt
 * gets the suffix (ctx, a NUL-terminated string), an assistant's tool_calls become
 * <function=...> text, a tool result becomes a user message "EXECUTION RESULT of [NAME]:".
 * Returns a new message, or NULL when msg needs no change (or out of memory). */
cJSON *fncall_text_convert_message(const cJSON *msg, void *ctx);

#endif
