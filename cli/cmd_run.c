/* cmd_run: `agentbox run`: one agent task in the foreground. This process is the task's
 * supervisor: it holds the key (inside the LLM client only), runs the broker and the
 * runner in one poll loop, prints progress on a terminal and the result JSON on stdout.
 * SIGINT/SIGTERM cancel the task cleanly (status "cancelled", cell gone). */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include "egress_exec.h"
#include "broker.h"
#include "catalog.h"
#include "commands.h"
#include "config.h"
#include "json.h"
#include "log.h"
#include "safedir.h"
#include "policy.h"
#include "runner.h"
#include "task.h"
#include "taskprep.h"
#include "supervisor.h"
#include "util.h"

#define RUN_TASK_FILE_MAX_BYTES (80u << 20)
#define RUN_DEFAULT_MAX_ITER    TASKPREP_DEFAULT_MAX_ITER
#define RUN_POLL_FDS_MAX        512

static void usage(FILE *out)
{
    fprintf(out,
            "usage: agentbox run [OPTIONS] (PROMPT | --task-file FILE|-)\n\n"
            "Runs one agent task in a fresh cell and prints its result (JSON) on stdout.\n\n"
            "  --task-file FILE      the task as JSON ('-': stdin); options override it\n"
            "  --id ID               the task's id (default: generated)\n"
            "  --model M             a catalog preset or a model ID (default OPENHANDS_MODEL)\n"
            "  --fallback-model M    a fallback model (repeatable)\n"
            "  --max-iterations N    LLM replies acted on (default %d)\n"
            "  --timeout SECONDS     wall clock (default OPENHANDS_TIMEOUT, 300)\n"
            "  --policy NAME|PATH    cell policy (default: default)\n"
            "  --disk SIZE --inodes N --memory SIZE --pids N --cpu SECONDS   cell limits\n"
            "  --workspace-from DIR  seed /workspace from DIR (never modified)\n"
            "  --network none|host   (default none)\n"
            "  --allow-host HOST[:PORT]  the cell may reach HOST through the egress proxy\n"
            "                        (repeatable; task network.allow; docs/network.md)\n"
            "  --resolve HOST:ADDR   pin HOST to ADDR for the proxy (task network.resolve)\n"
            "  --output GLOB         copy matching workspace files out (repeatable)\n"
            "  --events FILE|-       also write the event stream (JSON lines) there; with '-'\n"
            "                        stdout is JSON lines: the events, then the result\n"
            "  --meta FILE           write the cell record there\n"
            "  --replay FILE         offline: take the LLM's replies from FILE, no network\n"
            "  --quiet               no progress lines on stderr\n\n"
            "Results go below OPENHANDS_WORKSPACE_ROOT/ID (result.json, events.jsonl,\n"
            "outputs/). Exit: 0 succeeded, 1 failed/timeout/cancelled, 2 usage or\n"
            "configuration error, 3 escalated, 4 mock result.\n",
            RUN_DEFAULT_MAX_ITER);
}

struct run_args {
    const char *task_file, *prompt, *id, *model, *policy, *workspace_from, *network;
    const char *events, *meta, *replay;
    const char *fallbacks[TASK_MODELS_MAX];
    size_t nfallbacks;
    const char *outputs[TASK_OUTPUTS_MAX];
    size_t noutputs;
    const char *timeout, *disk, *inodes, *memory, *pids, *cpu, *max_iter;
    const char *allow[EGRESS_RULES_MAX], *resolve[EGRESS_PINS_MAX];
    size_t nallow, nresolve;
    bool quiet;
};

#define RUN_TEXT(n, field)                                                                         \
    {                                                                                              \
        .name = n, .off = offsetof(struct run_args, field)                                         \
    }
#define RUN_LIST(n, field, count, most, say)                                                       \
    {                                                                                              \
        .name = n, .off = offsetof(struct run_args, field),                                        \
        .count_off = offsetof(struct run_args, count), .max = most, .list = true, .say_max = say   \
    }

/* Every option but --help and --quiet: where its argument goes in struct run_args. A list
 * option (repeatable) appends to its array, at most max ("at most N" or "too many" said). */
