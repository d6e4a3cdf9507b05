/* protocol: the socket protocol's requests and replies (docs/protocol.md): one request per
 * line of JSON, parsed and checked here field by field, and replies built here. Owns no
 * state and performs no I/O; everything it reads comes from an untrusted peer. */
#ifndef AGENTBOX_PROTOCOL_H
#define AGENTBOX_PROTOCOL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "task.h"

#define PROTOCOL_REQUEST_MAX_BYTES (4u << 20) /* one request line, newline excluded */
#define PROTOCOL_WAIT_MAX_S        (7 * 86400.0)

enum protocol_op {
    OP_SUBMIT,
    OP_STATUS,
    OP_WAIT,
    OP_CANCEL,
    OP_EVENTS,
    OP_LIST,
    OP_HEALTH,
    OP_METRICS,
    OP_ARTIFACT, /* serve_artifact.c reads its own fields from root */
};

/* Error codes of the protocol; their names are the wire strings. */
enum protocol_error {
    PERR_BAD_REQUEST,
    PERR_TOO_LARGE,
    PERR_UNKNOWN_OP,
    PERR_NOT_FOUND,
    PERR_DUPLICATE_ID,
    PERR_INVALID_TASK,
    PERR_FORBIDDEN,
    PERR_SHUTTING_DOWN,
    PERR_QUEUE_FULL,
    PERR_TIMEOUT,
    PERR_INTERNAL,
    PERR_NO_SPACE, /* the state disk is full: nothing new can be made durable */
};

struct request {
    enum protocol_op op;
    cJSON *root;              /* owned: the whole request */
    const cJSON *task;        /* submit: borrowed from root, not yet validated as a task */
    char id[TASK_ID_MAX + 1]; /* status wait cancel events ("" with all) */
    bool all;                 /* events: every task */
    bool follow;              /* events */
    double timeout_s;         /* wait: <0 = none */
};

/* Parses one request line (no newline, not NUL-terminated). On error returns -1 with the
 * error code in *code and a message in err; the request is then empty. */
int protocol_parse(const char *line, size_t len, struct request *req, enum protocol_error *code,
                   char *err, size_t errsz);
void request_free(struct request *req);

const char *protocol_error_name(enum protocol_error code);
const char *protocol_op_name(enum protocol_op op);
/* Reply lines, malloc'd, newline-terminated; NULL when out of memory. `fields` (may be NULL)
 * is consumed: its members are moved into the reply after "ok". */
char *protocol_ok_line(cJSON *fields);
char *protocol_error_line(enum protocol_error code, const char *message);

#endif
