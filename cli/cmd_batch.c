/* cmd_batch: `agentbox batch`: a JSONL file of tasks run by one process that is their
 * supervisor: up to --jobs cells at once, one broker (and so one breaker and one rate limit)
 * for all of them, results appended to --out as each task ends. The file is validated whole
 * before anything runs; --shard picks a deterministic subset; --resume never re-runs a task
 * that finished. SIGINT/SIGTERM cancel the running tasks cleanly (a second one kills them).
 * docs/batch.md is the user's description; this file must stay in step with it. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <limits.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "atomicfile.h"
#include "batch_eval.h"
#include "batch_input.h"
#include "batch_merge.h"
#include "batch_report.h"
#include "broker.h"
#include "catalog.h"
#include "commands.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "safedir.h"
#include "runner.h"
#include "taskprep.h"
#include "util.h"

#define BATCH_DEFAULT_JOBS     4
#define BATCH_JOBS_MAX         256
#define BATCH_OUT_LINE_MAX     (64u << 20) /* one result line read back by --resume */
#define BATCH_RESULT_MAX_BYTES (64u << 20) /* a state dir's result.json read by --resume */
#define BATCH_ERRORS_SHOWN     50
#define BATCH_REDRAW_S         0.25
#define BATCH_POLICY_CACHE     32
#define BATCH_ROOT_MAX         3072 /* leaves room below PATH_MAX for /.superseded/ID.TIME.N */

static void usage(FILE *out)
{
    fprintf(out,
            "usage: agentbox batch FILE.jsonl [OPTIONS]\n"
            "       agentbox batch merge OUT.jsonl... --out FILE [--junit FILE] [--tasks FILE]\n\n"
            "Runs a batch of agent tasks, one JSON task per line (blank lines and\n"
            "lines starting with '#' are skipped; FILE '-' is stdin). Every line is checked\n"
            "before anything runs: one bad line refuses the whole batch (exit 2).\n\n"
            "  --jobs N          cells at once (default %d); one broker, breaker and rate\n"
            "                    limit for all of them\n"
            "  --out FILE        results as JSON lines, one per task as it ends (default stdout)\n"
            "  --shard I/N       run only shard I of N (0 <= I < N): the tasks whose id hashes\n"
            "                    (FNV-1a 64) to I modulo N; same file, same shards everywhere\n"
            "  --resume          skip tasks already finished (a result in --out, or\n"
            "                    STATE/ID/result.json); re-run cancelled and interrupted ones\n"
            "  --junit FILE      JUnit XML report, one testcase per task\n"
            "  --events-dir DIR  also write each task's events to DIR/ID.jsonl\n"
            "  --state-dir DIR   per-task state (default OPENHANDS_WORKSPACE_ROOT)\n"
            "  --replay FILE     offline: every task takes the LLM's replies from FILE, from\n"
            "                    its first reply on; no network, no key\n"
            "  --quiet           no progress on stderr (the closing summary stays)\n"
            "  --predictions F   also write SWE-bench-style predictions (instance_id,\n"
            "                    model_name_or_path, model_patch) as JSON lines to F\n"
            "  --retry-failed    with --resume: re-run the tasks whose earlier result did\n"
            "                    not succeed (the others are kept)\n\n"
            "A task without an id gets \"task-\" + 16 hex digits of SHA-256 of its line.\n"
            "Exit: 0 all succeeded; 1 any failed, timed out, was cancelled or not run;\n"
            "else 3 any escalated; else 4 any mock; 2 usage, configuration or a bad batch\n"
            "file (nothing ran). docs/batch.md has the details.\n",
            BATCH_DEFAULT_JOBS);
}

struct batch_args {
    const char *file, *out, *shard, *junit, *replay, *events_dir, *state_dir, *predictions;
    unsigned jobs;
    unsigned shard_index, shard_count;
    bool resume, quiet, retry_failed;
};

/* One task of this shard, for the whole run. */
struct job {
    const struct batch_item *item;
    cJSON *result;   /* owned; NULL until it ends (stays NULL if it never ran) */
    bool resumed;    /* result from an earlier run */
    bool to_write;   /* resumed from a state dir: the result is not in --out yet */
    bool needs_move; /* an earlier run left its state dir without a finished result */
};

struct batch;

/* One running cell. Never moves while busy: the runner points into it. */
struct slot {
    struct batch *b;
    struct job *job;
    struct taskprep tp;
    struct event_log events;
    struct runner *runner;
    struct broker *own_broker; /* --replay: each task replays from the first reply */
    int events_fd;
    double tokens, cost_usd; /* live, from llm_response events */
    double started;          /* monotonic_s */
    double rate_wait_until;  /* monotonic_s: waiting for a model's rate limit until then */
    char state_dir[PATH_MAX];
};

