/* breaker: see breaker.h. A failure while half-open reopens at once: one bad probe is
 * enough evidence that the model has not recovered. */
#include "breaker.h"

#include <string.h>

void breaker_init(struct breaker *b, const struct breaker_params *p)
{
    memset(b, 0, sizeof(*b));
    b->p = *p;
    if (b->p.failure_threshold == 0)
        b->p.failure_threshold = 1;
    if (b->p.half_open_calls == 0)
        b->p.half_open_calls = 1;
    if (b->p.success_threshold == 0)
        b->p.success_threshold = 1;
    if (b->p.success_threshold > b->p.half_open_calls)
        b->p.success_threshold = b->p.half_open_calls;
    b->state = BREAKER_CLOSED;
}

const char *breaker_state_name(enum breaker_state s)
{
    switch (s) {
    case BREAKER_CLOSED:
        return "closed";
    case BREAKER_OPEN:
        return "open";
    case BREAKER_HALF_OPEN:
        return "half_open";
    }
    return "unknown";
}

static void open_now(struct breaker *b, double now)
{
    b->state = BREAKER_OPEN;
    b->opened_at = now;
    b->failures = b->probes = b->successes = 0;
    b->trips++;
}

bool breaker_allow(struct breaker *b, double now)
{
    if (b->state == BREAKER_OPEN) {
        if (now - b->opened_at < b->p.open_s)
            return false;
        b->state = BREAKER_HALF_OPEN;
        b->probes = b->successes = 0;
    }
    if (b->state == BREAKER_HALF_OPEN) {
        if (b->probes >= b->p.half_open_calls)
            return false;
        b->probes++;
    }
    return true;
}

bool breaker_peek(const struct breaker *b, double now)
{
    if (b->state == BREAKER_OPEN)
        return now - b->opened_at >= b->p.open_s;
    if (b->state == BREAKER_HALF_OPEN)
        return b->probes < b->p.half_open_calls;
    return true;
}

bool breaker_success(struct breaker *b, double now)
{
    (void)now;
    if (b->state == BREAKER_HALF_OPEN) {
        if (++b->successes >= b->p.success_threshold) {
            b->state = BREAKER_CLOSED;
            b->failures = b->probes = b->successes = 0;
            return true;
        }
        return false;
    }
    b->failures = 0;
    return false;
}

bool breaker_failure(struct breaker *b, double now)
{
    if (b->state == BREAKER_HALF_OPEN) {
        open_now(b, now);
        return true;
    }
    if (b->state == BREAKER_OPEN)
        return false;
    if (++b->failures >= b->p.failure_threshold) {
        open_now(b, now);
        return true;
    }
    return false;
}

void breaker_release(struct breaker *b)
{
    if (b->state == BREAKER_HALF_OPEN && b->probes > 0)
        b->probes--;
}

bool breaker_trip(struct breaker *b, double now)
{
    if (b->state == BREAKER_OPEN)
        return false;
    open_now(b, now);
    return true;
}
