/* recovery: the six strategies as a configurable chain per ERROR_TYPE, and the cursor that
 * walks a chain for one logical call. Decides only; the client acts (waits, switches model,
 * trips a breaker). Never does I/O. */
#ifndef AGENTBOX_RECOVERY_H
#define AGENTBOX_RECOVERY_H

#include <stdbool.h>
#include <stddef.h>

#include "llm_classify.h"

enum recovery_strategy {
    STRAT_NONE = -1,
    RETRY = 0,
    RETRY_WITH_BACKOFF,
    FALLBACK_MODEL,
    FALLBACK_MOCK,
    CIRCUIT_BREAK,
    ESCALATE,
    RECOVERY_STRATEGIES /* count */
};

#define RECOVERY_CHAIN_MAX  8
#define RECOVERY_REPEAT_MAX 20u

struct recovery_step {
    enum recovery_strategy strategy;
    unsigned count; /* RETRY and RETRY_WITH_BACKOFF: how many times; others 1 */
};

struct recovery_chain {
    struct recovery_step steps[RECOVERY_CHAIN_MAX];
    int n;
};

struct recovery_policy {
    struct recovery_chain chains[LLM_ERROR_TYPES];
};

/* Where one call stands in each chain, for the model it is using now. */
struct recovery_cursor {
    int step[LLM_ERROR_TYPES];
    unsigned used[LLM_ERROR_TYPES];
};

enum recovery_action {
    ACT_RETRY,      /* same model again (strategy RETRY: no delay; RETRY_WITH_BACKOFF: backoff) */
    ACT_FALLBACK,   /* next model */
    ACT_STOP_MODEL, /* CIRCUIT_BREAK: this call stops using the model (the shared breaker
                 counts the failures and opens at its threshold), then ask again */
    ACT_MOCK,       /* canned answer, status mock */
    ACT_ESCALATE,   /* stop; a human must act */
    ACT_CONDENSE,   /* stop; the caller must shorten the conversation and ask again */
    ACT_FAIL,       /* chain exhausted */
};

struct recovery_decision {
    enum recovery_action action;
    enum recovery_strategy strategy; /* what to report (STRAT_NONE for FAIL/CONDENSE) */
    unsigned retry_n;                /* 0-based index of this retry on this model (backoff) */
};

const char *recovery_strategy_name(enum recovery_strategy s);
int recovery_strategy_parse(const char *name); /* -1 if unknown */

/* The default chains: the required outcomes of docs/errors.md. */
void recovery_policy_default(struct recovery_policy *p);
/* "RETRY_WITH_BACKOFF*3,FALLBACK_MODEL,CIRCUIT_BREAK" (also "x3"); "" or "NONE" = empty chain. */
int recovery_chain_parse(const char *text, struct recovery_chain *out, char *err, size_t errsz);
/* Writes the chain in the syntax above. */
void recovery_chain_format(const struct recovery_chain *c, char *buf, size_t bufsz);

void recovery_cursor_reset(struct recovery_cursor *cur);
/* Next step for error e. have_next_model: another model (breaker not open) is left;
 * mock_enabled: OPENHANDS_FALLBACK_TO_MOCK. Fixed rules before the chain: context length
 * -> CONDENSE; model unavailable -> FALLBACK_MODEL when a model is left. Retry steps are
 * skipped when e->retryable is false. */
void recovery_next(const struct recovery_policy *p, struct recovery_cursor *cur,
                   const struct llm_error_info *e, bool have_next_model, bool mock_enabled,
                   struct recovery_decision *d);

#endif
