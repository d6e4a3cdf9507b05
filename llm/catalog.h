/* catalog: the model catalog data file (catalog/models.json): preset names, OpenRouter IDs,
 * context lengths, native tool calling. Resolves a preset name to its ID and builds the
 * ordered list of models a call may use. Data only: never does network I/O. */
#ifndef AGENTBOX_CATALOG_H
#define AGENTBOX_CATALOG_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

#define CATALOG_MODELS_MAX 32
#define CATALOG_FILE_MAX   (256 * 1024)
#define CATALOG_CHAIN_MAX  16

struct catalog_model {
    char name[64];
    char id[CONFIG_MODEL_MAX];
    unsigned long context_length;
    bool tool_calls;
    bool free;
    char notes[512];
};

struct catalog {
    struct catalog_model models[CATALOG_MODELS_MAX];
    int n;
    char default_name[64];
    char path[512];
};

/* path NULL: data_path("catalog/models.json"). Every entry is checked, naming the field. */
int catalog_load(struct catalog *cat, const char *path, char *err, size_t errsz);
/* By preset name or by ID; NULL when not in the catalog. */
const struct catalog_model *catalog_find(const struct catalog *cat, const char *name_or_id);
/* vendor/model[:variant] (or replay:FILE): what an OpenRouter ID looks like. */
bool catalog_id_is_plausible(const char *name);
/* A preset name's ID; anything else is taken as an ID and returned unchanged. */
const char *catalog_resolve(const struct catalog *cat, const char *name_or_id);

/* The models one call may use, in order, without duplicates, resolved to IDs: primary, then
 * extra (NULL-terminated, e.g. a task's fallback_models; may be NULL), then
 * OPENHANDS_FALLBACK_MODELS, then (if cfg->catalog_fallback) the catalog's tool-calling
 * presets. Returns the count (at most max). cat may be NULL. */
int catalog_model_chain(const struct catalog *cat, const struct agentbox_config *cfg,
                        const char *primary, const char *const *extra, char out[][CONFIG_MODEL_MAX],
                        int max);

#endif
