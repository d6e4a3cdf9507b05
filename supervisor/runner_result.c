/* runner_result: the result record of a task that ran: its status decided from what the
 * supervisor saw itself (its clock, its LLM outcomes, the kernel's record of the cell) plus
 * the agent's checked report, written durably before its terminal event. Never reads the
 * channel and never touches the cell. */
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

#include "crashpoint.h"
#include "log.h"
#include "result_report.h"
#include "status.h"
#include "util.h"

const char *runner_report_string(const cJSON *rep, const char *name, size_t max)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(rep, name);
    if (!cJSON_IsString(v) || strlen(v->valuestring) > max)
        return NULL;
    return v->valuestring;
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static double overhead_median_ms(struct runner *r)
{
    if (!r->noverhead)
        return 0;
    qsort(r->overhead_ms, r->noverhead, sizeof(float), cmp_float);
    return r->overhead_ms[r->noverhead / 2];
}

/* Decides status and error from what the supervisor knows; returns the terminal event. */
static const char *decide_status(struct runner *r, const char **status, cJSON **error)
{
    const cJSON *rep = r->report;
    const char *end = rep ? runner_report_string(rep, "end", 64) : NULL;
    char msg[600];
    *error = NULL;
    if (r->timed_out) {
        snprintf(msg, sizeof(msg), "the task's wall clock (%g s) ran out", r->o.timeout_s);
        *status = "timeout";
        *error = broker_error_object("TIMEOUT_ERROR", msg, NULL);
        return "task_timeout";
    }
    if (r->cancelled) {
        *status = "cancelled";
        return "task_cancelled";
    }
    if (r->violation[0]) {
        snprintf(msg, sizeof(msg), "the cell broke the channel protocol: %s", r->violation);
        *status = "failed";
        *error = broker_error_object("SDK_ERROR", msg, NULL);
        cJSON_AddStringToObject(*error, "reason", "protocol_violation");
        return "task_failed";
    }
    if (!rep || !end) {
        const char *how = r->rec.status == CELL_MEMORY ? "hit its memory limit" : "ended";
        snprintf(msg, sizeof(msg),
                 "the cell %s without a result (status %s, exit code %d, "
                 "signal %d)",
                 how, cell_status_name(r->rec.status), r->rec.exit_code, r->rec.signal);
        *status = "failed";
        *error = broker_error_object("SDK_ERROR", msg, NULL);
        return "task_failed";
    }
    if (strcmp(end, "finished") == 0 && r->outputs_lost) {
        snprintf(msg, sizeof(msg),
                 "the agent finished, but %u of its output files could not be saved (%s): "
                 "they are lost",
                 r->outputs_lost, strerror(r->outputs_errno));
        *status = "failed";
        *error = broker_error_object("UNKNOWN_ERROR", msg, NULL);
        cJSON_AddStringToObject(*error, "reason", "not_saved");
        return "task_failed";
    }
    if (strcmp(end, "finished") == 0) {
        if (r->mock_used) {
            /* the mock answered the last call: its error says why (strategies end in
             * FALLBACK_MOCK) */
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->last_outcome, "error");
            if (cJSON_IsObject(e))
                *error = cJSON_Duplicate(e, 1);
            *status = "mock";
            return "task_failed";
        }
        *status = "succeeded";
        return "task_completed";
    }
    if (strcmp(end, "llm_error") == 0 && r->last_outcome) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->last_outcome, "status");
        const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->last_outcome, "error");
        const char *s = cJSON_IsString(st) ? st->valuestring : "failed";
        if (cJSON_IsObject(e))
            *error = cJSON_Duplicate(e, 1);
        if (strcmp(s, "escalated") == 0) {
            *status = "escalated";
            return "task_escalated";
        }
        if (strcmp(s, "mock") == 0) {
            *status = "mock";
            return "task_failed";
        }
        if (strcmp(s, "timeout") == 0) {
            *status = "timeout";
            return "task_timeout";
        }
        *status = "failed";
        return "task_failed";
    }
    /* the agent's own endings (stuck, no_tool_calls, max_iterations, budget, error): no LLM
     * error, so error.reason names the ending; the task's budget is a limit of the request
     * (VALIDATION_ERROR, as the refused call says), the others the agent loop's (SDK_ERROR) */
    const char *why = runner_report_string(rep, "error", 1000);
    snprintf(msg, sizeof(msg), "%s", why ? why : end);
    *status = "failed";
    *error = broker_error_object(strcmp(end, "budget") == 0 ? "VALIDATION_ERROR" : "SDK_ERROR", msg,
                                 NULL);
    cJSON_AddStringToObject(*error, "reason", end);
    return "task_failed";
}

/* The fields of a terminal event for a result replaced by save_result. */
static cJSON *terminal_fields(const struct runner *r, double iters)
{
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", "failed");
    cJSON_AddNumberToObject(f, "iterations", fmin(iters, r->llm_calls));
    cJSON_AddNumberToObject(f, "execution_time", monotonic_s() - r->start_mono);
    cJSON_AddNumberToObject(f, "llm_calls", r->llm_calls);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r->result, "error");
    if (cJSON_IsObject(e))
        cJSON_AddItemToObject(f, "error", cJSON_Duplicate(e, 1));
    return f;
}

/* Writes result.json atomically. When the disk refuses it (full), the result becomes a
 * small failed one that says what was lost, saved if there is room for that. Returns false
 * when the result was replaced. */
