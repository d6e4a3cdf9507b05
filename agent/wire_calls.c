/* wire_calls: see wire_calls.h. Keeps the original text of invalid arguments (the model's
 * own words stay in its history) but always as a JSON string inside an object. */
#include "wire_calls.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "util.h"

void wire_ids_free(struct wire_ids *s)
{
    for (size_t i = 0; i < s->n; i++)
        free(s->ids[i]);
    free(s->ids);
    memset(s, 0, sizeof(*s));
}

bool wire_ids_has(const struct wire_ids *s, const char *id)
{
    for (size_t i = 0; i < s->n; i++)
        if (strcmp(s->ids[i], id) == 0)
            return true;
    return false;
}

static int add_id(struct wire_ids *s, const char *id)
{
    if (GROW(s->ids, s->n, s->cap, 32, (size_t)1 << 22) < 0) /* ids of a conversation */
        return -1;
    char *d = strdup(id);
    if (!d)
        return -1;
    s->ids[s->n++] = d;
    return 0;
}

static void generate(struct wire_ids *s, char out[WIRE_GENERATED_ID_LEN + 1])
{
    static const char digits[] = "0123456789abcdefghijklmnopqrstuvwxyz";
    do {
        unsigned long v = ++s->next;
        out[0] = 'a';
        out[1] = 'b';
        for (int i = WIRE_GENERATED_ID_LEN - 1; i >= 2; i--) {
            out[i] = digits[v % 36];
            v /= 36;
        }
        out[WIRE_GENERATED_ID_LEN] = '\0';
    } while (wire_ids_has(s, out));
}

bool wire_args_valid(const char *text)
{
    cJSON *j = text ? cJSON_Parse(text) : NULL;
    bool ok = cJSON_IsObject(j);
    cJSON_Delete(j);
    return ok;
}

/* The arguments text to send back: the model's when it is a JSON object. */
static char *args_text(const cJSON *args)
{
    if (cJSON_IsObject(args))
        return cJSON_PrintUnformatted(args);
    if (!cJSON_IsString(args) || args->valuestring[strspn(args->valuestring, " \t\r\n")] == '\0')
        return strdup("{}");
    if (wire_args_valid(args->valuestring))
        return strdup(args->valuestring);
    cJSON *w = cJSON_CreateObject();
    char *t = w && cJSON_AddStringToObject(w, WIRE_INVALID_ARG_KEY, args->valuestring)
                  ? cJSON_PrintUnformatted(w)
                  : NULL;
    cJSON_Delete(w);
    return t;
}

static cJSON *one_call(struct wire_ids *s, const cJSON *tc)
{
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(tc, "id");
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    char gen[WIRE_GENERATED_ID_LEN + 1];
    const char *use = cJSON_IsString(id) ? id->valuestring : "";
    if (!use[0] || strlen(use) > WIRE_ID_MAX || wire_ids_has(s, use)) {
        generate(s, gen);
        use = gen;
    }
    cleanup_free char *args = args_text(cJSON_GetObjectItemCaseSensitive(fn, "arguments"));
    cJSON *out = cJSON_CreateObject();
    cJSON *f = cJSON_CreateObject();
    bool ok = out && f && args && add_id(s, use) == 0 && cJSON_AddStringToObject(out, "id", use) &&
              cJSON_AddStringToObject(out, "type", "function") &&
              cJSON_AddStringToObject(f, "name", cJSON_IsString(name) ? name->valuestring : "") &&
              cJSON_AddStringToObject(f, "arguments", args);
    if (!ok || !cJSON_AddItemToObject(out, "function", f)) {
        cJSON_Delete(out);
        cJSON_Delete(f);
        return NULL;
    }
    return out;
}

cJSON *wire_calls_normalize(struct wire_ids *s, const cJSON *calls)
{
    cJSON *arr = cJSON_CreateArray();
    const cJSON *tc;
    cJSON_ArrayForEach(tc, calls)
    {
        cJSON *c = arr ? one_call(s, tc) : NULL;
        if (!c || !cJSON_AddItemToArray(arr, c)) {
            cJSON_Delete(c);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}
