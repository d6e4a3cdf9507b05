/* serve_log: the supervisor's lifecycle lines for its operator: listening, each task
 * accepted, started and ended (status and time), and, through log.c, the recovery summary and
 * the drain. Formatting only: reads events, never changes a task or the server. */
#include "serve_log.h"

#include <string.h>

#include "log.h"

void serve_log_listening(const char *socket_path, unsigned jobs, const char *state_dir,
                         bool inherited)
{
    cJSON *f = cJSON_CreateObject();
    if (f) {
        cJSON_AddStringToObject(f, "socket", socket_path);
        cJSON_AddNumberToObject(f, "jobs", jobs);
        cJSON_AddStringToObject(f, "state_dir", state_dir);
        cJSON_AddBoolToObject(f, "socket_activated", inherited);
    }
    log_event(LOG_INFO, "listening", f, "listening on %s%s: %u job%s at once, state in %s",
              socket_path, inherited ? " (socket from systemd)" : "", jobs, jobs == 1 ? "" : "s",
              state_dir);
    cJSON_Delete(f);
}

void serve_log_accepted(const char *id, unsigned uid, size_t queued)
{
    cJSON *f = cJSON_CreateObject();
    if (f) {
        cJSON_AddStringToObject(f, "task", id);
        cJSON_AddNumberToObject(f, "uid", uid);
        cJSON_AddNumberToObject(f, "queued", (double)queued);
    }
    log_event(LOG_INFO, "task_accepted", f, "task %s accepted from uid %u (%zu queued)", id, uid,
              queued);
    cJSON_Delete(f);
}

static const char *ended_status(const char *type, const cJSON *ev)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(ev, "status");
    if (cJSON_IsString(st))
        return st->valuestring;
    static const char *const map[][2] = {{"task_completed", "succeeded"},
                                         {"task_failed", "failed"},
                                         {"task_timeout", "timeout"},
                                         {"task_cancelled", "cancelled"},
                                         {"task_escalated", "escalated"}};
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(type, map[i][0]) == 0)
            return map[i][1];
    return NULL;
}

void serve_log_task_event(const cJSON *ev)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(ev, "task");
    if (!cJSON_IsString(type) || !cJSON_IsString(id))
        return;
    cJSON *f = cJSON_CreateObject();
    if (f)
        cJSON_AddStringToObject(f, "task", id->valuestring);
    if (strcmp(type->valuestring, "task_started") == 0) {
        const cJSON *model = cJSON_GetObjectItemCaseSensitive(ev, "model");
        if (f && cJSON_IsString(model))
            cJSON_AddStringToObject(f, "model", model->valuestring);
        log_event(LOG_INFO, "task_started", f, "task %s started%s%s", id->valuestring,
                  cJSON_IsString(model) ? " with " : "",
                  cJSON_IsString(model) ? model->valuestring : "");
    } else {
        const char *status = ended_status(type->valuestring, ev);
        if (status) {
            const cJSON *et = cJSON_GetObjectItemCaseSensitive(ev, "execution_time");
            double secs = cJSON_IsNumber(et) ? et->valuedouble : 0;
            if (f) {
                cJSON_AddStringToObject(f, "status", status);
                cJSON_AddNumberToObject(f, "seconds", (double)(long)(secs * 10 + 0.5) / 10);
            }
            log_event(strcmp(status, "succeeded") == 0 ? LOG_INFO : LOG_WARN, "task_ended", f,
                      "task %s ended: %s after %.1f s", id->valuestring, status, secs);
        }
    }
    cJSON_Delete(f);
}
