/* serve_result: how a finished task's result becomes durable and is read back. The order
 * is fixed: result.json (atomic: temp, fsync, rename, fsync dir), then the terminal event,
 * then the journal's `finished` record; whatever the crash point, a restart completes what
 * is missing from what is durable, so a task has one terminal event and a readable result.
 * Results live on disk, not in memory (read on demand): memory holds a task's summary, and
 * a result only while the disk refuses it (retried until it is saved). Never decides a
 * task's status on its own: it keeps what the runner, the event or the journal said. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "crashpoint.h"
#include "json.h"
#include "log.h"
#include "statefile.h"
#include "util.h"
#include "serve.h"

/* A result with a terminal status, or NULL (absent, torn, not an object). Read below the
 * state dir's fd, following no link. */
cJSON *serve_load_result(const struct server *s, const char *id)
{
    cleanup_free char *text = NULL;
    if (statefile_read(s->state_dfd, id, "result.json", SERVE_RESULT_MAX_BYTES, &text, NULL) < 0)
        return NULL;
    cJSON *res = cJSON_Parse(text);
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
    if (!cJSON_IsObject(res) || !cJSON_IsString(st) || task_status_parse(st->valuestring) < 0) {
        cJSON_Delete(res);
        return NULL;
    }
    return res;
}

const char *serve_terminal_event_type(enum task_status st)
{
    switch (st) {
    case TS_SUCCEEDED:
        return "task_completed";
    case TS_TIMEOUT:
        return "task_timeout";
    case TS_CANCELLED:
        return "task_cancelled";
    case TS_ESCALATED:
        return "task_escalated";
    default:
        return "task_failed";
    }
}

static bool is_terminal_type(const char *type)
{
    static const char *const names[] = {"task_completed", "task_failed", "task_timeout",
                                        "task_cancelled", "task_escalated"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strcmp(type, names[i]) == 0)
            return true;
    return false;
}

bool serve_is_terminal_event(const char *type)
{
    return is_terminal_type(type);
}

/* The task's terminal event from its events file (the last one, a torn line ignored), or
 * NULL when it never went out. */
cJSON *serve_terminal_event(const struct server *s, const char *id)
{
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (statefile_read(s->state_dfd, id, "events.jsonl", SERVE_EVENTS_READ_MAX, &text, &len) < 0)
        return NULL;
    /* complete lines only, last first: the terminal event is the last a task emits */
    char *end = memrchr(text, '\n', len);
    while (end) {
        *end = '\0';
        char *start = memrchr(text, '\n', (size_t)(end - text));
        start = start ? start + 1 : text;
        cJSON *ev = cJSON_Parse(start);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
        if (cJSON_IsString(type) && is_terminal_type(type->valuestring))
            return ev;
        cJSON_Delete(ev);
        end = start > text ? start - 1 : NULL;
    }
    return NULL;
}

/* The whole of a regular file open in fd (a FIFO would block the loop), at most max bytes. */
static int read_fd_whole(int fd, size_t max, char **out, size_t *outlen)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -1;
    if (!S_ISREG(st.st_mode)) {
        errno = EINVAL;
        return -1;
    }
    return read_fd_bounded(fd, max, out, outlen);
}

/* Events of a task that no runner produced go to its events file (after a torn last line
 * is cut off, so the new line stands alone) and to subscribers. */
