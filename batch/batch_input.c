/* batch_input: see batch_input.h. Lines are parsed one by one with getline so that a huge
 * batch never needs the whole file in memory as text; each line's task is kept parsed. */
#include "batch_input.h"

#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "json.h"
#include "sha256.h"
#include "util.h"

void batch_input_add_error(struct batch_input *in, unsigned line, const char *fmt, ...)
{
    in->nerrors_all++;
    if (in->nerrors >= BATCH_ERRORS_MAX)
        return;
    if (!in->errors) {
        in->errors = calloc(BATCH_ERRORS_MAX, sizeof(*in->errors));
        if (!in->errors)
            return;
    }
    char msg[ERR_MSG_MAX + 64];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char *copy = strdup(msg);
    if (!copy)
        return;
    /* insertion keeps the list ordered by line; errors mostly arrive in order */
    size_t i = in->nerrors;
    while (i > 0 && in->errors[i - 1].line > line) {
        in->errors[i] = in->errors[i - 1];
        i--;
    }
    in->errors[i] = (struct batch_error){.line = line, .message = copy};
    in->nerrors++;
}

void batch_derive_id(const char *line, size_t len, unsigned occurrence, char *out, size_t outsz)
{
    char hex[SHA256_HEX_CHARS];
    sha256_hex(line, len, hex);
    if (occurrence >= 2)
        snprintf(out, outsz, "task-%.16s-%u", hex, occurrence);
    else
        snprintf(out, outsz, "task-%.16s", hex);
}

uint64_t batch_shard_hash(const char *id)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)id; *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

bool batch_in_shard(const char *id, unsigned index, unsigned count)
{
    return count <= 1 || batch_shard_hash(id) % count == index;
}

int batch_shard_parse(const char *text, unsigned *index, unsigned *count, char *err, size_t errsz)
{
    const char *slash = text ? strchr(text, '/') : NULL;
    char ibuf[32];
    uint64_t i, n;
    if (!slash || (size_t)(slash - text) >= sizeof(ibuf))
        return errf(err, errsz, "--shard: expected I/N, like 0/4 (I from 0 to N-1)");
    memcpy(ibuf, text, (size_t)(slash - text));
    ibuf[slash - text] = '\0';
    if (uint_parse(ibuf, BATCH_SHARDS_MAX, &i) < 0 ||
        uint_parse(slash + 1, BATCH_SHARDS_MAX, &n) < 0 || n == 0)
        return errf(err, errsz, "--shard: expected I/N with whole numbers, 1 <= N <= %u",
                    BATCH_SHARDS_MAX);
    if (i >= n)
        return errf(err, errsz,
                    "--shard %s: I counts from 0 and must be below N (shards 0/%llu to %llu/%llu)",
                    text, (unsigned long long)n, (unsigned long long)n - 1, (unsigned long long)n);
    *index = (unsigned)i;
    *count = (unsigned)n;
    return 0;
}

static bool is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\f' || c == '\v';
}

static int push_item(struct batch_input *in, struct batch_item *it)
{
    if (GROW(in->items, in->n, in->cap, 64, (size_t)1 << 26) < 0)
        return -1;
    in->items[in->n++] = *it;
    return 0;
}

/* ids_only: the line's id alone (as `batch merge` needs it), not the task's other fields,
 * which may name directories that exist only where the batch ran. */
static int take_id(const cJSON *json, struct task *t, char *err, size_t errsz)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(json, "id");
    if (!cJSON_IsString(id) || !task_id_is_valid(id->valuestring))
        return errf(err, errsz, "task.id: expected 1 to %d characters from A-Za-z0-9._-",
                    TASK_ID_MAX);
    snprintf(t->id, sizeof(t->id), "%s", id->valuestring);
    return 0;
}

/* One line (trimmed, NUL-terminated): parsed as a task; its id derived when absent. */
static void parse_line(struct batch_input *in, unsigned lineno, char *s, size_t len, bool ids_only)
{
    cleanup_json cJSON *json = cJSON_ParseWithLength(s, len);
    if (!json) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= s && at <= s + len ? (size_t)(at - s) : 0;
        batch_input_add_error(in, lineno, "not valid JSON (near byte %zu)", off + 1);
        return;
    }
    if (!cJSON_IsObject(json)) {
        batch_input_add_error(in, lineno, "task: expected a JSON object");
        return;
    }
    struct batch_item it = {.line = lineno};
    if (!cJSON_GetObjectItemCaseSensitive(json, "id")) {
        char id[TASK_ID_MAX + 1];
        batch_derive_id(s, len, 1, id, sizeof(id));
        if (!cJSON_AddStringToObject(json, "id", id)) {
            batch_input_add_error(in, lineno, "out of memory");
            return;
        }
        it.derived_id = true;
    }
    char err[ERR_MSG_MAX];
    if ((ids_only ? take_id(json, &it.task, err, sizeof(err))
                  : task_parse(json, &it.task, err, sizeof(err))) < 0) {
        batch_input_add_error(in, lineno, "%s", err);
        return;
    }
    if (push_item(in, &it) < 0) {
        task_free(&it.task);
        batch_input_add_error(in, lineno, "out of memory");
    }
}

