/* journal: see journal.h. Each record is one JSON line written with one write(2) and then
 * fdatasync'd; a write or sync that fails is cut back to the last good offset, and a crash
 * can tear at most the last line, which the reader skips and the next open cuts off. The
 * compacted copy is written beside the journal, fsync'd, renamed over it, and the directory
 * fsync'd; with no room for the copy (a full disk) the journal is kept as it is. */
#include "journal.h"

#include <errno.h>
#include <fcntl.h>
#include <search.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "atomicfile.h"
#include "grow.h"
#include "json.h"
#include "log.h"
#include "safedir.h"
#include "util.h"

/* A record is all there or not at all: a failed write or sync (a full disk) is cut back to
 * the last good offset, so the next record never lands glued to half of this one. A record
 * appended without its own sync (sync false) is made durable by the next one that syncs. */
static int append_rec(struct journal *j, cJSON *rec, bool sync)
{
    cleanup_free char *text = cJSON_PrintUnformatted(rec);
    cJSON_Delete(rec);
    if (!text)
        return -1;
    if (j->torn) {
        if (ftruncate(j->fd, (off_t)j->size) < 0)
            return -1;
        j->torn = false;
    }
    size_t n = strlen(text);
    text[n] = '\n'; /* replaces the NUL: written with its length, one write(2) */
    if (write_all(j->fd, text, n + 1) < 0 || (sync && fdatasync(j->fd) < 0)) {
        int e = errno;
        if (ftruncate(j->fd, (off_t)j->size) < 0)
            j->torn = true; /* cut back before the next record */
        errno = e;
        return -1;
    }
    j->size += n + 1;
    j->appended += n + 1;
    return 0;
}

static int append(struct journal *j, cJSON *rec)
{
    return append_rec(j, rec, true);
}

static cJSON *record(const char *op, const char *id, double ts)
{
    cJSON *rec = cJSON_CreateObject();
    if (rec &&
        (!cJSON_AddStringToObject(rec, "op", op) || !cJSON_AddStringToObject(rec, "id", id) ||
         !cJSON_AddNumberToObject(rec, "ts", ts))) {
        cJSON_Delete(rec);
        return NULL;
    }
    return rec;
}

static int add_owner(cJSON *rec, long owner)
{
    return owner < 0 || cJSON_AddNumberToObject(rec, "uid", (double)owner) ? 0 : -1;
}

int journal_submitted(struct journal *j, const char *id, const cJSON *task, double ts, long owner)
{
    cJSON *rec = record("submitted", id, ts);
    if (!rec || !cJSON_AddItemToObject(rec, "task", cJSON_Duplicate(task, 1)) ||
        add_owner(rec, owner) < 0) {
        cJSON_Delete(rec);
        return -1;
    }
    return append(j, rec);
}

/* Not synced on its own: a restart treats a task that has no `finished` record the same
 * whether it started or not (interrupted: failed, or queued again), so a `started` lost
 * with a power cut loses only the start time. The next synced record carries it. */
int journal_started(struct journal *j, const char *id, double ts)
{
    cJSON *rec = record("started", id, ts);
    return rec ? append_rec(j, rec, false) : -1;
}

int journal_finished(struct journal *j, const char *id, const char *status, double ts)
{
    cJSON *rec = record("finished", id, ts);
    if (!rec || !cJSON_AddStringToObject(rec, "status", status)) {
        cJSON_Delete(rec);
        return -1;
    }
    return append(j, rec);
}

int journal_forget(struct journal *j, const char *id)
{
    cJSON *rec = record("forgotten", id, wallclock_s());
    return rec ? append(j, rec) : -1;
}

void journal_entries_free(struct journal_entry *entries, size_t n)
{
    for (size_t i = 0; entries && i < n; i++)
        cJSON_Delete(entries[i].task);
    free(entries);
}

void journal_close(struct journal *j)
{
    if (j->fd >= 0)
        (void)close(j->fd);
    if (j->dfd >= 0)
        (void)close(j->dfd);
    j->fd = j->dfd = -1;
}

struct reader {
    struct journal_entry *e;
    size_t n, cap, max; /* max: the journal's lines, set before the first record */
    char **keys;        /* the index's keys (entries move on realloc; these do not) */
    size_t kcap;
    struct hsearch_data index;
};

static struct journal_entry *find(struct reader *r, const char *id)
{
    ENTRY probe = {.key = (char *)id, .data = NULL};
    ENTRY *found = NULL;
    if (!hsearch_r(probe, FIND, &found, &r->index) || !found)
        return NULL;
    size_t i = (size_t)(uintptr_t)found->data;
    return i < r->n ? &r->e[i] : NULL;
}

/* One line; anything malformed is skipped (a torn write, or a hand edit). A line that does
 * not parse may be a torn record with a whole one glued after it (a journal written by an
 * older agentbox): the last record start in it is tried. */
