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

int runner_poll_fds(struct runner *r, struct pollfd *fds, int max)
{
    int n = 0;
    if (r->spawning) {
        if (max > 0)
            fds[n++] = (struct pollfd){.fd = r->job.done_fd, .events = POLLIN};
        return n;
    }
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
    if (r->spawning)
        return 0; /* the job's fd says when */
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
    if (r->spawning) {
        r->cancelled = true; /* the cell is killed once it exists (runner_spawn.c) */
        return;
    }
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
    if (r->spawning) {
        runner_spawn_step(r);
        return;
    }
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
    runner_spawn_wait(r); /* its job may still be making the cell */
    spawner_job_close(&r->job);
    free(r->egress_env);
    free(r->overhead_ms);
    free(r->events_path);
    free(r->outputs_path);
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
    if (r->state_dfd >= 0)
        (void)close(r->state_dfd);
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