static bool save_result(struct runner *r)
{
    if (runner_write_result(r->state_dfd, r->result, "result-half") == 0) {
        r->result_saved = true;
        return true;
    }
    int e = errno;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(r->result, "status");
    char msg[700];
    snprintf(msg, sizeof(msg),
             "the task's result could not be saved (%s): it ended '%s', and its output, diff, "
             "file list and output files are lost",
             strerror(e), cJSON_IsString(st) ? st->valuestring : "failed");
    log_warn("task %s: %s", r->o.task->id, msg);
    cJSON *err = broker_error_object("UNKNOWN_ERROR", msg, NULL);
    cJSON_AddStringToObject(err, "reason", "not_saved");
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(r->result, "metadata");
    cJSON *small = runner_result_unrun(r->o.task->id, "failed", err, monotonic_s() - r->start_mono,
                                       r->last_model, r->events_path, md);
    if (small) {
        cJSON_Delete(r->result);
        r->result = small;
    }
    r->exit_code = 1;
    r->result_saved = small && runner_write_result(r->state_dfd, small, NULL) == 0;
    return false;
}

void runner_build_result(struct runner *r)
{
    const struct task *t = r->o.task;
    const char *status = "failed";
    cJSON *error = NULL;
    const char *terminal = decide_status(r, &status, &error);
    post_decide(&r->post, &status, &terminal, &error);
    cJSON *res = cJSON_CreateObject();
    cJSON_AddStringToObject(res, "id", t->id);
    cJSON_AddStringToObject(res, "status", status);
    cJSON_AddBoolToObject(res, "success", strcmp(status, "succeeded") == 0);
    const char *output =
        r->report ? runner_report_string(r->report, "output", RESULT_OUTPUT_MAX_BYTES) : NULL;
    cJSON_AddStringToObject(res, "output", output ? output : "");
    cJSON_AddNumberToObject(res, "execution_time", monotonic_s() - r->start_mono);
    cJSON_AddItemToObject(res, "error", error ? error : cJSON_CreateNull());
    const cJSON *it = r->report ? cJSON_GetObjectItemCaseSensitive(r->report, "iterations") : NULL;
    double iters = cJSON_IsNumber(it) && it->valuedouble >= 0 ? floor(it->valuedouble) : 0;
    cJSON_AddNumberToObject(res, "iterations", fmin(iters, r->llm_calls));
    cJSON_AddStringToObject(res, "model", r->last_model);
    cJSON_AddItemToObject(res, "models_tried", cJSON_Duplicate(r->models_tried, 1));
    cJSON *usage = cJSON_AddObjectToObject(res, "usage");
    cJSON_AddNumberToObject(usage, "prompt_tokens", r->prompt_tokens);
    cJSON_AddNumberToObject(usage, "completion_tokens", r->completion_tokens);
    cJSON_AddNumberToObject(usage, "total_tokens", r->total_tokens);
    cJSON_AddNumberToObject(usage, "cost_usd", r->cost_usd);
    const cJSON *files = r->report ? cJSON_GetObjectItemCaseSensitive(r->report, "files") : NULL;
    cJSON_AddItemToObject(res, "files", files ? cJSON_Duplicate(files, 1) : cJSON_CreateArray());
    const char *diff =
        r->report ? runner_report_string(r->report, "diff", RESULT_DIFF_MAX_BYTES) : NULL;
    cJSON_AddStringToObject(res, "diff", diff ? diff : "");
    result_report_add_cut(res, r->report ? &r->cut : NULL);
    if (r->output_files)
        cJSON_AddStringToObject(res, "outputs_dir", r->outputs_path);
    else
        cJSON_AddNullToObject(res, "outputs_dir");
    cJSON_AddStringToObject(res, "events_file", r->events_path);
    cJSON_AddItemToObject(res, "sandbox", cell_record_to_json(&r->rec));
    if (r->network)
        cJSON_AddItemToObject(res, "network", cJSON_Duplicate(r->network, 1));
    post_result(&r->post, res, r->state_dfd);
    cJSON *md = t->metadata ? cJSON_Duplicate(t->metadata, 1) : cJSON_CreateObject();
    if (strcmp(status, "mock") == 0)
        cJSON_AddBoolToObject(md, "mock", true);
    if (broker_is_replay(r->o.broker)) {
        cJSON_AddBoolToObject(md, "offline_replay", true);
        cJSON_AddStringToObject(md, "replay_file", broker_replay_path(r->o.broker));
    }
    cJSON_AddItemToObject(res, "metadata", md);
    r->result = res;
    r->exit_code = task_status_exit_code(status);

    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "status", status);
    cJSON_AddNumberToObject(f, "iterations", fmin(iters, r->llm_calls));
    cJSON_AddNumberToObject(f, "execution_time", monotonic_s() - r->start_mono);
    if (strcmp(status, "mock") == 0)
        cJSON_AddBoolToObject(f, "mock", true);
    cJSON_AddNumberToObject(f, "llm_calls", r->llm_calls);
    /* what brokering cost per call on this side (validation, serialization, channel), the
     * HTTP exchange itself excluded */
    cJSON_AddNumberToObject(f, "broker_overhead_ms", overhead_median_ms(r));
    cJSON_AddNumberToObject(f, "broker_overhead_mean_ms",
                            r->llm_calls ? r->broker_s * 1000.0 / r->llm_calls : 0);
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(res, "error");
    if (cJSON_IsObject(e))
        cJSON_AddItemToObject(f, "error", cJSON_Duplicate(e, 1));
    /* durable first: a terminal event is a promise that the result can be read */
    if (!save_result(r)) {
        cJSON_Delete(f);
        f = terminal_fields(r, iters);
        terminal = "task_failed";
    }
    crashpoint("after-result");
    events_emit(r->o.events, terminal, f);
    crashpoint("after-event");
}
