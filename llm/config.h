/* config: every OPENHANDS_* setting and OPENROUTER_API_KEY, from defaults, then an optional
 * KEY=VALUE file ($AGENTBOX_CONFIG, else ./agentbox.conf), then the environment (which wins).
 * Owns the only copy of the key outside the HTTP client; config_free wipes it. Refuses an
 * invalid value naming the variable. docs/configuration.md lists every setting. */
#ifndef AGENTBOX_CONFIG_H
#define AGENTBOX_CONFIG_H

#include <stdbool.h>
#include <stddef.h>

#include "recovery.h"

#define CONFIG_MODEL_MAX      256
#define CONFIG_URL_MAX        512
#define CONFIG_FALLBACKS_MAX  8
#define CONFIG_FILE_MAX_BYTES (64 * 1024)
#define CONFIG_DEFAULT_FILE   "agentbox.conf"

struct agentbox_config {
    char *api_key; /* NULL when unset; malloc'd; wiped by config_free */
    char model[CONFIG_MODEL_MAX];
    char base_url[CONFIG_URL_MAX];
    char workspace_root[CONFIG_URL_MAX];
    double timeout_s; /* task wall clock */
    bool circuit_breaker;
    bool fallback_to_mock;
    /* client */
    double llm_timeout_s; /* one HTTP attempt */
    double connect_timeout_s;
    unsigned max_tokens;   /* default max_tokens of a request that sets none */
    unsigned max_attempts; /* HTTP attempts per logical call, all models together */
    double retry_base_s, retry_max_s, retry_after_max_s;
    unsigned breaker_failures, breaker_half_open_calls, breaker_successes;
    double breaker_open_s;
    double model_unavailable_ttl_s; /* a model found unavailable (404, no endpoints) is skipped
                                       by every task of the process this long; 0: not shared */
    double rate_limit_free_rpm;     /* requests/minute per ':free' model; 0 = no limit */
    double rate_limit_rpm;          /* ... per other model */
    unsigned rate_limit_burst;
    char fallback_models[CONFIG_FALLBACKS_MAX][CONFIG_MODEL_MAX];
    int n_fallback_models;
    bool catalog_fallback;    /* after the task's fallbacks, try the catalog's presets */
    unsigned max_connections; /* total open connections of the process */
    char http_referer[CONFIG_URL_MAX];
    char app_title[CONFIG_MODEL_MAX];
    char egress_allow[4096];   /* serve's egress ceiling: HOST[:PORT] list (serve_egress.c) */
    char egress_resolve[2048]; /* ... and its pins: HOST:ADDR list */
    struct recovery_policy recovery;
    char source[CONFIG_URL_MAX]; /* config file read, "" if none */
};

/* Built-in defaults (docs/configuration.md). */
void config_defaults(struct agentbox_config *cfg);
/* Sets one variable by its name; refuses unknown names and invalid values ("NAME: ..."). */
int config_set(struct agentbox_config *cfg, const char *name, const char *value, char *err,
               size_t errsz);
/* KEY=VALUE lines, '#' comments, blank lines; optional quotes around VALUE. */
int config_load_file(struct agentbox_config *cfg, const char *path, char *err, size_t errsz);
/* Defaults, then the file ($AGENTBOX_CONFIG, must exist if set; else ./agentbox.conf if it
 * exists), then every known variable set in the environment. Registers the key with
 * log_add_secret. */
int config_load(struct agentbox_config *cfg, char *err, size_t errsz);
/* Every process that will hold the key calls this first, before config_load: it becomes
 * non-dumpable (no other process of its uid may ptrace it or read its memory through /proc)
 * and its core dumps are off (RLIMIT_CORE 0, soft and hard), so the key can leak neither
 * way. run, batch, llm, models and serve call it; -1 with err when either cannot be set. */
int config_keyholder_harden(char *err, size_t errsz);
/* Zeroes OPENROUTER_API_KEY's value in this process's environment and unsets it, so that no
 * child forked or exec'd later inherits it. Call once, after config_load, in any process
 * that will start children (the supervisor, `agentbox run`); config keeps its own copy. */
void config_scrub_env(void);
/* Wipes and frees the key; forgets it in the log redactor. */
void config_free(struct agentbox_config *cfg);
/* Names of every variable config_set accepts, NULL-terminated (docs and tests). */
extern const char *const config_variables[];

#endif
