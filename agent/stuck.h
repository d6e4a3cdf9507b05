/* stuck: detects an agent that goes round in circles, with OpenHands' StuckDetector
 * thresholds. Owns only fixed-size hashes of recent steps; never
 * keeps or copies observation text, never decides what the loop does about it. */
#ifndef AGENTBOX_STUCK_H
#define AGENTBOX_STUCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define STUCK_REPEAT_STEPS      4 /* identical action+observation, in a row */
#define STUCK_ERROR_STEPS       3 /* identical action, each one an error observation */
#define STUCK_MONOLOGUE_STEPS   3 /* agent replies with no action, in a row */
#define STUCK_ALTERNATION_STEPS 6 /* A/B/A/B/A/B action+observation pairs */
#define STUCK_WINDOW            6

enum stuck_kind {
    STUCK_NONE = 0,
    STUCK_REPEAT,      /* the same action got the same observation 4 times running */
    STUCK_ERROR_LOOP,  /* the same action failed 3 times running: nudge once, then stop */
    STUCK_MONOLOGUE,   /* 3 replies in a row that called no tool */
    STUCK_ALTERNATION, /* ABABAB */
};

struct stuck_step {
    uint64_t action;      /* hash of the action signature (tool name + canonical arguments) */
    uint64_t observation; /* hash of the observation text */
    bool is_error;
    bool had_action;
};

struct stuck {
    struct stuck_step ring[STUCK_WINDOW]; /* ring[(next - 1) % WINDOW] is the newest */
    size_t next;
    size_t count;           /* steps fed since the last reset (saturates at SIZE_MAX) */
    bool error_loop_nudged; /* the caller has already nudged for an error loop */
};

/* Starts over: call at the task message (detection looks only at steps since it). */
void stuck_reset(struct stuck *s);
/* Feeds one agent step. action_sig may be NULL when had_action is false; observation may be
 * NULL (treated as ""). A step with several tool calls should be fed once per call. */
void stuck_feed(struct stuck *s, const char *action_sig, const char *observation, bool is_error,
                bool had_action);
/* What the recent steps look like. Pure: does not change the state. */
enum stuck_kind stuck_check(const struct stuck *s);
/* For STUCK_ERROR_LOOP the loop nudges the model once and stops at the next detection:
 * returns true the first time (and records it), false afterwards. */
bool stuck_error_nudge_once(struct stuck *s);
/* "repeat", "error_loop", "monologue", "alternation" or "none" (event and log text). */
const char *stuck_kind_name(enum stuck_kind kind);

#endif
