/* metrics: see metrics.h. Label values come from events that carry upstream model names:
 * they are escaped as the exposition format demands and truncated to a bounded length. */
#include "metrics.h"

#include <stdio.h>
#include <string.h>

#include "strbuf.h"
#include "util.h"

static const double task_bounds[] = {0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800};
static const double llm_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                    1,     2.5,  5,     10,   30,  60,   120};
static const char *const breaker_names[] = {"closed", "half_open", "open"};

void metrics_init(struct metrics *m)
{
    memset(m, 0, sizeof(*m));
    m->task_duration.bounds = task_bounds;
    m->task_duration.nbounds = ARRAY_SIZE(task_bounds);
    m->llm_latency.bounds = llm_bounds;
    m->llm_latency.nbounds = ARRAY_SIZE(llm_bounds);
}

static void observe(struct histogram *h, double v)
{
    size_t i = 0;
    while (i < h->nbounds && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

static const char *str_field(const cJSON *ev, const char *name, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(ev, name);
    return cJSON_IsString(v) && v->valuestring ? v->valuestring : dflt;
}

static void count_call(struct metrics *m, const char *model, const char *error_type)
{
    for (size_t i = 0; i < m->ncalls; i++)
        if (strncmp(m->calls[i].model, model, METRICS_LABEL_MAX - 1) == 0 &&
            strncmp(m->calls[i].error_type, error_type, METRICS_LABEL_MAX - 1) == 0) {
            m->calls[i].count++;
            return;
        }
    if (m->ncalls == METRICS_SERIES_MAX)
        return;
    snprintf(m->calls[m->ncalls].model, METRICS_LABEL_MAX, "%s", model);
    snprintf(m->calls[m->ncalls].error_type, METRICS_LABEL_MAX, "%s", error_type);
    m->calls[m->ncalls++].count = 1;
}

static void set_breaker(struct metrics *m, const char *model, const char *state)
{
    int s = strcmp(state, "open") == 0 ? 2 : strcmp(state, "closed") == 0 ? 0 : 1;
    for (size_t i = 0; i < m->nbreakers; i++)
        if (strncmp(m->breakers[i].model, model, METRICS_LABEL_MAX - 1) == 0) {
            m->breakers[i].state = s;
            return;
        }
    if (m->nbreakers == METRICS_SERIES_MAX)
        return;
    snprintf(m->breakers[m->nbreakers].model, METRICS_LABEL_MAX, "%s", model);
    m->breakers[m->nbreakers++].state = s;
}

void metrics_observe_event(struct metrics *m, const cJSON *ev)
{
    const char *type = str_field(ev, "type", "");
    if (strcmp(type, "llm_response") == 0) {
        count_call(m, str_field(ev, "model", "unknown"), "none");
        const cJSON *lat = cJSON_GetObjectItemCaseSensitive(ev, "latency_ms");
        if (cJSON_IsNumber(lat) && lat->valuedouble >= 0)
            observe(&m->llm_latency, lat->valuedouble / 1000.0);
    } else if (strcmp(type, "llm_request") == 0 &&
               cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "replay"))) {
        /* a replayed reply is answered at once and has no llm_response of its own */
        count_call(m, str_field(ev, "model", "unknown"), "none");
    } else if (strcmp(type, "llm_error") == 0) {
        count_call(m, str_field(ev, "model", "unknown"), str_field(ev, "error_type", "unknown"));
    } else if (strcmp(type, "circuit_state") == 0) {
        set_breaker(m, str_field(ev, "model", "unknown"), str_field(ev, "state", ""));
    } else if (strcmp(type, "net_connect") == 0) {
        if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(ev, "allowed")))
            m->net_connects++;
        else
            m->net_refused_addrs++;
    } else if (strcmp(type, "net_denied") == 0) {
        m->net_denied++;
    }
}

void metrics_task_finished(struct metrics *m, double duration_s)
{
    observe(&m->task_duration, duration_s < 0 ? 0 : duration_s);
}

cJSON *metrics_breakers_json(const struct metrics *m)
{
    cJSON *o = cJSON_CreateObject();
    for (size_t i = 0; o && i < m->nbreakers; i++)
        cJSON_AddStringToObject(o, m->breakers[i].model, breaker_names[m->breakers[i].state]);
    return o;
}

