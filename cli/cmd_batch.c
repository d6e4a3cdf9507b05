/* cmd_batch: `agentbox batch`: a JSONL file of tasks run by one process that is their
 * supervisor: up to --jobs cells at once, one broker (and so one breaker and one rate limit)
 * for all of them, results appended to --out as each task ends. The file is validated whole
 * before anything runs; --shard picks a deterministic subset; --resume never re-runs a task
 * that finished. SIGINT/SIGTERM cancel the running tasks cleanly (a second one kills them).
 * docs/batch.md is the user's description; this file must stay in step with it.
 * This file owns the options, the whole-file validation, the set-up (state dir, output
 * paths, broker) and the closing reports; the loop is cli/batch_loop.c and --resume/--out
 * batch/batch_resume.c. It never runs a cell nor writes a result line itself. */
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "batch_eval.h"
#include "batch_input.h"
#include "batch_loop.h"
#include "batch_merge.h"
#include "batch_report.h"
#include "commands.h"
#include "json.h"
#include "log.h"
#include "safedir.h"
#include "supervisor.h"
#include "util.h"

#define BATCH_POLICY_CACHE 32

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
    batch_clear_bar(b);
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
    /* a bad replay file is refused before any cell starts */
    if (supervisor_broker_open(&b->cfg, b->a.replay, SUPERVISOR_REPLAY_PROBE,
                               " for a real run, or pass --replay FILE for an offline one",
                               &b->shared, err, errsz) < 0)
        return -1;
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
    struct batch_out_opts oo = {.out = b->a.out,
                                .state_root = b->state_root,
                                .resume = b->a.resume,
                                .retry_failed = b->a.retry_failed};
    if (batch_prepare_out(&oo, b->jobs, b->njobs, &b->out_fd, err, errsz) < 0)
        return -1;
    for (size_t i = 0; i < b->njobs; i++) {
        const struct batch_job *j = &b->jobs[i];
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
    if (supervisor_keyholder_start(&b.cfg, &b.cat, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox batch: %s\n", err);
        return EXIT_USAGE;
    }
    b.have_cat = true;
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
    batch_run_loop(&b, sigfd);
    rc = finish(&b);
out:
    for (unsigned i = 0; b.slots && i < b.a.jobs; i++)
        if (b.slots[i].job)
            batch_slot_release(&b.slots[i]);
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
