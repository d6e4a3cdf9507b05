/* verify: a task's `verify` step ({"command", "timeout_s", "reset"}): after the agent
 * finished, the command runs in a fresh cell seeded with the original git workspace, the
 * agent's patch applied and the `reset` paths restored from the original commit, so that the
 * agent can neither edit what judges it nor leave anything running that interferes. Owns the
 * spec, that cell's life and its report; never runs anything on the host besides the cell. */
#ifndef AGENTBOX_VERIFY_H
#define AGENTBOX_VERIFY_H

#include <cjson/cJSON.h>
#include <linux/filter.h>
#include <stdbool.h>
#include <stddef.h>

#include "policy.h"

#define VERIFY_RESET_MAX        64
#define VERIFY_COMMAND_MAX      (64u << 10)
#define VERIFY_DEFAULT_TIMEOUT  600.0
#define VERIFY_OUTPUT_HEAD      8000
#define VERIFY_OUTPUT_TAIL      8000
#define VERIFY_EXIT_PATCH_FAILS 225 /* with a note in the output: the patch did not apply */

struct verify_spec {
    char *command; /* run by sh -c in /workspace */
    double timeout_s;
    char *reset[VERIFY_RESET_MAX];
    size_t nreset;
};

int verify_spec_parse(const cJSON *v, struct verify_spec **out, char *err, size_t errsz);
void verify_spec_free(struct verify_spec *s);

struct verify_cell {
    const struct verify_spec *spec;
    const struct policy *policy;
    const struct sock_fprog *seccomp;
    struct policy_limits limits;
    const char *seed;    /* the original work tree (host) */
    const char *commit;  /* what the reset paths are restored from */
    const char *patch;   /* the agent's patch ("" = none) */
    const char *tmp_dir; /* where the output file is made (O_TMPFILE) */
};

struct verify;

/* Spawns the cell; returns 0, or -1 with err (nothing left running). */
int verify_start(const struct verify_cell *vc, struct verify **out, char *err, size_t errsz);
int verify_pidfd(const struct verify *v);
/* The time (monotonic_s) past which the cell is killed. */
double verify_deadline(const struct verify *v);
/* Non-blocking: reaps the cell when it has exited (kills it past its deadline first);
 * returns true once done. */
bool verify_poll(struct verify *v);
/* Kills the cell (cancel); verify_poll then reaps it. */
void verify_kill(struct verify *v);
/* {exit_code, output, wall_s, status}: status "passed", "failed", "timeout" or "error"
 * (the patch did not apply, the cell could not start). */
cJSON *verify_result_json(const struct verify *v);
bool verify_passed(const struct verify *v);
void verify_free(struct verify *v);
/* A result's verify object for a step that did not run (status "skipped" or "error"). */
cJSON *verify_result_unrun(const char *status, const char *why);

#endif