static const struct run_opt {
    const char *name; /* each takes an argument */
    size_t off, count_off, max;
    bool list, say_max;
} run_opts[] = {
    RUN_TEXT("task-file", task_file),
    RUN_TEXT("id", id),
    RUN_TEXT("model", model),
    RUN_LIST("fallback-model", fallbacks, nfallbacks, TASK_MODELS_MAX, 1),
    RUN_TEXT("max-iterations", max_iter),
    RUN_TEXT("timeout", timeout),
    RUN_TEXT("policy", policy),
    RUN_TEXT("disk", disk),
    RUN_TEXT("inodes", inodes),
    RUN_TEXT("memory", memory),
    RUN_TEXT("pids", pids),
    RUN_TEXT("cpu", cpu),
    RUN_TEXT("workspace-from", workspace_from),
    RUN_TEXT("network", network),
    RUN_LIST("output", outputs, noutputs, TASK_OUTPUTS_MAX, 1),
    RUN_TEXT("events", events),
    RUN_TEXT("meta", meta),
    RUN_TEXT("replay", replay),
    RUN_LIST("allow-host", allow, nallow, EGRESS_RULES_MAX, 0),
    RUN_LIST("resolve", resolve, nresolve, EGRESS_PINS_MAX, 0),
};
enum { O_RUN_QUIET = 256 + ARRAY_SIZE(run_opts), O_RUN_HELP };

/* One option's argument into a; -1 when a list is full (said). */
static int set_run_option(struct run_args *a, const struct run_opt *o, const char *arg)
{
    char *base = (char *)a;
    if (!o->list) {
        *(const char **)(void *)(base + o->off) = arg;
        return 0;
    }
    size_t *n = (size_t *)(void *)(base + o->count_off);
    if (*n >= o->max) {
        if (o->say_max)
            fprintf(stderr, "agentbox run: at most %d --%s\n", (int)o->max, o->name);
        else
            fprintf(stderr, "agentbox run: too many --%s\n", o->name);
        return -1;
    }
    ((const char **)(void *)(base + o->off))[(*n)++] = arg;
    return 0;
}

static int parse_args(int argc, char **argv, struct run_args *a)
{
    struct option opts[ARRAY_SIZE(run_opts) + 3] = {{0}};
    for (size_t i = 0; i < ARRAY_SIZE(run_opts); i++)
        opts[i] = (struct option){run_opts[i].name, required_argument, 0, 256 + (int)i};
    opts[ARRAY_SIZE(run_opts)] = (struct option){"quiet", no_argument, 0, O_RUN_QUIET};
    opts[ARRAY_SIZE(run_opts) + 1] = (struct option){"help", no_argument, 0, O_RUN_HELP};
    optind = 1;
    opterr = 0;
    int c;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        if (c == O_RUN_HELP) {
            usage(stdout);
            return 1;
        }
        if (c == O_RUN_QUIET) {
            a->quiet = true;
            continue;
        }
        if (c < 256 || c >= 256 + (int)ARRAY_SIZE(run_opts)) {
            fprintf(stderr, "agentbox run: unknown or incomplete option '%s' (see --help)\n",
                    argv[optind - 1]);
            return -1;
        }
        if (set_run_option(a, &run_opts[c - 256], optarg) < 0)
            return -1;
    }
    if (optind < argc)
        a->prompt = argv[optind++];
    if (optind < argc) {
        fprintf(stderr, "agentbox run: one PROMPT only (quote it); unexpected '%s'\n",
                argv[optind]);
        return -1;
    }
    if (!a->prompt && !a->task_file) {
        fprintf(stderr, "agentbox run: give a PROMPT or --task-file FILE (see --help)\n");
        return -1;
    }
    return 0;
}

