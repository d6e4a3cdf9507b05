/* batch_merge: see batch_merge.h. Every input is read whole and checked before anything is
 * written, so a refused merge leaves no output behind; result lines are copied byte for byte
 * (no re-serialisation), and the outputs are written to FILE.tmp and renamed. */
#include "batch_merge.h"

#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "batch_input.h"
#include "batch_report.h"
#include "commands.h"
#include "grow.h"
#include "util.h"

#define MERGE_LINE_MAX     (64u << 20) /* one result line, as batch --resume reads it back */
#define MERGE_SHOWN        50          /* problems and missing ids listed on stderr */
#define MERGE_PROBLEM_SIZE (ERR_MSG_MAX + 2048)

static void usage(FILE *out)
{
    fprintf(out,
            "usage: agentbox batch merge OUT.jsonl... --out FILE [--junit FILE] [--tasks FILE]\n\n"
            "Joins the result files (--out) of a batch's shards into one, and writes one JUnit\n"
            "report for all of them. Nothing is written when an id has a result in more than\n"
            "one place, or a line is not a result (exit 2).\n\n"
            "  --out FILE     the joined results, one line per task ('-' is stdout)\n"
            "  --junit FILE   JUnit XML report over the joined results\n"
            "  --tasks FILE   the batch's task file: every result must be one of its tasks,\n"
            "                 and a task with no result in any input is named and counted as\n"
            "                 missing (output in the file's order)\n\n"
            "Exit: as `agentbox batch` over the joined results (a missing task counts as not\n"
            "run: 1); 2 usage, unreadable input, a duplicate id or a bad line (nothing written).\n"
            "docs/batch.md has the details.\n");
}

static __attribute__((format(printf, 2, 3))) void problem(struct merge_set *s, const char *fmt, ...)
{
    s->nproblems_all++;
    if (s->nproblems >= MERGE_PROBLEMS_MAX)
        return;
    if (!s->problems) {
        s->problems = calloc(MERGE_PROBLEMS_MAX, sizeof(*s->problems));
        if (!s->problems)
            return;
    }
    char msg[MERGE_PROBLEM_SIZE];
    va_list ap;
    va_start(ap, fmt);
    (void)vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    char *copy = strdup(msg);
    if (copy)
        s->problems[s->nproblems++] = copy;
}

static int add_line(struct merge_set *s, cJSON *r, const char *raw, size_t len, const char *name,
                    unsigned lineno)
{
    if (GROW(s->lines, s->n, s->cap, 64, (size_t)1 << 26) < 0)
        return -1;
    char *copy = malloc(len + 1);
    if (!copy)
        return -1;
    memcpy(copy, raw, len);
    copy[len] = '\0';
    s->lines[s->n] = (struct merge_line){
        .id = cJSON_GetObjectItemCaseSensitive(r, "id")->valuestring,
        .result = r,
        .raw = copy,
        .len = len,
        .file = name,
        .lineno = lineno,
        .order = s->n,
    };
    s->n++;
    return 0;
}

static bool blank(const char *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i] != ' ' && p[i] != '\t' && p[i] != '\r')
            return false;
    return true;
}

int merge_read(FILE *f, const char *name, struct merge_set *s, char *err, size_t errsz)
{
    char *line = NULL;
    size_t cap = 0;
    ssize_t got;
    unsigned lineno = 0;
    int rc = 0;
    while ((got = getline(&line, &cap, f)) >= 0) {
        lineno++;
        size_t len = (size_t)got;
        bool complete = len > 0 && line[len - 1] == '\n';
        if (complete)
            len--;
        if (blank(line, len))
            continue;
        if (len > MERGE_LINE_MAX) {
            problem(s, "%s:%u: a line of more than %u MiB is not a result", name, lineno,
                    MERGE_LINE_MAX >> 20);
            continue;
        }
        cJSON *r = cJSON_ParseWithLength(line, len);
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
        if (!cJSON_IsObject(r) || !cJSON_IsString(id) || !id->valuestring[0]) {
            cJSON_Delete(r);
            if (!complete) { /* the shard was killed while writing its last line */
                fprintf(stderr,
                        "agentbox batch merge: %s:%u: dropped a half-written last line (its "
                        "task has no result here)\n",
                        name, lineno);
                s->dropped_tails++;
                continue;
            }
            problem(s, "%s:%u: not a result line (a JSON object with a string \"id\")", name,
                    lineno);
            continue;
        }
        if (add_line(s, r, line, len, name, lineno) < 0) {
            cJSON_Delete(r);
            rc = errf(err, errsz, "%s: out of memory", name);
            break;
        }
    }
    free(line);
    if (rc == 0 && ferror(f))
        rc = errf(err, errsz, "%s: read error", name);
    return rc;
}