struct batch {
    struct batch_args a;
    struct agentbox_config cfg;
    struct catalog cat;
    bool have_cat;
    struct broker *shared;
    struct job *jobs;
    size_t njobs, next;
    struct slot *slots;
    unsigned running, done_run, failed_run, to_run;
    unsigned done_before, failed_before; /* resumed: finished in an earlier run */
    int out_fd;
    bool out_broken, interrupted, killed, tty;
    double t0, last_draw, tokens_done, cost_done, time_done;
    char state_root[BATCH_ROOT_MAX];
};

/* ---- arguments ---- */

static int parse_args(int argc, char **argv, struct batch_args *a)
{
    enum {
        O_JOBS = 256,
        O_OUT,
        O_SHARD,
        O_RESUME,
        O_JUNIT,
        O_REPLAY,
        O_EVDIR,
        O_STATE,
        O_QUIET,
        O_HELP,
        O_PRED,
        O_RETRY
    };
    static const struct option opts[] = {
        {"jobs", required_argument, 0, O_JOBS},
        {"out", required_argument, 0, O_OUT},
        {"shard", required_argument, 0, O_SHARD},
        {"resume", no_argument, 0, O_RESUME},
        {"junit", required_argument, 0, O_JUNIT},
        {"replay", required_argument, 0, O_REPLAY},
        {"events-dir", required_argument, 0, O_EVDIR},
        {"state-dir", required_argument, 0, O_STATE},
        {"quiet", no_argument, 0, O_QUIET},
        {"help", no_argument, 0, O_HELP},
        {"predictions", required_argument, 0, O_PRED},
        {"retry-failed", no_argument, 0, O_RETRY},
        {0, 0, 0, 0},
    };
    a->jobs = BATCH_DEFAULT_JOBS;
    a->shard_count = 1;
    optind = 1;
    opterr = 0;
    int c;
    uint64_t u;
    char err[ERR_MSG_MAX];
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case O_JOBS:
            if (opt_count("--jobs", optarg, 1, BATCH_JOBS_MAX, &u, err, sizeof(err)) < 0) {
                fprintf(stderr, "agentbox batch: %s\n", err);
                return -1;
            }
            a->jobs = (unsigned)u;
            break;
        case O_OUT:
            a->out = optarg;
            break;
        case O_SHARD:
            if (batch_shard_parse(optarg, &a->shard_index, &a->shard_count, err, sizeof(err)) < 0) {
                fprintf(stderr, "agentbox batch: %s\n", err);
                return -1;
            }
            a->shard = optarg;
            break;
        case O_RESUME:
            a->resume = true;
            break;
        case O_JUNIT:
            a->junit = optarg;
            break;
        case O_REPLAY:
            a->replay = optarg;
            break;
        case O_EVDIR:
            a->events_dir = optarg;
            break;
        case O_STATE:
            a->state_dir = optarg;
            break;
        case O_QUIET:
            a->quiet = true;
            break;
        case O_HELP:
            usage(stdout);
            return 1;
        case O_PRED:
            a->predictions = optarg;
            break;
        case O_RETRY: /* a retry keeps what passed: it is a resume */
            a->retry_failed = a->resume = true;
            break;
        default:
            fprintf(stderr, "agentbox batch: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return -1;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "agentbox batch: give the batch FILE.jsonl (see --help)\n");
        return -1;
    }
    a->file = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "agentbox batch: one FILE only; unexpected '%s'\n", argv[optind]);
        return -1;
    }
    if (a->out && strcmp(a->out, "-") == 0)
        a->out = NULL;
    return 0;
}

/* ---- validation before anything runs ---- */

struct policy_memo {
    char name[256];
    bool network_host, ok;
    char err[ERR_MSG_MAX];
};

/* The policy of each line must exist and allow its network; most batches use one or two
 * policies, so each distinct pair is checked once. */
static void check_policies(struct batch_input *in)
{
    static struct policy_memo memo[BATCH_POLICY_CACHE];
    memset(memo, 0, sizeof(memo));
    size_t nmemo = 0;
    for (size_t i = 0; i < in->n; i++) {
        const struct task *t = &in->items[i].task;
        const char *name = t->policy ? t->policy : "default";
        struct policy_memo *m = NULL;
        for (size_t k = 0; k < nmemo && !m; k++)
            if (memo[k].network_host == t->network_host && strcmp(memo[k].name, name) == 0)
                m = &memo[k];
        struct policy_memo fresh = {0};
        if (!m) {
            m = nmemo < BATCH_POLICY_CACHE ? &memo[nmemo++] : &fresh;
            snprintf(m->name, sizeof(m->name), "%s", name);
            m->network_host = t->network_host;
            m->ok = taskprep_check(t, m->err, sizeof(m->err)) == 0;
        }
        if (!m->ok)
            batch_input_add_error(in, in->items[i].line, "%s", m->err);
        /* each line's seed, with our rights (a root batch never through a name another
         * user controls): a line that cannot have it refuses the batch before anything runs */
        char err[ERR_MSG_MAX];
        if (taskprep_check_seed(t, err, sizeof(err)) < 0)
            batch_input_add_error(in, in->items[i].line, "%s", err);
    }
}

