/* channel: the narrow, typed link between a supervisor and the agent in its cell (as in
 * OpenSSH's privsep monitor). A stream socketpair carries frames:
 *   u32 header length, u32 payload length (big-endian), header JSON, raw payload bytes.
 * The header always has "t" (the message type). Everything read by the supervisor came
 * from a hostile cell: sizes are bounded here and every field is checked by the reader.
 *
 * Messages, supervisor -> cell:
 *   task       {task: TASK_FOR_CELL}            first message; the cell starts work
 *   llm_reply  {id, outcome: {...}}              answer to an llm request
 *   cancel     {reason: "cancelled"|"timeout"}   wrap up now
 * cell -> supervisor:
 *   llm        {id, native_tools} + {"messages":[...]}  please make this chat call
 *   event      {type, ...fields}                 an event for the task's stream
 *   output     {path, mode} + payload            one requested output file
 *   result     {result fields}                   the last message */
#ifndef AGENTBOX_CHANNEL_H
#define AGENTBOX_CHANNEL_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <stdint.h>

#define CHANNEL_HEADER_MAX_BYTES  (16u << 20)
#define CHANNEL_PAYLOAD_MAX_BYTES (64u << 20)

struct channel_msg {
    cJSON *header;    /* owned */
    const char *type; /* header.t, points into header */
    char *payload;    /* owned, NUL-terminated, may be NULL */
    size_t payload_len;
};

void channel_msg_clear(struct channel_msg *m);

/* Sends one frame, blocking until all of it is written. */
int channel_send(int fd, const cJSON *header, const void *payload, size_t payload_len);
/* Convenience: header {"t": type} merged with fields (consumed; may be NULL). */
int channel_send_type(int fd, const char *type, cJSON *fields, const void *payload,
                      size_t payload_len);

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
