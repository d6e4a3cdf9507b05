/* breaker: one circuit breaker (closed -> open -> half-open -> closed), as resilience4j
 * defines it. Time is passed in by the caller, so tests run it on a fake clock.
 * Knows nothing of HTTP or models; the client keeps one per model. */
#ifndef AGENTBOX_BREAKER_H
#define AGENTBOX_BREAKER_H

#include <stdbool.h>

enum breaker_state { BREAKER_CLOSED, BREAKER_OPEN, BREAKER_HALF_OPEN };

struct breaker_params {
    unsigned failure_threshold; /* consecutive failures that open it (seed: 5) */
    double open_s;              /* how long it stays open (seed: 60) */
    unsigned half_open_calls;   /* probes allowed while half-open (seed: 3) */
    unsigned success_threshold; /* probe successes that close it (seed: 2) */
};

struct breaker {
    struct breaker_params p;
    enum breaker_state state;
    unsigned failures;  /* consecutive, while closed */
    unsigned probes;    /* admitted while half-open */
    unsigned successes; /* while half-open */
    double opened_at;
    unsigned trips; /* times it opened */
};

void breaker_init(struct breaker *b, const struct breaker_params *p);
/* May a call go through now? Moves open -> half-open when open_s has passed; counts a
 * half-open probe when it says yes. */
bool breaker_allow(struct breaker *b, double now);
/* Would breaker_allow say yes now? Changes nothing (used to skip a model without spending
 * one of its half-open probes). */
bool breaker_peek(const struct breaker *b, double now);
/* Outcome of a call that breaker_allow admitted. Return true when the state changed. */
bool breaker_success(struct breaker *b, double now);
bool breaker_failure(struct breaker *b, double now);
/* An admitted call ended saying nothing about the model (cancelled, cut by the task's
 * deadline): gives its half-open probe back. */
void breaker_release(struct breaker *b);
/* Opens it now, whatever its state (the CIRCUIT_BREAK strategy). True if it was not open. */
bool breaker_trip(struct breaker *b, double now);
const char *breaker_state_name(enum breaker_state s);

#endif
