/* batch_loop: the running part of `agentbox batch` (private to cli/cmd_batch.c and
 * cli/batch_loop.c): the batch's state, up to --jobs cells at once in slots sharing one
 * broker, each task's result appended to --out as it ends, the progress bar, and
 * SIGINT/SIGTERM (cancel; a second one kills). Never reads the batch file, never decides
 * what to resume (batch/batch_resume.c did, before the loop), never prints the summary. */
#ifndef AGENTBOX_BATCH_LOOP_H
#define AGENTBOX_BATCH_LOOP_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>

#include "batch_resume.h"
#include "broker.h"
#include "catalog.h"
#include "config.h"
#include "events.h"
#include "runner.h"
#include "taskprep.h"

#define BATCH_DEFAULT_JOBS 4
#define BATCH_JOBS_MAX     256
#define BATCH_REDRAW_S     0.25

struct batch_args {
    const char *file, *out, *shard, *junit, *replay, *events_dir, *state_dir, *predictions;
    unsigned jobs;
    unsigned shard_index, shard_count;
    bool resume, quiet, retry_failed;
};

struct batch;

/* One running cell. Never moves while busy: the runner points into it. */
struct slot {
    struct batch *b;
    struct batch_job *job;
    struct taskprep tp;
    struct event_log events;
    struct runner *runner;
    struct broker *own_broker; /* --replay: each task replays from the first reply */
    int events_fd;
    double tokens, cost_usd; /* live, from llm_response events */
    double started;          /* monotonic_s */
    double rate_wait_until;  /* monotonic_s: waiting for a model's rate limit until then */
    char state_dir[PATH_MAX];
};

struct batch {
    struct batch_args a;
    struct agentbox_config cfg;
    struct catalog cat;
    bool have_cat;
    struct broker *shared;
    struct batch_job *jobs;
    size_t njobs, next;
    struct slot *slots;
    unsigned running, done_run, failed_run, to_run;
    unsigned done_before, failed_before; /* resumed: finished in an earlier run */
    int out_fd;
    bool out_broken, interrupted, killed, tty;
    double t0, last_draw, tokens_done, cost_done, time_done;
    char state_root[BATCH_ROOT_MAX];
};

/* Runs every job without a result until all ended, or a signal ended them. */
void batch_run_loop(struct batch *b, int sigfd);
/* Frees a slot's runner (killing and reaping its cell), broker and events file. */
void batch_slot_release(struct slot *s);
/* Clears the progress bar's line (a terminal only) before anything else is printed. */
void batch_clear_bar(struct batch *b);

#endif
