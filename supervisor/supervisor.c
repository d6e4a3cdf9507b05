/* supervisor: see supervisor.h. The key holder's bring-up, in one place: harden, load,
 * scrub; then the broker. Never prints the key and never keeps a copy of it. */
#include "supervisor.h"

#include <string.h>

#include "util.h"

int supervisor_keyholder_start(struct agentbox_config *cfg, struct catalog *cat, char *err,
                               size_t errsz)
{
    memset(cfg, 0, sizeof(*cfg)); /* config_free is safe on it whatever happens */
    /* hardened first: the key must never be in a dumpable process, not even for a moment */
    if (config_keyholder_harden(err, errsz) < 0)
        return -1;
    if (config_load(cfg, err, errsz) < 0)
        return -1;      /* config_load frees what it read */
    config_scrub_env(); /* the key lives in cfg (and the LLM client) only from here on */
    if (cat && catalog_load(cat, NULL, err, errsz) < 0) {
        config_free(cfg);
        return -1;
    }
    return 0;
}

int supervisor_broker_open(const struct agentbox_config *cfg, const char *replay,
                           enum supervisor_replay mode, const char *no_key_hint,
                           struct broker **out, char *err, size_t errsz)
{
    *out = NULL;
    if (replay) {
        struct broker *b = NULL;
        if (broker_new_replay(replay, &b, err, errsz) < 0)
            return -1;
        if (mode == SUPERVISOR_REPLAY_PROBE)
            broker_free(b);
        else
            *out = b;
        return 0;
    }
    if (!cfg->api_key)
        return errf(err, errsz, "OPENROUTER_API_KEY is not set: set it%s", no_key_hint);
    return broker_new_live(cfg, out, err, errsz);
}
