/* runner: one task's whole life on the supervisor side (isolate's box lifecycle in one
 * place): make its state dir, spawn its cell with the agent as pid 1, serve the cell's
 * channel (LLM calls through the broker, events, output files), enforce the wall clock and
 * the budgets that only the trusted side can enforce, reap the cell and write the one
 * result record. Driven by an outside event loop (run: a poll loop; serve: epoll), never
 * blocks: serve and batch have their cells made on a spawner thread (runner_start_async).
 * Everything read from the channel is hostile and checked here. */
#ifndef AGENTBOX_RUNNER_H
#define AGENTBOX_RUNNER_H

#include <cjson/cJSON.h>
#include <poll.h>
#include <stdbool.h>

#include "broker.h"
#include "cell.h"
#include "egress_rules.h"
#include "events.h"
#include "prewarm.h"
#include "task.h"

#define RUNNER_MODELS_MAX       (TASK_MODELS_MAX + 10)
#define RUNNER_OUTPUT_MAX_BYTES (256u << 20) /* all output files of one task */
#define RUNNER_OUTPUT_MAX_FILES 1000
#define RUNNER_GRACE_S          5.0 /* between "wrap up" and SIGKILL */
#define RUNNER_CELL_EVENT_MAX   (1u << 20)

struct runner_opts {
    const struct task *task;          /* borrowed for the runner's life */
    const struct policy *policy;      /* borrowed */
    const struct sock_fprog *seccomp; /* borrowed */
    struct policy_limits limits;      /* effective */
    bool network_host;
    int seed_fd; /* with task->workspace_from: the seed, opened by seed_open (borrowed) */
    const struct egress_rules *egress;         /* borrowed; NULL: no egress proxy */
    const char *models[RUNNER_MODELS_MAX + 1]; /* chain, NULL-terminated; borrowed strings */
    double timeout_s;
    unsigned max_iterations;
    unsigned max_tokens_per_call;
    unsigned long context_tokens; /* of the primary model (condensation budget) */
    bool native_tools;
    const char *state_dir;    /* created by runner_start (must not exist) */
    struct event_log *events; /* sinks set by the caller; the runner adds the file */
    struct broker *broker;    /* shared */
    double queued_at;         /* wall clock when the task was queued (0: when it starts) */
    struct prewarm *prewarm;  /* borrowed; runner_start_async takes a prepared cell from it
                                 when the task's cell would be made exactly like its cells */
};

struct runner;

/* Starts a task: its state dir and first event, then its cell, inline. -1 with err when the
 * task could not start (nothing is left running). */
int runner_start(const struct runner_opts *opts, struct runner **out, char *err, size_t errsz);
/* The same, but the cell is made on a spawner thread (spawner.h) and this returns at once:
 * until then runner_poll_fds gives the job's completion fd, runner_handle hands the cell
 * over when it fires, and a cancel is remembered (the cell is killed as soon as it exists).
 * A cell that cannot be made ends the task as failed, with its result (runner_done). -1
 * with err only for what failed before (the state dir). */
int runner_start_async(const struct runner_opts *opts, struct runner **out, char *err,
                       size_t errsz);
/* The environment a runner gives its cell when the task needs nothing else (no egress
 * proxy): what a pool of prepared cells must be made with (prewarm.h). */
char *const *runner_cell_env(void);
/* Whether the cell is still being made. */
bool runner_spawning(const struct runner *r);
/* fds to poll (channel, cell pidfd); returns the count */
int runner_poll_fds(struct runner *r, struct pollfd *fds, int max);
/* the next time (monotonic_s) the runner wants runner_handle called, 0 = none (it may be
 * in the past: then call runner_handle at once) */
double runner_next_wakeup(const struct runner *r);
/* Handles whatever is ready (pass the polled fds back; NULL/0 for a timer wake-up). */
void runner_handle(struct runner *r, const struct pollfd *fds, int nfds);
/* Asks the agent to wrap up and, after a grace period, kills the cell. */
void runner_cancel(struct runner *r);
bool runner_done(const struct runner *r);
/* The result object once done; owned by the runner. */
const cJSON *runner_result(const struct runner *r);
/* Whether result.json is durable (false: the disk refused even the failed result that
 * says what was lost; the caller may try again with runner_write_result). */
bool runner_result_saved(const struct runner *r);
/* Writes a result as result.json in the task's state directory (open in state_dfd)
 * atomically (atomicfile.h); -1 with errno on failure. */
int runner_write_result(int state_dfd, const cJSON *res, const char *crash_point);
/* run's exit code for the result: 0, 1, 3 or 4. */
int runner_exit_code(const struct runner *r);
void runner_free(struct runner *r);

/* The result for a task that never ran to a report (refused at set-up, cancelled in a
 * queue, interrupted by a restart): every field present, with what is known. error (may be
 * NULL) is consumed; model, events_file and metadata may be NULL. */
cJSON *runner_result_unrun(const char *id, const char *status, cJSON *error, double elapsed,
                           const char *model, const char *events_file, const cJSON *metadata);

#endif
