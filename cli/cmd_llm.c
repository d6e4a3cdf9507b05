/* cmd_llm: `agentbox llm`, which drives the OpenRouter client directly: one call, or a load
 * of N calls with P in flight on one thread (the benchmark and the integration tests use
 * it). Prints results only through llm_outcome_to_json, so the key cannot reach stdout. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
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

static int option_error(const char *msg)
{
    fprintf(stderr, "agentbox llm: %s\n", msg);
    return EXIT_USAGE;
}

int cmd_llm(int argc, char **argv)
{
    static const struct option opts[] = {
        {"model", required_argument, NULL, 'm'},   {"fallback", required_argument, NULL, 'f'},
        {"stream", no_argument, NULL, 's'},        {"max-tokens", required_argument, NULL, 'M'},
        {"events", required_argument, NULL, 'e'},  {"body", required_argument, NULL, 'b'},
        {"count", required_argument, NULL, 'n'},   {"parallel", required_argument, NULL, 'p'},
        {"timeout", required_argument, NULL, 't'}, {"no-catalog", no_argument, NULL, 'C'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0},
    };
    const char *model = NULL, *events = NULL, *body_file = NULL;
    const char *fallbacks[LLM_FALLBACK_ARGS_MAX + 1] = {0};
    int nfb = 0;
    bool stream = false, no_catalog = false;
    uint64_t max_tokens = 0, count = 0, parallel = 1;
    double timeout_s = -1;
    char oerr[ERR_MSG_MAX];
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "m:f:sM:e:b:n:p:t:Ch", opts, NULL)) != -1) {
        switch (c) {
        case 'm':
            model = optarg;
            break;
        case 'f':
            if (nfb >= LLM_FALLBACK_ARGS_MAX) {
                fprintf(stderr, "agentbox llm: at most %d --fallback\n", LLM_FALLBACK_ARGS_MAX);
                return EXIT_USAGE;
            }
            fallbacks[nfb++] = optarg;
            break;
        case 's':
            stream = true;
            break;
        case 'M':
            if (opt_count("--max-tokens", optarg, 1, 1000000, &max_tokens, oerr, sizeof(oerr)) < 0)
                return option_error(oerr);
            break;
        case 'e':
            events = optarg;
            break;
        case 'b':
            body_file = optarg;
            break;
        case 'n':
            if (opt_count("--count", optarg, 1, LLM_LOAD_COUNT_MAX, &count, oerr, sizeof(oerr)) < 0)
                return option_error(oerr);
            break;
        case 'p':
            if (opt_count("--parallel", optarg, 1, LLM_LOAD_PARALLEL_MAX, &parallel, oerr,
                          sizeof(oerr)) < 0)
                return option_error(oerr);
            break;
        case 't':
            if (opt_seconds("--timeout", optarg, 1, &timeout_s, oerr, sizeof(oerr)) < 0)
                return option_error(oerr);
            break;
        case 'C':
            no_catalog = true;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return EXIT_USAGE;
        }
    }
    const char *prompt = optind < argc ? argv[optind] : NULL;
    if (optind + 1 < argc || (!prompt && !body_file)) {
        usage(stderr);
        return EXIT_USAGE;
    }

    char err[ERR_MSG_MAX];
    struct agentbox_config cfg;
    if (supervisor_keyholder_start(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox llm: %s\n", err);
        return EXIT_USAGE;
    }
    if (no_catalog)
        cfg.catalog_fallback = false;
    if (timeout_s < 0)
        timeout_s = cfg.timeout_s;
    int rc = EXIT_USAGE;
    struct catalog *cat = calloc(1, sizeof(*cat));
    struct llm_client *client = NULL;
    cJSON *body = NULL;
    struct load L = {.events_fd = -1};
    int events_fd = -1;
    char chain[CATALOG_CHAIN_MAX][CONFIG_MODEL_MAX];
    const char *models[CATALOG_CHAIN_MAX + 1] = {0};
    if (!cat) {
        fprintf(stderr, "agentbox llm: out of memory\n");
        goto out;
    }
    if (catalog_load(cat, NULL, err, sizeof(err)) < 0) {
        log_warn("model catalog not loaded (%s); model names are taken as IDs", err);
        free(cat);
        cat = NULL;
    }
    int nmodels = catalog_model_chain(cat, &cfg, model, fallbacks, chain, CATALOG_CHAIN_MAX);
    for (int i = 0; i < nmodels; i++)
        models[i] = chain[i];
    body = build_body(body_file, prompt, (long)max_tokens, err, sizeof(err));
    if (!body) {
        fprintf(stderr, "agentbox llm: %s\n", err);
        goto out;
    }
    if (!cfg.api_key)
        log_warn("OPENROUTER_API_KEY is not set: requests go out without Authorization");
    if (events) {
        if (!strcmp(events, "-"))
            events_fd = STDOUT_FILENO;
        else {
            events_fd = open(
                events, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_APPEND | O_NOFOLLOW, 0600);
            if (events_fd < 0) {
                fprintf(stderr, "agentbox llm: --events %s: %s\n", events, strerror(errno));
                goto out;
            }
        }
    }
    if (count > 0) {
        /* one connection per call in flight: lift the soft descriptor limit to the hard one */
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
            rl.rlim_cur = rl.rlim_max;
            (void)setrlimit(RLIMIT_NOFILE, &rl);
        }
    }
    if (llm_client_new(&cfg, &client, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox llm: %s\n", err);
        goto out;
    }
    L.client = client;
    L.cfg = &cfg;
    L.body = body;
    L.models = models;
    L.stream = stream;
    L.timeout_s = timeout_s;
    L.events_fd = events_fd;
    L.count = (unsigned)count;
    L.parallel = (unsigned)parallel;
    unsigned n = count ? (unsigned)count : 1;
    L.lat_ms = calloc(n, sizeof(double));
    L.logs = events_fd >= 0 ? calloc(n, sizeof(struct event_log)) : NULL;
    if (!L.lat_ms || (events_fd >= 0 && !L.logs)) {
        fprintf(stderr, "agentbox llm: out of memory\n");
        goto out;
    }
    double t0 = monotonic_s();
    rc = EXIT_TASK_FAILED;
    while (L.done < n) {
        while (L.started < n && L.in_flight < L.parallel)
            if (start_one(&L, L.started, err, sizeof(err)) < 0) {
                fprintf(stderr, "agentbox llm: %s\n", err);
                rc = EXIT_USAGE;
                goto out;
            }
        if (llm_client_step(client, 1000) < 0) {
            fprintf(stderr, "agentbox llm: poll: %s\n", strerror(errno));
            goto out;
        }
    }
    double elapsed = monotonic_s() - t0;
    struct llm_client_stats st;
    llm_client_get_stats(client, &st);
    if (count == 0) {
        cJSON *j = llm_outcome_to_json(L.single);
        if (j) {
            cJSON_AddNumberToObject(j, "requests", L.single->attempts);
            cJSON_ReplaceItemInObjectCaseSensitive(j, "elapsed_s", cJSON_CreateNumber(elapsed));
            print_json(j);
            cJSON_Delete(j);
        }
        rc = task_status_exit_code(llm_status_name(L.single->status));
        llm_outcome_free(L.single);
        L.single = NULL;
    } else {
        qsort(L.lat_ms, n, sizeof(double), cmp_double);
        cJSON *j = cJSON_CreateObject();
        if (j) {
            cJSON_AddNumberToObject(j, "calls", n);
            cJSON_AddNumberToObject(j, "ok", L.ok);
            cJSON_AddNumberToObject(j, "failed", L.failed);
            cJSON_AddNumberToObject(j, "escalated", L.escalated);
            cJSON_AddNumberToObject(j, "mock", L.mock);
            cJSON_AddNumberToObject(j, "timeouts", L.timeouts);
            cJSON_AddNumberToObject(j, "condense", L.condense);
            cJSON_AddNumberToObject(j, "retries", (double)L.retries);
            cJSON_AddNumberToObject(j, "fallbacks", (double)L.fallbacks);
            cJSON_AddNumberToObject(j, "calls_with_retries", (double)L.with_retries);
            cJSON_AddNumberToObject(
                j, "retry_success_rate",
                L.with_retries ? (double)L.with_retries_ok / (double)L.with_retries : 1.0);
            cJSON_AddNumberToObject(j, "calls_with_fallback", (double)L.with_fallback);
            cJSON_AddNumberToObject(
                j, "fallback_success_rate",
                L.with_fallback ? (double)L.with_fallback_ok / (double)L.with_fallback : 1.0);
            cJSON_AddNumberToObject(j, "breaker_trips", (double)st.breaker_trips);
            cJSON_AddNumberToObject(j, "http_requests", (double)st.http_requests);
            cJSON_AddNumberToObject(j, "median_ms", percentile(L.lat_ms, n, 0.5));
            cJSON_AddNumberToObject(j, "p99_ms", percentile(L.lat_ms, n, 0.99));
            cJSON_AddNumberToObject(j, "elapsed_s", elapsed);
            cJSON_AddNumberToObject(j, "max_in_flight", st.max_in_flight);
            cJSON_AddNumberToObject(j, "max_calls_in_flight", L.max_in_flight);
            print_json(j);
            cJSON_Delete(j);
        }
        rc = L.ok == n ? EXIT_TASK_OK : EXIT_TASK_FAILED;
    }
out:
    llm_client_free(client);
    if (L.single)
        llm_outcome_free(L.single);
    free(L.lat_ms);
    free(L.logs);
    cJSON_Delete(body);
    free(cat);
    if (events_fd >= 0 && events_fd != STDOUT_FILENO && close(events_fd) < 0 && rc == 0)
        rc = EXIT_TASK_FAILED;
    config_free(&cfg);
    return rc;
}
