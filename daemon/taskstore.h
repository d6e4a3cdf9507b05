/* taskstore: the supervisor's tasks by id: status, times, the accepted task, the result
 * once there is one, in submission order, with per-status counts. Finished tasks beyond
 * the retention limit are handed back for eviction, oldest first. Owns no processes and
 * does no I/O: the serve loop drives runners, this only remembers. */
#ifndef AGENTBOX_TASKSTORE_H
#define AGENTBOX_TASKSTORE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "events.h"
#include "status.h"
#include "task.h"

struct stask {
    char id[TASK_ID_MAX + 1];
    enum task_status status;
    double submitted, started, ended; /* wall clock; 0 = not yet */
    double start_mono;
    cJSON *task_json; /* as accepted (id filled in); freed once finished */
    struct task task; /* parsed; freed once finished */
    bool parsed;
    cJSON *result; /* only while the disk refuses it: results are read from disk */
    bool result_saved, journal_saved; /* result.json and the `finished` record durable */
    bool unsaved;                     /* finished, and one of the two is not durable yet */
    /* live state, owned by the serve loop */
    void *slot;    /* while running: the loop's per-task state */
    long cell_pid; /* from task_started */
    bool cancel_requested;
    long owner; /* the submitting client's uid (SO_PEERCRED); -1 unknown: admins only */
    /* links */
    struct stask *hnext;       /* hash chain */
    struct stask *prev, *next; /* submission order */
    struct stask *qnext;       /* run queue */
};

struct taskstore {
    struct stask **buckets;
    size_t nbuckets, count;
    struct stask *head, *tail;
    unsigned long by_status[TS_NSTATUS];
};

int taskstore_init(struct taskstore *s);
/* Frees every task (their live state must be gone). */
void taskstore_free(struct taskstore *s);
struct stask *taskstore_find(const struct taskstore *s, const char *id);
/* A new task in status queued, appended; NULL when out of memory. */
struct stask *taskstore_add(struct taskstore *s, const char *id);
void taskstore_set_status(struct taskstore *s, struct stask *t, enum task_status st);
/* Unlinks and frees the task. */
void taskstore_remove(struct taskstore *s, struct stask *t);
/* The oldest finished task when more than `retain` are finished, else NULL. */
struct stask *taskstore_evictable(const struct taskstore *s, unsigned long retain);

#endif
