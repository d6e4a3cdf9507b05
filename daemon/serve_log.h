/* serve_log: the supervisor's lifecycle log lines (see serve_log.c). */
#ifndef AGENTBOX_SERVE_LOG_H
#define AGENTBOX_SERVE_LOG_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

void serve_log_listening(const char *socket_path, unsigned jobs, const char *state_dir,
                         bool inherited);
void serve_log_accepted(const char *id, unsigned uid, size_t queued);
/* Logs task_started and the terminal events (task_completed, _failed, _timeout, ...). */
void serve_log_task_event(const cJSON *ev);

#endif