static void apply(struct reader *r, const char *line)
{
    cleanup_json cJSON *rec = cJSON_Parse(line);
    if (!rec) {
        const char *p = line, *last = NULL;
        while ((p = strstr(p + 1, "{\"op\":")) != NULL)
            last = p;
        if (last)
            rec = cJSON_Parse(last);
    }
    const cJSON *op = cJSON_GetObjectItemCaseSensitive(rec, "op");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(rec, "id");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(rec, "ts");
    if (!cJSON_IsString(op) || !cJSON_IsString(id) || !task_id_is_valid(id->valuestring))
        return;
    double t = cJSON_IsNumber(ts) ? ts->valuedouble : 0;
    struct journal_entry *e = find(r, id->valuestring);
    if (strcmp(op->valuestring, "submitted") == 0) {
        cJSON *task = cJSON_GetObjectItemCaseSensitive(rec, "task");
        if (!cJSON_IsObject(task))
            return;
        if (e) { /* an id reused after it was forgotten */
            cJSON_Delete(e->task);
            memset(e, 0, sizeof(*e));
        } else {
            /* one entry per `submitted` line at most: the bound is the journal's line count */
            if (GROW(r->e, r->n, r->cap, 64, r->max) < 0 ||
                GROW(r->keys, r->n, r->kcap, 64, r->max) < 0) {
                log_warn("journal: task %s skipped: %s", id->valuestring, strerror(errno));
                return;
            }
            ENTRY item = {.key = strdup(id->valuestring), .data = (void *)(uintptr_t)r->n};
            ENTRY *res = NULL;
            if (!item.key || !hsearch_r(item, ENTER, &res, &r->index)) {
                free(item.key);
                return;
            }
            r->keys[r->n] = item.key;
            e = &r->e[r->n++];
            memset(e, 0, sizeof(*e));
        }
        snprintf(e->id, sizeof(e->id), "%s", id->valuestring);
        const cJSON *uid = cJSON_GetObjectItemCaseSensitive(rec, "uid");
        e->owner = cJSON_IsNumber(uid) && uid->valuedouble >= 0 && uid->valuedouble < 4294967295.0
                       ? (long)uid->valuedouble
                       : -1;
        e->task = cJSON_DetachItemViaPointer(rec, task);
        e->submitted = t;
    } else if (!e) {
        return;
    } else if (strcmp(op->valuestring, "started") == 0) {
        e->started = t;
    } else if (strcmp(op->valuestring, "finished") == 0) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(rec, "status");
        e->ended = t;
        snprintf(e->status, sizeof(e->status), "%s",
                 cJSON_IsString(st) ? st->valuestring : "failed");
    } else if (strcmp(op->valuestring, "forgotten") == 0) {
        cJSON_Delete(e->task);
        memset(e, 0, sizeof(*e)); /* id "" = a hole, skipped below */
    }
}

/* Below the state dir's fd and never through a symlink: not the journal, not its copy. */
#define JOURNAL_NAME "journal.jsonl"
#define COMPACT_NAME ".journal.jsonl.compact"
#define STATE_OPEN   (O_CLOEXEC | O_NOFOLLOW)

static int write_compacted(int dfd, const struct journal_entry *e, size_t n)
{
    /* a dot name: task ids never start with one, so no task directory can be in the way */
    struct journal out = {
        .fd = openat(dfd, COMPACT_NAME, O_WRONLY | O_CREAT | O_TRUNC | STATE_OPEN, 0600)};
    if (out.fd < 0)
        return -1;
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        /* a finished task's JSON is needed by nobody: its result is on disk */
        cJSON *task =
            e[i].status[0] || !e[i].task ? cJSON_CreateObject() : cJSON_Duplicate(e[i].task, 1);
        cJSON *rec = record("submitted", e[i].id, e[i].submitted);
        if (!rec || !task || !cJSON_AddItemToObject(rec, "task", task)) {
            cJSON_Delete(task);
            cJSON_Delete(rec);
            rc = -1;
            break;
        }
        if (add_owner(rec, e[i].owner) < 0) {
            cJSON_Delete(rec);
            rc = -1;
            break;
        }
        cleanup_free char *text = cJSON_PrintUnformatted(rec);
        cJSON_Delete(rec);
        if (!text || write_all(out.fd, text, strlen(text)) < 0 || write_all(out.fd, "\n", 1) < 0)
            rc = -1;
        if (rc == 0 && e[i].started > 0) {
            cleanup_free char *s = NULL;
            cJSON *r2 = record("started", e[i].id, e[i].started);
            s = r2 ? cJSON_PrintUnformatted(r2) : NULL;
            cJSON_Delete(r2);
            if (!s || write_all(out.fd, s, strlen(s)) < 0 || write_all(out.fd, "\n", 1) < 0)
                rc = -1;
        }
        if (rc == 0 && e[i].status[0]) {
            cleanup_free char *s = NULL;
            cJSON *r3 = record("finished", e[i].id, e[i].ended);
            if (r3)
                cJSON_AddStringToObject(r3, "status", e[i].status);
            s = r3 ? cJSON_PrintUnformatted(r3) : NULL;
            cJSON_Delete(r3);
            if (!s || write_all(out.fd, s, strlen(s)) < 0 || write_all(out.fd, "\n", 1) < 0)
                rc = -1;
        }
    }
    if (rc == 0 && fsync(out.fd) < 0)
        rc = -1;
    if (close(out.fd) < 0)
        rc = -1;
    int saved = errno;
    if (rc == 0 && renameat(dfd, COMPACT_NAME, dfd, JOURNAL_NAME) < 0) {
        rc = -1;
        saved = errno;
    }
    if (rc < 0) {
        (void)unlinkat(dfd, COMPACT_NAME, 0);
        errno = saved;
        return -1;
    }
    (void)fsync(dfd); /* the rename is done; this only hastens its durability */
    return 0;
}

