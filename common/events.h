/* events: the task event stream ("seq", "ts", "task", "type", ...), written as
 * JSON lines to any number of sinks (a file, stdout, a socket subscriber callback).
 * One event_log per task; seq numbers are dense and start at 1. Never blocks on a sink
 * that is a callback; file sinks are written with one write(2) per line, and a line a full
 * disk cut short is removed again. */
#ifndef AGENTBOX_EVENTS_H
#define AGENTBOX_EVENTS_H

#include <cjson/cJSON.h>
#include <stdint.h>

#define EVENT_SINKS_MAX 8

typedef void (*event_sink_fn)(void *opaque, const char *line, size_t len);

struct event_log {
    char task_id[128];
    uint64_t seq;
    int fds[EVENT_SINKS_MAX];
    int nfds;
    event_sink_fn fns[EVENT_SINKS_MAX];
    void *fn_opaque[EVENT_SINKS_MAX];
    int nfns;
};

void events_init(struct event_log *log, const char *task_id);
int events_add_fd(struct event_log *log, int fd);
int events_add_callback(struct event_log *log, event_sink_fn fn, void *opaque);
/* Emits one event. `fields` (may be NULL) is consumed: its members are moved into the event.
 * Returns the event's seq, or 0 if it could not be built. Secrets registered with
 * log_add_secret are redacted from the line. */
uint64_t events_emit(struct event_log *log, const char *type, cJSON *fields);

#endif
