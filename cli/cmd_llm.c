/* cmd_llm: `agentbox llm`, which drives the OpenRouter client directly: one call, or a load
 * of N calls with P in flight on one thread (the benchmark and the integration tests use
 * it). Prints results only through llm_outcome_to_json, so the key cannot reach stdout. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "catalog.h"
#include "commands.h"
#include "config.h"
#include "events.h"
#include "json.h"
#include "llm_client.h"
#include "llm_request.h"
#include "log.h"
#include "supervisor.h"
#include "util.h"

#define LLM_FALLBACK_ARGS_MAX 8
#define LLM_BODY_FILE_MAX     (16u << 20)
#define LLM_LOAD_COUNT_MAX    1000000u
#define LLM_LOAD_PARALLEL_MAX 10000u

static void usage(FILE *out)
{
    fprintf(out,
            "usage: agentbox llm [--model M] [--fallback M]... [--no-catalog] [--stream]\n"
            "                    [--max-tokens N] [--timeout S] [--events FILE|-] [--body FILE]\n"
            "                    [--count N --parallel P] [PROMPT]\n\n"
            "Sends a chat request through agentbox's OpenRouter client (retries, model\n"
            "fallback, circuit breaker, recovery chains as configured; docs/llm.md) and prints\n"
            "the outcome as one JSON line. With --count, runs N calls, at most P in flight on\n"
            "one thread, and prints a summary instead. Exit: 0 ok, 1 failed or timed out,\n"
            "2 usage or configuration error, 3 escalated, 4 mock.\n");
}

struct load {
    struct llm_client *client;
    struct agentbox_config *cfg;
    const cJSON *body;
    const char *const *models;
    bool stream;
    double timeout_s;
    int events_fd;
    unsigned count, parallel, started, done, in_flight, max_in_flight;
    unsigned ok, failed, escalated, mock, timeouts, condense;
    unsigned long retries, fallbacks, with_retries, with_retries_ok, with_fallback,
        with_fallback_ok;
    double *lat_ms;
    struct event_log *logs;
    struct llm_outcome *single;
};

static void load_done(void *opaque, struct llm_outcome *o)
{
    struct load *L = opaque;
    L->in_flight--;
    if (L->count == 0) { /* single call */
        L->single = o;
        L->done++;
        return;
    }
    L->lat_ms[L->done++] = o->elapsed_s * 1000.0;
    switch (o->status) {
    case LLM_OK:
        L->ok++;
        break;
    case LLM_ESCALATED:
        L->escalated++;
        break;
    case LLM_MOCK:
        L->mock++;
        break;
    case LLM_TIMEOUT:
        L->timeouts++;
        L->failed++;
        break;
    case LLM_CONDENSE:
        L->condense++;
        L->failed++;
        break;
    default:
        L->failed++;
        break;
    }
    L->retries += o->retries;
    L->fallbacks += o->fallbacks;
    if (o->retries) {
        L->with_retries++;
        L->with_retries_ok += o->status == LLM_OK;
    }
    if (o->fallbacks) {
        L->with_fallback++;
        L->with_fallback_ok += o->status == LLM_OK || o->status == LLM_MOCK;
    }
    llm_outcome_free(o);
}

