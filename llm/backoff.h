/* backoff: how long to wait before asking again: min(base * 2^n, cap) plus up to 25%
 * jitter, or what the server asked for (Retry-After, capped). Pure arithmetic; the random
 * source is passed in so tests can pin it. */
#ifndef AGENTBOX_BACKOFF_H
#define AGENTBOX_BACKOFF_H

#define BACKOFF_JITTER_FRACTION 0.25

struct backoff_params {
    double base_s;            /* OPENHANDS_RETRY_BASE_DELAY */
    double cap_s;             /* OPENHANDS_RETRY_MAX_DELAY */
    double retry_after_cap_s; /* OPENHANDS_RETRY_AFTER_MAX */
};

/* n: 0-based retry number; retry_after_s < 0 when the server gave none; u in [0,1).
 * A server's Retry-After wins over the computed delay (capped at retry_after_cap_s). */
double backoff_delay(const struct backoff_params *p, unsigned n, double retry_after_s, double u);

/* A uniform number in [0,1) from a per-process xorshift state (seeded from the clock). */
double backoff_random(void);

#endif
