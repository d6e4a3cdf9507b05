/* runner_spawn: a task's start: its state dir and first event (on the loop), then its cell
 * (the git clone, the channel, cell_spawn), made either inline (runner_start: run) or on a
 * spawner thread (runner_start_async: serve, batch) while the loop carries on, then handed
 * to the loop (the egress proxy, task_started, the task frame). What runs on the spawner
 * thread (spawn_cell) touches only the runner's cell, channel, clone and spawn error, which
 * the loop leaves alone while r->spawning (spawner.c states the rule); it never emits an
 * event. A spawn that fails ends the task with a failed result of its own. */
#include "runner_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "egress.h"
#include "log.h"
#include "status.h"
#include "util.h"

/* "DIR/NAME", malloc'd; NULL when out of memory. */
static char *path_join(const char *dir, const char *name)
{
    char *p = NULL;
    return asprintf(&p, "%s/%s", dir, name) < 0 ? NULL : p;
}

static int make_state_dir(struct runner *r, char *err, size_t errsz)
{
    const char *dir = r->o.state_dir;
    if (mkdir(dir, 0700) < 0) {
        if (errno == EEXIST)
            return errf(err, errsz,
                        "%s already exists: task id '%s' has results there already (remove it "
                        "or choose another id)",
                        dir, r->o.task->id);
        return errf(err, errsz, "cannot create %s: %s", dir, strerror(errno));
    }
    r->state_dfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (r->state_dfd < 0)
        return errf(err, errsz, "cannot open %s: %s", dir, strerror(errno));
    r->events_path = path_join(dir, "events.jsonl");
    r->outputs_path = path_join(dir, "outputs");
    if (!r->events_path || !r->outputs_path)
        return errf(err, errsz, "out of memory");
    r->events_fd = openat(r->state_dfd, "events.jsonl",
                          O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (r->events_fd < 0)
        return errf(err, errsz, "cannot create %s: %s", r->events_path, strerror(errno));
    if (events_add_fd(r->o.events, r->events_fd) < 0)
        return errf(err, errsz, "too many event sinks");
    if (mkdirat(r->state_dfd, "outputs", 0700) < 0)
        return errf(err, errsz, "cannot create %s: %s", r->outputs_path, strerror(errno));
    r->outputs_dirfd =
        openat(r->state_dfd, "outputs", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (r->outputs_dirfd < 0)
        return errf(err, errsz, "cannot open %s: %s", r->outputs_path, strerror(errno));
    return 0;
}

/* What the cell needs to know of its task; host-only fields (from_dir, metadata, models,
 * budgets) stay outside. */
static cJSON *task_for_cell(const struct runner *r)
{
    const struct task *t = r->o.task;
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "id", t->id);
    cJSON_AddStringToObject(j, "prompt", t->prompt);
    cJSON_AddNumberToObject(j, "max_iterations", r->o.max_iterations);
    cJSON_AddNumberToObject(j, "timeout_s", r->o.timeout_s);
    cJSON_AddBoolToObject(j, "native_tools", r->o.native_tools);
    cJSON_AddNumberToObject(j, "context_tokens", (double)r->o.context_tokens);
    cJSON_AddBoolToObject(j, "seeded", t->workspace_from != NULL);
    post_task_fields(&r->post, j);
    if (t->files)
        cJSON_AddItemToObject(j, "files", cJSON_Duplicate(t->files, 1));
    if (r->o.egress) { /* the agent tells the model which hosts it can reach */
        cJSON *na = cJSON_AddArrayToObject(j, "network_allow");
        char buf[EGRESS_HOST_MAX + 16];
        for (size_t i = 0; na && i < r->o.egress->nrules; i++) {
            egress_rule_str(&r->o.egress->rules[i], buf, sizeof(buf));
            cJSON_AddItemToArray(na, cJSON_CreateString(buf));
        }
    }
    cJSON *outs = cJSON_AddArrayToObject(j, "outputs");
    for (size_t i = 0; i < t->noutputs; i++)
        cJSON_AddItemToArray(outs, cJSON_CreateString(t->outputs[i]));
    return j;
}

char *const *runner_cell_env(void)
{
#ifdef __SANITIZE_ADDRESS__
    /* the sanitizer build's agent: LeakSanitizer needs ptrace, which the cell's seccomp
     * filter denies, so leaks are checked in the supervisor and the unit tests instead
     * (built on the loop thread, at its first task) */
    static char *asan_env[32];
    if (!asan_env[0]) {
        size_t n = 0;
        for (char *const *e = cell_default_env(); *e && n < ARRAY_SIZE(asan_env) - 2; e++)
            asan_env[n++] = *e;
        asan_env[n] = "ASAN_OPTIONS=detect_leaks=0";
    }
    return asan_env;
#else
    return NULL;
#endif
}

/* The loop's part before the cell: the runner and the cell's environment. */
static int runner_alloc(const struct runner_opts *opts, struct runner **out, char *err,
                        size_t errsz)
{
    struct runner *r = calloc(1, sizeof(*r));
    if (!r)
        return errf(err, errsz, "out of memory");
    r->o = *opts;
    r->chan = r->state_dfd = r->events_fd = r->outputs_dirfd = r->job.done_fd = -1;
    r->post.vjob.done_fd = -1; /* post_prepare may never run (a state dir that fails) */
    channel_reader_init(&r->rd);
    r->models_tried = cJSON_CreateArray();
    r->start_mono = monotonic_s();
    r->start_wall = wallclock_s();
    r->deadline = r->start_mono + opts->timeout_s;
    /* a compromised agent must not be able to make unbounded paid calls */
    r->llm_call_cap = opts->max_iterations * 2 + 10;
    r->exit_code = EXIT_FAILURE;
    if (!r->models_tried) {
        runner_free(r);
        return errf(err, errsz, "out of memory");
    }
    r->cell_env = runner_cell_env();
    r->egress_env =
        opts->egress ? egress_cell_env(r->cell_env ? r->cell_env : cell_default_env()) : NULL;
    if (r->egress_env)
        r->cell_env = r->egress_env;
    *out = r;
    return 0;
}

/* The task's state dir and events file, and task_queued, the first event in it. */
static int open_state(struct runner *r, char *err, size_t errsz)
{
    if (make_state_dir(r, err, errsz) < 0)
        return -1;
    /* a supervisor with a queue says when the task entered it */
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "queued_at", r->o.queued_at > 0 ? r->o.queued_at : r->start_wall);
    events_emit(r->o.events, "task_queued", q);
    return 0;
}