int journal_rewrite(struct journal *j, const struct journal_entry *entries, size_t n, char *err,
                    size_t errsz)
{
    if (write_compacted(j->dfd, entries, n) < 0)
        return errf(err, errsz, "%s: compaction failed: %s", j->path, strerror(errno));
    int fd = openat(j->dfd, JOURNAL_NAME, O_WRONLY | O_APPEND | STATE_OPEN);
    if (fd < 0)
        return errf(err, errsz, "%s: %s", j->path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) < 0) {
        int e = errno;
        (void)close(fd);
        return errf(err, errsz, "%s: %s", j->path, strerror(e));
    }
    if (j->fd >= 0)
        (void)close(j->fd);
    j->fd = fd;
    j->size = (uint64_t)st.st_size;
    j->torn = false;
    j->appended = 0;
    return 0;
}

int journal_open(struct journal *j, const char *state_dir, struct journal_entry **entries,
                 size_t *nentries, char *err, size_t errsz)
{
    j->fd = -1;
    j->appended = 0;
    j->torn = false;
    snprintf(j->path, sizeof(j->path), "%s/" JOURNAL_NAME, state_dir);
    *entries = NULL;
    *nentries = 0;
    j->dfd = open(state_dir, O_RDONLY | O_DIRECTORY | STATE_OPEN);
    if (j->dfd < 0)
        return errf(err, errsz, "%s: %s", state_dir, strerror(errno));
    cleanup_free char *text = NULL;
    size_t len = 0;
    if (read_regular_at(j->dfd, JOURNAL_NAME, 0, JOURNAL_FILE_MAX_BYTES, &text, &len) < 0 &&
        errno != ENOENT)
        return errf(err, errsz, "%s: %s", j->path, strerror(errno));
    /* a torn last line is cut off either way: the next record must start a line */
    const char *lastnl = len ? memrchr(text, '\n', len) : NULL;
    j->size = lastnl ? (uint64_t)(lastnl - text) + 1 : 0;
    struct reader r = {0};
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += text[i] == '\n';
    r.max = lines;
    if (!hcreate_r(lines * 2 + 64, &r.index))
        return errf(err, errsz, "journal: out of memory");
    for (char *p = text; p && p < text + len;) {
        char *nl = memchr(p, '\n', (size_t)(text + len - p));
        if (!nl)
            break; /* torn last line */
        *nl = '\0';
        if ((size_t)(nl - p) <= JOURNAL_LINE_MAX_BYTES)
            apply(&r, p);
        p = nl + 1;
    }
    /* drop the holes left by forgotten tasks */
    size_t w = 0;
    for (size_t i = 0; i < r.n; i++)
        if (r.e[i].id[0] && r.e[i].task)
            r.e[w++] = r.e[i];
        else
            cJSON_Delete(r.e[i].task);
    hdestroy_r(&r.index);
    for (size_t i = 0; i < r.n; i++)
        free(r.keys[i]);
    free(r.keys);
    r.n = w;
    if (write_compacted(j->dfd, r.e, r.n) < 0) {
        int saved = errno;
        if (!errno_is_no_space(saved)) {
            journal_entries_free(r.e, r.n);
            return errf(err, errsz, "%s: compaction failed: %s", j->path, strerror(saved));
        }
        /* a full disk has no room for a copy: keep the journal as it is (it reads the same)
         * and compact at a later start or past --journal-max */
        log_warn("%s: not compacted (%s): kept as it is", j->path, strerror(saved));
    } else {
        j->size = 0;
        struct stat st;
        if (fstatat(j->dfd, JOURNAL_NAME, &st, AT_SYMLINK_NOFOLLOW) == 0)
            j->size = (uint64_t)st.st_size;
    }
    j->fd = openat(j->dfd, JOURNAL_NAME, O_WRONLY | O_APPEND | O_CREAT | STATE_OPEN, 0600);
    if (j->fd < 0 || ftruncate(j->fd, (off_t)j->size) < 0) {
        int saved = errno;
        journal_entries_free(r.e, r.n);
        return errf(err, errsz, "%s: %s", j->path, strerror(saved));
    }
    *entries = r.e;
    *nentries = r.n;
    return 0;
}
