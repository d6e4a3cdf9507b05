/* batch_resume: see batch_resume.h. */
#include "batch_resume.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "batch_eval.h"
#include "batch_report.h"
#include "grow.h"
#include "json.h"
#include "util.h"

#define STR_(x) #x
#define STR(x)  STR_(x)

static bool path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

struct known {
    const char *id; /* points into result */
    cJSON *result;
    size_t order; /* line order in the file */
};

static int cmp_known(const void *a, const void *b)
{
    const struct known *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

static int cmp_id_key(const void *key, const void *elem)
{
    return strcmp(key, ((const struct known *)elem)->id);
}

static int cmp_job_id(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static bool is_finished(const cJSON *result)
{
    enum batch_outcome o = batch_outcome_of(result);
    return o != BATCH_CANCELLED && o != BATCH_NOT_RUN;
}

/* --resume keeps a finished result; --retry-failed only one that succeeded */
static bool keep_result(const struct batch_out_opts *o, const cJSON *result)
{
    return is_finished(result) && (!o->retry_failed || batch_result_passed(result));
}

/* Every parseable result line of an earlier --out, in file order (for an id that appears
 * twice, e.g. cancelled and then re-run, the last line wins). */
static int read_previous_out(const char *path, struct known **out, size_t *nout, char *err,
                             size_t errsz)
{
    *out = NULL;
    *nout = 0;
    FILE *f = fopen(path, "re");
    if (!f)
        return errno == ENOENT ? 0 : errf(err, errsz, "--out %s: %s", path, strerror(errno));
    char *line = NULL;
    size_t cap = 0, n = 0, ncap = 0;
    struct known *v = NULL;
    ssize_t got;
    unsigned dropped = 0;
    bool oom = false;
    while (!oom && (got = getline(&line, &cap, f)) >= 0) {
        if ((size_t)got > BATCH_OUT_LINE_MAX) {
            dropped++;
            continue;
        }
        cJSON *r = cJSON_ParseWithLength(line, (size_t)got);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
        if (!cJSON_IsObject(r) || !cJSON_IsString(id)) {
            /* typically the half-written last line of a run that was killed */
            cJSON_Delete(r);
            if (got > 1 || line[0] != '\n')
                dropped++;
            continue;
        }
        if (GROW(v, n, ncap, 64, BATCH_OUT_LINES_MAX) < 0) {
            cJSON_Delete(r);
            oom = true;
            break;
        }
        v[n] = (struct known){.id = id->valuestring, .result = r, .order = n};
        n++;
    }
    free(line);
    bool rerr = ferror(f) || oom;
    (void)fclose(f);
    if (rerr) {
        for (size_t i = 0; i < n; i++)
            cJSON_Delete(v[i].result);
        free(v);
        return errf(err, errsz, "--out %s: %s", path,
                    !oom             ? "read error"
                    : errno == E2BIG ? "more than " STR(BATCH_OUT_LINES_MAX) " result lines"
                                     : "out of memory");
    }
    if (dropped)
        fprintf(stderr, "agentbox batch: --out %s: dropped %u line%s that %s not results\n", path,
                dropped, dropped == 1 ? "" : "s", dropped == 1 ? "is" : "are");
    if (n)
        qsort(v, n, sizeof(*v), cmp_known);
    *out = v;
    *nout = n;
    return 0;
}

/* v is sorted by (id, order): the last line of an id is its last entry. */
static cJSON *find_last(const struct known *v, size_t n, const char *id)
{
    const struct known *k = n ? bsearch(id, v, n, sizeof(*v), cmp_id_key) : NULL;
    if (!k)
        return NULL;
    while (k + 1 < v + n && strcmp(k[1].id, id) == 0)
        k++;
    return k->result;
}

static cJSON *read_state_result(const char *dir)
{
    char path[PATH_MAX + 16];
    snprintf(path, sizeof(path), "%s/result.json", dir);
    return json_read_object_file(path, BATCH_RESULT_MAX_BYTES);
}

/* An earlier run's state dir without a finished result (cancelled, or the batch was killed)
 * is moved, not deleted, below STATE/.superseded/ (ids cannot start with '.'). */
static int move_aside(const char *state_root, const char *id, char *err, size_t errsz)
{
    char from[PATH_MAX], dir[BATCH_ROOT_MAX + 16], to[PATH_MAX];
    snprintf(from, sizeof(from), "%s/%s", state_root, id);
    snprintf(dir, sizeof(dir), "%s/.superseded", state_root);
    if (dir_ensure(dir) < 0)
        return errf(err, errsz, "%s: %s", dir, strerror(errno));
    for (unsigned n = 0; n < 1000; n++) {
        snprintf(to, sizeof(to), "%s/%s.%lld.%u", dir, id, (long long)time(NULL), n);
        if (path_exists(to))
            continue;
        if (rename(from, to) == 0)
            return 0;
        return errf(err, errsz, "cannot move %s aside to %s: %s", from, to, strerror(errno));
    }
    return errf(err, errsz, "cannot move %s aside: too many earlier copies", from);
}

int batch_write_line(int fd, const cJSON *result)
{
    cleanup_free char *text = cJSON_PrintUnformatted(result);
    if (!text)
        return -1;
    size_t len = strlen(text);
    /* one write(2) per line: a reader tailing --out never sees half a result (up to the
     * pipe/file atomicity the kernel gives) */
    char *line = realloc(steal_pointer(&text), len + 2);
    if (!line)
        return -1;
    line[len] = '\n';
    line[len + 1] = '\0';
    int rc = write_all(fd, line, len + 1);
    free(line);
    return rc;
}

/* Decides, before anything runs, which tasks of the shard are done already; rewrites --out
 * to hold exactly the earlier finished results (plus other ids' lines, kept as they were)
 * and opens it for appending. */
int batch_prepare_out(const struct batch_out_opts *o, struct batch_job *jobs, size_t njobs,
                      int *out_fd, char *err, size_t errsz)
{
    struct known *prev = NULL;
    size_t nprev = 0;
    if (o->resume && o->out && read_previous_out(o->out, &prev, &nprev, err, errsz) < 0)
        return -1;
    int rc = -1;
    unsigned refused = 0;
    for (size_t i = 0; i < njobs; i++) {
        struct batch_job *j = &jobs[i];
        const char *id = j->item->task.id;
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/%s", o->state_root, id);
        cJSON *r = find_last(prev, nprev, id);
        if (o->resume && r && keep_result(o, r)) {
            j->result = cJSON_Duplicate(r, 1);
            j->resumed = true;
            continue;
        }
        if (!path_exists(dir))
            continue;
        if (!o->resume) {
            if (refused++ < BATCH_ERRORS_SHOWN)
                fprintf(stderr,
                        "agentbox batch: line %u: task '%s' has results in %s already (pass "
                        "--resume to keep what finished, or remove it)\n",
                        j->item->line, id, dir);
            continue;
        }
        cJSON *sr = read_state_result(dir);
        if (sr && keep_result(o, sr)) {
            j->result = sr;
            j->resumed = true;
            j->to_write = true;
        } else {
            cJSON_Delete(sr);
            j->needs_move = true;
        }
    }
    if (refused) {
        errf(err, errsz, "%u task%s of this batch ran before; nothing was run", refused,
             refused == 1 ? "" : "s");
        goto out;
    }
    for (size_t i = 0; i < njobs; i++)
        if (jobs[i].needs_move && move_aside(o->state_root, jobs[i].item->task.id, err, errsz) < 0)
            goto out;
    if (!o->out) {
        *out_fd = dup(STDOUT_FILENO);
        if (*out_fd < 0) {
            errf(err, errsz, "stdout: %s", strerror(errno));
            goto out;
        }
    } else {
        char tmp[PATH_MAX + 16];
        snprintf(tmp, sizeof(tmp), "%s.tmp", o->out);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            errf(err, errsz, "--out %s: %s", tmp, strerror(errno));
            goto out;
        }
        /* earlier results of ids that are not this shard's tasks stay */
        const char **mine = calloc(njobs ? njobs : 1, sizeof(*mine));
        bool ok = mine != NULL;
        for (size_t i = 0; ok && i < njobs; i++)
            mine[i] = jobs[i].item->task.id;
        if (ok && njobs)
            qsort(mine, njobs, sizeof(*mine), cmp_job_id);
        for (size_t k = 0; ok && k < nprev; k++) {
            const char *id = prev[k].id;
            if (!(njobs && bsearch(&id, mine, njobs, sizeof(*mine), cmp_job_id)))
                ok = batch_write_line(fd, prev[k].result) == 0;
        }
        free(mine);
        /* whole or not at all, and durable before a result is appended to it */
        ok = ok && fsync(fd) == 0;
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, o->out) < 0 || fsync_parent_dir(o->out) < 0) {
            errf(err, errsz, "--out %s: %s", o->out, strerror(errno));
            (void)unlink(tmp);
            goto out;
        }
        *out_fd = open(o->out, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        if (*out_fd < 0) {
            errf(err, errsz, "--out %s: %s", o->out, strerror(errno));
            goto out;
        }
    }
    for (size_t i = 0; i < njobs; i++)
        if (jobs[i].resumed && batch_write_line(*out_fd, jobs[i].result) < 0) {
            errf(err, errsz, "--out: %s", strerror(errno));
            goto out;
        }
    rc = 0;
out:
    for (size_t k = 0; k < nprev; k++)
        cJSON_Delete(prev[k].result);
    free(prev);
    return rc;
}