static int start_one(struct load *L, unsigned i, char *err, size_t errsz)
{
    char id[64];
    snprintf(id, sizeof(id), L->count ? "call-%u" : "llm", i);
    struct event_log *ev = NULL;
    if (L->events_fd >= 0) {
        ev = &L->logs[i];
        events_init(ev, id);
        if (events_add_fd(ev, L->events_fd) < 0)
            return errf(err, errsz, "cannot attach the events file");
    }
    struct llm_call call = {
        .task_id = id,
        .events = ev,
        .body = L->body,
        .models = L->models,
        .deadline_mono = L->timeout_s > 0 ? monotonic_s() + L->timeout_s : 0,
        .stream = L->stream,
    };
    if (llm_call_start(L->client, &call, load_done, L, err, errsz) < 0)
        return -1;
    L->started++;
    if (++L->in_flight > L->max_in_flight)
        L->max_in_flight = L->in_flight;
    return 0;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double percentile(const double *sorted, unsigned n, double p)
{
    if (n == 0)
        return 0;
    size_t idx = (size_t)(p * (double)(n - 1) + 0.5);
    return sorted[idx];
}

static void print_json(cJSON *j)
{
    char *text = json_print(j);
    if (text) {
        log_redact(text);
        printf("%s\n", text);
        free(text);
    }
    fflush(stdout);
}

static cJSON *build_body(const char *body_file, const char *prompt, long max_tokens, char *err,
                         size_t errsz)
{
    cJSON *body;
    if (body_file) {
        cleanup_free char *text = NULL;
        size_t len;
        if (read_file(body_file, LLM_BODY_FILE_MAX, &text, &len) < 0) {
            errf(err, errsz, "--body %s: %s", body_file, strerror(errno));
            return NULL;
        }
        body = cJSON_ParseWithLength(text, len);
        if (!cJSON_IsObject(body)) {
            cJSON_Delete(body);
            errf(err, errsz, "--body %s: not a JSON object", body_file);
            return NULL;
        }
        if (prompt) {
            cJSON *msgs = cJSON_GetObjectItemCaseSensitive(body, "messages");
            if (!msgs)
                msgs = cJSON_AddArrayToObject(body, "messages");
            cJSON *m = cJSON_CreateObject();
            if (cJSON_IsArray(msgs) && m) {
                cJSON_AddStringToObject(m, "role", "user");
                cJSON_AddStringToObject(m, "content", prompt);
                cJSON_AddItemToArray(msgs, m);
            } else
                cJSON_Delete(m);
        }
    } else {
        body = cJSON_CreateObject();
        cJSON *msgs = body ? cJSON_AddArrayToObject(body, "messages") : NULL;
        cJSON *m = cJSON_CreateObject();
        if (!msgs || !m) {
            cJSON_Delete(body);
            cJSON_Delete(m);
            errf(err, errsz, "out of memory");
            return NULL;
        }
        cJSON_AddStringToObject(m, "role", "user");
        cJSON_AddStringToObject(m, "content", prompt);
        cJSON_AddItemToArray(msgs, m);
    }
    /* tools on every turn : a minimal list when the caller gave none */
    if (!cJSON_GetObjectItemCaseSensitive(body, "tools")) {
        cJSON *tools = llm_request_tools(true);
        if (tools)
            cJSON_AddItemToObject(body, "tools", tools);
    }
    if (max_tokens > 0) {
        cJSON_DeleteItemFromObjectCaseSensitive(body, "max_tokens");
        cJSON_AddNumberToObject(body, "max_tokens", (double)max_tokens);
    }
    return body;
}

struct llm_args {
    const char *model, *events, *body_file, *prompt;
    const char *fallbacks[LLM_FALLBACK_ARGS_MAX + 1];
    int nfb;
    bool stream, no_catalog;
    uint64_t max_tokens, count, parallel;
    double timeout_s; /* < 0: the configured one */
};

enum llm_opt_kind { LO_TEXT, LO_FLAG, LO_COUNT, LO_SECONDS, LO_FALLBACK };

/* Every option but --help: its kind, where its value goes in struct llm_args, its bounds. */
static const struct llm_opt {
    struct option opt;
    enum llm_opt_kind kind;
    size_t off;
    uint64_t min, max;
} llm_opts[] = {
    {{"model", required_argument, NULL, 'm'}, LO_TEXT, offsetof(struct llm_args, model), 0, 0},
    {{"fallback", required_argument, NULL, 'f'}, LO_FALLBACK, 0, 0, 0},
    {{"stream", no_argument, NULL, 's'}, LO_FLAG, offsetof(struct llm_args, stream), 0, 0},
    {{"max-tokens", required_argument, NULL, 'M'},
     LO_COUNT,
     offsetof(struct llm_args, max_tokens),
     1,
     1000000},
    {{"events", required_argument, NULL, 'e'}, LO_TEXT, offsetof(struct llm_args, events), 0, 0},
    {{"body", required_argument, NULL, 'b'}, LO_TEXT, offsetof(struct llm_args, body_file), 0, 0},
    {{"count", required_argument, NULL, 'n'},
     LO_COUNT,
     offsetof(struct llm_args, count),
     1,
     LLM_LOAD_COUNT_MAX},
    {{"parallel", required_argument, NULL, 'p'},
     LO_COUNT,
     offsetof(struct llm_args, parallel),
     1,
     LLM_LOAD_PARALLEL_MAX},
    {{"timeout", required_argument, NULL, 't'},
     LO_SECONDS,
     offsetof(struct llm_args, timeout_s),
     1,
     0},
    {{"no-catalog", no_argument, NULL, 'C'}, LO_FLAG, offsetof(struct llm_args, no_catalog), 0, 0},
};

static int option_error(const char *msg)
{
    fprintf(stderr, "agentbox llm: %s\n", msg);
    return -1;
}

/* One option's value into a; -1 when refused (said). */
static int set_llm_option(struct llm_args *a, const struct llm_opt *o, const char *arg)
{
    char oerr[ERR_MSG_MAX];
    char name[48];
    snprintf(name, sizeof(name), "--%s", o->opt.name);
    void *field = (char *)a + o->off;
    switch (o->kind) {
    case LO_TEXT:
        *(const char **)field = arg;
        return 0;
    case LO_FLAG:
        *(bool *)field = true;
        return 0;
    case LO_FALLBACK:
        if (a->nfb >= LLM_FALLBACK_ARGS_MAX) {
            fprintf(stderr, "agentbox llm: at most %d --fallback\n", LLM_FALLBACK_ARGS_MAX);
            return -1;
        }
        a->fallbacks[a->nfb++] = arg;
        return 0;
    case LO_COUNT:
        if (opt_count(name, arg, o->min, o->max, (uint64_t *)field, oerr, sizeof(oerr)) < 0)
            return option_error(oerr);
        return 0;
    case LO_SECONDS:
        if (opt_seconds(name, arg, (int)o->min, (double *)field, oerr, sizeof(oerr)) < 0)
            return option_error(oerr);
        return 0;
    }
    return -1;
}

/* 0, 1 after --help, -1 on a usage error (said). */
static int parse_llm_args(int argc, char **argv, struct llm_args *a)
{
    struct option opts[ARRAY_SIZE(llm_opts) + 2] = {{0}};
    for (size_t i = 0; i < ARRAY_SIZE(llm_opts); i++)
        opts[i] = llm_opts[i].opt;
    opts[ARRAY_SIZE(llm_opts)] = (struct option){"help", no_argument, NULL, 'h'};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:f:sM:e:b:n:p:t:Ch", opts, NULL)) != -1) {
        if (c == 'h') {
            usage(stdout);
            return 1;
        }
        const struct llm_opt *o = NULL;
        for (size_t i = 0; i < ARRAY_SIZE(llm_opts) && !o; i++)
            if (llm_opts[i].opt.val == c)
                o = &llm_opts[i];
        if (!o) {
            usage(stderr);
            return -1;
        }
        if (set_llm_option(a, o, optarg) < 0)
            return -1;
    }
    a->prompt = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc || (!a->prompt && !a->body_file)) {
        usage(stderr);
        return -1;
    }
    return 0;
}

