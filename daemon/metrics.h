/* metrics: the supervisor's counters and histograms, fed from the event stream of every
 * task (so they count what tasks saw, including every LLM attempt), printed in Prometheus
 * text format. Bounded: at most METRICS_SERIES_MAX label sets; never blocks, never fails
 * the caller. */
#ifndef AGENTBOX_METRICS_H
#define AGENTBOX_METRICS_H

#include <cjson/cJSON.h>
#include <stddef.h>

#define METRICS_SERIES_MAX  256
#define METRICS_LABEL_MAX   128
#define METRICS_BUCKETS_MAX 16
#define METRICS_TEXT_MAX    ((size_t)4 << 20) /* the exposition text: bounded series, 4 MiB */

struct histogram {
    const double *bounds; /* upper bounds, ascending; +Inf is implicit */
    size_t nbounds;
    unsigned long counts[METRICS_BUCKETS_MAX + 1]; /* per bucket, not cumulative */
    double sum;
    unsigned long count;
};

struct metrics {
    struct {
        char model[METRICS_LABEL_MAX], error_type[METRICS_LABEL_MAX];
        unsigned long count;
    } calls[METRICS_SERIES_MAX];
    size_t ncalls;
    struct {
        char model[METRICS_LABEL_MAX];
        int state; /* 0 closed, 1 half-open, 2 open */
    } breakers[METRICS_SERIES_MAX];
    size_t nbreakers;
    struct histogram task_duration, llm_latency;
    unsigned long net_connects, net_refused_addrs, net_denied; /* egress proxy events */
};

/* What the server knows that the metrics do not: tasks by status, queue, cells. */
struct metrics_gauges {
    const char *const *status_names;
    const unsigned long *status_counts;
    size_t nstatus;
    unsigned long queue_depth, running_cells;
};

void metrics_init(struct metrics *m);
/* One event of any task (the event shape); unknown or malformed events are ignored. */
void metrics_observe_event(struct metrics *m, const cJSON *event);
void metrics_task_finished(struct metrics *m, double duration_s);
/* The breakers as JSON {"MODEL": "closed"|"half_open"|"open"} (for health). */
cJSON *metrics_breakers_json(const struct metrics *m);
/* Prometheus text exposition format, malloc'd; NULL when out of memory. */
char *metrics_format(const struct metrics *m, const struct metrics_gauges *g);

#endif
