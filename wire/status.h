/* status: a task's status, the one list of them (the socket's `status`, a result's `status`,
 * the journal's records) and the one mapping from a finished task's status to the exit code
 * of run, wait, batch and llm. Names only: never decides a status. */
#ifndef AGENTBOX_STATUS_H
#define AGENTBOX_STATUS_H

#include <stdbool.h>

/* Exit codes of a finished task (run, wait, batch, llm). */
#define EXIT_TASK_OK        0
#define EXIT_TASK_FAILED    1
#define EXIT_TASK_ESCALATED 3
#define EXIT_TASK_MOCK      4

enum task_status {
    TS_QUEUED,
    TS_RUNNING,
    TS_SUCCEEDED,
    TS_FAILED,
    TS_TIMEOUT,
    TS_CANCELLED,
    TS_ESCALATED,
    TS_MOCK,
    TS_NSTATUS
};

const char *task_status_name(enum task_status st);
/* "succeeded" -> TS_SUCCEEDED ...; -1 when not a terminal status name. */
int task_status_parse(const char *name);
static inline bool task_status_terminal(enum task_status st)
{
    return st >= TS_SUCCEEDED;
}
/* succeeded 0, escalated 3, mock 4, anything else (failed, timeout, cancelled, an unknown
 * name, NULL) 1. */
int task_status_exit_code(const char *name);

#endif
