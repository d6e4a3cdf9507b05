/* batch_report: what a batch tells its user: the tally of outcomes and the exit code it
 * implies (precedence below), the closing summary line, the progress bar, and the
 * JUnit XML report. Pure formatting over result objects: never runs or changes a task. */
#ifndef AGENTBOX_BATCH_REPORT_H
#define AGENTBOX_BATCH_REPORT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "status.h"

/* A task's outcome in a batch: its status (status.h), or never run at all. */
enum batch_outcome {
    BATCH_SUCCEEDED = TS_SUCCEEDED,
    BATCH_FAILED = TS_FAILED,
    BATCH_TIMEOUT = TS_TIMEOUT,
    BATCH_CANCELLED = TS_CANCELLED,
    BATCH_ESCALATED = TS_ESCALATED,
    BATCH_MOCK = TS_MOCK,
    BATCH_NOT_RUN = TS_NSTATUS, /* never started: the batch was interrupted first */
    BATCH_OUTCOMES
};

struct batch_tally {
    unsigned count[BATCH_OUTCOMES];
    unsigned resumed; /* of the above, results taken from an earlier run */
    unsigned total;
    double tokens, cost_usd;
};

/* The outcome a result's "status" names; anything unknown counts as failed. */
enum batch_outcome batch_outcome_of(const cJSON *result);
const char *batch_outcome_name(enum batch_outcome o);
/* result NULL: BATCH_NOT_RUN. */
void batch_tally_add(struct batch_tally *t, const cJSON *result, bool resumed);
/* 1 if any task failed, timed out, was cancelled or never ran; else 3 if any escalated;
 * else 4 if any returned a mock; else 0. A failure outranks an escalation because the
 * batch's own work is incomplete either way and CI must not go green; escalation outranks
 * mock because it needs a human, a mock only a re-run. */
int batch_exit_code(const struct batch_tally *t);
/* exit_code: the code the process returns (a report that could not be written raises it). */
void batch_summary_format(const struct batch_tally *t, double wall_s, int exit_code, char *buf,
                          size_t bufsz);
/* Seconds until the batch ends, from the average task so far (avg_s), the tasks not started
 * (queued), the cells at once and how long each running task has run; at least 1 while any
 * task is left, -1 when unknown (no task ended yet). */
double batch_eta(double avg_s, unsigned queued, unsigned jobs, const double *running_elapsed,
                 unsigned nrunning);
/* One line, at most width columns: bar, done/total, failed, running, ETA, tokens, cost, and
 * the longest wait for a model's rate limit when one is >= 0.5 s. eta_s < 0: unknown yet. */
void batch_progress_format(char *buf, size_t bufsz, unsigned width, unsigned done, unsigned total,
                           unsigned failed, unsigned running, double eta_s, double tokens,
                           double cost_usd, double rate_wait_s);

struct batch_case {
    const char *id;
    const cJSON *result; /* NULL: not run */
    bool resumed;
    bool missing; /* (batch merge) no shard's output has a result for it: a failure */
};
/* JUnit XML (the dialect Jenkins, GitLab and GitHub reporters read): one testcase per task;
 * <failure> for every outcome but succeeded and for missing tasks, <skipped> for resumed and
 * never-run tasks.
 * Written to path.tmp and renamed, so a reader never sees half a report. */
/* Refuses, before anything runs, a report path that cannot be written (its directory is
 * missing or read-only, or it is a directory): creates and removes path.tmp. */
int batch_junit_probe(const char *path, char *err, size_t errsz);
int batch_junit_write(const char *path, const char *suite, const struct batch_case *cases, size_t n,
                      double wall_s, char *err, size_t errsz);

#endif
