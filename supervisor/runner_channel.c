/* runner_channel: what a cell sends over its channel (LLM requests, events, output files,
 * its patch, its report), checked against the protocol's rules; a cell that breaks them is
 * killed. Everything read here is hostile: bounded, made valid UTF-8, files created only
 * below the task's outputs directory (never following a link). Never decides a status. */
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

#include "log.h"
#include "result_report.h"
#include "utf8.h"
#include "util.h"

static const char *const cell_event_types[] = {"tool_call", "tool_result",   "condensed",
                                               "stuck",     "agent_message", "nudge",
                                               "step",      "tool_mode",     NULL};

static void handle_event(struct runner *r, cJSON *h)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(h, "type");
    if (!cJSON_IsString(type))
        return;
    const char *const *ok = cell_event_types;
    while (*ok && strcmp(*ok, type->valuestring) != 0)
        ok++;
    if (!*ok) {
        log_debug("task %s: dropped an event of unknown type from the cell", r->o.task->id);
        return;
    }
    char name[32];
    snprintf(name, sizeof(name), "%s", type->valuestring);
    cJSON *fields = cJSON_Duplicate(h, 1);
    if (!fields)
        return;
    cJSON_DeleteItemFromObjectCaseSensitive(fields, "t");
    cJSON_DeleteItemFromObjectCaseSensitive(fields, "type");
    events_emit(r->o.events, name, fields);
}

static int open_parent_dirs(int dirfd, char *rel, const char **leaf)
{
    int fd = dup(dirfd);
    if (fd < 0)
        return -1;
    char *p = rel;
    for (char *slash; (slash = strchr(p, '/')) != NULL; p = slash + 1) {
        *slash = '\0';
        if (mkdirat(fd, p, 0700) < 0 && errno != EEXIST) {
            (void)close(fd);
            return -1;
        }
        /* O_NOFOLLOW: whatever is there must be the directory we (or an earlier file of
         * this task) made, never a link elsewhere */
        int next = openat(fd, p, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        (void)close(fd);
        if (next < 0)
            return -1;
        fd = next;
    }
    *leaf = p;
    return fd;
}

static void handle_output(struct runner *r, const struct channel_msg *m)
{
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(m->header, "path");
    if (!cJSON_IsString(path) || !task_path_is_safe(path->valuestring)) {
        log_warn("task %s: refused an output file with an unsafe path", r->o.task->id);
        return;
    }
    if (r->output_files >= RUNNER_OUTPUT_MAX_FILES ||
        r->output_bytes + m->payload_len > RUNNER_OUTPUT_MAX_BYTES) {
        log_warn("task %s: output limit reached; %s not saved", r->o.task->id, path->valuestring);
        return;
    }
    cleanup_free char *rel = strdup(path->valuestring);
    const char *leaf = NULL;
    cleanup_fd int dfd = rel ? open_parent_dirs(r->outputs_dirfd, rel, &leaf) : -1;
    if (dfd < 0) {
        log_warn("task %s: cannot save output %s: %s", r->o.task->id, path->valuestring,
                 strerror(errno));
        return;
    }
    cleanup_fd int fd =
        openat(dfd, leaf, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0 || write_all(fd, m->payload ? m->payload : "", m->payload_len) < 0) {
        int e = errno;
        log_warn("task %s: cannot save output %s: %s", r->o.task->id, path->valuestring,
                 strerror(e));
        if (fd >= 0)
            (void)unlinkat(dfd, leaf, 0); /* no half file that looks saved */
        r->outputs_lost++;                /* the result says so: a success must not hide a loss */
        r->outputs_errno = e;
        return;
    }
    r->output_files++;
    r->output_bytes += m->payload_len;
}

static void handle_report(struct runner *r, cJSON *h)
{
    if (r->report)
        return; /* one report per task; a second is ignored */
    r->report = cJSON_Duplicate(h, 1);
    /* checked, bounded and made valid UTF-8 once, before anything is written */
    result_report_clean(r->report, &r->cut);
}

static void on_llm(void *ctx, struct channel_msg *m)
{
    runner_handle_llm(ctx, m);
}
static void on_event(void *ctx, struct channel_msg *m)
{
    handle_event(ctx, m->header);
}
static void on_output(void *ctx, struct channel_msg *m)
{
    handle_output(ctx, m);
}
static void on_result(void *ctx, struct channel_msg *m)
{
    handle_report(ctx, m->header);
}

static void on_patch(void *ctx, struct channel_msg *m)
{
    struct runner *r = ctx;
    post_on_patch(&r->post, m);
}

/* What the supervisor accepts from a cell; anything else ends the task. */
static const struct channel_rule cell_rules[] = {
    {CH_LLM, CH_FROM_CELL, false, on_llm},       {CH_EVENT, CH_FROM_CELL, false, on_event},
    {CH_OUTPUT, CH_FROM_CELL, false, on_output}, {CH_PATCH, CH_FROM_CELL, true, on_patch},
    {CH_RESULT, CH_FROM_CELL, true, on_result},
};

/* The cell sent what the protocol does not permit: it is not trusted to say anything more.
 * The channel is closed, the cell killed, and the task fails saying why (decide_status). */
static void protocol_violation(struct runner *r, const char *what)
{
    snprintf(r->violation, sizeof(r->violation), "%s", what);
    log_warn("task %s: the cell broke the channel protocol (%s): killing it", r->o.task->id, what);
    r->chan_closed = true;
    broker_cancel_task(r->o.broker, r->o.task->id);
    if (!r->kill_sent)
        (void)cell_kill(r->cell);
    r->kill_sent = true;
}

void runner_read_channel(struct runner *r)
{
    for (int budget = 64; budget > 0; budget--) {
        struct channel_msg m;
        int rc = channel_read(&r->rd, r->chan, &m);
        if (rc == 0)
            return;
        if (rc < 0) {
            if (errno)
                log_debug("task %s: channel closed: %s", r->o.task->id, strerror(errno));
            r->chan_closed = true;
            return;
        }
        /* Every string out of the cell is valid UTF-8 before it goes anywhere (events, the
         * LLM request, logs); the report gets its own treatment (escaped names, marks). */
        if (m.kind != CH_RESULT && utf8_fix_json(m.header) != 0) {
            const cJSON *t = cJSON_GetObjectItemCaseSensitive(m.header, "t");
            m.type = cJSON_IsString(t) ? t->valuestring : ""; /* the old one may be freed */
        }
        char why[100];
        int drc = channel_dispatch(cell_rules, ARRAY_SIZE(cell_rules), &r->chan_seen, r, &m, why,
                                   sizeof(why));
        channel_msg_clear(&m);
        if (drc < 0) {
            protocol_violation(r, why);
            return;
        }
    }
}