/* Options override the task file: set them as JSON fields, so task_parse checks them all. */
static int override(cJSON *task, const struct run_args *a, char *err, size_t errsz)
{
#define SET(name, item)                                                                            \
    do {                                                                                           \
        cJSON_DeleteItemFromObjectCaseSensitive(task, name);                                       \
        cJSON_AddItemToObject(task, name, item);                                                   \
    } while (0)
    if (a->prompt)
        SET("prompt", cJSON_CreateString(a->prompt));
    if (a->id)
        SET("id", cJSON_CreateString(a->id));
    if (a->model)
        SET("model", cJSON_CreateString(a->model));
    if (a->nfallbacks)
        SET("fallback_models", cJSON_CreateStringArray(a->fallbacks, (int)a->nfallbacks));
    if (a->noutputs)
        SET("outputs", cJSON_CreateStringArray(a->outputs, (int)a->noutputs));
    if (a->policy)
        SET("policy", cJSON_CreateString(a->policy));
    if (a->network)
        SET("network", cJSON_CreateString(a->network));
    if ((a->nallow || a->nresolve) &&
        egress_task_override(task, a->allow, a->nallow, a->resolve, a->nresolve, err, errsz) < 0)
        return -1;
    uint64_t u;
    double d;
    if (a->max_iter) {
        if (opt_count("--max-iterations", a->max_iter, 1, 100000, &u, err, errsz) < 0)
            return -1;
        SET("max_iterations", cJSON_CreateNumber((double)u));
    }
    if (a->timeout) {
        if (opt_seconds("--timeout", a->timeout, 0, &d, err, errsz) < 0)
            return -1;
        SET("timeout_s", cJSON_CreateNumber(d));
    }
    if (a->workspace_from) {
        cJSON *ws = cJSON_GetObjectItemCaseSensitive(task, "workspace");
        if (!cJSON_IsObject(ws)) {
            cJSON_DeleteItemFromObjectCaseSensitive(task, "workspace");
            ws = cJSON_AddObjectToObject(task, "workspace");
        }
        cJSON_DeleteItemFromObjectCaseSensitive(ws, "from_dir");
        cJSON_AddStringToObject(ws, "from_dir", a->workspace_from);
    }
    cJSON *lim = cJSON_GetObjectItemCaseSensitive(task, "limits");
    if ((a->disk || a->inodes || a->memory || a->pids || a->cpu) && !cJSON_IsObject(lim)) {
        cJSON_DeleteItemFromObjectCaseSensitive(task, "limits");
        lim = cJSON_AddObjectToObject(task, "limits");
    }
    struct {
        const char *val, *name, *opt;
        bool size;
        uint64_t min;
    } lims[] = {
        {a->disk, "disk", "--disk", true, POLICY_MIN_DISK_BYTES},
        {a->memory, "memory", "--memory", true, POLICY_MIN_MEMORY_BYTES},
        {a->inodes, "inodes", "--inodes", false, 1},
        {a->pids, "pids", "--pids", false, POLICY_MIN_PIDS},
    };
    for (size_t i = 0; i < ARRAY_SIZE(lims); i++) {
        if (!lims[i].val)
            continue;
        if ((lims[i].size ? opt_size(lims[i].opt, lims[i].val, lims[i].min, &u, err, errsz)
                          : opt_count(lims[i].opt, lims[i].val, lims[i].min, UINT32_MAX, &u, err,
                                      errsz)) < 0)
            return -1;
        cJSON_DeleteItemFromObjectCaseSensitive(lim, lims[i].name);
        cJSON_AddNumberToObject(lim, lims[i].name, (double)u);
    }
    if (a->cpu) {
        if (opt_seconds("--cpu", a->cpu, 1, &d, err, errsz) < 0)
            return -1;
        cJSON_DeleteItemFromObjectCaseSensitive(lim, "cpu_s");
        cJSON_AddNumberToObject(lim, "cpu_s", d);
    }
#undef SET
    return 0;
}

static int load_task(const struct run_args *a, struct task *t, char *err, size_t errsz)
{
    cleanup_json cJSON *json = NULL;
    if (a->task_file) {
        cleanup_free char *text = NULL;
        if (read_input(a->task_file, RUN_TASK_FILE_MAX_BYTES, &text, NULL) < 0)
            return errf(err, errsz, "--task-file %s: %s", a->task_file, strerror(errno));
        const char *src = strcmp(a->task_file, "-") ? a->task_file : "stdin";
        char perr[ERR_MSG_MAX];
        json = json_parse_located(text, src, perr, sizeof(perr));
        if (!json)
            return errf(err, errsz, "--task-file %s", perr);
    } else {
        json = cJSON_CreateObject();
    }
    if (!cJSON_IsObject(json))
        return errf(err, errsz, "task: expected a JSON object");
    if (override(json, a, err, errsz) < 0)
        return -1;
    return task_parse(json, t, err, errsz);
}

/* One progress line per step on a terminal: iteration, tool, duration, tokens. */
struct progress {
    unsigned step;
    double last_ts;
    double tokens;
};

