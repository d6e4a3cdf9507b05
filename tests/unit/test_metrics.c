/* Unit tests for daemon/metrics.c: events counted into the right series, histogram
 * buckets cumulative, label values escaped, and the breaker states for health. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>
#include <stdlib.h>
#include <string.h>

#include "metrics.h"

static void feed(struct metrics *m, const char *json)
{
    cJSON *ev = cJSON_Parse(json);
    assert_non_null(ev);
    metrics_observe_event(m, ev);
    cJSON_Delete(ev);
}

static void test_format(void **state)
{
    (void)state;
    static struct metrics m;
    metrics_init(&m);
    feed(&m, "{\"type\":\"llm_response\",\"model\":\"a/b\",\"latency_ms\":30}");
    feed(&m, "{\"type\":\"llm_response\",\"model\":\"a/b\",\"latency_ms\":700}");
    feed(&m, "{\"type\":\"llm_error\",\"model\":\"a/b\",\"error_type\":\"CONNECTION_ERROR\"}");
    feed(&m, "{\"type\":\"llm_error\",\"model\":\"q\\\"x\\n\",\"error_type\":\"SDK_ERROR\"}");
    feed(&m, "{\"type\":\"circuit_state\",\"model\":\"a/b\",\"state\":\"open\"}");
    feed(&m, "{\"type\":\"llm_request\",\"model\":\"replay:f\",\"replay\":true}");
    feed(&m, "{\"type\":\"llm_request\",\"model\":\"live\"}"); /* counted at its response */
    feed(&m, "{\"type\":\"tool_call\"}");
    feed(&m, "{\"no_type\":1}");
    metrics_task_finished(&m, 0.3);
    metrics_task_finished(&m, 4000);
    const char *names[] = {"queued", "succeeded"};
    unsigned long counts[] = {3, 2};
    struct metrics_gauges g = {.status_names = names,
                               .status_counts = counts,
                               .nstatus = 2,
                               .queue_depth = 3,
                               .running_cells = 1};
    char *text = metrics_format(&m, &g);
    assert_non_null(text);
    const char *want[] = {
        "agentbox_tasks{status=\"queued\"} 3\n",
        "agentbox_tasks{status=\"succeeded\"} 2\n",
        "agentbox_queue_depth 3\n",
        "agentbox_running_cells 1\n",
        "agentbox_llm_calls_total{model=\"a/b\",error_type=\"none\"} 2\n",
        "agentbox_llm_calls_total{model=\"a/b\",error_type=\"CONNECTION_ERROR\"} 1\n",
        "agentbox_llm_calls_total{model=\"q\\\"x\\n\",error_type=\"SDK_ERROR\"} 1\n",
        "agentbox_llm_calls_total{model=\"replay:f\",error_type=\"none\"} 1\n",
        "agentbox_breaker_state{model=\"a/b\"} 2\n",
        "agentbox_task_duration_seconds_bucket{le=\"0.1\"} 0\n",
        "agentbox_task_duration_seconds_bucket{le=\"0.5\"} 1\n",
        "agentbox_task_duration_seconds_bucket{le=\"1800\"} 1\n",
        "agentbox_task_duration_seconds_bucket{le=\"+Inf\"} 2\n",
        "agentbox_task_duration_seconds_count 2\n",
        "agentbox_llm_latency_seconds_bucket{le=\"0.05\"} 1\n",
        "agentbox_llm_latency_seconds_bucket{le=\"1\"} 2\n",
        "# TYPE agentbox_llm_latency_seconds histogram\n",
    };
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
        if (!strstr(text, want[i]))
            fail_msg("missing: %s\nin:\n%s", want[i], text);
    assert_null(strstr(text, "model=\"live\""));
    free(text);
    cJSON *b = metrics_breakers_json(&m);
    assert_string_equal(cJSON_GetObjectItem(b, "a/b")->valuestring, "open");
    cJSON_Delete(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_format),
    };
    return cmocka_run_group_tests_name("metrics", tests, NULL, NULL);
}