static int begin(const struct runner_opts *opts, struct runner **out, char *err, size_t errsz)
{
    if (runner_alloc(opts, out, err, errsz) < 0)
        return -1;
    if (open_state(*out, err, errsz) < 0) {
        runner_free(*out);
        return -1;
    }
    return 0;
}

/* The task's directory survives a power loss with its result: its parent is synced once,
 * long before any result (on the spawner thread, or after a prepared cell has its task, so
 * that the sync is not on the way to the agent's first step). */
static void durable_dir(const struct runner *r)
{
    (void)fsync_parent_dir(r->o.state_dir);
}

/* The cell: on a spawner thread (or inline for run). Only r's cell, channel, clone. */
static int spawn_cell(struct runner *r, char *err, size_t errsz)
{
    durable_dir(r);
    if (post_prepare(&r->post, r->o.task, NULL, err, errsz) < 0)
        return -1;
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
        return errf(err, errsz, "socketpair: %s", strerror(errno));
    /* a git workspace seeds from the supervisor's own clone of it, opened here like any seed */
    const char *tree = post_git_tree(&r->post);
    cleanup_fd int git_seed_fd =
        tree ? open(tree, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC) : -1;
    struct cell_config cc = {
        .policy = r->o.policy,
        .seccomp = r->o.seccomp,
        .limits = r->o.limits,
        .network_host = r->o.network_host,
        .egress = r->o.egress != NULL,
        .workspace_from = post_seed(&r->post),
        .seed_fd = tree ? git_seed_fd : r->o.seed_fd,
        .pid1 = CELL_PID1_AGENT,
        .argv = NULL,
        .envp = r->cell_env,
        .channel_fd = sv[1],
        .stdio_passthrough = false,
        .stdout_fd = -1,
        .stderr_fd = -1,
    };
    /* the supervisor enforces the wall clock itself (with a grace period for the agent to
     * hand over its results), so the cell gets none of its own */
    cc.limits.timeout_s = 0;
    int rc = cell_spawn(&cc, &r->cell, err, errsz);
    (void)close(sv[1]);
    r->chan = sv[0];
    if (rc < 0)
        return -1;
    if (fcntl(r->chan, F_SETFL, O_NONBLOCK) < 0)
        return errf(err, errsz, "fcntl: %s", strerror(errno));
    /* the cell's egress proxy (a fork and exec of its helper) starts here too, off the loop */
    if (r->o.egress &&
        egress_start(r->o.egress, cell_take_proxy_fd(r->cell), &r->egress, err, errsz) < 0) {
        (void)cell_kill(r->cell); /* it gets no task: the task fails (fail_setup) */
        return -1;
    }
    return 0;
}

static void spawn_job_run(struct spawn_job *j)
{
    struct runner *r = (struct runner *)((char *)j - offsetof(struct runner, job));
    r->spawn_rc = spawn_cell(r, r->spawn_err, sizeof(r->spawn_err));
}

static void emit_started(struct runner *r)
{
    cJSON *f = cJSON_CreateObject();
    cJSON_AddNumberToObject(f, "cell_pid", cell_pid(r->cell));
    cJSON_AddStringToObject(f, "model", r->o.models[0] ? r->o.models[0] : "");
    cJSON_AddNumberToObject(f, "timeout_s", r->o.timeout_s);
    cJSON_AddBoolToObject(f, "prewarmed", r->prewarmed);
    events_emit(r->o.events, "task_started", f);
}