static void emit_event(struct server *s, struct stask *t, const char *type, cJSON *fields,
                       bool live)
{
    /* below the state dir's fd, following no link (safedir.h) */
    cleanup_fd int fd =
        statefile_open(s->state_dfd, t->id, "events.jsonl", O_RDWR | O_CREAT | O_APPEND, 0600);
    struct event_log log;
    events_init(&log, t->id);
    /* continue the task's seq numbers when a runner wrote some already (read through the
     * same fd: what is counted is what is appended to) */
    cleanup_free char *old = NULL;
    size_t oldlen = 0;
    if (fd >= 0 && read_fd_whole(fd, SERVE_EVENTS_READ_MAX, &old, &oldlen) == 0) {
        const char *nl = oldlen ? memrchr(old, '\n', oldlen) : NULL;
        size_t whole = nl ? (size_t)(nl - old) + 1 : 0;
        if (whole < oldlen && ftruncate(fd, (off_t)whole) < 0)
            log_warn("%s/%s/events.jsonl: %s", s->state_dir, t->id, strerror(errno));
        for (size_t i = 0; i < whole; i++)
            log.seq += old[i] == '\n';
    }
    if (fd >= 0)
        (void)events_add_fd(&log, fd);
    struct slot tmp = {.srv = s, .t = t};
    if (live)
        (void)events_add_callback(&log, serve_slot_event_sink, &tmp);
    (void)events_emit(&log, type, fields);
}

void serve_emit_own_event(struct server *s, struct stask *t, const char *type, cJSON *fields)
{
    emit_event(s, t, type, fields, true);
}

/* The terminal event's fields for a result. */
cJSON *serve_terminal_fields(const cJSON *res)
{
    cJSON *f = cJSON_CreateObject();
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(res, "status");
    cJSON_AddStringToObject(f, "status", cJSON_IsString(st) ? st->valuestring : "failed");
    const char *copy[] = {"iterations", "execution_time", "error"};
    for (size_t i = 0; i < ARRAY_SIZE(copy); i++) {
        const cJSON *v = cJSON_GetObjectItemCaseSensitive(res, copy[i]);
        if (v && !cJSON_IsNull(v))
            cJSON_AddItemToObject(f, copy[i], cJSON_Duplicate(v, 1));
    }
    return f;
}

/* What is durable when result.json is not: the terminal event (or, failing that, the
 * journal's status). The output, diff and file list are gone and the result says so. */
cJSON *serve_rebuild_result(const struct server *s, const struct stask *t, const cJSON *ev)
{
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(ev, "status");
    const char *status = cJSON_IsString(st) && task_status_parse(st->valuestring) >= 0
                             ? st->valuestring
                             : task_status_name(t->status);
    const cJSON *err = cJSON_GetObjectItemCaseSensitive(ev, "error");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(ev, "execution_time");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(t->task_json, "model");
    char evp[STATEFILE_PATH_MAX];
    if (statefile_path(s->state_dir, t->id, "events.jsonl", evp, sizeof(evp)) < 0)
        return NULL;
    cJSON *res = runner_result_unrun(
        t->id, status, cJSON_IsObject(err) ? cJSON_Duplicate(err, 1) : NULL,
        cJSON_IsNumber(et) ? et->valuedouble : 0, cJSON_IsString(model) ? model->valuestring : NULL,
        evp, cJSON_GetObjectItemCaseSensitive(t->task_json, "metadata"));
    if (!res)
        return NULL;
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(ev, "iterations");
    if (cJSON_IsNumber(it))
        cJSON_ReplaceItemInObjectCaseSensitive(res, "iterations",
                                               cJSON_CreateNumber(it->valuedouble));
    cJSON_ReplaceItemInObjectCaseSensitive(res, "success",
                                           cJSON_CreateBool(strcmp(status, "succeeded") == 0));
    cJSON *md = cJSON_GetObjectItemCaseSensitive(res, "metadata");
    cJSON_AddStringToObject(md, "result_rebuilt",
                            ev ? "result.json was lost; rebuilt from the task's terminal event: "
                                 "its output, diff and file list are gone"
                               : "result.json was lost; rebuilt from the journal: its output, "
                                 "diff and file list are gone");
    return res;
}

static void note_disk(struct server *s, bool ok, int err)
{
    if (ok) {
        if (s->no_space)
            log_info("state disk: writable again");
        s->no_space = false;
    } else if (errno_is_no_space(err) && !s->no_space) {
        s->no_space = true;
        log_error("state disk %s is full: new tasks are refused (no_space) until it has room",
                  s->state_dir);
    }
}