/* Label values: backslash, double quote and newline escaped (exposition format). */
static void label(struct strbuf *sb, const char *v)
{
    for (; *v; v++) {
        if (*v == '\\' || *v == '"')
            strbuf_printf(sb, "\\%c", *v);
        else if (*v == '\n')
            strbuf_add(sb, "\\n", 2);
        else
            strbuf_add(sb, v, 1);
    }
}

static void histogram(struct strbuf *sb, const char *name, const char *help,
                      const struct histogram *h)
{
    strbuf_printf(sb, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    unsigned long cum = 0;
    for (size_t i = 0; i < h->nbounds; i++) {
        cum += h->counts[i];
        strbuf_printf(sb, "%s_bucket{le=\"%g\"} %lu\n", name, h->bounds[i], cum);
    }
    cum += h->counts[h->nbounds];
    strbuf_printf(sb, "%s_bucket{le=\"+Inf\"} %lu\n%s_sum %.6f\n%s_count %lu\n", name, cum, name,
                  h->sum, name, h->count);
}

char *metrics_format(const struct metrics *m, const struct metrics_gauges *g)
{
    struct strbuf sb = STRBUF_INIT(METRICS_TEXT_MAX);
    strbuf_printf(&sb, "# HELP agentbox_tasks Tasks known to the supervisor, by status.\n"
                       "# TYPE agentbox_tasks gauge\n");
    for (size_t i = 0; i < g->nstatus; i++)
        strbuf_printf(&sb, "agentbox_tasks{status=\"%s\"} %lu\n", g->status_names[i],
                      g->status_counts[i]);
    strbuf_printf(&sb,
                  "# HELP agentbox_queue_depth Tasks waiting for a cell.\n"
                  "# TYPE agentbox_queue_depth gauge\nagentbox_queue_depth %lu\n"
                  "# HELP agentbox_running_cells Cells running now.\n"
                  "# TYPE agentbox_running_cells gauge\nagentbox_running_cells %lu\n",
                  g->queue_depth, g->running_cells);
    strbuf_printf(&sb, "# HELP agentbox_llm_calls_total LLM HTTP attempts by model and error "
                       "type (\"none\": answered).\n# TYPE agentbox_llm_calls_total counter\n");
    for (size_t i = 0; i < m->ncalls; i++) {
        strbuf_printf(&sb, "agentbox_llm_calls_total{model=\"");
        label(&sb, m->calls[i].model);
        strbuf_printf(&sb, "\",error_type=\"");
        label(&sb, m->calls[i].error_type);
        strbuf_printf(&sb, "\"} %lu\n", m->calls[i].count);
    }
    strbuf_printf(&sb, "# HELP agentbox_breaker_state Circuit breaker per model: 0 closed, 1 "
                       "half-open, 2 open.\n# TYPE agentbox_breaker_state gauge\n");
    for (size_t i = 0; i < m->nbreakers; i++) {
        strbuf_printf(&sb, "agentbox_breaker_state{model=\"");
        label(&sb, m->breakers[i].model);
        strbuf_printf(&sb, "\"} %d\n", m->breakers[i].state);
    }
    strbuf_printf(&sb,
                  "# HELP agentbox_egress_connects_total Egress proxy connection attempts, by "
                  "whether the resolved address was allowed.\n"
                  "# TYPE agentbox_egress_connects_total counter\n"
                  "agentbox_egress_connects_total{allowed=\"true\"} %lu\n"
                  "agentbox_egress_connects_total{allowed=\"false\"} %lu\n"
                  "# HELP agentbox_egress_denied_total Egress proxy requests refused.\n"
                  "# TYPE agentbox_egress_denied_total counter\nagentbox_egress_denied_total %lu\n",
                  m->net_connects, m->net_refused_addrs, m->net_denied);
    histogram(&sb, "agentbox_task_duration_seconds", "Task duration, start to result.",
              &m->task_duration);
    histogram(&sb, "agentbox_llm_latency_seconds", "Latency of answered LLM HTTP attempts.",
              &m->llm_latency);
    return strbuf_steal(&sb);
}
