/* recovery: see recovery.h. The chains are data (config can replace each); this file only
 * walks them. It must never decide to retry an error the classifier called non-retryable. */
#include "recovery.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const char *const strategy_names[RECOVERY_STRATEGIES] = {
    "RETRY", "RETRY_WITH_BACKOFF", "FALLBACK_MODEL", "FALLBACK_MOCK", "CIRCUIT_BREAK", "ESCALATE",
};

const char *recovery_strategy_name(enum recovery_strategy s)
{
    if (s < 0 || s >= RECOVERY_STRATEGIES)
        return "NONE";
    return strategy_names[s];
}

int recovery_strategy_parse(const char *name)
{
    for (int i = 0; i < RECOVERY_STRATEGIES; i++)
        if (strcmp(name, strategy_names[i]) == 0)
            return i;
    return -1;
}

static const char *const default_chains[LLM_ERROR_TYPES] = {
    [CONNECTION_ERROR] = "RETRY_WITH_BACKOFF*3,CIRCUIT_BREAK,FALLBACK_MODEL,FALLBACK_MOCK",
    [TIMEOUT_ERROR] = "RETRY*2,FALLBACK_MODEL,FALLBACK_MOCK",
    [AUTHENTICATION_ERROR] = "ESCALATE",
    /* the second RETRY_WITH_BACKOFF is reached only on the last model (FALLBACK_MODEL moves
     * on and restarts the chain): a last resort deserves more than one retry on a 429 */
    [RATE_LIMIT_ERROR] = "RETRY_WITH_BACKOFF*1,FALLBACK_MODEL,RETRY_WITH_BACKOFF*2,CIRCUIT_BREAK,"
                         "FALLBACK_MOCK",
    [VALIDATION_ERROR] = "",
    [SDK_ERROR] = "RETRY*2,FALLBACK_MODEL,FALLBACK_MOCK",
    [UNKNOWN_ERROR] = "RETRY_WITH_BACKOFF*1,FALLBACK_MOCK",
};

void recovery_policy_default(struct recovery_policy *p)
{
    memset(p, 0, sizeof(*p));
    for (int t = 0; t < LLM_ERROR_TYPES; t++) {
        char err[ERR_MSG_MAX];
        /* the table above is ours and parses; a failure here is a programming error */
        if (recovery_chain_parse(default_chains[t], &p->chains[t], err, sizeof(err)) < 0)
            abort();
    }
}

int recovery_chain_parse(const char *text, struct recovery_chain *out, char *err, size_t errsz)
{
    struct recovery_chain c = {.n = 0};
    const char *p = text;
    while (isspace((unsigned char)*p))
        p++;
    if (*p == '\0' || strcmp(p, "NONE") == 0) {
        *out = c;
        return 0;
    }
    for (;;) {
        while (isspace((unsigned char)*p))
            p++;
        size_t len = strcspn(p, ",*x \t");
        /* "x3" must not eat the x of a name: only a separator after a full name */
        char name[32];
        if (len == 0 || len >= sizeof(name))
            return errf(err, errsz, "expected a strategy at '%s'", p);
        memcpy(name, p, len);
        name[len] = '\0';
        int s = recovery_strategy_parse(name);
        if (s < 0)
            return errf(err, errsz,
                        "unknown strategy '%s' (RETRY, RETRY_WITH_BACKOFF, FALLBACK_MODEL, "
                        "FALLBACK_MOCK, CIRCUIT_BREAK, ESCALATE)",
                        name);
        p += len;
        while (*p == ' ' || *p == '\t')
            p++;
        unsigned count = 1;
        if (*p == '*' || *p == 'x') {
            p++;
            char *end;
            unsigned long v = strtoul(p, &end, 10);
            if (end == p || v == 0 || v > RECOVERY_REPEAT_MAX)
                return errf(err, errsz, "%s: repeat count must be 1..%u", name,
                            RECOVERY_REPEAT_MAX);
            if (s != RETRY && s != RETRY_WITH_BACKOFF && v != 1)
                return errf(err, errsz, "%s: only RETRY and RETRY_WITH_BACKOFF repeat", name);
            count = (unsigned)v;
            p = end;
        }
        if (c.n >= RECOVERY_CHAIN_MAX)
            return errf(err, errsz, "too many steps (at most %d)", RECOVERY_CHAIN_MAX);
        c.steps[c.n].strategy = (enum recovery_strategy)s;
        c.steps[c.n].count = count;
        c.n++;
        while (isspace((unsigned char)*p))
            p++;
        if (*p == '\0')
            break;
        if (*p != ',')
            return errf(err, errsz, "expected ',' at '%s'", p);
        p++;
    }
    *out = c;
    return 0;
}