static void progress_sink(void *opaque, const char *line, size_t len)
{
    struct progress *p = opaque;
    (void)len;
    cleanup_json cJSON *ev = cJSON_Parse(line);
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(ev, "type");
    const cJSON *ts = cJSON_GetObjectItemCaseSensitive(ev, "ts");
    if (!cJSON_IsString(type) || !cJSON_IsNumber(ts))
        return;
    const char *t = type->valuestring;
    if (strcmp(t, "llm_response") == 0) {
        const cJSON *u = cJSON_GetObjectItemCaseSensitive(ev, "usage");
        const cJSON *tt = cJSON_GetObjectItemCaseSensitive(u, "total_tokens");
        if (cJSON_IsNumber(tt))
            p->tokens += tt->valuedouble;
    } else if (strcmp(t, "tool_result") == 0) {
        const cJSON *tool = cJSON_GetObjectItemCaseSensitive(ev, "tool");
        const cJSON *dur = cJSON_GetObjectItemCaseSensitive(ev, "duration_s");
        const cJSON *iter = cJSON_GetObjectItemCaseSensitive(ev, "iteration");
        fprintf(stderr, "agentbox: step %d  %-18s %6.2fs  %8.0f tokens\n",
                cJSON_IsNumber(iter) ? iter->valueint : (int)++p->step,
                cJSON_IsString(tool) ? tool->valuestring : "?",
                cJSON_IsNumber(dur) ? dur->valuedouble : 0.0, p->tokens);
    } else if (strcmp(t, "llm_error") == 0) {
        const cJSON *et = cJSON_GetObjectItemCaseSensitive(ev, "error_type");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(ev, "strategy");
        fprintf(stderr, "agentbox: LLM error %s, next: %s\n",
                cJSON_IsString(et) ? et->valuestring : "?",
                cJSON_IsString(st) ? st->valuestring : "?");
    } else if (strcmp(t, "rate_limit_wait") == 0) {
        const cJSON *m = cJSON_GetObjectItemCaseSensitive(ev, "model");
        const cJSON *w = cJSON_GetObjectItemCaseSensitive(ev, "wait_s");
        long secs = cJSON_IsNumber(w) ? (long)(w->valuedouble + 0.5) : 0;
        fprintf(stderr, "agentbox: waiting for the rate limit of %s: %ld second%s\n",
                cJSON_IsString(m) ? m->valuestring : "the model", secs, secs == 1 ? "" : "s");
    } else if (strncmp(t, "task_", 5) == 0 && strcmp(t, "task_queued") &&
               strcmp(t, "task_started")) {
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(ev, "status");
        fprintf(stderr, "agentbox: %s (%s)\n", t, cJSON_IsString(st) ? st->valuestring : "");
    }
}

static int open_events_sink(const char *path)
{
    if (strcmp(path, "-") == 0)
        return dup(STDOUT_FILENO);
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
}

/* The loop: poll the runner's fds and the broker's sockets; signals come in by signalfd. */
static void run_loop(struct runner *r, struct broker *b, int sigfd)
{
    static struct pollfd fds[RUN_POLL_FDS_MAX];
    while (!runner_done(r)) {
        int n = 0;
        fds[n++] = (struct pollfd){.fd = sigfd, .events = POLLIN};
        int rn = runner_poll_fds(r, fds + n, RUN_POLL_FDS_MAX - n);
        int first_runner = n;
        n += rn;
        n += broker_poll_fds(b, fds + n, RUN_POLL_FDS_MAX - n);
        double wake = runner_next_wakeup(r);
        long timeout = wake > 0 ? (long)ceil((wake - monotonic_s()) * 1000) : -1;
        if (wake > 0 && timeout < 0)
            timeout = 0; /* already due */
        long bt = broker_timeout_ms(b);
        if (bt >= 0 && (timeout < 0 || bt < timeout))
            timeout = bt;
        if (timeout < 0 || timeout > 1000)
            timeout = 1000;
        int pr = poll(fds, (nfds_t)n, (int)timeout);
        if (pr < 0 && errno != EINTR)
            break;
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si))
                runner_cancel(r);
        }
        (void)broker_step(b);
        runner_handle(r, fds + first_runner, rn);
    }
}

static int write_meta(const char *path, const cJSON *sandbox)
{
    cleanup_free char *text = json_print_pretty(sandbox);
    cleanup_fd int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (!text || fd < 0 || write_all(fd, text, strlen(text)) < 0 || write_all(fd, "\n", 1) < 0)
        return -1;
    return close(steal_fd(&fd));
}

/* --events and --meta: their directories must be ours alone; the events sink opened and
 * attached to events. -1 with err set. */
static int open_sinks(const struct run_args *a, struct event_log *events, int *events_fd, char *err,
                      size_t errsz)
{
    char perr[ERR_MSG_MAX];
    if ((a->events && strcmp(a->events, "-") &&
         parent_check_trusted(a->events, perr, sizeof(perr)) < 0) ||
        (a->meta && parent_check_trusted(a->meta, perr, sizeof(perr)) < 0))
        return errf(err, errsz, "--events/--meta: %.400s", perr);
    if (a->events) {
        *events_fd = open_events_sink(a->events);
        if (*events_fd < 0)
            return errf(err, errsz, "--events %s: %s", a->events, strerror(errno));
        (void)events_add_fd(events, *events_fd);
    }
    return 0;
}

