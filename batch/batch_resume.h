/* batch_resume: --resume and --out of `agentbox batch`, decided before anything runs: which
 * tasks of the shard finished in an earlier run (their last result line in --out, or
 * STATE/ID/result.json), earlier state dirs without a finished result moved aside below
 * STATE/.superseded/, and --out rewritten whole (temp, fsync, rename) to hold exactly the
 * kept results, then opened for appending. Never starts a task and never decides a task's
 * status: it keeps what a result says. */
#ifndef AGENTBOX_BATCH_RESUME_H
#define AGENTBOX_BATCH_RESUME_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "batch_input.h"

#define BATCH_OUT_LINE_MAX     (64u << 20) /* one result line read back by --resume */
#define BATCH_OUT_LINES_MAX    4000000     /* result lines of an earlier --out (re-runs included) */
#define BATCH_RESULT_MAX_BYTES (64u << 20) /* a state dir's result.json read by --resume */
#define BATCH_ROOT_MAX         3072 /* leaves room below PATH_MAX for /.superseded/ID.TIME.N */

/* One task of this shard, for the whole run. */
struct batch_job {
    const struct batch_item *item;
    cJSON *result;   /* owned; NULL until it ends (stays NULL if it never ran) */
    bool resumed;    /* result from an earlier run */
    bool to_write;   /* resumed from a state dir: the result is not in --out yet */
    bool needs_move; /* an earlier run left its state dir without a finished result */
};

struct batch_out_opts {
    const char *out;        /* --out, NULL for stdout */
    const char *state_root; /* the trusted, resolved state dir (< BATCH_ROOT_MAX bytes) */
    bool resume, retry_failed;
};

/* Fills each job's result, resumed, to_write and needs_move; refuses (nothing run) a task
 * that ran before without --resume; moves the unfinished ones aside; opens the results'
 * file in *out_fd (stdout dup'ed without --out) holding the kept results. -1 + err. */
int batch_prepare_out(const struct batch_out_opts *o, struct batch_job *jobs, size_t njobs,
                      int *out_fd, char *err, size_t errsz);
/* A result as one line, with one write(2). */
int batch_write_line(int fd, const cJSON *result);

#endif
