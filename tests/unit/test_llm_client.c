/* Unit tests for llm/llm_client.c against a tiny forked HTTP server on 127.0.0.1: the
 * caller's own poll() loop (llm_client_poll_fds + llm_client_step(c, 0)), a retried 503,
 * cancellation, and that the key is sent in the header and nowhere in the outcome. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include "config.h"
#include "llm_client.h"
#include "util.h"

#define KEY "sk-or-v1-unit-test-key-0123456789"

struct server {
    pid_t pid;
    int port;
    int report; /* pipe: the server writes one byte per request that carried the key */
};

struct sync_slot {
    struct llm_outcome *o;
    bool done;
};

static void sync_done(void *opaque, struct llm_outcome *o)
{
    struct sync_slot *s = opaque;
    s->o = o;
    s->done = true;
}

/* One call, stepped until it is done (what the supervisor's loop does for every call). */
static int llm_call_sync(struct llm_client *c, const struct llm_call *call,
                         struct llm_outcome **out, char *err, size_t errsz)
{
    struct sync_slot s = {0};
    if (llm_call_start(c, call, sync_done, &s, err, errsz) < 0)
        return -1;
    while (!s.done)
        if (llm_client_step(c, 1000) < 0) {
            llm_client_cancel(c, call->task_id ? call->task_id : "");
            if (!s.done)
                return errf(err, errsz, "poll failed: %s", strerror(errno));
        }
    *out = s.o;
    return 0;
}

static const char ok_body[] =
    "{\"model\":\"m\",\"choices\":[{\"finish_reason\":\"stop\",\"message\":{\"role\":"
    "\"assistant\",\"content\":\"hi\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1,"
    "\"cost\":0.25}}";

static int respond(int fd, int status, const char *body)
{
    char head[256];
    int m = snprintf(head, sizeof(head),
                     "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n"
                     "Content-Length: %zu\r\n\r\n",
                     status, status == 200 ? "OK" : "Service Unavailable", strlen(body));
    if (write_all(fd, head, (size_t)m) < 0)
        return -1;
    return write_all(fd, body, strlen(body));
}

/* serves requests in order over keep-alive connections: the first fail_first answers are 503
 * (echoing the key, as a careless upstream might), the rest 200; a body containing "hang" is
 * never answered */
