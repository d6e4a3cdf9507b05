/* runner_post: what a git workspace and a verify step add to one task's life on the
 * supervisor side: the fresh clone the cell is seeded from (made before the cell, removed
 * after the verify), the agent's patch (checked, kept as bytes, written to STATE/ID/
 * patch.diff), the verify cell after the agent's cell is gone, and their part of the result
 * and of its status. The runner calls it at fixed points; it never talks to the agent's
 * cell itself. */
#ifndef AGENTBOX_RUNNER_POST_H
#define AGENTBOX_RUNNER_POST_H

#include <cjson/cJSON.h>
#include <linux/filter.h>
#include <stdbool.h>

#include "channel.h"
#include "events.h"
#include "git_workspace.h"
#include "policy.h"
#include "spawner.h"
#include "task.h"
#include "util.h"
#include "verify.h"

struct runner_post {
    const struct task *task;
    struct git_ws *git; /* the clone, for a task with a git workspace; else NULL */
    char *patch;        /* the agent's, as sent (bytes), NULL until it came */
    size_t patch_len;
    bool patch_truncated;
    char patch_error[256];
    struct verify *verify;
    cJSON *verify_json;
    double next_look; /* monotonic: when the verify cell is looked at next (a stable time) */
    /* The verify cell is made on a spawner thread (spawner.h): while vspawning, vjob owns
     * vc, vmade, vrc and verr; the loop reads them only once the job is done. */
    struct spawn_job vjob;
    struct verify_cell vc;
    struct verify *vmade;
    int vrc;
    bool vspawning, vkill; /* vkill: cancelled while the cell was being made */
    char verr[ERR_MSG_MAX];
};

/* Before the cell: the clone (as the requester). Errors name the field. With ev NULL (on a
 * spawner thread) no event is emitted: post_announce does it later, on the loop. */
int post_prepare(struct runner_post *p, const struct task *t, struct event_log *ev, char *err,
                 size_t errsz);
/* workspace_ready, for a clone made by post_prepare without an event log. */
void post_announce(const struct runner_post *p, struct event_log *ev);
/* The seed directory for the agent's cell (the clone's work tree, or the task's from_dir). */
const char *post_seed(const struct runner_post *p);
/* Adds what the agent needs to the cell's task message ("git_commit", "seeded"). */
void post_task_fields(const struct runner_post *p, cJSON *cell_task);
/* A "patch" message from the cell. */
void post_on_patch(struct runner_post *p, const struct channel_msg *m);
/* After the agent's cell is reaped; finished: the agent ended with `finish`. Returns true
 * when a verify cell now runs (the result waits for it). */
bool post_start_verify(struct runner_post *p, bool finished, const struct policy *pol,
                       const struct sock_fprog *seccomp, const struct policy_limits *lim,
                       const char *state_dir, struct event_log *ev);
bool post_verifying(const struct runner_post *p);
int post_poll_fd(const struct runner_post *p);
double post_wakeup(const struct runner_post *p);
/* Steps the verify cell (first: takes it from the spawner thread that made it); true once
 * it is done (then verify_finished was emitted). */
bool post_step(struct runner_post *p, struct event_log *ev);
void post_kill(struct runner_post *p);
/* A succeeded task whose verify did not pass becomes failed (reason verify_failed). */
void post_decide(const struct runner_post *p, const char **status, const char **terminal,
                 cJSON **error);
/* The clone's work tree (a git workspace's seed), or NULL. */
const char *post_git_tree(const struct runner_post *p);
/* Adds "patch", "verify" and "workspace_git" to the result; writes patch.diff. */
void post_result(struct runner_post *p, cJSON *res, int state_dfd);
void post_free(struct runner_post *p);

#endif
