/* cmd_models: `agentbox models [--refresh] [--json]`: the catalog, and with --refresh what
 * $OPENHANDS_BASE_URL/models says of each preset (exists, free, takes tools). The models
 * endpoint needs no key, so none is sent. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "catalog.h"
#include "commands.h"
#include "config.h"
#include "curl_dl.h"
#include "json.h"
#include "llm_response.h"
#include "log.h"
#include "supervisor.h"
#include "util.h"

#define MODELS_SUGGESTIONS_MAX 10
#define MODELS_TIMEOUT_S       30.0

struct body {
    char *p;
    size_t len;
};

static size_t on_data(char *ptr, size_t size, size_t n, void *opaque)
{
    struct body *b = opaque;
    size_t len = size * n;
    if (b->len + len > LLM_RESPONSE_MAX_BYTES)
        return 0;
    char *p = realloc(b->p, b->len + len + 1);
    if (!p)
        return 0;
    memcpy(p + b->len, ptr, len);
    b->p = p;
    b->len += len;
    p[b->len] = '\0';
    return len;
}

/* GETs url and returns its "data" array (owned by *root), or NULL with err filled */
static cJSON *fetch(const struct curl_api *cu, const char *url, double timeout_s, cJSON **root,
                    char *err, size_t errsz)
{
    CURL *h = cu->easy_init();
    if (!h) {
        errf(err, errsz, "cannot create a libcurl handle");
        return NULL;
    }
    struct body b = {0};
    long status = 0;
    int bad = 0;
    bad |= cu->easy_setopt(h, CURLOPT_URL, url);
    bad |= cu->easy_setopt(h, CURLOPT_WRITEFUNCTION, on_data);
    bad |= cu->easy_setopt(h, CURLOPT_WRITEDATA, &b);
    bad |= cu->easy_setopt(h, CURLOPT_TIMEOUT_MS, (long)(timeout_s * 1000));
    bad |= cu->easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    bad |= cu->easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    bad |= cu->easy_setopt(h, CURLOPT_ACCEPT_ENCODING, "");
    CURLcode cc = bad ? CURLE_FAILED_INIT : cu->easy_perform(h);
    (void)cu->easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
    cu->easy_cleanup(h);
    if (cc != CURLE_OK || status != 200) {
        if (cc != CURLE_OK)
            errf(err, errsz, "GET %s: %s", url, cu->easy_strerror(cc));
        else
            errf(err, errsz, "GET %s: HTTP %ld", url, status);
        free(b.p);
        return NULL;
    }
    *root = cJSON_ParseWithLength(b.p ? b.p : "", b.len);
    free(b.p);
    cJSON *data = cJSON_GetObjectItemCaseSensitive(*root, "data");
    if (!cJSON_IsArray(data)) {
        errf(err, errsz, "GET %s: no \"data\" array in the answer", url);
        return NULL;
    }
    return data;
}

static const cJSON *find_id(const cJSON *data, const char *id)
{
    const cJSON *m;
    cJSON_ArrayForEach(m, data)
    {
        const cJSON *mid = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (cJSON_IsString(mid) && !strcmp(mid->valuestring, id))
            return m;
    }
    return NULL;
}

static bool is_free(const cJSON *m)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
    size_t l = cJSON_IsString(id) ? strlen(id->valuestring) : 0;
    if (l > 5 && !strcmp(id->valuestring + l - 5, ":free"))
        return true;
    const cJSON *pr = cJSON_GetObjectItemCaseSensitive(m, "pricing");
    const cJSON *p = cJSON_GetObjectItemCaseSensitive(pr, "prompt");
    const cJSON *c = cJSON_GetObjectItemCaseSensitive(pr, "completion");
    return cJSON_IsString(p) && cJSON_IsString(c) && strtod(p->valuestring, NULL) == 0 &&
           strtod(c->valuestring, NULL) == 0;
}

static cJSON *model_json(const struct catalog *cat, const struct catalog_model *m)
{
    cJSON *j = cJSON_CreateObject();
    if (!j)
        return NULL;
    cJSON_AddStringToObject(j, "name", m->name);
    cJSON_AddStringToObject(j, "id", m->id);
    cJSON_AddNumberToObject(j, "context_length", (double)m->context_length);
    cJSON_AddBoolToObject(j, "tool_calls", m->tool_calls);
    cJSON_AddBoolToObject(j, "free", m->free);
    cJSON_AddBoolToObject(j, "default", !strcmp(cat->default_name, m->name));
    cJSON_AddStringToObject(j, "notes", m->notes);
    return j;
}