void recovery_chain_format(const struct recovery_chain *c, char *buf, size_t bufsz)
{
    size_t off = 0;
    if (bufsz == 0)
        return;
    buf[0] = '\0';
    if (c->n == 0) {
        snprintf(buf, bufsz, "NONE");
        return;
    }
    for (int i = 0; i < c->n && off < bufsz; i++) {
        const struct recovery_step *s = &c->steps[i];
        int w;
        if (s->strategy == RETRY || s->strategy == RETRY_WITH_BACKOFF)
            w = snprintf(buf + off, bufsz - off, "%s%s*%u", i ? "," : "",
                         recovery_strategy_name(s->strategy), s->count);
        else
            w = snprintf(buf + off, bufsz - off, "%s%s", i ? "," : "",
                         recovery_strategy_name(s->strategy));
        if (w < 0)
            return;
        off += (size_t)w;
    }
}

void recovery_cursor_reset(struct recovery_cursor *cur)
{
    memset(cur, 0, sizeof(*cur));
}

void recovery_next(const struct recovery_policy *p, struct recovery_cursor *cur,
                   const struct llm_error_info *e, bool have_next_model, bool mock_enabled,
                   struct recovery_decision *d)
{
    d->retry_n = 0;
    if (e->context_length) {
        d->action = ACT_CONDENSE;
        d->strategy = STRAT_NONE;
        return;
    }
    if (e->model_unavailable && have_next_model) {
        d->action = ACT_FALLBACK;
        d->strategy = FALLBACK_MODEL;
        return;
    }
    int t = (e->type >= 0 && e->type < LLM_ERROR_TYPES) ? (int)e->type : UNKNOWN_ERROR;
    const struct recovery_chain *c = &p->chains[t];
    while (cur->step[t] < c->n) {
        const struct recovery_step *s = &c->steps[cur->step[t]];
        switch (s->strategy) {
        case RETRY:
        case RETRY_WITH_BACKOFF:
            if (e->retryable && !e->model_unavailable && cur->used[t] < s->count) {
                d->retry_n = cur->used[t]++;
                d->action = ACT_RETRY;
                d->strategy = s->strategy;
                return;
            }
            break;
        case FALLBACK_MODEL:
            if (have_next_model) {
                cur->step[t]++;
                cur->used[t] = 0;
                d->action = ACT_FALLBACK;
                d->strategy = FALLBACK_MODEL;
                return;
            }
            break;
        case CIRCUIT_BREAK:
            cur->step[t]++;
            cur->used[t] = 0;
            d->action = ACT_STOP_MODEL;
            d->strategy = CIRCUIT_BREAK;
            return;
        case FALLBACK_MOCK:
            if (mock_enabled) {
                cur->step[t]++;
                d->action = ACT_MOCK;
                d->strategy = FALLBACK_MOCK;
                return;
            }
            break;
        case ESCALATE:
            cur->step[t]++;
            d->action = ACT_ESCALATE;
            d->strategy = ESCALATE;
            return;
        default:
            break;
        }
        cur->step[t]++;
        cur->used[t] = 0;
    }
    d->action = ACT_FAIL;
    d->strategy = STRAT_NONE;
}