static int cmp_line_id(const void *a, const void *b)
{
    const struct merge_line *x = a, *y = b;
    int c = strcmp(x->id, y->id);
    return c ? c : (x->order > y->order) - (x->order < y->order);
}

size_t merge_find_duplicates(struct merge_set *s)
{
    if (s->n > 1)
        qsort(s->lines, s->n, sizeof(*s->lines), cmp_line_id);
    size_t dups = 0;
    for (size_t i = 0; i < s->n;) {
        size_t j = i + 1;
        while (j < s->n && strcmp(s->lines[j].id, s->lines[i].id) == 0)
            j++;
        if (j - i > 1) {
            char where[1024] = "";
            size_t used = 0;
            for (size_t k = i; k < j && used < sizeof(where); k++) {
                int w = snprintf(where + used, sizeof(where) - used, "%s%s:%u",
                                 k > i ? (k + 1 == j ? " and " : ", ") : "", s->lines[k].file,
                                 s->lines[k].lineno);
                used += w > 0 ? (size_t)w : 0;
            }
            problem(s, "id '%s' has %zu results: %s", s->lines[i].id, j - i, where);
            dups++;
        }
        i = j;
    }
    return dups;
}

static int cmp_id_key(const void *key, const void *elem)
{
    return strcmp(key, ((const struct merge_line *)elem)->id);
}

const struct merge_line *merge_find(const struct merge_set *s, const char *id)
{
    return s->n ? bsearch(id, s->lines, s->n, sizeof(*s->lines), cmp_id_key) : NULL;
}

void merge_set_free(struct merge_set *s)
{
    for (size_t i = 0; i < s->n; i++) {
        cJSON_Delete(s->lines[i].result);
        free(s->lines[i].raw);
    }
    free(s->lines);
    for (size_t i = 0; i < s->nproblems; i++)
        free(s->problems[i]);
    free(s->problems);
    *s = (struct merge_set){0};
}

/* ---- the command ---- */

struct merge_args {
    const char *out, *junit, *tasks;
    char **inputs;
    int ninputs;
};