static int cmp_item_ptr(const void *a, const void *b)
{
    const struct batch_item *x = *(const struct batch_item *const *)a;
    const struct batch_item *y = *(const struct batch_item *const *)b;
    int c = strcmp(x->task.id, y->task.id);
    return c ? c : (x->line > y->line) - (x->line < y->line);
}

/* Identical anonymous lines share a derived id: number the repeats (in line order), then
 * refuse any id that two lines still share. */
static int settle_ids(struct batch_input *in)
{
    if (in->n < 2)
        return 0;
    struct batch_item **v = malloc(in->n * sizeof(*v));
    if (!v)
        return -1;
    for (size_t i = 0; i < in->n; i++)
        v[i] = &in->items[i];
    qsort(v, in->n, sizeof(*v), cmp_item_ptr);
    for (size_t i = 0; i < in->n;) {
        size_t j = i + 1;
        while (j < in->n && strcmp(v[j]->task.id, v[i]->task.id) == 0)
            j++;
        unsigned occ = 0;
        for (size_t k = i; k < j; k++) {
            if (!v[k]->derived_id || ++occ < 2)
                continue;
            char base[TASK_ID_MAX + 1];
            snprintf(base, sizeof(base), "%s", v[k]->task.id);
            snprintf(v[k]->task.id, sizeof(v[k]->task.id), "%.100s-%u", base, occ);
        }
        i = j;
    }
    qsort(v, in->n, sizeof(*v), cmp_item_ptr);
    for (size_t i = 1; i < in->n; i++)
        if (strcmp(v[i]->task.id, v[i - 1]->task.id) == 0) {
            size_t first = i - 1;
            while (first > 0 && strcmp(v[first - 1]->task.id, v[i]->task.id) == 0)
                first--;
            batch_input_add_error(in, v[i]->line, "task.id: '%s' is already the id of line %u",
                                  v[i]->task.id, v[first]->line);
        }
    free(v);
    return 0;
}

static int read_lines(FILE *f, const char *name, struct batch_input *in, bool ids_only, char *err,
                      size_t errsz)
{
    memset(in, 0, sizeof(*in));
    cleanup_free char *buf = NULL;
    size_t cap = 0;
    unsigned lineno = 0;
    ssize_t got;
    errno = 0;
    while ((got = getline(&buf, &cap, f)) >= 0) {
        lineno++;
        if ((size_t)got > BATCH_LINE_MAX_BYTES) {
            batch_input_add_error(in, lineno, "line longer than %u bytes", BATCH_LINE_MAX_BYTES);
            continue;
        }
        if (memchr(buf, '\0', (size_t)got)) {
            batch_input_add_error(in, lineno, "line contains a NUL byte");
            continue;
        }
        char *s = buf;
        size_t len = (size_t)got;
        while (len && is_space(*s))
            s++, len--;
        while (len && is_space(s[len - 1]))
            len--;
        s[len] = '\0';
        if (len == 0 || s[0] == '#')
            continue;
        if (in->n >= BATCH_TASKS_MAX) {
            batch_input_add_error(in, lineno, "more than %u tasks in one batch", BATCH_TASKS_MAX);
            break;
        }
        parse_line(in, lineno, s, len, ids_only);
        errno = 0;
    }
    if (ferror(f))
        return errf(err, errsz, "%s: %s", name, strerror(errno ? errno : EIO));
    if (settle_ids(in) < 0)
        return errf(err, errsz, "out of memory");
    return 0;
}

int batch_input_read(FILE *f, const char *name, struct batch_input *in, char *err, size_t errsz)
{
    return read_lines(f, name, in, false, err, errsz);
}

int batch_input_read_ids(FILE *f, const char *name, struct batch_input *in, char *err, size_t errsz)
{
    return read_lines(f, name, in, true, err, errsz);
}

void batch_input_free(struct batch_input *in)
{
    for (size_t i = 0; i < in->n; i++)
        task_free(&in->items[i].task);
    free(in->items);
    for (size_t i = 0; i < in->nerrors; i++)
        free(in->errors[i].message);
    free(in->errors);
    memset(in, 0, sizeof(*in));
}