static void print_refusal(const struct batch_input *in, const char *file)
{
    fprintf(stderr, "agentbox batch: %s: %zu bad line%s; nothing was run:\n", file, in->nerrors_all,
            in->nerrors_all == 1 ? "" : "s");
    for (size_t i = 0; i < in->nerrors && i < BATCH_ERRORS_SHOWN; i++)
        fprintf(stderr, "  line %u: %s\n", in->errors[i].line, in->errors[i].message);
    if (in->nerrors_all > BATCH_ERRORS_SHOWN)
        fprintf(stderr, "  ... and %zu more\n", in->nerrors_all - BATCH_ERRORS_SHOWN);
}

static bool path_exists(const char *path)
{
    struct stat st;
    return lstat(path, &st) == 0;
}

/* ---- --resume ---- */

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
static bool keep_result(const struct batch *b, const cJSON *result)
{
    return is_finished(result) && (!b->a.retry_failed || batch_result_passed(result));
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
        if (n == ncap) {
            ncap = ncap ? ncap * 2 : 64;
            struct known *nv = realloc(v, ncap * sizeof(*nv));
            if (!nv) {
                cJSON_Delete(r);
                oom = true;
                break;
            }
            v = nv;
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
        return errf(err, errsz, "--out %s: %s", path, oom ? "out of memory" : "read error");
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
static int move_aside(const struct batch *b, const char *id, char *err, size_t errsz)
{
    char from[PATH_MAX], dir[BATCH_ROOT_MAX + 16], to[PATH_MAX];
    snprintf(from, sizeof(from), "%s/%s", b->state_root, id);
    snprintf(dir, sizeof(dir), "%s/.superseded", b->state_root);
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

static int write_line(int fd, const cJSON *result)
{
    cleanup_free char *text = cJSON_PrintUnformatted(result);
    if (!text)
        return -1;
    size_t len = strlen(text);
    text[len] = '\0';
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
static int prepare_out(struct batch *b, char *err, size_t errsz)
{
    struct known *prev = NULL;
    size_t nprev = 0;
    if (b->a.resume && b->a.out && read_previous_out(b->a.out, &prev, &nprev, err, errsz) < 0)
        return -1;
    int rc = -1;
    unsigned refused = 0;
    for (size_t i = 0; i < b->njobs; i++) {
        struct job *j = &b->jobs[i];
        const char *id = j->item->task.id;
        char dir[PATH_MAX];
        snprintf(dir, sizeof(dir), "%s/%s", b->state_root, id);
        cJSON *r = find_last(prev, nprev, id);
        if (b->a.resume && r && keep_result(b, r)) {
            j->result = cJSON_Duplicate(r, 1);
            j->resumed = true;
            continue;
        }
        if (!path_exists(dir))
            continue;
        if (!b->a.resume) {
            if (refused++ < BATCH_ERRORS_SHOWN)
                fprintf(stderr,
                        "agentbox batch: line %u: task '%s' has results in %s already (pass "
                        "--resume to keep what finished, or remove it)\n",
                        j->item->line, id, dir);
            continue;
        }
        cJSON *sr = read_state_result(dir);
        if (sr && keep_result(b, sr)) {
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
    for (size_t i = 0; i < b->njobs; i++)
        if (b->jobs[i].needs_move && move_aside(b, b->jobs[i].item->task.id, err, errsz) < 0)
            goto out;
    if (!b->a.out) {
        b->out_fd = dup(STDOUT_FILENO);
        if (b->out_fd < 0) {
            errf(err, errsz, "stdout: %s", strerror(errno));
            goto out;
        }
    } else {
        char tmp[PATH_MAX + 16];
        snprintf(tmp, sizeof(tmp), "%s.tmp", b->a.out);
        int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
        if (fd < 0) {
            errf(err, errsz, "--out %s: %s", tmp, strerror(errno));
            goto out;
        }
        /* earlier results of ids that are not this shard's tasks stay */
        const char **mine = calloc(b->njobs ? b->njobs : 1, sizeof(*mine));
        bool ok = mine != NULL;
        for (size_t i = 0; ok && i < b->njobs; i++)
            mine[i] = b->jobs[i].item->task.id;
        if (ok && b->njobs)
            qsort(mine, b->njobs, sizeof(*mine), cmp_job_id);
        for (size_t k = 0; ok && k < nprev; k++) {
            const char *id = prev[k].id;
            if (!(b->njobs && bsearch(&id, mine, b->njobs, sizeof(*mine), cmp_job_id)))
                ok = write_line(fd, prev[k].result) == 0;
        }
        free(mine);
        /* whole or not at all, and durable before a result is appended to it */
        ok = ok && fsync(fd) == 0;
        ok = close(fd) == 0 && ok;
        if (!ok || rename(tmp, b->a.out) < 0 || fsync_parent_dir(b->a.out) < 0) {
            errf(err, errsz, "--out %s: %s", b->a.out, strerror(errno));
            (void)unlink(tmp);
            goto out;
        }
        b->out_fd = open(b->a.out, O_WRONLY | O_APPEND | O_CLOEXEC | O_NOFOLLOW);
        if (b->out_fd < 0) {
            errf(err, errsz, "--out %s: %s", b->a.out, strerror(errno));
            goto out;
        }
    }
    for (size_t i = 0; i < b->njobs; i++)
        if (b->jobs[i].resumed && write_line(b->out_fd, b->jobs[i].result) < 0) {
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

/* ---- results ---- */

/* The result of a task that never got a cell (its set-up failed, or it was killed on a
 * second signal): the result's full shape, with what is known. */
static cJSON *synthetic_result(const struct task *t, const char *status, const char *etype,
                               const char *message, double elapsed)
{
    return runner_result_unrun(t->id, status,
                               etype ? broker_error_object(etype, message, NULL) : NULL, elapsed,
                               NULL, NULL, t->metadata);
}

static void clear_bar(struct batch *b)
{
    if (b->tty)
        fputs("\r\033[K", stderr);
}

static unsigned term_width(void)
{
    struct winsize ws;
    if (ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20)
        return ws.ws_col;
    return 80;
}

static void draw_bar(struct batch *b, bool force)
{
    double now = monotonic_s();
    if (!b->tty || (!force && now - b->last_draw < BATCH_REDRAW_S))
        return;
    b->last_draw = now;
    double tokens = b->tokens_done, cost = b->cost_done;
    for (unsigned i = 0; i < b->a.jobs; i++)
        if (b->slots[i].job) {
            tokens += b->slots[i].tokens;
            cost += b->slots[i].cost_usd;
        }
    double elapsed[BATCH_JOBS_MAX], rate_wait = 0;
    unsigned n = 0;
    for (unsigned i = 0; i < b->a.jobs; i++)
        if (b->slots[i].job && b->slots[i].runner) {
            elapsed[n++] = now - b->slots[i].started;
            if (b->slots[i].rate_wait_until - now > rate_wait)
                rate_wait = b->slots[i].rate_wait_until - now;
        }
    unsigned queued = b->to_run - b->done_run - b->running;
    double eta =
        b->done_run ? batch_eta(b->time_done / b->done_run, queued, b->a.jobs, elapsed, n) : -1;
    unsigned done = b->done_before + b->done_run, failed = b->failed_before + b->failed_run;
    char line[512];
    unsigned w = term_width();
    batch_progress_format(line, sizeof(line), w - 1, done, (unsigned)b->njobs, failed, b->running,
                          eta, tokens, cost, rate_wait);
    fprintf(stderr, "\r\033[K%s", line);
    fflush(stderr);
}

static void report_task(struct batch *b, const cJSON *r)
{
    if (b->a.quiet)
        return;
    enum batch_outcome o = batch_outcome_of(r);
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(r, "id");
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(r, "execution_time");
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(r, "error");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e, "message");
    /* on a terminal only what needs attention scrolls; in a CI log every task has a line */
    if (b->tty && o == BATCH_SUCCEEDED)
        return;
    clear_bar(b);
    unsigned done = b->done_before + b->done_run;
    fprintf(stderr, "agentbox batch: [%u/%zu] %s %s %.1fs%s%.300s\n", done, b->njobs,
            cJSON_IsString(id) ? id->valuestring : "?", batch_outcome_name(o),
            cJSON_IsNumber(et) ? et->valuedouble : 0.0, cJSON_IsString(msg) ? ": " : "",
            cJSON_IsString(msg) ? msg->valuestring : "");
}

static void finish_job(struct batch *b, struct job *j, cJSON *result)
{
    if (!result) /* out of memory: still a line, so that the task is not lost */
        result = synthetic_result(&j->item->task, "failed", "UNKNOWN_ERROR", "out of memory", 0);
    j->result = result;
    b->done_run++;
    if (batch_outcome_of(result) != BATCH_SUCCEEDED)
        b->failed_run++;
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(result, "usage");
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(u, "total_tokens");
    const cJSON *cu = cJSON_GetObjectItemCaseSensitive(u, "cost_usd");
    b->tokens_done += cJSON_IsNumber(tt) ? tt->valuedouble : 0;
    b->cost_done += cJSON_IsNumber(cu) ? cu->valuedouble : 0;
    const cJSON *et = cJSON_GetObjectItemCaseSensitive(result, "execution_time");
    b->time_done += cJSON_IsNumber(et) && et->valuedouble > 0 ? et->valuedouble : 0;
    if (result && !b->out_broken && write_line(b->out_fd, result) < 0) {
        clear_bar(b);
        fprintf(stderr, "agentbox batch: cannot write results to %s: %s; cancelling\n",
                b->a.out ? b->a.out : "stdout", strerror(errno));
        b->out_broken = true;
    }
    report_task(b, result);
}

/* ---- slots ---- */

/* A call waits for a model's rate limit (the ':free' ones allow 20 requests a minute): the
 * bar shows the wait; a log (not a terminal) gets a line, so a slow batch is not a mystery. */
static void slot_rate_wait(struct slot *s, const char *line)
{
    cleanup_json cJSON *ev = cJSON_Parse(line);
    const cJSON *w = cJSON_GetObjectItemCaseSensitive(ev, "wait_s");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "model");
    if (!cJSON_IsNumber(w))
        return;
    s->rate_wait_until = monotonic_s() + w->valuedouble;
    if (s->b->a.quiet)
        return;
    if (s->b->tty) {
        draw_bar(s->b, true);
        return;
    }
    long secs = (long)(w->valuedouble + 0.5);
    fprintf(stderr, "agentbox batch: %s: waiting for the rate limit of %s: %ld second%s\n",
            s->job->item->task.id, cJSON_IsString(m) ? m->valuestring : "the model", secs,
            secs == 1 ? "" : "s");
}

static void slot_events(void *opaque, const char *line, size_t len)
{
    struct slot *s = opaque;
    (void)len;
    if (strstr(line, "\"type\":\"rate_limit_wait\"")) {
        slot_rate_wait(s, line);
        return;
    }
    if (!strstr(line, "\"type\":\"llm_response\""))
        return; /* the only events the progress bar needs; most are never parsed */
    cleanup_json cJSON *ev = cJSON_Parse(line);
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(ev, "usage");
    const cJSON *tt = cJSON_GetObjectItemCaseSensitive(u, "total_tokens");
    const cJSON *cu = cJSON_GetObjectItemCaseSensitive(u, "cost_usd");
    if (cJSON_IsNumber(tt) && tt->valuedouble > 0)
        s->tokens += tt->valuedouble;
    if (cJSON_IsNumber(cu) && cu->valuedouble > 0)
        s->cost_usd += cu->valuedouble;
}

static struct broker *slot_broker(const struct slot *s)
{
    return s->own_broker ? s->own_broker : s->b->shared;
}

static void slot_release(struct slot *s)
{
    if (s->runner) {
        /* a call still in flight for this task must not complete into a freed runner */
        broker_cancel_task(slot_broker(s), s->job->item->task.id);
        runner_free(s->runner);
        s->runner = NULL;
    }
    broker_free(s->own_broker);
    s->own_broker = NULL;
    if (s->events_fd >= 0)
        (void)close(s->events_fd);
    s->events_fd = -1;
    taskprep_free(&s->tp);
    s->job = NULL;
    s->tokens = s->cost_usd = s->rate_wait_until = 0;
}

static int slot_start(struct batch *b, struct slot *s, struct job *j, char *err, size_t errsz)
{
    const struct task *t = &j->item->task;
    memset(&s->tp, 0, sizeof(s->tp));
    s->job = j;
    s->events_fd = -1;
    s->tokens = s->cost_usd = 0;
    s->started = monotonic_s();
    if (taskprep_build(&s->tp, t, &b->cfg, b->have_cat ? &b->cat : NULL, err, errsz) < 0)
        return -1;
    events_init(&s->events, t->id);
    if (b->a.events_dir) {
        char path[PATH_MAX + 200];
        snprintf(path, sizeof(path), "%s/%s.jsonl", b->a.events_dir, t->id);
        s->events_fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (s->events_fd < 0)
            return errf(err, errsz, "--events-dir: %s: %s", path, strerror(errno));
        (void)events_add_fd(&s->events, s->events_fd);
    }
    (void)events_add_callback(&s->events, slot_events, s);
    if (b->a.replay && broker_new_replay(b->a.replay, &s->own_broker, err, errsz) < 0)
        return -1;
    snprintf(s->state_dir, sizeof(s->state_dir), "%s/%s", b->state_root, t->id);
    struct runner_opts o = s->tp.opts;
    o.state_dir = s->state_dir;
    o.events = &s->events;
    o.broker = slot_broker(s);
    o.queued_at = wallclock_s() - (monotonic_s() - b->t0); /* every task is queued at start */
    return runner_start_async(&o, &s->runner, err, errsz); /* the cell: off the loop */
}

static void start_more(struct batch *b)
{
    for (unsigned i = 0; i < b->a.jobs && !b->interrupted && !b->out_broken; i++) {
        struct slot *s = &b->slots[i];
        if (s->job)
            continue;
        while (b->next < b->njobs && b->jobs[b->next].result)
            b->next++;
        if (b->next >= b->njobs)
            return;
        struct job *j = &b->jobs[b->next++];
        char err[ERR_MSG_MAX];
        double t0 = monotonic_s();
        if (slot_start(b, s, j, err, sizeof(err)) < 0) {
            finish_job(b, j,
                       synthetic_result(&j->item->task, "failed", "UNKNOWN_ERROR", err,
                                        monotonic_s() - t0));
            slot_release(s);
            i--; /* the slot is free again: give it the next task */
            continue;
        }
        b->running++;
    }
}

static void slot_done(struct batch *b, struct slot *s)
{
    const cJSON *r = runner_result(s->runner);
    cJSON *copy = r ? cJSON_Duplicate(r, 1) : NULL;
    if (!r)
        copy = synthetic_result(&s->job->item->task, "failed", "UNKNOWN_ERROR",
                                "the task ended without a result", 0);
    struct job *j = s->job;
    slot_release(s);
    b->running--;
    finish_job(b, j, copy);
}

/* The second signal: no more grace; every cell is killed now and its task recorded as
 * cancelled (its state dir keeps no result, so --resume runs it again). */
static void kill_all(struct batch *b)
{
    for (unsigned i = 0; i < b->a.jobs; i++) {
        struct slot *s = &b->slots[i];
        if (!s->job)
            continue;
        struct job *j = s->job;
        double elapsed = monotonic_s() - s->started;
        slot_release(s); /* runner_free kills and reaps the cell */
        b->running--;
        finish_job(b, j, synthetic_result(&j->item->task, "cancelled", NULL, NULL, elapsed));
    }
}

static void on_signal(struct batch *b, int sigfd)
{
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (b->interrupted) {
            clear_bar(b);
            fprintf(stderr, "agentbox batch: killing %u running task%s now\n", b->running,
                    b->running == 1 ? "" : "s");
            b->killed = true;
            kill_all(b);
            return;
        }
        b->interrupted = true;
        clear_bar(b);
        fprintf(stderr,
                "agentbox batch: %s: cancelling %u running task%s (again to kill at once); "
                "--resume runs the rest later\n",
                strsignal((int)si.ssi_signo), b->running, b->running == 1 ? "" : "s");
        for (unsigned i = 0; i < b->a.jobs; i++)
            if (b->slots[i].runner)
                runner_cancel(b->slots[i].runner);
    }
}

/* ---- the loop ---- */

static int add_fds(struct pollfd **fds, size_t *cap, size_t n, size_t want)
{
    if (n + want <= *cap)
        return 0;
    size_t ncap = (n + want) * 2;
    struct pollfd *nf = realloc(*fds, ncap * sizeof(*nf));
    if (!nf)
        return -1;
    *fds = nf;
    *cap = ncap;
    return 0;
}

static void run_loop(struct batch *b, int sigfd)
{
    size_t cap = 64 + 4 * (size_t)b->a.jobs;
    struct pollfd *fds = calloc(cap, sizeof(*fds));
    int *first = calloc(b->a.jobs, sizeof(*first));
    int *count = calloc(b->a.jobs, sizeof(*count));
    if (!fds || !first || !count) {
        fprintf(stderr, "agentbox batch: out of memory\n");
        b->interrupted = true;
        goto out;
    }
    for (;;) {
        if (b->out_broken && !b->interrupted) {
            b->interrupted = true;
            for (unsigned i = 0; i < b->a.jobs; i++)
                if (b->slots[i].runner)
                    runner_cancel(b->slots[i].runner);
        }
        start_more(b);
        if (b->running == 0)
            break;
        size_t n = 0;
        fds[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
        long timeout = b->tty ? (long)(BATCH_REDRAW_S * 1000) : 1000;
        double now = monotonic_s();
        for (unsigned i = 0; i < b->a.jobs; i++) {
            struct slot *s = &b->slots[i];
            first[i] = (int)n;
            count[i] = 0;
            if (!s->runner)
                continue;
            if (add_fds(&fds, &cap, n, 8) < 0)
                break;
            count[i] = runner_poll_fds(s->runner, fds + n, (int)(cap - n));
            n += (size_t)count[i];
            double wake = runner_next_wakeup(s->runner);
            if (wake > 0) {
                long ms = (long)ceil((wake - now) * 1000);
                timeout = ms < 0 ? 0 : (ms < timeout ? ms : timeout);
            }
            if (s->own_broker) {
                long bt = broker_timeout_ms(s->own_broker);
                if (bt >= 0 && bt < timeout)
                    timeout = bt;
            }
        }
        if (b->shared) {
            size_t want = (size_t)b->cfg.max_connections + 16;
            if (add_fds(&fds, &cap, n, want) == 0)
                n += (size_t)broker_poll_fds(b->shared, fds + n, (int)want);
            long bt = broker_timeout_ms(b->shared);
            if (bt >= 0 && bt < timeout)
                timeout = bt;
        }
        int pr = poll(fds, (nfds_t)n, (int)timeout);
        if (pr < 0 && errno != EINTR) {
            fprintf(stderr, "agentbox batch: poll: %s\n", strerror(errno));
            b->interrupted = true;
            kill_all(b);
            break;
        }
        if (pr > 0 && (fds[0].revents & POLLIN)) {
            on_signal(b, sigfd);
            if (b->killed)
                break;
        }
        if (b->shared)
            (void)broker_step(b->shared);
        for (unsigned i = 0; i < b->a.jobs; i++) {
            struct slot *s = &b->slots[i];
            if (!s->runner)
                continue;
            if (s->own_broker)
                (void)broker_step(s->own_broker);
            runner_handle(s->runner, fds + first[i], count[i]);
            if (runner_done(s->runner))
                slot_done(b, s);
        }
        draw_bar(b, false);
    }
out:
    free(fds);
    free(first);
    free(count);
}

/* ---- the command ---- */

static int open_input(const char *file, FILE **f)
{
    if (strcmp(file, "-") == 0) {
        *f = stdin;
        return 0;
    }
    *f = fopen(file, "re");
    return *f ? 0 : -1;
}

static void suite_name(const struct batch *b, char *buf, size_t bufsz)
{
    const char *base = strrchr(b->a.file, '/');
    base = base ? base + 1 : b->a.file;
    if (b->a.shard_count > 1)
        snprintf(buf, bufsz, "%s[%u/%u]", base, b->a.shard_index, b->a.shard_count);
    else
        snprintf(buf, bufsz, "%s", base);
}

/* --predictions and pass@1: from every task's result of the shard, resumed ones included */
static int batch_eval_finish(struct batch *b)
{
    const cJSON **res = calloc(b->njobs ? b->njobs : 1, sizeof(*res));
    if (!res)
        return -1;
    for (size_t i = 0; i < b->njobs; i++)
        res[i] = b->jobs[i].result;
    char err[ERR_MSG_MAX], line[200];
    int r = 0;
    if (b->a.predictions &&
        batch_predictions_write(b->a.predictions, res, b->njobs, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox batch: %s\n", err);
        r = -1;
    }
    if (batch_pass_at_1(res, b->njobs, line, sizeof(line)))
        fprintf(stderr, "agentbox batch: %s\n", line);
    free(res);
    return r;
}

static int finish(struct batch *b)
{
    clear_bar(b);
    struct batch_tally tally = {0};
    struct batch_case *cases = calloc(b->njobs ? b->njobs : 1, sizeof(*cases));
    for (size_t i = 0; i < b->njobs; i++) {
        batch_tally_add(&tally, b->jobs[i].result, b->jobs[i].resumed);
        if (cases)
            cases[i] = (struct batch_case){.id = b->jobs[i].item->task.id,
                                           .result = b->jobs[i].result,
                                           .resumed = b->jobs[i].resumed};
    }
    int rc = batch_exit_code(&tally);
    if (b->a.junit) {
        char err[ERR_MSG_MAX], suite[300];
        suite_name(b, suite, sizeof(suite));
        if (!cases || batch_junit_write(b->a.junit, suite, cases, b->njobs, monotonic_s() - b->t0,
                                        err, sizeof(err)) < 0) {
            fprintf(stderr, "agentbox batch: %s\n", cases ? err : "out of memory");
            if (rc == 0)
                rc = EXIT_TASK_FAILED;
        }
    }
    free(cases);
    if (batch_eval_finish(b) < 0 && rc == 0)
        rc = EXIT_TASK_FAILED;
    if (b->out_broken && rc == 0)
        rc = EXIT_TASK_FAILED;
    char line[512];
    batch_summary_format(&tally, monotonic_s() - b->t0, rc, line, sizeof(line));
    fprintf(stderr, "agentbox batch: %s%s\n", b->a.replay ? "OFFLINE REPLAY: " : "", line);
    return rc;
}

static int setup(struct batch *b, struct batch_input *in, char *err, size_t errsz)
{
    FILE *f = NULL;
    if (open_input(b->a.file, &f) < 0)
        return errf(err, errsz, "%s: %s", b->a.file, strerror(errno));
    int rc = batch_input_read(f, b->a.file, in, err, errsz);
    if (f != stdin)
        (void)fclose(f);
    if (rc < 0)
        return -1;
    check_policies(in);
    if (in->nerrors_all) {
        print_refusal(in, b->a.file);
        return errf(err, errsz, "the batch was refused");
    }
    if (catalog_load(&b->cat, NULL, err, errsz) < 0)
        return -1;
    b->have_cat = true;
    /* every directory written into is the running uid's alone, and so is every one above
     * it: no other user can steer a (root) batch's writes through a planted link */
    const char *root = b->a.state_dir ? b->a.state_dir : b->cfg.workspace_root;
    char real[PATH_MAX], perr[ERR_MSG_MAX];
    if (dir_ensure_trusted(root, real, sizeof(real), perr, sizeof(perr)) < 0)
        return errf(err, errsz, "%s: %s",
                    b->a.state_dir ? "--state-dir" : "OPENHANDS_WORKSPACE_ROOT", perr);
    if (access(real, W_OK | X_OK) < 0)
        return errf(err, errsz, "%s %s: %s",
                    b->a.state_dir ? "--state-dir" : "OPENHANDS_WORKSPACE_ROOT", real,
                    strerror(errno));
    if (strlen(real) >= sizeof(b->state_root))
        return errf(err, errsz, "%s: path longer than %d bytes", real, BATCH_ROOT_MAX - 1);
    memcpy(b->state_root, real, strlen(real) + 1);
    /* every output path is checked before the first task spends anything */
    if (b->a.events_dir && dir_ensure_trusted(b->a.events_dir, NULL, 0, perr, sizeof(perr)) < 0)
        return errf(err, errsz, "--events-dir: %s", perr);
    if (b->a.events_dir && access(b->a.events_dir, W_OK | X_OK) < 0)
        return errf(err, errsz, "--events-dir %s: %s", b->a.events_dir, strerror(errno));
    if (b->a.out && parent_check_trusted(b->a.out, perr, sizeof(perr)) < 0)
        return errf(err, errsz, "--out %s: %s", b->a.out, perr);
    if (b->a.junit && parent_check_trusted(b->a.junit, perr, sizeof(perr)) < 0)
        return errf(err, errsz, "--junit %s: %s", b->a.junit, perr);
    if (b->a.junit && batch_junit_probe(b->a.junit, err, errsz) < 0)
        return -1;
    if (b->a.replay) {
        struct broker *probe = NULL; /* refuse a bad replay file before any cell starts */
        if (broker_new_replay(b->a.replay, &probe, err, errsz) < 0)
            return -1;
        broker_free(probe);
    } else {
        if (!b->cfg.api_key)
            return errf(err, errsz,
                        "OPENROUTER_API_KEY is not set: set it for a real run, or "
                        "pass --replay FILE for an offline one");
        if (broker_new_live(&b->cfg, &b->shared, err, errsz) < 0)
            return -1;
    }
    b->jobs = calloc(in->n ? in->n : 1, sizeof(*b->jobs));
    b->slots = calloc(b->a.jobs, sizeof(*b->slots));
    if (!b->jobs || !b->slots)
        return errf(err, errsz, "out of memory");
    for (size_t i = 0; i < in->n; i++)
        if (batch_in_shard(in->items[i].task.id, b->a.shard_index, b->a.shard_count))
            b->jobs[b->njobs++].item = &in->items[i];
    for (unsigned i = 0; i < b->a.jobs; i++) {
        b->slots[i].b = b;
        b->slots[i].events_fd = -1;
    }
    if (prepare_out(b, err, errsz) < 0)
        return -1;
    for (size_t i = 0; i < b->njobs; i++) {
        const struct job *j = &b->jobs[i];
        b->to_run += !j->resumed;
        b->done_before += j->resumed;
        b->failed_before += j->resumed && batch_outcome_of(j->result) != BATCH_SUCCEEDED;
    }
    return 0;
}

int cmd_batch(int argc, char **argv)
{
    if (argc >= 2 && strcmp(argv[1], "merge") == 0) /* a batch file named merge: ./merge */
        return cmd_batch_merge(argc - 1, argv + 1);
    struct batch b = {.out_fd = -1};
    int prc = parse_args(argc, argv, &b.a);
    if (prc != 0)
        return prc > 0 ? 0 : EXIT_USAGE;
    char err[ERR_MSG_MAX];
    if (config_keyholder_harden(err, sizeof(err)) < 0 ||
        config_load(&b.cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox batch: %s\n", err);
        return EXIT_USAGE;
    }
    config_scrub_env();
    sigset_t mask, oldmask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);
    /* a closed --out pipe must be an error we report, not a death that leaves cells behind */
    struct sigaction ign = {.sa_handler = SIG_IGN}, oldpipe;
    sigaction(SIGPIPE, &ign, &oldpipe);
    struct batch_input in = {0};
    int rc = EXIT_USAGE;
    int sigfd = -1;
    b.t0 = monotonic_s();
    if (setup(&b, &in, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox batch: %s\n", err);
        goto out;
    }
    sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) {
        fprintf(stderr, "agentbox batch: signalfd: %s\n", strerror(errno));
        goto out;
    }
    b.tty = !b.a.quiet && isatty(STDERR_FILENO);
    if (!b.a.quiet) {
        unsigned resumed = (unsigned)b.njobs - b.to_run;
        fprintf(stderr, "agentbox batch: %zu task%s", b.njobs, b.njobs == 1 ? "" : "s");
        if (b.a.shard_count > 1)
            fprintf(stderr, " in shard %u/%u (of %zu)", b.a.shard_index, b.a.shard_count, in.n);
        if (resumed)
            fprintf(stderr, ", %u finished earlier", resumed);
        fprintf(stderr, "; %u at once%s\n", b.a.jobs,
                b.a.replay ? "; OFFLINE REPLAY: the LLM's replies come from the replay file" : "");
    }
    b.t0 = monotonic_s();
    run_loop(&b, sigfd);
    rc = finish(&b);
out:
    for (unsigned i = 0; b.slots && i < b.a.jobs; i++)
        if (b.slots[i].job)
            slot_release(&b.slots[i]);
    for (size_t i = 0; i < b.njobs; i++)
        cJSON_Delete(b.jobs[i].result);
    free(b.jobs);
    free(b.slots);
    broker_free(b.shared);
    batch_input_free(&in);
    if (b.out_fd >= 0 && close(b.out_fd) < 0 && rc == 0) {
        fprintf(stderr, "agentbox batch: closing the results: %s\n", strerror(errno));
        rc = EXIT_TASK_FAILED;
    }
    if (sigfd >= 0)
        (void)close(sigfd);
    config_free(&b.cfg);
    sigaction(SIGPIPE, &oldpipe, NULL);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    return rc;
}