/* The model chain (--model, --fallback, the configuration, the catalog's aliases when it
 * loads) into chain/models; the number of models. */
static int model_chain(const struct llm_args *a, const struct agentbox_config *cfg,
                       char chain[CATALOG_CHAIN_MAX][CONFIG_MODEL_MAX], const char **models)
{
    char err[ERR_MSG_MAX];
    struct catalog *cat = calloc(1, sizeof(*cat));
    if (cat && catalog_load(cat, NULL, err, sizeof(err)) < 0) {
        log_warn("model catalog not loaded (%s); model names are taken as IDs", err);
        free(cat);
        cat = NULL;
    }
    int n = catalog_model_chain(cat, cfg, a->model, a->fallbacks, chain, CATALOG_CHAIN_MAX);
    for (int i = 0; i < n; i++)
        models[i] = chain[i];
    free(cat);
    return n;
}

/* --events into *fd: stdout for "-", else a new file (-1 without --events). -1 on an error
 * (said). */
static int open_events(const char *events, int *fd)
{
    *fd = -1;
    if (!events)
        return 0;
    if (!strcmp(events, "-")) {
        *fd = STDOUT_FILENO;
        return 0;
    }
    *fd = open(events, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND | O_NOFOLLOW, 0600);
    if (*fd < 0) {
        fprintf(stderr, "agentbox llm: --events %s: %s\n", events, strerror(errno));
        return -1;
    }
    return 0;
}

/* one connection per call in flight: lift the soft descriptor limit to the hard one */
static void lift_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        (void)setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* Runs every call, at most L->parallel in flight: the exit code if it could not finish, or
 * -1 when every call ended. */
static int run_calls(struct load *L, unsigned n)
{
    char err[ERR_MSG_MAX];
    while (L->done < n) {
        while (L->started < n && L->in_flight < L->parallel)
            if (start_one(L, L->started, err, sizeof(err)) < 0) {
                fprintf(stderr, "agentbox llm: %s\n", err);
                return EXIT_USAGE;
            }
        if (llm_client_step(L->client, 1000) < 0) {
            fprintf(stderr, "agentbox llm: poll: %s\n", strerror(errno));
            return EXIT_TASK_FAILED;
        }
    }
    return -1;
}

/* The one call's outcome as a JSON line; its exit code. */
static int print_single(struct load *L, double elapsed)
{
    cJSON *j = llm_outcome_to_json(L->single);
    if (j) {
        cJSON_AddNumberToObject(j, "requests", L->single->attempts);
        cJSON_ReplaceItemInObjectCaseSensitive(j, "elapsed_s", cJSON_CreateNumber(elapsed));
        print_json(j);
        cJSON_Delete(j);
    }
    int rc = task_status_exit_code(llm_status_name(L->single->status));
    llm_outcome_free(L->single);
    L->single = NULL;
    return rc;
}