int cmd_run(int argc, char **argv)
{
    struct run_args a = {0};
    int prc = parse_args(argc, argv, &a);
    if (prc != 0)
        return prc > 0 ? 0 : EXIT_USAGE;
    char err[ERR_MSG_MAX];
    struct agentbox_config cfg;
    struct catalog cat;
    if (supervisor_keyholder_start(&cfg, &cat, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox run: %s\n", err);
        return EXIT_USAGE;
    }
    int rc = EXIT_USAGE;
    struct task t = {0};
    struct taskprep prep = {0};
    struct broker *b = NULL;
    struct runner *r = NULL;
    struct event_log events;
    struct progress prog_state = {0};
    int events_fd = -1, sigfd = -1;
    sigset_t mask, oldmask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGHUP);
    sigprocmask(SIG_BLOCK, &mask, &oldmask);

    if (load_task(&a, &t, err, sizeof(err)) < 0)
        goto usage_error;
    if (taskprep_build(&prep, &t, &cfg, &cat, err, sizeof(err)) < 0)
        goto usage_error;
    if (supervisor_broker_open(&cfg, a.replay, SUPERVISOR_REPLAY_KEEP,
                               " for a real run, or pass --replay FILE for an offline one", &b, err,
                               sizeof(err)) < 0)
        goto usage_error;
    if (a.replay && !a.quiet)
        fprintf(stderr,
                "agentbox: OFFLINE REPLAY: the LLM's replies come from %s, not "
                "from a model; the tools, the cell and the results are real.\n",
                a.replay);

    struct runner_opts o = prep.opts;
    o.events = &events;
    o.broker = b;

    /* the results' directory and every one above it must be ours alone: a user who made
     * ./openhands_workspace could otherwise steer a root run's writes through links */
    char state_dir[4096], root[4096], perr[ERR_MSG_MAX];
    if (dir_ensure_trusted(cfg.workspace_root, root, sizeof(root), perr, sizeof(perr)) < 0) {
        snprintf(err, sizeof(err), "OPENHANDS_WORKSPACE_ROOT: %.400s", perr);
        goto usage_error;
    }
    snprintf(state_dir, sizeof(state_dir), "%.3900s/%s", root, t.id);
    o.state_dir = state_dir;

    events_init(&events, t.id);
    if (open_sinks(&a, &events, &events_fd, err, sizeof(err)) < 0)
        goto usage_error;
    if (!a.quiet && isatty(STDERR_FILENO))
        (void)events_add_callback(&events, progress_sink, &prog_state);
    sigfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
    if (sigfd < 0) {
        snprintf(err, sizeof(err), "signalfd: %s", strerror(errno));
        goto usage_error;
    }
    if (runner_start(&o, &r, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox run: %s\n", err);
        rc = EXIT_TASK_FAILED;
        goto out;
    }
    run_loop(r, b, sigfd);
    const cJSON *res = runner_result(r);
    if (!res) {
        fprintf(stderr, "agentbox run: the task ended without a result\n");
        rc = EXIT_TASK_FAILED;
        goto out;
    }
    /* with --events - stdout is JSON Lines: the events, then the result as the last line */
    bool jsonl = a.events && strcmp(a.events, "-") == 0;
    char *text = jsonl ? json_print(res) : json_print_pretty(res);
    if (text)
        printf("%s\n", text);
    free(text);
    fflush(stdout);
    if (a.meta && write_meta(a.meta, cJSON_GetObjectItemCaseSensitive(res, "sandbox")) < 0)
        fprintf(stderr, "agentbox run: --meta %s: %s\n", a.meta, strerror(errno));
    rc = runner_exit_code(r);
    goto out;

usage_error:
    fprintf(stderr, "agentbox run: %s\n", err);
    rc = EXIT_USAGE;
out:
    runner_free(r);
    broker_free(b);
    if (events_fd >= 0)
        (void)close(events_fd);
    if (sigfd >= 0)
        (void)close(sigfd);
    taskprep_free(&prep);
    task_free(&t);
    config_free(&cfg);
    sigprocmask(SIG_SETMASK, &oldmask, NULL);
    return rc;
}
