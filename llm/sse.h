/* sse: incremental parser of OpenRouter's server-sent-event stream, fed byte chunks as they
 * arrive, split anywhere. Merges content deltas and tool-call deltas (by index; id and name
 * from the fragment that carries them), keeps the usage chunk and any mid-stream error, and
 * yields the same llm_reply as a non-streaming answer. Bounded: lines, content and
 * arguments have caps. Never sees the API key. */
#ifndef AGENTBOX_SSE_H
#define AGENTBOX_SSE_H

#include <stdbool.h>
#include <stddef.h>

#include "llm_response.h"

#define SSE_LINE_MAX_BYTES    (1u << 20)
#define SSE_CONTENT_MAX_BYTES (8u << 20)

struct sse_buf {
    char *p;
    size_t len, cap;
};

struct sse_tool {
    char *id;
    char *name;
    struct sse_buf args;
};

struct sse_parser {
    struct sse_buf line, data, content, reasoning;
    bool skip_lf;  /* a CR ended the last line; a LF right after it belongs to it */
    bool has_data; /* the pending event has a data field */
    struct sse_tool tools[LLM_TOOL_CALLS_MAX];
    int ntools;
    char finish_reason[32];
    char model[LLM_MODEL_NAME_MAX];
    bool has_usage;
    struct llm_usage usage;
    cJSON *error;
    bool done;   /* data: [DONE] seen, or an error ended the stream */
    bool failed; /* a chunk was malformed or a bound was crossed */
    char fail_msg[256];
    size_t events;
};

void sse_init(struct sse_parser *p);
/* Feeds bytes; returns 0, or -1 once the stream is known bad (fail_msg says why). */
int sse_feed(struct sse_parser *p, const char *buf, size_t len);
/* Ends the stream and builds the reply. 0: complete (reply->error may be set: a mid-stream
 * error); -1: malformed; -2: truncated (no [DONE] and no finish_reason). err says why. */
int sse_finish(struct sse_parser *p, struct llm_reply *reply, char *err, size_t errsz);
void sse_free(struct sse_parser *p);

#endif