/* The load's summary as a JSON line; its exit code. */
static int print_summary(struct load *L, unsigned n, double elapsed)
{
    struct llm_client_stats st;
    llm_client_get_stats(L->client, &st);
    qsort(L->lat_ms, n, sizeof(double), cmp_double);
    cJSON *j = cJSON_CreateObject();
    if (j) {
        const struct {
            const char *name;
            double v;
        } fields[] = {
            {"calls", n},
            {"ok", L->ok},
            {"failed", L->failed},
            {"escalated", L->escalated},
            {"mock", L->mock},
            {"timeouts", L->timeouts},
            {"condense", L->condense},
            {"retries", (double)L->retries},
            {"fallbacks", (double)L->fallbacks},
            {"calls_with_retries", (double)L->with_retries},
            {"retry_success_rate",
             L->with_retries ? (double)L->with_retries_ok / (double)L->with_retries : 1.0},
            {"calls_with_fallback", (double)L->with_fallback},
            {"fallback_success_rate",
             L->with_fallback ? (double)L->with_fallback_ok / (double)L->with_fallback : 1.0},
            {"breaker_trips", (double)st.breaker_trips},
            {"http_requests", (double)st.http_requests},
            {"median_ms", percentile(L->lat_ms, n, 0.5)},
            {"p99_ms", percentile(L->lat_ms, n, 0.99)},
            {"elapsed_s", elapsed},
            {"max_in_flight", st.max_in_flight},
            {"max_calls_in_flight", L->max_in_flight},
        };
        for (size_t i = 0; i < ARRAY_SIZE(fields); i++)
            cJSON_AddNumberToObject(j, fields[i].name, fields[i].v);
        print_json(j);
        cJSON_Delete(j);
    }
    return L->ok == n ? EXIT_TASK_OK : EXIT_TASK_FAILED;
}

int cmd_llm(int argc, char **argv)
{
    struct llm_args a = {.parallel = 1, .timeout_s = -1};
    int prc = parse_llm_args(argc, argv, &a);
    if (prc != 0)
        return prc > 0 ? 0 : EXIT_USAGE;
    char err[ERR_MSG_MAX];
    struct agentbox_config cfg;
    if (supervisor_keyholder_start(&cfg, NULL, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox llm: %s\n", err);
        return EXIT_USAGE;
    }
    if (a.no_catalog)
        cfg.catalog_fallback = false;
    int rc = EXIT_USAGE;
    struct load L = {.events_fd = -1,
                     .cfg = &cfg,
                     .stream = a.stream,
                     .timeout_s = a.timeout_s < 0 ? cfg.timeout_s : a.timeout_s,
                     .count = (unsigned)a.count,
                     .parallel = (unsigned)a.parallel};
    int events_fd = -1;
    char chain[CATALOG_CHAIN_MAX][CONFIG_MODEL_MAX];
    const char *models[CATALOG_CHAIN_MAX + 1] = {0};
    (void)model_chain(&a, &cfg, chain, models);
    L.models = models;
    cJSON *body = build_body(a.body_file, a.prompt, (long)a.max_tokens, err, sizeof(err));
    L.body = body;
    if (!body) {
        fprintf(stderr, "agentbox llm: %s\n", err);
        goto out;
    }
    if (!cfg.api_key)
        log_warn("OPENROUTER_API_KEY is not set: requests go out without Authorization");
    if (open_events(a.events, &events_fd) < 0)
        goto out;
    L.events_fd = events_fd;
    if (a.count > 0)
        lift_nofile();
    if (llm_client_new(&cfg, &L.client, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox llm: %s\n", err);
        goto out;
    }
    unsigned n = a.count ? (unsigned)a.count : 1;
    L.lat_ms = calloc(n, sizeof(double));
    L.logs = events_fd >= 0 ? calloc(n, sizeof(struct event_log)) : NULL;
    if (!L.lat_ms || (events_fd >= 0 && !L.logs)) {
        fprintf(stderr, "agentbox llm: out of memory\n");
        goto out;
    }
    double t0 = monotonic_s();
    rc = run_calls(&L, n);
    if (rc < 0)
        rc = a.count == 0 ? print_single(&L, monotonic_s() - t0)
                          : print_summary(&L, n, monotonic_s() - t0);
out:
    llm_client_free(L.client);
    if (L.single)
        llm_outcome_free(L.single);
    free(L.lat_ms);
    free(L.logs);
    cJSON_Delete(body);
    if (events_fd >= 0 && events_fd != STDOUT_FILENO && close(events_fd) < 0 && rc == 0)
        rc = EXIT_TASK_FAILED;
    config_free(&cfg);
    return rc;
}
