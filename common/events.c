/* events: see events.h. */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "util.h"

void events_init(struct event_log *log, const char *task_id)
{
    memset(log, 0, sizeof(*log));
    snprintf(log->task_id, sizeof(log->task_id), "%s", task_id ? task_id : "");
}

int events_add_fd(struct event_log *log, int fd)
{
    if (log->nfds >= EVENT_SINKS_MAX)
        return -1;
    log->fds[log->nfds++] = fd;
    return 0;
}

int events_add_callback(struct event_log *log, event_sink_fn fn, void *opaque)
{
    if (log->nfns >= EVENT_SINKS_MAX)
        return -1;
    log->fns[log->nfns] = fn;
    log->fn_opaque[log->nfns++] = opaque;
    return 0;
}

/* A line is in a file sink whole or not at all: a write cut short (a full disk) is cut
 * back, so the next line never lands glued to half of this one. Pipes cannot be cut back
 * and need not: their reader sees a stream. */
static void write_whole_line(int fd, const char *line, size_t len)
{
    off_t at = lseek(fd, 0, SEEK_END);
    if (write_all(fd, line, len) == 0 || at < 0)
        return;
    if (ftruncate(fd, at) == 0)
        (void)lseek(fd, at, SEEK_SET);
}

uint64_t events_emit(struct event_log *log, const char *type, cJSON *fields)
{
    cJSON *ev = cJSON_CreateObject();
    if (!ev) {
        cJSON_Delete(fields);
        return 0;
    }
    uint64_t seq = ++log->seq;
    cJSON_AddNumberToObject(ev, "seq", (double)seq);
    cJSON_AddNumberToObject(ev, "ts", wallclock_s());
    cJSON_AddStringToObject(ev, "task", log->task_id);
    cJSON_AddStringToObject(ev, "type", type);
    if (fields) {
        cJSON *it = fields->child;
        while (it) {
            cJSON *next = it->next;
            if (it->string && strcmp(it->string, "seq") && strcmp(it->string, "ts") &&
                strcmp(it->string, "task") && strcmp(it->string, "type")) {
                cJSON *moved = cJSON_DetachItemViaPointer(fields, it);
                cJSON_AddItemToObject(ev, moved->string, moved);
            }
            it = next;
        }
        cJSON_Delete(fields);
    }
    char *text = cJSON_PrintUnformatted(ev);
    cJSON_Delete(ev);
    if (!text)
        return 0;
    log_redact(text);
    size_t len = strlen(text);
    char *line = realloc(text, len + 2);
    if (!line) {
        free(text);
        return 0;
    }
    line[len] = '\n';
    line[len + 1] = '\0';
    for (int i = 0; i < log->nfds; i++)
        write_whole_line(log->fds[i], line, len + 1);
    for (int i = 0; i < log->nfns; i++)
        log->fns[i](log->fn_opaque[i], line, len + 1);
    free(line);
    return seq;
}
