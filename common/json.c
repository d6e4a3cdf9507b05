/* json: see json.h. */
#include "json.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

static const cJSON *member(const cJSON *obj, const char *name)
{
    return cJSON_GetObjectItemCaseSensitive(obj, name);
}

int json_get_string(const cJSON *obj, const char *ctx, const char *name, const char **out,
                    char *err, size_t errsz)
{
    const cJSON *v = member(obj, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    if (!cJSON_IsString(v) || !v->valuestring)
        return errf(err, errsz, "%s.%s: expected a string", ctx, name);
    *out = v->valuestring;
    return 0;
}

int json_get_bool(const cJSON *obj, const char *ctx, const char *name, bool *out, char *err,
                  size_t errsz)
{
    const cJSON *v = member(obj, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    if (!cJSON_IsBool(v))
        return errf(err, errsz, "%s.%s: expected true or false", ctx, name);
    *out = cJSON_IsTrue(v);
    return 0;
}

int json_get_uint(const cJSON *obj, const char *ctx, const char *name, uint64_t max, uint64_t *out,
                  char *err, size_t errsz)
{
    const cJSON *v = member(obj, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    double d = cJSON_IsNumber(v) ? v->valuedouble : -1;
    if (!cJSON_IsNumber(v) || !isfinite(d) || d < 0 || d != floor(d) || d > (double)max)
        return errf(err, errsz, "%s.%s: expected a whole number from 0 to %llu", ctx, name,
                    (unsigned long long)max);
    *out = (uint64_t)d;
    return 0;
}

int json_get_number(const cJSON *obj, const char *ctx, const char *name, double min, double max,
                    double *out, char *err, size_t errsz)
{
    const cJSON *v = member(obj, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    if (!cJSON_IsNumber(v) || !isfinite(v->valuedouble) || v->valuedouble < min ||
        v->valuedouble > max)
        return errf(err, errsz, "%s.%s: expected a number from %.15g to %.15g", ctx, name, min,
                    max);
    *out = v->valuedouble;
    return 0;
}

int json_get_size(const cJSON *obj, const char *ctx, const char *name, uint64_t *out, char *err,
                  size_t errsz)
{
    const cJSON *v = member(obj, name);
    if (!v || cJSON_IsNull(v))
        return 1;
    if (cJSON_IsString(v) && v->valuestring && size_parse(v->valuestring, out) == 0)
        return 0;
    if (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0 &&
        v->valuedouble == floor(v->valuedouble) && v->valuedouble < 9.0e18) {
        *out = (uint64_t)v->valuedouble;
        return 0;
    }
    return errf(err, errsz, "%s.%s: expected a size like 512M (K, M, G: powers of 1024)", ctx,
                name);
}

int json_check_keys(const cJSON *obj, const char *ctx, const char *const *allowed, char *err,
                    size_t errsz)
{
    if (!cJSON_IsObject(obj))
        return errf(err, errsz, "%s: expected an object", ctx);
    const cJSON *it;
    cJSON_ArrayForEach(it, obj)
    {
        bool known = false;
        for (const char *const *a = allowed; *a; a++)
            if (it->string && strcmp(it->string, *a) == 0)
                known = true;
        if (!known)
            return errf(err, errsz, "%s.%s: unknown field", ctx, it->string ? it->string : "?");
    }
    return 0;
}

cJSON *json_parse_located(const char *text, const char *source, char *err, size_t errsz)
{
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithOpts(text, &end, true);
    if (root)
        return root;
    const char *at = end ? end : text + strlen(text);
    unsigned line = 1, col = 1;
    for (const char *c = text; c < at && *c; c++) {
        col = *c == '\n' ? 1 : col + 1;
        line += *c == '\n';
    }
    if (!*at)
        errf(err, errsz, "%s:%u:%u: JSON syntax error at the end of the input", source, line, col);
    else
        errf(err, errsz, "%s:%u:%u: JSON syntax error near \"%.*s\"", source, line, col,
             (int)(strcspn(at, "\r\n") < 24 ? strcspn(at, "\r\n") : 24), at);
    return NULL;
}

char *json_print(const cJSON *obj)
{
    return cJSON_PrintUnformatted(obj);
}

char *json_print_pretty(const cJSON *obj)
{
    char *text = cJSON_Print(obj);
    if (!text)
        return NULL;
    /* cJSON indents with tabs and puts a tab after each ':'. A string's own tabs are escaped
     * (\t), so every raw tab is layout: a leading one becomes two spaces, any other one space. */
    size_t tabs = 0, len = strlen(text);
    for (size_t i = 0; i < len; i++)
        tabs += text[i] == '\t';
    char *out = malloc(len + tabs + 1);
    if (!out) {
        free(text);
        return NULL;
    }
    size_t o = 0;
    bool leading = true;
    for (size_t i = 0; i < len; i++) {
        char c = text[i];
        if (c == '\t') {
            out[o++] = ' ';
            if (leading)
                out[o++] = ' ';
            continue;
        }
        leading = c == '\n';
        out[o++] = c;
    }
    out[o] = '\0';
    free(text);
    return out;
}

cJSON *json_read_object_file(const char *path, size_t max)
{
    cleanup_free char *text = NULL;
    if (read_file(path, max, &text, NULL) < 0)
        return NULL;
    cJSON *r = cJSON_Parse(text);
    if (!cJSON_IsObject(r)) {
        cJSON_Delete(r);
        return NULL;
    }
    return r;
}