static int parse_args(int argc, char **argv, struct merge_args *a)
{
    enum { O_OUT = 256, O_JUNIT, O_TASKS, O_HELP };
    static const struct option opts[] = {
        {"out", required_argument, NULL, O_OUT},
        {"junit", required_argument, NULL, O_JUNIT},
        {"tasks", required_argument, NULL, O_TASKS},
        {"help", no_argument, NULL, O_HELP},
        {NULL, 0, NULL, 0},
    };
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_OUT:
            a->out = optarg;
            break;
        case O_JUNIT:
            a->junit = optarg;
            break;
        case O_TASKS:
            a->tasks = optarg;
            break;
        case 'h':
        case O_HELP:
            usage(stdout);
            return 1;
        default:
            fprintf(stderr,
                    "agentbox batch merge: unknown or incomplete option '%s' (try --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    a->inputs = argv + optind;
    a->ninputs = argc - optind;
    if (a->ninputs < 1 || !a->out) {
        fprintf(stderr, "agentbox batch merge: %s (try --help)\n",
                a->ninputs < 1 ? "name the shards' result files (their --out)"
                               : "--out FILE is required ('-' for stdout)");
        return -1;
    }
    return 0;
}

static int cmp_order(const void *a, const void *b)
{
    const struct merge_line *x = *(const struct merge_line *const *)a;
    const struct merge_line *y = *(const struct merge_line *const *)b;
    return (x->order > y->order) - (x->order < y->order);
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* Every result must be a task of the file; the cases are the file's tasks in its order. */
static int cases_from_tasks(struct merge_set *s, const struct batch_input *in, const char *name,
                            struct batch_case *cases, size_t *ncases)
{
    const char **ids = malloc((in->n ? in->n : 1) * sizeof(*ids));
    if (!ids)
        return -1;
    for (size_t i = 0; i < in->n; i++)
        ids[i] = in->items[i].task.id;
    qsort(ids, in->n, sizeof(*ids), cmp_str);
    for (size_t i = 0; i < s->n; i++) {
        const char *key = s->lines[i].id;
        if (!bsearch(&key, ids, in->n, sizeof(*ids), cmp_str))
            problem(s, "%s:%u: id '%s' is not a task of %s", s->lines[i].file, s->lines[i].lineno,
                    key, name);
    }
    free(ids);
    for (size_t i = 0; i < in->n; i++) {
        const struct merge_line *l = merge_find(s, in->items[i].task.id);
        cases[i] = (struct batch_case){
            .id = in->items[i].task.id, .result = l ? l->result : NULL, .missing = l == NULL};
    }
    *ncases = in->n;
    return 0;
}

static int write_out(const char *path, const struct merge_set *s, const struct batch_case *cases,
                     size_t n, char *err, size_t errsz)
{
    bool to_stdout = strcmp(path, "-") == 0;
    char tmp[PATH_MAX + 8];
    int fd = STDOUT_FILENO;
    if (!to_stdout) {
        if ((size_t)snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= sizeof(tmp))
            return errf(err, errsz, "--out %s: path too long", path);
        fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0)
            return errf(err, errsz, "--out %s: %s", tmp, strerror(errno));
    }
    int rc = 0;
    for (size_t i = 0; i < n && rc == 0; i++) {
        if (!cases[i].result)
            continue;
        const struct merge_line *l = merge_find(s, cases[i].id);
        if (write_all(fd, l->raw, l->len) < 0 || write_all(fd, "\n", 1) < 0)
            rc = errf(err, errsz, "--out %s: %s", path, strerror(errno));
    }
    if (to_stdout)
        return rc;
    if (close(fd) < 0 && rc == 0)
        rc = errf(err, errsz, "--out %s: %s", path, strerror(errno));
    if (rc == 0 && rename(tmp, path) < 0)
        rc = errf(err, errsz, "--out %s: %s", path, strerror(errno));
    if (rc < 0)
        (void)unlink(tmp);
    return rc;
}

static void print_list(const char *head, char *const *items, size_t shown, size_t all)
{
    fprintf(stderr, "agentbox batch merge: %s\n", head);
    size_t printed = shown < MERGE_SHOWN ? shown : MERGE_SHOWN;
    for (size_t i = 0; i < printed; i++)
        fprintf(stderr, "  %s\n", items[i]);
    if (all > printed)
        fprintf(stderr, "  ... and %zu more\n", all - printed);
}

static void report_missing(const struct batch_case *cases, size_t n, size_t nmissing)
{
    fprintf(stderr, "agentbox batch merge: %zu task%s no result in any input:", nmissing,
            nmissing == 1 ? " has" : "s have");
    size_t shown = 0;
    for (size_t i = 0; i < n && shown < MERGE_SHOWN; i++)
        if (cases[i].missing) {
            fprintf(stderr, " %s", cases[i].id);
            shown++;
        }
    if (nmissing > shown)
        fprintf(stderr, " ... and %zu more", nmissing - shown);
    fputc('\n', stderr);
}

/* Reads every input and the task file; fills cases. 0, or -1 with the refusal printed. */
static int gather(const struct merge_args *a, struct merge_set *s, struct batch_input *in,
                  struct batch_case **cases, size_t *ncases)
{
    char err[ERR_MSG_MAX];
    for (int i = 0; i < a->ninputs; i++) {
        FILE *f = strcmp(a->inputs[i], "-") == 0 ? stdin : fopen(a->inputs[i], "re");
        if (!f) {
            fprintf(stderr, "agentbox batch merge: %s: %s\n", a->inputs[i], strerror(errno));
            return -1;
        }
        int rc = merge_read(f, a->inputs[i], s, err, sizeof(err));
        if (f != stdin)
            (void)fclose(f);
        if (rc < 0) {
            fprintf(stderr, "agentbox batch merge: %s\n", err);
            return -1;
        }
    }
    (void)merge_find_duplicates(s);
    if (a->tasks) {
        FILE *f = fopen(a->tasks, "re");
        if (!f || batch_input_read_ids(f, a->tasks, in, err, sizeof(err)) < 0) {
            if (!f)
                snprintf(err, sizeof(err), "--tasks %s: %s", a->tasks, strerror(errno));
            fprintf(stderr, "agentbox batch merge: %s\n", err);
            if (f)
                (void)fclose(f);
            return -1;
        }
        (void)fclose(f);
        if (in->nerrors_all) {
            fprintf(stderr, "agentbox batch merge: --tasks %s has %zu bad line%s (line %u: %s)\n",
                    a->tasks, in->nerrors_all, in->nerrors_all == 1 ? "" : "s",
                    in->nerrors ? in->errors[0].line : 0,
                    in->nerrors ? in->errors[0].message : "?");
            return -1;
        }
    }
    size_t want = a->tasks ? in->n : s->n;
    *cases = calloc(want ? want : 1, sizeof(**cases));
    if (!*cases) {
        fprintf(stderr, "agentbox batch merge: out of memory\n");
        return -1;
    }
    if (a->tasks) {
        if (cases_from_tasks(s, in, a->tasks, *cases, ncases) < 0) {
            fprintf(stderr, "agentbox batch merge: out of memory\n");
            return -1;
        }
    } else {
        const struct merge_line **v = malloc((s->n ? s->n : 1) * sizeof(*v));
        if (!v) {
            fprintf(stderr, "agentbox batch merge: out of memory\n");
            return -1;
        }
        for (size_t i = 0; i < s->n; i++)
            v[i] = &s->lines[i];
        qsort(v, s->n, sizeof(*v), cmp_order); /* the inputs' order */
        for (size_t i = 0; i < s->n; i++)
            (*cases)[i] = (struct batch_case){.id = v[i]->id, .result = v[i]->result};
        free(v);
        *ncases = s->n;
    }
    if (s->nproblems_all) {
        char head[128];
        snprintf(head, sizeof(head), "%zu problem%s; nothing was written:", s->nproblems_all,
                 s->nproblems_all == 1 ? "" : "s");
        print_list(head, s->problems, s->nproblems, s->nproblems_all);
        return -1;
    }
    return 0;
}

int cmd_batch_merge(int argc, char **argv)
{
    struct merge_args a = {0};
    int prc = parse_args(argc, argv, &a);
    if (prc != 0)
        return prc > 0 ? 0 : EXIT_USAGE;
    struct merge_set s = {0};
    struct batch_input in = {0};
    struct batch_case *cases = NULL;
    size_t n = 0;
    int rc = EXIT_USAGE;
    char err[ERR_MSG_MAX];
    if (gather(&a, &s, &in, &cases, &n) < 0)
        goto out;
    if (write_out(a.out, &s, cases, n, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox batch merge: %s\n", err);
        goto out;
    }
    struct batch_tally t = {0};
    size_t nmissing = 0;
    double time_s = 0;
    for (size_t i = 0; i < n; i++) {
        batch_tally_add(&t, cases[i].result, false);
        nmissing += cases[i].missing;
        const cJSON *et = cJSON_GetObjectItemCaseSensitive(cases[i].result, "execution_time");
        time_s += cJSON_IsNumber(et) && et->valuedouble > 0 ? et->valuedouble : 0;
    }
    rc = batch_exit_code(&t);
    if (a.junit) {
        const char *base = a.tasks ? strrchr(a.tasks, '/') : NULL;
        base = a.tasks ? (base ? base + 1 : a.tasks) : "merged";
        if (batch_junit_write(a.junit, base, cases, n, time_s, err, sizeof(err)) < 0) {
            fprintf(stderr, "agentbox batch merge: %s\n", err);
            rc = EXIT_USAGE;
            goto out;
        }
    }
    if (nmissing)
        report_missing(cases, n, nmissing);
    fprintf(stderr,
            "agentbox batch merge: %u tasks from %d file%s: %u succeeded, %u failed, %u timeout, "
            "%u cancelled, %u escalated, %u mock, %zu missing; %.0f tokens, $%.4f; exit %d\n",
            t.total, a.ninputs, a.ninputs == 1 ? "" : "s", t.count[BATCH_SUCCEEDED],
            t.count[BATCH_FAILED], t.count[BATCH_TIMEOUT], t.count[BATCH_CANCELLED],
            t.count[BATCH_ESCALATED], t.count[BATCH_MOCK], nmissing, t.tokens, t.cost_usd, rc);
out:
    free(cases);
    batch_input_free(&in);
    merge_set_free(&s);
    return rc;
}
