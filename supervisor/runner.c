/* runner: see runner.h. Status, usage and models_tried come from what the supervisor saw
 * itself (its own LLM outcomes, its own clock, the kernel's record of the cell); from the
 * cell it takes only the agent's report (final message, end reason, iterations, files,
 * diff, outputs), each field checked and bounded. */
#include "runner_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "channel.h"
#include "crashpoint.h"
#include "egress.h"
#include "json.h"
#include "log.h"
#include "result_report.h"
#include "status.h"
#include "runner_post.h"
#include "utf8.h"
#include "util.h"

/* The proxy's net_connect / net_denied, into the task's event stream. */
static void egress_event(void *opaque, const char *type, cJSON *fields)
{
    struct runner *r = opaque;
    events_emit(r->o.events, type, fields);
}

void runner_send_to_cell(struct runner *r, enum channel_type type, cJSON *fields)
{
    if (r->chan < 0 || r->chan_closed) {
        cJSON_Delete(fields);
        return;
    }
    if (channel_send_kind(r->chan, type, fields, NULL, 0) < 0 && errno != EPIPE)
        log_debug("task %s: channel send failed: %s", r->o.task->id, strerror(errno));
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
    (void)fsync_parent_dir(dir); /* the task's directory survives a power loss with its result */
    snprintf(r->events_path, sizeof(r->events_path), "%s/events.jsonl", dir);
    r->events_fd = open(r->events_path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (r->events_fd < 0)
        return errf(err, errsz, "cannot create %s: %s", r->events_path, strerror(errno));
    if (events_add_fd(r->o.events, r->events_fd) < 0)
        return errf(err, errsz, "too many event sinks");
    snprintf(r->outputs_path, sizeof(r->outputs_path), "%s/outputs", dir);
    if (mkdir(r->outputs_path, 0700) < 0)
        return errf(err, errsz, "cannot create %s: %s", r->outputs_path, strerror(errno));
    r->outputs_dirfd = open(r->outputs_path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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

int runner_start(const struct runner_opts *opts, struct runner **out, char *err, size_t errsz)
{
    struct runner *r = calloc(1, sizeof(*r));
    if (!r)
        return errf(err, errsz, "out of memory");
    r->o = *opts;
    r->chan = r->events_fd = r->outputs_dirfd = -1;
    channel_reader_init(&r->rd);
    r->models_tried = cJSON_CreateArray();
    r->start_mono = monotonic_s();
    r->start_wall = wallclock_s();
    r->deadline = r->start_mono + opts->timeout_s;
    /* a compromised agent must not be able to make unbounded paid calls */
    r->llm_call_cap = opts->max_iterations * 2 + 10;
    r->exit_code = EXIT_FAILURE;
    if (!r->models_tried || make_state_dir(r, err, errsz) < 0) {
        runner_free(r);
        return -1;
    }
    cJSON *f = cJSON_CreateObject();
    /* a supervisor with a queue says when the task entered it; the event is written here,
     * where the task's event file begins */
    cJSON *q = cJSON_CreateObject();
    cJSON_AddNumberToObject(q, "queued_at", opts->queued_at > 0 ? opts->queued_at : r->start_wall);
    events_emit(r->o.events, "task_queued", q);
    if (post_prepare(&r->post, opts->task, r->o.events, err, errsz) < 0) {
        cJSON_Delete(f);
        runner_free(r);
        return -1;
    }

    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
        cJSON_Delete(f);
        runner_free(r);
        return errf(err, errsz, "socketpair: %s", strerror(errno));
    }
#ifdef __SANITIZE_ADDRESS__
    /* the sanitizer build's agent: LeakSanitizer needs ptrace, which the cell's seccomp
     * filter denies, so leaks are checked in the supervisor and the unit tests instead */
    static char *asan_env[32];
    if (!asan_env[0]) {
        size_t n = 0;
        for (char *const *e = cell_default_env(); *e && n < ARRAY_SIZE(asan_env) - 2; e++)
            asan_env[n++] = *e;
        asan_env[n] = "ASAN_OPTIONS=detect_leaks=0";
    }
    char *const *cell_env = asan_env;
#else
    char *const *cell_env = NULL;
#endif
    cleanup_free char **egress_env =
        opts->egress ? egress_cell_env(cell_env ? cell_env : cell_default_env()) : NULL;
    if (egress_env)
        cell_env = egress_env;
    /* a git workspace seeds from the supervisor's own clone of it, opened here like any seed */
    cleanup_fd int git_seed_fd =
        r->post.git.top[0] ? open(r->post.git.tree, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                           : -1;
    struct cell_config cc = {
        .policy = opts->policy,
        .seccomp = opts->seccomp,
        .limits = opts->limits,
        .network_host = opts->network_host,
        .egress = opts->egress != NULL,
        .workspace_from = post_seed(&r->post),
        .seed_fd = r->post.git.top[0] ? git_seed_fd : opts->seed_fd,
        .pid1 = CELL_PID1_AGENT,
        .argv = NULL,
        .envp = cell_env,
        .channel_fd = sv[1],
        .stdio_passthrough = false,
        .stdout_fd = -1,
        .stderr_fd = -1,
    };
    /* the supervisor enforces the wall clock itself (with a grace period for the agent to
     * hand over its results), so the cell gets none of its own */
    cc.limits.timeout_s = 0;
    char cerr[ERR_MSG_MAX];
    int rc = cell_spawn(&cc, &r->cell, cerr, sizeof(cerr));
    (void)close(sv[1]);
    r->chan = sv[0];
    if (rc == 0 && opts->egress &&
        egress_start(opts->egress, cell_take_proxy_fd(r->cell), &r->egress, cerr, sizeof(cerr)) < 0)
        rc = -1;
    if (rc < 0) {
        cJSON_Delete(f);
        errf(err, errsz, "%s", cerr);
        runner_free(r);
        return -1;
    }
    if (fcntl(r->chan, F_SETFL, O_NONBLOCK) < 0) {
        cJSON_Delete(f);
        runner_free(r);
        return errf(err, errsz, "fcntl: %s", strerror(errno));
    }
    cJSON_AddNumberToObject(f, "cell_pid", cell_pid(r->cell));
    cJSON_AddStringToObject(f, "model", opts->models[0] ? opts->models[0] : "");
    cJSON_AddNumberToObject(f, "timeout_s", opts->timeout_s);
    events_emit(r->o.events, "task_started", f);
    cJSON *tf = cJSON_CreateObject();
    cJSON_AddItemToObject(tf, "task", task_for_cell(r));
    /* the first frame is small and the socket buffer empty: this does not block */
    runner_send_to_cell(r, CH_TASK, tf);
    *out = r;
    return 0;
}

int runner_poll_fds(struct runner *r, struct pollfd *fds, int max)
{
    int n = 0;
    if (r->reaped) {
        if (post_poll_fd(&r->post) >= 0 && max > 0)
            fds[n++] = (struct pollfd){.fd = post_poll_fd(&r->post), .events = POLLIN};
        return n;
    }
    if (!r->chan_closed && n < max)
        fds[n++] = (struct pollfd){.fd = r->chan, .events = POLLIN};
    if (n < max)
        fds[n++] = (struct pollfd){.fd = cell_pidfd(r->cell), .events = POLLIN};
    if (r->egress && n < max)
        fds[n++] = (struct pollfd){.fd = egress_fd(r->egress), .events = POLLIN};
    return n;
}

double runner_next_wakeup(const struct runner *r)
{
    /* once the kill is sent only the pidfd matters: a past time here would spin a loop */
    if (r->reaped)
        return post_wakeup(&r->post);
    if (r->kill_sent)
        return 0;
    return r->cancel_sent ? r->kill_at : r->deadline;
}

static void wrap_up(struct runner *r, const char *reason)
{
    if (r->cancel_sent)
        return;
    r->cancel_sent = true;
    r->kill_at = monotonic_s() + RUNNER_GRACE_S;
    broker_cancel_task(r->o.broker, r->o.task->id);
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "reason", reason);
    runner_send_to_cell(r, CH_CANCEL, f);
    /* the agent reads its channel only between steps; SIGTERM reaches it inside a tool too
     * (tool_bash polls the flag the handler sets), so it stops the command and reports */
    (void)kill(cell_pid(r->cell), SIGTERM);
}

void runner_cancel(struct runner *r)
{
    if (r->reaped && post_verifying(&r->post)) {
        r->cancelled = true;
        post_kill(&r->post);
    }
    if (r->reaped || r->timed_out)
        return;
    r->cancelled = true;
    wrap_up(r, "cancelled");
}

void runner_handle(struct runner *r, const struct pollfd *fds, int nfds)
{
    if (r->reaped) {
        if (post_verifying(&r->post) && post_step(&r->post, r->o.events))
            runner_build_result(r);
        return;
    }
    bool pid_ready = false;
    for (int i = 0; i < nfds; i++) {
        if (fds[i].fd == r->chan && fds[i].revents)
            runner_read_channel(r);
        else if (fds[i].fd == cell_pidfd(r->cell) && fds[i].revents)
            pid_ready = true;
        else if (r->egress && fds[i].fd == egress_fd(r->egress) && fds[i].revents)
            egress_read(r->egress, egress_event, r);
    }
    double now = monotonic_s();
    if (!r->cancel_sent && now >= r->deadline) {
        r->timed_out = true;
        wrap_up(r, "timeout");
    } else if (r->cancel_sent && !r->kill_sent && now >= r->kill_at) {
        if (r->timed_out)
            (void)cell_timeout(r->cell);
        else
            (void)cell_kill(r->cell);
        r->kill_sent = true;
    }
    if (!pid_ready)
        return;
    /* drain what the agent sent before it exited */
    if (!r->chan_closed)
        runner_read_channel(r);
    if (r->egress) {
        r->network = egress_finish(r->egress, egress_event, r);
        r->egress = NULL;
    }
    if (cell_reap(r->cell, &r->rec) < 0)
        log_warn("task %s: reaping the cell failed: %s", r->o.task->id, strerror(errno));
    r->reaped = true;
    const char *end = r->report ? runner_report_string(r->report, "end", 64) : NULL;
    bool finished =
        end && strcmp(end, "finished") == 0 && !r->timed_out && !r->cancelled && !r->mock_used;
    if (!post_start_verify(&r->post, finished, r->o.policy, r->o.seccomp, &r->o.limits,
                           r->o.state_dir, r->o.events))
        runner_build_result(r);
}

bool runner_done(const struct runner *r)
{
    return r->reaped && !post_verifying(&r->post);
}

const cJSON *runner_result(const struct runner *r)
{
    return r->result;
}

bool runner_result_saved(const struct runner *r)
{
    return r->result_saved;
}

int runner_exit_code(const struct runner *r)
{
    return r->exit_code;
}

void runner_free(struct runner *r)
{
    if (!r)
        return;
    runner_llm_detach(r);
    if (r->egress)
        cJSON_Delete(egress_finish(r->egress, NULL, NULL));
    cJSON_Delete(r->network);
    if (r->cell) {
        if (!r->reaped) {
            (void)cell_kill(r->cell);
            struct cell_record rec;
            (void)cell_reap(r->cell, &rec);
        }
        cell_free(r->cell);
    }
    if (r->chan >= 0)
        (void)close(r->chan);
    if (r->events_fd >= 0)
        (void)close(r->events_fd);
    if (r->outputs_dirfd >= 0)
        (void)close(r->outputs_dirfd);
    channel_reader_free(&r->rd);
    post_free(&r->post);
    runner_llm_free(r);
    cJSON_Delete(r->models_tried);
    cJSON_Delete(r->last_outcome);
    cJSON_Delete(r->report);
    cJSON_Delete(r->result);
    free(r);
}
