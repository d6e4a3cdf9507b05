/* stuck: OpenHands' four stuck scenarios over a ring of the last six steps. Compares
 * 64-bit FNV-1a hashes, not text, so a 30 KB observation costs one pass when fed and
 * nothing when checked. Never allocates. */
#include "stuck.h"

#include <string.h>

static uint64_t fnv1a(const char *text)
{
    uint64_t h = 0xcbf29ce484222325ull;
    for (const unsigned char *p = (const unsigned char *)(text ? text : ""); *p; p++) {
        h ^= *p;
        h *= 0x100000001b3ull;
    }
    return h;
}

void stuck_reset(struct stuck *s)
{
    memset(s, 0, sizeof(*s));
}

void stuck_feed(struct stuck *s, const char *action_sig, const char *observation, bool is_error,
                bool had_action)
{
    struct stuck_step *st = &s->ring[s->next];
    st->action = had_action ? fnv1a(action_sig) : 0;
    st->observation = had_action ? fnv1a(observation) : 0;
    st->is_error = had_action && is_error;
    st->had_action = had_action;
    s->next = (s->next + 1) % STUCK_WINDOW;
    if (s->count < SIZE_MAX)
        s->count++;
}

/* back = 0 is the newest step. */
static const struct stuck_step *recent(const struct stuck *s, size_t back)
{
    return &s->ring[(s->next + STUCK_WINDOW - 1 - back) % STUCK_WINDOW];
}

static bool all_actions(const struct stuck *s, size_t n)
{
    if (s->count < n)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!recent(s, i)->had_action)
            return false;
    return true;
}

static bool is_repeat(const struct stuck *s)
{
    if (!all_actions(s, STUCK_REPEAT_STEPS))
        return false;
    const struct stuck_step *a = recent(s, 0);
    for (size_t i = 1; i < STUCK_REPEAT_STEPS; i++) {
        const struct stuck_step *b = recent(s, i);
        if (b->action != a->action || b->observation != a->observation)
            return false;
    }
    return true;
}

/* OpenHands compares the actions only: an error loop's messages often differ (a path, a
 * line number) while the call that causes them does not. */
static bool is_error_loop(const struct stuck *s)
{
    if (!all_actions(s, STUCK_ERROR_STEPS))
        return false;
    const struct stuck_step *a = recent(s, 0);
    for (size_t i = 0; i < STUCK_ERROR_STEPS; i++) {
        const struct stuck_step *b = recent(s, i);
        if (!b->is_error || b->action != a->action)
            return false;
    }
    return true;
}

static bool is_monologue(const struct stuck *s)
{
    if (s->count < STUCK_MONOLOGUE_STEPS)
        return false;
    for (size_t i = 0; i < STUCK_MONOLOGUE_STEPS; i++)
        if (recent(s, i)->had_action)
            return false;
    return true;
}

static bool is_alternation(const struct stuck *s)
{
    if (!all_actions(s, STUCK_ALTERNATION_STEPS))
        return false;
    const struct stuck_step *a = recent(s, 0), *b = recent(s, 1);
    /* A == B would be a plain repeat, which has its own (shorter) threshold. */
    if (a->action == b->action && a->observation == b->observation)
        return false;
    for (size_t i = 2; i < STUCK_ALTERNATION_STEPS; i++) {
        const struct stuck_step *x = recent(s, i), *want = (i % 2) ? b : a;
        if (x->action != want->action || x->observation != want->observation)
            return false;
    }
    return true;
}

enum stuck_kind stuck_check(const struct stuck *s)
{
    if (is_repeat(s))
        return STUCK_REPEAT;
    if (is_error_loop(s))
        return STUCK_ERROR_LOOP;
    if (is_monologue(s))
        return STUCK_MONOLOGUE;
    if (is_alternation(s))
        return STUCK_ALTERNATION;
    return STUCK_NONE;
}

bool stuck_error_nudge_once(struct stuck *s)
{
    if (s->error_loop_nudged)
        return false;
    s->error_loop_nudged = true;
    return true;
}

const char *stuck_kind_name(enum stuck_kind kind)
{
    switch (kind) {
    case STUCK_REPEAT:
        return "repeat";
    case STUCK_ERROR_LOOP:
        return "error_loop";
    case STUCK_MONOLOGUE:
        return "monologue";
    case STUCK_ALTERNATION:
        return "alternation";
    case STUCK_NONE:
        break;
    }
    return "none";
}
