/* Unit tests for supervisor/broker.c's replay source: per-task cursors, exactly one callback
 * per call (answered, cancelled, or ended by broker_free), never from inside broker_call. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "broker.h"
#include "util.h"

struct seen {
    int calls;
    char status[32];
    char content[64];
};

static void on_done(void *opaque, cJSON *outcome)
{
    struct seen *s = opaque;
    s->calls++;
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(outcome, "status");
    snprintf(s->status, sizeof(s->status), "%s", cJSON_IsString(st) ? st->valuestring : "?");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(outcome, "message"), "content");
    snprintf(s->content, sizeof(s->content), "%s", cJSON_IsString(c) ? c->valuestring : "");
    cJSON_Delete(outcome);
}

static char replay_path[64];

static int setup(void **state)
{
    (void)state;
    snprintf(replay_path, sizeof(replay_path), "/tmp/test-broker-XXXXXX");
    int fd = mkstemp(replay_path);
    const char *text = "{\"replies\": [{\"content\": \"first\"}, {\"content\": \"second\"}]}";
    if (fd < 0 || write_all(fd, text, strlen(text)) < 0)
        return -1;
    return close(fd);
}

static int teardown(void **state)
{
    (void)state;
    return unlink(replay_path);
}

static void call(struct broker *b, const char *task, struct seen *s)
{
    static const char msgs[] = "[{\"role\":\"user\",\"content\":\"x\"}]";
    const char *models[] = {"m", NULL};
    struct broker_call c = {.task_id = task,
                            .messages_json = msgs,
                            .messages_len = sizeof(msgs) - 1,
                            .models = models,
                            .max_tokens = 10};
    char err[256];
    assert_int_equal(broker_call(b, &c, on_done, s, err, sizeof(err)), 0);
}

static void test_each_task_replays_from_the_start(void **state)
{
    (void)state;
    struct broker *b;
    char err[256];
    assert_int_equal(broker_new_replay(replay_path, &b, err, sizeof(err)), 0);
    struct seen a = {0}, c = {0};
    call(b, "task-a", &a);
    assert_int_equal(a.calls, 0); /* never from inside broker_call */
    call(b, "task-b", &c);
    assert_int_equal(broker_step(b), 0);
    assert_int_equal(a.calls, 1);
    assert_int_equal(c.calls, 1);
    assert_string_equal(a.content, "first");
    assert_string_equal(c.content, "first");
    call(b, "task-a", &a);
    assert_int_equal(broker_step(b), 0);
    assert_string_equal(a.content, "second");
    call(b, "task-a", &a); /* past the end: a failure, still one callback */
    assert_int_equal(broker_step(b), 0);
    assert_int_equal(a.calls, 3);
    assert_string_equal(a.status, "failed");
    broker_free(b);
}

static void test_cancel_and_free_still_call_back(void **state)
{
    (void)state;
    struct broker *b;
    char err[256];
    assert_int_equal(broker_new_replay(replay_path, &b, err, sizeof(err)), 0);
    struct seen a = {0}, c = {0};
    call(b, "task-a", &a);
    broker_cancel_task(b, "task-a");
    assert_int_equal(broker_step(b), 0);
    assert_int_equal(a.calls, 1);
    assert_string_equal(a.status, "failed");
    call(b, "task-b", &c);
    broker_free(b); /* pending: answered as cancelled, exactly once */
    assert_int_equal(c.calls, 1);
    assert_string_equal(c.status, "failed");
    /* a step with nothing pending is harmless */
    assert_int_equal(broker_new_replay(replay_path, &b, err, sizeof(err)), 0);
    assert_int_equal(broker_step(b), 0);
    broker_free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_each_task_replays_from_the_start, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_free_still_call_back, setup, teardown),
    };
    return cmocka_run_group_tests_name("broker", tests, NULL, NULL);
}
