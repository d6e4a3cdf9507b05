/* supervisor: the one bring-up of every process that will hold the OpenRouter key (`run`,
 * `serve`, `batch`, `llm`, `models`), so that each is hardened the same way and in the same
 * order, and the one way such a process opens its LLM broker. Owns no state of its own and
 * never hands the key to anything but the config it fills and the broker it opens. */
#ifndef AGENTBOX_SUPERVISOR_H
#define AGENTBOX_SUPERVISOR_H

#include <stddef.h>

#include "broker.h"
#include "catalog.h"
#include "config.h"

/* Before the key is read: the process becomes non-dumpable (PR_SET_DUMPABLE 0: no ptrace or
 * /proc/PID/mem, environ, maps by its own uid) with core dumps off (RLIMIT_CORE 0, soft and
 * hard). Then the configuration is loaded (the key into cfg) and the key is wiped from the
 * environment (its bytes in place, so /proc/PID/environ no longer shows them, then the
 * variable), so no child forked or exec'd later inherits it. Last, with cat, the model
 * catalog (`llm`, which goes on without one, passes NULL and loads its own). On error cfg
 * holds no key and err says why (a usage error for the caller). */
int supervisor_keyholder_start(struct agentbox_config *cfg, struct catalog *cat, char *err,
                               size_t errsz);

/* How a replay file is used: the caller's broker replays it (`run`), or it is only checked
 * here, once, so a bad file is a usage error before any cell starts (`serve`, `batch`: each
 * task opens its own replay). */
enum supervisor_replay { SUPERVISOR_REPLAY_KEEP, SUPERVISOR_REPLAY_PROBE };

/* The process's broker: with replay set, a replay broker (in *out for KEEP; for PROBE *out
 * is left NULL); otherwise the live client, refused without a key ("OPENROUTER_API_KEY is
 * not set: set it" followed by no_key_hint). */
int supervisor_broker_open(const struct agentbox_config *cfg, const char *replay,
                           enum supervisor_replay mode, const char *no_key_hint,
                           struct broker **out, char *err, size_t errsz);

#endif