/* result.json of a finished task, written atomically; false when the disk refused it. */
bool serve_save_result(struct server *s, const char *id, const cJSON *res, const char *crash_point)
{
    /* as the runner writes it (runner_write_result), below the state dir's fd */
    cleanup_free char *text = json_print_pretty(res);
    size_t n = text ? strlen(text) : 0;
    char *line = text ? realloc(text, n + 2) : NULL;
    int rc = -1;
    if (!line)
        errno = ENOMEM;
    else {
        text = line;
        memcpy(text + n, "\n", 2);
        rc = statefile_write(s->state_dfd, id, "result.json", text, n + 1, crash_point);
    }
    int e = errno;
    note_disk(s, rc == 0, e);
    if (rc < 0)
        log_warn("task %s: cannot save its result: %s", id, strerror(e));
    return rc == 0;
}

/* The journal's `finished` record; a task whose record or result is not durable yet keeps
 * its result in memory and is retried by serve_retry_unsaved. Then the result leaves
 * memory: it is read back from disk on demand. */
void serve_persist_finished(struct server *s, struct stask *t)
{
    if (!t->journal_saved) {
        int rc = journal_finished(&s->journal, t->id, task_status_name(t->status), t->ended);
        int e = errno;
        note_disk(s, rc == 0, e);
        if (rc < 0)
            log_error("journal: task %s finished: %s", t->id, strerror(e));
        t->journal_saved = rc == 0;
    }
    crashpoint("after-journal");
    bool pending = !t->result_saved || !t->journal_saved;
    if (pending && !t->unsaved) {
        t->unsaved = true;
        s->nunsaved++;
    } else if (!pending && t->unsaved) {
        t->unsaved = false;
        s->nunsaved--;
    }
    if (!pending) {
        cJSON_Delete(t->result);
        t->result = NULL;
    }
}

/* Housekeeping: tasks whose result or journal record the disk refused, saved once it has
 * room again (at most once a second). */
void serve_retry_unsaved(struct server *s)
{
    double now = monotonic_s();
    if (!s->nunsaved || now < s->unsaved_retry_at)
        return;
    s->unsaved_retry_at = now + 1.0;
    for (struct stask *t = s->store.head; t && s->nunsaved; t = t->next) {
        if (!t->unsaved)
            continue;
        if (!t->result_saved && !t->result) /* none could be made (out of memory) */
            t->result = serve_rebuild_result(s, t, NULL);
        if (!t->result_saved && t->result) {
            t->result_saved = serve_save_result(s, t->id, t->result, NULL);
            /* subscribers saw the terminal event; the file may have refused it */
            cleanup_json cJSON *ev = t->result_saved ? serve_terminal_event(s, t->id) : NULL;
            if (t->result_saved && !ev)
                emit_event(s, t, serve_terminal_event_type(t->status),
                           serve_terminal_fields(t->result), false);
        }
        if (t->result_saved)
            serve_persist_finished(s, t);
        if (!t->result_saved || !t->journal_saved)
            return; /* still full: the others wait for the next round */
        log_info("task %s: its result is saved now", t->id);
    }
}

/* The result to answer with (owned by the caller): the unsaved one in memory, else
 * result.json, else one rebuilt from what is durable (and saved for next time). */
cJSON *serve_result_get(struct server *s, struct stask *t)
{
    if (t->result)
        return cJSON_Duplicate(t->result, 1);
    cJSON *res = serve_load_result(s, t->id);
    if (res)
        return res;
    cleanup_json cJSON *ev = serve_terminal_event(s, t->id);
    res = serve_rebuild_result(s, t, ev);
    if (res) {
        log_warn("task %s: result.json missing or unreadable: rebuilt from %s", t->id,
                 ev ? "its terminal event" : "the journal");
        (void)serve_save_result(s, t->id, res, NULL);
    }
    return res;
}
