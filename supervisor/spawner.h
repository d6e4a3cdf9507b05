/* spawner: creates cells off the event loop. A job (a function and its completion eventfd)
 * is queued by the loop thread, run on one of a few spawner threads, and its eventfd is
 * written once it returned; the loop polls that fd like any other and carries on meanwhile.
 * See spawner.c for the ownership rule between the loop and the spawner threads. */
#ifndef AGENTBOX_SPAWNER_H
#define AGENTBOX_SPAWNER_H

#include <stdbool.h>
#include <stddef.h>

#define SPAWNER_THREADS 2

struct spawn_job {
    void (*run)(struct spawn_job *j); /* on a spawner thread; touches only what j owns */
    int done_fd;                      /* eventfd, set up by spawner_job_init */
    struct spawn_job *next;           /* the queue's */
};

/* An eventfd (non-blocking, close-on-exec) for the job; -1 with err on failure. */
int spawner_job_init(struct spawn_job *j, void (*run)(struct spawn_job *j), char *err,
                     size_t errsz);
/* Queues the job (starting the threads on first use); -1 with err when they cannot start. */
int spawner_submit(struct spawn_job *j, char *err, size_t errsz);
/* Queues a job nobody waits for (no eventfd): run owns j and everything it reaches, and may
 * free j itself. -1 with err when the threads cannot start (then the caller still owns j). */
int spawner_submit_detached(struct spawn_job *j, void (*run)(struct spawn_job *j), char *err,
                            size_t errsz);
/* True (once) when the job has run: reads its eventfd without blocking. */
bool spawner_job_done(struct spawn_job *j);
/* Blocks until the job has run (a runner freed while its cell is still being made). */
void spawner_job_wait(struct spawn_job *j);
/* Closes the job's eventfd; only once it has run, or was never submitted. */
void spawner_job_close(struct spawn_job *j);

#endif
