/* catalog: see catalog.h. The file is data shipped with agentbox, but it is still parsed as
 * untrusted: a bad entry is refused with its index and field. */
#include "catalog.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "json.h"
#include "log.h"
#include "util.h"

static int copy_field(const cJSON *o, const char *ctx, const char *name, bool required, char *dst,
                      size_t dstsz, char *err, size_t errsz)
{
    const char *v = NULL;
    int rc = json_get_string(o, ctx, name, &v, err, errsz);
    if (rc < 0)
        return -1;
    if (rc == 1) {
        if (required)
            return errf(err, errsz, "%s.%s: required", ctx, name);
        dst[0] = '\0';
        return 0;
    }
    if (strlen(v) >= dstsz || (required && !*v))
        return errf(err, errsz, "%s.%s: empty or longer than %zu characters", ctx, name, dstsz - 1);
    memcpy(dst, v, strlen(v) + 1);
    return 0;
}

int catalog_load(struct catalog *cat, const char *path, char *err, size_t errsz)
{
    char found[512];
    memset(cat, 0, sizeof(*cat));
    if (!path) {
        if (data_path("catalog/models.json", found, sizeof(found)) < 0)
            return errf(err, errsz, "catalog/models.json not found (set AGENTBOX_DATA_DIR)");
        path = found;
    }
    snprintf(cat->path, sizeof(cat->path), "%s", path);
    cleanup_free char *text = NULL;
    size_t len;
    if (read_file(path, CATALOG_FILE_MAX, &text, &len) < 0)
        return errf(err, errsz, "%s: cannot read: %s", path, strerror(errno));
    cleanup_json cJSON *root = cJSON_ParseWithLength(text, len);
    if (!cJSON_IsObject(root))
        return errf(err, errsz, "%s: not a JSON object", path);
    char e2[ERR_MSG_MAX];
    if (copy_field(root, "catalog", "default", false, cat->default_name, sizeof(cat->default_name),
                   e2, sizeof(e2)) < 0)
        return errf(err, errsz, "%s: %s", path, e2);
    const cJSON *models = cJSON_GetObjectItemCaseSensitive(root, "models");
    if (!cJSON_IsArray(models))
        return errf(err, errsz, "%s: catalog.models: expected an array", path);
    const cJSON *m;
    cJSON_ArrayForEach(m, models)
    {
        char ctx[48];
        snprintf(ctx, sizeof(ctx), "catalog.models[%d]", cat->n);
        if (cat->n >= CATALOG_MODELS_MAX)
            return errf(err, errsz, "%s: more than %d models", path, CATALOG_MODELS_MAX);
        if (!cJSON_IsObject(m))
            return errf(err, errsz, "%s: %s: expected an object", path, ctx);
        static const char *const keys[] = {"name",  "id", "context_length", "tool_calls", "free",
                                           "notes", NULL};
        struct catalog_model *cm = &cat->models[cat->n];
        uint64_t ctxlen = 0;
        bool tools = false, free_ = false;
        if (json_check_keys(m, ctx, keys, e2, sizeof(e2)) < 0 ||
            copy_field(m, ctx, "name", true, cm->name, sizeof(cm->name), e2, sizeof(e2)) < 0 ||
            copy_field(m, ctx, "id", true, cm->id, sizeof(cm->id), e2, sizeof(e2)) < 0 ||
            copy_field(m, ctx, "notes", false, cm->notes, sizeof(cm->notes), e2, sizeof(e2)) < 0 ||
            json_get_uint(m, ctx, "context_length", 1ull << 40, &ctxlen, e2, sizeof(e2)) < 0 ||
            json_get_bool(m, ctx, "tool_calls", &tools, e2, sizeof(e2)) < 0 ||
            json_get_bool(m, ctx, "free", &free_, e2, sizeof(e2)) < 0)
            return errf(err, errsz, "%s: %s", path, e2);
        cm->context_length = (unsigned long)ctxlen;
        cm->tool_calls = tools;
        cm->free = free_;
        cat->n++;
    }
    if (cat->default_name[0] && !catalog_find(cat, cat->default_name))
        return errf(err, errsz, "%s: catalog.default: '%s' is not a model of the catalog", path,
                    cat->default_name);
    return 0;
}

const struct catalog_model *catalog_find(const struct catalog *cat, const char *s)
{
    if (!cat || !s)
        return NULL;
    for (int i = 0; i < cat->n; i++)
        if (!strcmp(cat->models[i].name, s))
            return &cat->models[i];
    for (int i = 0; i < cat->n; i++)
        if (!strcmp(cat->models[i].id, s))
            return &cat->models[i];
    return NULL;
}

const char *catalog_resolve(const struct catalog *cat, const char *s)
{
    const struct catalog_model *m = catalog_find(cat, s);
    return m ? m->id : s;
}

bool catalog_id_is_plausible(const char *s)
{
    /* OpenRouter IDs are vendor/model (with an optional :variant); "replay:FILE" names an
     * offline run's recorded replies */
    if (strncmp(s, "replay:", 7) == 0)
        return true;
    const char *slash = strchr(s, '/');
    if (!slash || slash == s || !slash[1] || strchr(slash + 1, '/'))
        return false;
    return strspn(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:/-") ==
           strlen(s);
}

/* A preset name's ID; a name that is no preset and does not look like an ID is still sent
 * (the catalog may be older than the provider), but not without a word. */
static const char *resolve_checked(const struct catalog *cat, const char *s)
{
    if (s && *s && !catalog_find(cat, s) && !catalog_id_is_plausible(s))
        log_warn("model '%s' is neither a preset (agentbox models lists them) nor an ID like "
                 "vendor/model: sent upstream as it is",
                 s);
    return catalog_resolve(cat, s);
}

static int add(char out[][CONFIG_MODEL_MAX], int n, int max, const char *id)
{
    if (!id || !*id || n >= max || strlen(id) >= CONFIG_MODEL_MAX)
        return n;
    for (int i = 0; i < n; i++)
        if (!strcmp(out[i], id))
            return n;
    memcpy(out[n], id, strlen(id) + 1);
    return n + 1;
}

int catalog_model_chain(const struct catalog *cat, const struct agentbox_config *cfg,
                        const char *primary, const char *const *extra, char out[][CONFIG_MODEL_MAX],
                        int max)
{
    int n = add(out, 0, max, resolve_checked(cat, primary ? primary : cfg->model));
    for (int i = 0; extra && extra[i]; i++)
        n = add(out, n, max, resolve_checked(cat, extra[i]));
    for (int i = 0; i < cfg->n_fallback_models; i++)
        n = add(out, n, max, resolve_checked(cat, cfg->fallback_models[i]));
    if (cat && cfg->catalog_fallback)
        for (int i = 0; i < cat->n; i++)
            if (cat->models[i].tool_calls)
                n = add(out, n, max, cat->models[i].id);
    return n;
}
