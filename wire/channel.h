/* channel: the narrow, typed link between a supervisor and the agent in its cell (as in
 * OpenSSH's privsep monitor). A stream socketpair carries frames:
 *   u32 header length, u32 payload length (big-endian), header JSON, raw payload bytes.
 * The header always has "t" (the message type). Everything read by the supervisor came
 * from a hostile cell: sizes are bounded here and every field is checked by the reader.
 *
 * Messages (enum channel_type; on the wire "t" is the name), supervisor -> cell:
 *   task       {task: TASK_FOR_CELL}            first message, once; the cell starts work
 *   llm_reply  {id, outcome: {...}}              the answer to an llm request (a pair)
 *   cancel     {reason: "cancelled"|"timeout"}   wrap up now
 * cell -> supervisor:
 *   llm        {id, native_tools} + {"messages":[...]}  the request of the llm pair
 *   event      {type, ...fields}                 an event for the task's stream
 *   output     {path, mode} + payload            one requested output file
 *   result     {result fields}                   the last message, once
 * Each side dispatches through a table of what it accepts (channel_dispatch): any other
 * message, or a second one of a once-only type, is a protocol violation. */
#ifndef AGENTBOX_CHANNEL_H
#define AGENTBOX_CHANNEL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CHANNEL_HEADER_MAX_BYTES  (16u << 20)
#define CHANNEL_PAYLOAD_MAX_BYTES (64u << 20)

enum channel_type {
    CH_UNKNOWN, /* a "t" this build does not know */
    CH_TASK,
    CH_LLM,       /* request: cell -> supervisor ... */
    CH_LLM_REPLY, /* ... its answer: supervisor -> cell */
    CH_CANCEL,
    CH_EVENT,
    CH_OUTPUT,
    CH_PATCH, /* a git workspace's change (git diff --binary), before the result */
    CH_RESULT,
    CH_NTYPES
};
enum channel_dir { CH_TO_CELL, CH_FROM_CELL };

const char *channel_type_name(enum channel_type t);
enum channel_type channel_type_of(const char *name);
/* Which way a message type goes (CH_UNKNOWN: neither, returns -1). */
int channel_type_dir(enum channel_type t);

struct channel_msg {
    cJSON *header;          /* owned */
    const char *type;       /* header.t, points into header */
    enum channel_type kind; /* channel_type_of(type) */
    char *payload;          /* owned, NUL-terminated, may be NULL */
    size_t payload_len;
};

void channel_msg_clear(struct channel_msg *m);

/* Sends one frame, blocking until all of it is written. */
int channel_send(int fd, const cJSON *header, const void *payload, size_t payload_len);
/* Convenience: header {"t": type} merged with fields (consumed; may be NULL). */
int channel_send_type(int fd, const char *type, cJSON *fields, const void *payload,
                      size_t payload_len);
/* The same, by type. */
int channel_send_kind(int fd, enum channel_type kind, cJSON *fields, const void *payload,
                      size_t payload_len);

/* One row of a side's dispatch table: what it accepts, from which way, how often. */
struct channel_rule {
    enum channel_type type;
    enum channel_dir dir; /* the direction this side receives */
    bool once;            /* a second one is a violation */
    void (*handler)(void *ctx, struct channel_msg *m);
};
/* Hands m to the rule of its type. 0 when handled; -1 and err ("unpermitted message 'x'",
 * "a second 'result'") when m is a protocol violation: a type outside the table, the other
 * direction's, or a once-only type again. seen: the types received so far (bit per type),
 * kept by the caller. */
int channel_dispatch(const struct channel_rule *rules, size_t n, unsigned *seen, void *ctx,
                     struct channel_msg *m, char *err, size_t errsz);

/* Incremental reader for a non-blocking fd (supervisor side) or a blocking one. */
struct channel_reader {
    unsigned char head[8];
    size_t head_got;
    uint32_t hlen, plen;
    char *buf; /* header + payload as they arrive */
    size_t got;
};
void channel_reader_init(struct channel_reader *r);
void channel_reader_free(struct channel_reader *r);
/* Reads what is available. Returns 1 and fills msg when a whole frame arrived, 0 when more
 * is needed (EAGAIN), -1 on EOF (errno 0) or error (errno set; EPROTO for a bad frame). */
int channel_read(struct channel_reader *r, int fd, struct channel_msg *msg);
/* Blocking receive with a timeout (ms, -1 = none): 1 frame, 0 timeout, -1 EOF/error. */
int channel_recv(struct channel_reader *r, int fd, struct channel_msg *msg, int timeout_ms);

#endif