static void send_task(struct runner *r)
{
    cJSON *tf = cJSON_CreateObject();
    cJSON_AddItemToObject(tf, "task", task_for_cell(r));
    /* the first frame is small and the socket buffer empty: this does not block */
    runner_send_to_cell(r, CH_TASK, tf);
}

/* The loop's part once the cell is there (with its egress proxy): task_started, the task
 * frame. A task cancelled while its cell was being made gets no task: its cell is killed at
 * once. */
static void hand_over(struct runner *r)
{
    post_announce(&r->post, r->o.events);
    emit_started(r);
    if (r->cancelled) {
        r->cancel_sent = r->kill_sent = true;
        (void)cell_kill(r->cell);
        return;
    }
    send_task(r);
}

/* A cell that could not be made: the task fails with what went wrong, a result like the
 * ones of tasks that never ran, saved before its terminal event. */
static void fail_setup(struct runner *r, const char *msg)
{
    log_debug("task %s: %s", r->o.task->id, msg);
    double elapsed = monotonic_s() - r->start_mono;
    r->result = runner_result_unrun(r->o.task->id, "failed",
                                    broker_error_object("UNKNOWN_ERROR", msg, NULL), elapsed,
                                    r->o.models[0], r->events_path, r->o.task->metadata);
    r->result_saved = r->result && runner_write_result(r->state_dfd, r->result, NULL) == 0;
    r->exit_code = task_status_exit_code("failed");
    r->reaped = true; /* nothing to wait for: runner_done */
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", "failed");
    cJSON_AddNumberToObject(f, "iterations", 0);
    cJSON_AddNumberToObject(f, "execution_time", elapsed);
    cJSON_AddNumberToObject(f, "llm_calls", 0);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->result, "error");
    if (cJSON_IsObject(e))
        cJSON_AddItemToObject(f, "error", cJSON_Duplicate(e, 1));
    events_emit(r->o.events, "task_failed", f);
}

/* A prepared cell (prewarm.h) when this task's cell would be made exactly like it: no seed,
 * no git clone, no network, no egress proxy, the pool's policy, limits and environment. */
static bool take_prepared(struct runner *r)
{
    const struct task *t = r->o.task;
    if (!r->o.prewarm || t->workspace_from || t->git || r->o.network_host || r->o.egress)
        return false;
    if (!prewarm_take(r->o.prewarm, r->o.policy, r->o.seccomp, &r->o.limits, r->cell_env, &r->cell,
                      &r->chan))
        return false;
    post_prepare(&r->post, t, NULL, NULL, 0); /* no clone: only its record of the task */
    r->prewarmed = true;
    return true;
}

int runner_start(const struct runner_opts *opts, struct runner **out, char *err, size_t errsz)
{
    struct runner *r;
    if (begin(opts, &r, err, errsz) < 0)
        return -1;
    if (spawn_cell(r, err, errsz) < 0) {
        runner_free(r);
        return -1;
    }
    hand_over(r);
    *out = r;
    return 0;
}

/* A prepared cell gets its task frame first: its agent starts on it while the loop makes
 * the state dir (the loop reads nothing from the cell before that is done). A state dir
 * that cannot be made fails the start as without a prepared cell; the cell is killed. */
static int start_prepared(struct runner *r, char *err, size_t errsz)
{
    send_task(r);
    if (open_state(r, err, errsz) < 0)
        return -1;
    emit_started(r);
    durable_dir(r);
    return 0; /* the pool makes the next cell a little later (prewarm_fill) */
}

int runner_start_async(const struct runner_opts *opts, struct runner **out, char *err, size_t errsz)
{
    struct runner *r;
    if (runner_alloc(opts, &r, err, errsz) < 0)
        return -1;
    if (take_prepared(r)) {
        if (start_prepared(r, err, errsz) < 0) {
            runner_free(r);
            return -1;
        }
        *out = r;
        return 0;
    }
    if (open_state(r, err, errsz) < 0) {
        runner_free(r);
        return -1;
    }
    if (spawner_job_init(&r->job, spawn_job_run, err, errsz) < 0 ||
        spawner_submit(&r->job, err, errsz) < 0) {
        runner_free(r);
        return -1;
    }
    r->spawning = true;
    *out = r;
    return 0;
}

bool runner_spawning(const struct runner *r)
{
    return r->spawning;
}

void runner_spawn_step(struct runner *r)
{
    if (!spawner_job_done(&r->job))
        return;
    /* the eventfd stays open until runner_free: a caller's epoll may still hold it, and a
     * new fd with its number (the proxy's) must not be mistaken for it */
    r->spawning = false;
    if (r->spawn_rc < 0)
        fail_setup(r, r->spawn_err);
    else
        hand_over(r);
}

void runner_spawn_wait(struct runner *r)
{
    if (!r->spawning)
        return;
    spawner_job_wait(&r->job);
    r->spawning = false;
}