static void serve(int ls, int fail_first, int report)
{
    int req = 0;
    for (;;) {
        int fd = accept(ls, NULL, NULL);
        if (fd < 0)
            _exit(0);
        for (;;) {
            char buf[65536];
            size_t len = 0;
            ssize_t n = 0;
            char *end = NULL;
            while (!end && (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
                len += (size_t)n;
                buf[len] = '\0';
                end = strstr(buf, "\r\n\r\n");
            }
            if (!end)
                break;
            char *cl = strcasestr(buf, "content-length:");
            size_t want = cl ? strtoul(cl + 15, NULL, 10) : 0;
            while (len - (size_t)(end + 4 - buf) < want &&
                   (n = read(fd, buf + len, sizeof(buf) - 1 - len)) > 0) {
                len += (size_t)n;
                buf[len] = '\0';
            }
            if (strstr(buf, "Authorization: Bearer " KEY))
                (void)!write(report, "k", 1);
            if (strstr(buf, "hang"))
                pause();
            int rc =
                req++ < fail_first
                    ? respond(fd, 503, "{\"error\":{\"code\":503,\"message\":\"down " KEY "\"}}")
                    : respond(fd, 200, ok_body);
            if (rc < 0)
                break;
        }
        close(fd);
    }
}

static struct server server_start(int fail_first)
{
    struct server s = {0};
    int ls = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(ls >= 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    assert_int_equal(bind(ls, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(ls, 64), 0);
    socklen_t al = sizeof(a);
    assert_int_equal(getsockname(ls, (struct sockaddr *)&a, &al), 0);
    s.port = ntohs(a.sin_port);
    int p[2];
    assert_int_equal(pipe(p), 0);
    s.pid = fork();
    assert_true(s.pid >= 0);
    if (s.pid == 0) {
        close(p[0]);
        serve(ls, fail_first, p[1]);
        _exit(0);
    }
    close(p[1]);
    close(ls);
    s.report = p[0];
    return s;
}

static int server_stop(struct server *s)
{
    kill(s->pid, SIGKILL);
    (void)waitpid(s->pid, NULL, 0);
    char buf[256];
    ssize_t n = read(s->report, buf, sizeof(buf));
    close(s->report);
    return n > 0 ? (int)n : 0;
}

static struct llm_client *client_for(struct server *s, struct agentbox_config *cfg)
{
    config_defaults(cfg);
    char url[128], err[ERR_MSG_MAX];
    snprintf(url, sizeof(url), "http://127.0.0.1:%d/api/v1", s->port);
    assert_int_equal(config_set(cfg, "OPENHANDS_BASE_URL", url, err, sizeof(err)), 0);
    assert_int_equal(config_set(cfg, "OPENROUTER_API_KEY", KEY, err, sizeof(err)), 0);
    assert_int_equal(config_set(cfg, "OPENHANDS_RETRY_BASE_DELAY", "0.01", err, sizeof(err)), 0);
    assert_int_equal(config_set(cfg, "OPENHANDS_RATE_LIMIT_FREE_RPM", "0", err, sizeof(err)), 0);
    struct llm_client *c = NULL;
    assert_int_equal(llm_client_new(cfg, &c, err, sizeof(err)), 0);
    return c;
}

struct slot {
    struct llm_outcome *o;
    int fired;
};

static void on_done(void *opaque, struct llm_outcome *o)
{
    struct slot *s = opaque;
    s->o = o;
    s->fired++;
}

static cJSON *body_of(const char *text)
{
    char buf[256];
    snprintf(buf, sizeof(buf), "{\"messages\":[{\"role\":\"user\",\"content\":\"%s\"}]}", text);
    cJSON *b = cJSON_Parse(buf);
    assert_non_null(b);
    return b;
}

static void test_own_poll_loop_and_retry(void **state)
{
    (void)state;
    struct server s = server_start(1);
    struct agentbox_config cfg;
    struct llm_client *c = client_for(&s, &cfg);
    cJSON *body = body_of("hello");
    const char *models[] = {"test/m", NULL};
    struct llm_call call = {
        .task_id = "t1", .body = body, .models = models, .deadline_mono = monotonic_s() + 20};
    struct slot sl = {0};
    char err[ERR_MSG_MAX];
    assert_int_equal(llm_call_start(c, &call, on_done, &sl, err, sizeof(err)), 0);
    assert_int_equal(sl.fired, 0); /* never from inside llm_call_start */
    double until = monotonic_s() + 20;
    while (!sl.fired && monotonic_s() < until) {
        struct pollfd fds[16];
        int n = llm_client_poll_fds(c, fds, 16);
        assert_true(n <= 16);
        long t = llm_client_timeout_ms(c);
        assert_true(poll(fds, (nfds_t)n, t < 0 || t > 200 ? 200 : (int)t) >= 0);
        assert_int_equal(llm_client_step(c, 0), 0);
    }
    assert_int_equal(sl.fired, 1);
    assert_int_equal(sl.o->status, LLM_OK);
    assert_int_equal(sl.o->attempts, 2);
    assert_int_equal(sl.o->retries, 1);
    assert_int_equal(sl.o->n_strategies, 1);
    assert_int_equal(sl.o->strategies[0], RETRY_WITH_BACKOFF);
    assert_true(sl.o->usage.cost_usd == 0.25);
    cJSON *st = llm_client_state_json(c);
    char *st_text = cJSON_PrintUnformatted(st);
    assert_non_null(strstr(st_text, "\"model\":\"test/m\",\"breaker\":\"closed\""));
    assert_non_null(strstr(st_text, "\"http_requests\":2"));
    free(st_text);
    cJSON_Delete(st);
    cJSON *j = llm_outcome_to_json(sl.o);
    char *text = cJSON_PrintUnformatted(j);
    assert_null(strstr(text, KEY));
    assert_non_null(strstr(text, "\"status\":\"succeeded\""));
    free(text);
    cJSON_Delete(j);
    llm_outcome_free(sl.o);
    cJSON_Delete(body);
    llm_client_free(c);
    config_free(&cfg);
    assert_int_equal(server_stop(&s), 2); /* both requests carried the key in the header */
}

static void test_failed_outcome_redacts_echoed_key(void **state)
{
    (void)state;
    struct server s = server_start(1000);
    struct agentbox_config cfg;
    struct llm_client *c = client_for(&s, &cfg);
    cJSON *body = body_of("x");
    const char *models[] = {"test/m", NULL};
    struct llm_call call = {.task_id = "t2", .body = body, .models = models};
    struct llm_outcome *o = NULL;
    char err[ERR_MSG_MAX];
    assert_int_equal(llm_call_sync(c, &call, &o, err, sizeof(err)), 0);
    assert_int_equal(o->status, LLM_FAILED);
    assert_int_equal(o->error_type, CONNECTION_ERROR);
    assert_int_equal(o->attempts, 4); /* 1 + RETRY_WITH_BACKOFF*3 */
    assert_null(strstr(o->error_message, KEY));
    assert_non_null(strstr(o->error_message, "[REDACTED]"));
    llm_outcome_free(o);
    cJSON_Delete(body);
    llm_client_free(c);
    config_free(&cfg);
    server_stop(&s);
}

static void test_cancel_and_deadline(void **state)
{
    (void)state;
    struct server s = server_start(0);
    struct agentbox_config cfg;
    struct llm_client *c = client_for(&s, &cfg);
    cJSON *body = body_of("hang");
    const char *models[] = {"test/m", NULL};
    struct llm_call call = {.task_id = "t3", .body = body, .models = models};
    struct slot a = {0}, b = {0};
    char err[ERR_MSG_MAX];
    assert_int_equal(llm_call_start(c, &call, on_done, &a, err, sizeof(err)), 0);
    for (int i = 0; i < 20; i++)
        assert_int_equal(llm_client_step(c, 10), 0);
    llm_client_cancel(c, "t3");
    assert_int_equal(a.fired, 1);
    assert_int_equal(a.o->status, LLM_FAILED);
    assert_string_equal(a.o->error_message, "cancelled");
    llm_outcome_free(a.o);
    call.task_id = "t4";
    call.deadline_mono = monotonic_s() + 0.3;
    double t0 = monotonic_s();
    assert_int_equal(llm_call_start(c, &call, on_done, &b, err, sizeof(err)), 0);
    while (!b.fired)
        assert_int_equal(llm_client_step(c, 100), 0);
    double took = monotonic_s() - t0;
    assert_int_equal(b.o->status, LLM_TIMEOUT);
    assert_int_equal(b.o->error_type, TIMEOUT_ERROR);
    assert_true(took >= 0.25 && took < 2.0);
    llm_outcome_free(b.o);
    cJSON_Delete(body);
    llm_client_free(c);
    config_free(&cfg);
    server_stop(&s);
}

static void test_invalid_calls_refused(void **state)
{
    (void)state;
    struct server s = server_start(0);
    struct agentbox_config cfg;
    struct llm_client *c = client_for(&s, &cfg);
    cJSON *body = cJSON_Parse("{\"messages\":[]}");
    const char *models[] = {"test/m", NULL};
    const char *none[] = {NULL};
    struct llm_call call = {.task_id = "t5", .body = body, .models = models};
    struct slot sl = {0};
    char err[ERR_MSG_MAX];
    assert_int_equal(llm_call_start(c, &call, on_done, &sl, err, sizeof(err)), -1);
    cJSON_Delete(body);
    body = body_of("x");
    call.body = body;
    call.models = none;
    assert_int_equal(llm_call_start(c, &call, on_done, &sl, err, sizeof(err)), -1);
    assert_int_equal(sl.fired, 0);
    cJSON_Delete(body);
    llm_client_free(c);
    config_free(&cfg);
    server_stop(&s);
}

static void test_key_fragments_redacted(void **state)
{
    (void)state;
    const char *key = "sk-or-v1-0123456789abcdef0123456789abcdef";
    char a[256];
    snprintf(a, sizeof(a), "bad key sk-or-v1-0123456789abc... (prefix)");
    assert_true(llm_redact_key_fragments(a, key));
    assert_string_equal(a, "bad key [REDACTED]... (prefix)");
    snprintf(a, sizeof(a), "x=%.*s!", 39, key + 1); /* the key minus its first character */
    assert_true(llm_redact_key_fragments(a, key));
    assert_string_equal(a, "x=[REDACTED]!");
    snprintf(a, sizeof(a), "two: 456789abcdef0123 and %s", key);
    assert_true(llm_redact_key_fragments(a, key));
    assert_string_equal(a, "two: [REDACTED] and [REDACTED]");
    snprintf(a, sizeof(a), "short 0123456789a is fine; sk-or-v1- too");
    assert_false(llm_redact_key_fragments(a, key)); /* 11 characters: below the minimum */
    assert_string_equal(a, "short 0123456789a is fine; sk-or-v1- too");
    assert_false(llm_redact_key_fragments(a, NULL));
    assert_false(llm_redact_key_fragments(a, "short"));
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_own_poll_loop_and_retry),
        cmocka_unit_test(test_failed_outcome_redacts_echoed_key),
        cmocka_unit_test(test_cancel_and_deadline),
        cmocka_unit_test(test_invalid_calls_refused),
        cmocka_unit_test(test_key_fragments_redacted),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