static int refresh(const struct catalog *cat, const struct agentbox_config *cfg, bool as_json)
{
    char err[ERR_MSG_MAX];
    const struct curl_api *cu = curl_dl_load(err, sizeof(err));
    if (!cu) {
        fprintf(stderr, "agentbox models: %s\n", err);
        return EXIT_TASK_FAILED;
    }
    char url[CONFIG_URL_MAX + 64];
    snprintf(url, sizeof(url), "%s/models?supported_parameters=tools", cfg->base_url);
    double t = cfg->llm_timeout_s < MODELS_TIMEOUT_S ? cfg->llm_timeout_s : MODELS_TIMEOUT_S;
    cleanup_json cJSON *root = NULL;
    cJSON *tools = fetch(cu, url, t, &root, err, sizeof(err));
    if (!tools) {
        fprintf(stderr, "agentbox models: %s\n", err);
        return EXIT_TASK_FAILED;
    }
    cleanup_json cJSON *out = cJSON_CreateObject();
    cJSON *arr = out ? cJSON_AddArrayToObject(out, "models") : NULL;
    if (!arr) {
        fprintf(stderr, "agentbox models: out of memory\n");
        return EXIT_TASK_FAILED;
    }
    cJSON_AddStringToObject(out, "base_url", cfg->base_url);
    /* one question, as the API is asked it: which models take tools. A preset missing from
     * the answer is retired or takes no tools; either way an agent cannot use it natively. */
    if (!as_json)
        printf("%-22s %-42s %-12s %-5s %s\n", "PRESET", "ID", "TAKES TOOLS", "FREE", "CONTEXT");
    for (int i = 0; i < cat->n; i++) {
        const struct catalog_model *m = &cat->models[i];
        const cJSON *t_m = find_id(tools, m->id);
        cJSON *j = model_json(cat, m);
        if (!j)
            continue;
        cJSON_AddBoolToObject(j, "exists_with_tools", t_m != NULL);
        if (t_m)
            cJSON_AddBoolToObject(j, "is_free", is_free(t_m));
        else
            cJSON_AddNullToObject(j, "is_free");
        const cJSON *cl = t_m ? cJSON_GetObjectItemCaseSensitive(t_m, "context_length") : NULL;
        if (cJSON_IsNumber(cl))
            cJSON_AddNumberToObject(j, "upstream_context_length", cl->valuedouble);
        if (!as_json)
            printf("%-22s %-42s %-12s %-5s %.0f\n", m->name, m->id, t_m ? "yes" : "NOT LISTED",
                   t_m ? (is_free(t_m) ? "yes" : "no") : "-",
                   cJSON_IsNumber(cl) ? cl->valuedouble : 0.0);
        cJSON_AddItemToArray(arr, j);
    }
    cJSON *sugg = cJSON_AddArrayToObject(out, "free_tool_models");
    int ns = 0;
    const cJSON *m;
    cJSON_ArrayForEach(m, tools)
    {
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(m, "id");
        if (ns >= MODELS_SUGGESTIONS_MAX || !cJSON_IsString(id) || !is_free(m))
            continue;
        cJSON_AddItemToArray(sugg, cJSON_CreateString(id->valuestring));
        ns++;
    }
    if (as_json) {
        char *text = json_print(out);
        if (text)
            printf("%s\n", text);
        free(text);
    } else if (ns) {
        printf("\nfree models that take tools (first %d):\n", ns);
        const cJSON *s;
        for (s = sugg ? sugg->child : NULL; s; s = s->next)
            printf("  %s\n", s->valuestring);
    }
    return 0;
}

int cmd_models(int argc, char **argv)
{
    static const struct option opts[] = {
        {"refresh", no_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    bool do_refresh = false, as_json = false;
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "rjh", opts, NULL)) != -1) {
        switch (c) {
        case 'r':
            do_refresh = true;
            break;
        case 'j':
            as_json = true;
            break;
        case 'h':
            printf("usage: agentbox models [--refresh] [--json]\n\n"
                   "Lists the model catalog (catalog/models.json). --refresh asks\n"
                   "$OPENHANDS_BASE_URL/models?supported_parameters=tools which presets exist,\n"
                   "are free and take tools.\n");
            return 0;
        default:
            fprintf(stderr, "usage: agentbox models [--refresh] [--json]\n");
            return EXIT_USAGE;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "usage: agentbox models [--refresh] [--json]\n");
        return EXIT_USAGE;
    }
    char err[ERR_MSG_MAX];
    struct agentbox_config cfg;
    struct catalog *cat = calloc(1, sizeof(*cat));
    if (!cat) {
        fprintf(stderr, "agentbox models: out of memory\n");
        return EXIT_USAGE;
    }
    if (supervisor_keyholder_start(&cfg, cat, err, sizeof(err)) < 0) {
        fprintf(stderr, "agentbox models: %s\n", err);
        free(cat);
        return EXIT_USAGE;
    }
    int rc = EXIT_USAGE;
    if (do_refresh) {
        rc = refresh(cat, &cfg, as_json);
        goto out;
    }
    if (as_json) {
        cleanup_json cJSON *out = cJSON_CreateObject();
        cJSON *arr = out ? cJSON_AddArrayToObject(out, "models") : NULL;
        for (int i = 0; arr && i < cat->n; i++)
            cJSON_AddItemToArray(arr, model_json(cat, &cat->models[i]));
        if (out)
            cJSON_AddStringToObject(out, "default", cat->default_name);
        char *text = out ? json_print(out) : NULL;
        if (text)
            printf("%s\n", text);
        free(text);
    } else {
        printf("%-22s %-42s %-8s %-5s %-4s %s\n", "PRESET", "ID", "CONTEXT", "TOOLS", "FREE",
               "NOTES");
        for (int i = 0; i < cat->n; i++) {
            const struct catalog_model *m = &cat->models[i];
            printf("%-22s %-42s %-8lu %-5s %-4s %s%s\n", m->name, m->id, m->context_length,
                   m->tool_calls ? "yes" : "no", m->free ? "yes" : "no",
                   strcmp(cat->default_name, m->name) ? "" : "(default) ", m->notes);
        }
    }
    rc = 0;
out:
    free(cat);
    config_free(&cfg);
    return rc;
}
