/* runner_internal: the runner's state (struct runner) and the calls between the files that
 * make up the runner: runner.c (a task's life: start, poll, cancel, reap, free),
 * runner_spawn.c (the cell's creation, off the event loop), runner_llm.c (LLM calls),
 * runner_channel.c (what the cell sends), runner_result.c (the result record). Only those
 * files include it; nothing outside the runner sees these fields. */
#ifndef AGENTBOX_RUNNER_INTERNAL_H
#define AGENTBOX_RUNNER_INTERNAL_H

#include "runner.h"
#include "channel.h"
#include "result_report.h"
#include "runner_post.h"
#include "spawner.h"
#include "util.h"

#define RUNNER_OVERHEAD_SAMPLES 4096
#define LLM_MESSAGES_MAX        5000

struct llm_ctx;

struct runner {
    struct runner_opts o;
    struct cell *cell;
    int chan;
    int state_dfd; /* the task's state directory: its files are made below this fd */
    int events_fd;
    int outputs_dirfd;
    struct channel_reader rd;
    double start_mono, start_wall, deadline, kill_at;
    bool cancel_sent, kill_sent, cancelled, timed_out, chan_closed, reaped;
    unsigned chan_seen;  /* channel types received (channel_dispatch) */
    char violation[128]; /* the cell broke the channel protocol: how ("" = it did not) */
    /* LLM accounting, all from the supervisor's own view */
    bool llm_inflight;
    struct llm_ctx *llm_pending; /* the call in flight, detached if the runner goes first */
    unsigned llm_calls, llm_call_cap;
    double broker_s;    /* time this side spent on the calls (HTTP excluded): its overhead */
    double client_s;    /* of which inside the client (not overhead) */
    double call_s;      /* this call's overhead so far */
    float *overhead_ms; /* grows with the calls made, to RUNNER_OVERHEAD_SAMPLES */
    size_t noverhead, overhead_cap;
    double prompt_tokens, completion_tokens, total_tokens, cost_usd;
    bool mock_used;
    char last_model[256];
    cJSON *models_tried;
    cJSON *last_outcome;
    /* the conversation as the cell sent it: each message validated once and kept
     * serialized, so a step costs what it adds, not the size of the whole history */
    char **msg_text;
    size_t *msg_len;
    size_t nmsg, msg_cap;
    char *msgs_buf; /* "[m0,m1,...]", rebuilt per call */
    size_t msgs_cap, msgs_len;
    /* the agent's report */
    cJSON *report;
    struct result_cut cut; /* what result_report_clean cut from the report */
    size_t output_bytes, output_files;
    struct cell_record rec;
    cJSON *result;
    struct egress *egress; /* the cell's proxy helper, NULL without egress */
    cJSON *network;        /* its summary, once the cell is reaped */
    int exit_code;
    bool result_saved;     /* result.json is durable */
    unsigned outputs_lost; /* output files the disk refused (not the limits) */
    int outputs_errno;
    char *outputs_path; /* STATE_DIR/outputs and STATE_DIR/events.jsonl, for the result */
    char *events_path;
    struct runner_post post; /* git workspace, patch, verify */
    /* the cell's creation (runner_spawn.c): while spawning, the job owns cell, chan, post
     * and spawn_err, and the loop touches none of them */
    struct spawn_job job;
    bool spawning;
    bool prewarmed; /* the cell was prepared ahead (prewarm.h) */
    int spawn_rc;
    char spawn_err[ERR_MSG_MAX];
    char *const *cell_env; /* NULL: the sandbox's default */
    char **egress_env;     /* owned */
};

/* runner_spawn.c: once the job said it ran, hands the cell over (or fails the task) */
void runner_spawn_step(struct runner *r);
/* Blocks until the job ran (freeing a runner whose cell is being made). */
void runner_spawn_wait(struct runner *r);

/* runner.c */
void runner_send_to_cell(struct runner *r, enum channel_type type, cJSON *fields);
/* runner_llm.c */
void runner_handle_llm(struct runner *r, const struct channel_msg *m);
/* The call in flight, if any, must not reach r any more (r is being freed). */
void runner_llm_detach(struct runner *r);
void runner_llm_free(struct runner *r);
/* runner_channel.c: reads what the cell sent (bounded per call) */
void runner_read_channel(struct runner *r);
/* runner_result.c */
const char *runner_report_string(const cJSON *rep, const char *name, size_t max);
void runner_build_result(struct runner *r);

#endif
