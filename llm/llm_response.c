/* llm_response: see llm_response.h. A reply whose shape is wrong is an SDK_ERROR for the
 * classifier, never a crash and never silently an empty answer. */
#include "llm_response.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

static double num(const cJSON *o, const char *name)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return (cJSON_IsNumber(v) && isfinite(v->valuedouble) && v->valuedouble >= 0) ? v->valuedouble
                                                                                  : 0;
}

bool llm_usage_parse(const cJSON *usage, struct llm_usage *u)
{
    if (!cJSON_IsObject(usage))
        return false;
    u->prompt_tokens = num(usage, "prompt_tokens");
    u->completion_tokens = num(usage, "completion_tokens");
    u->total_tokens = num(usage, "total_tokens");
    if (u->total_tokens == 0)
        u->total_tokens = u->prompt_tokens + u->completion_tokens;
    u->cost_usd = num(usage, "cost");
    return true;
}

void llm_reply_free(struct llm_reply *r)
{
    cJSON_Delete(r->message);
    cJSON_Delete(r->error);
    memset(r, 0, sizeof(*r));
}

size_t llm_json_drop_nul_escapes(char *t, size_t len)
{
    size_t r = 0, w = 0;
    while (r < len) {
        if (t[r] != '\\') {
            t[w++] = t[r++];
            continue;
        }
        if (r + 6 <= len && !memcmp(t + r + 1, "u0000", 5)) {
            r += 6;
            continue;
        }
        t[w++] = t[r++];
        if (r < len)
            t[w++] = t[r++];
    }
    if (w < len)
        t[w] = '\0';
    return w;
}

bool llm_body_is_sse(const char *body, size_t len)
{
    size_t i = 0;
    if (!body)
        return false;
    if (len >= 3 && !memcmp(body, "\xef\xbb\xbf", 3)) /* a UTF-8 byte order mark */
        i = 3;
    while (i < len && (body[i] == ' ' || body[i] == '\t' || body[i] == '\r' || body[i] == '\n'))
        i++;
    size_t n = len - i;
    const char *p = body + i;
    return (n >= 1 && p[0] == ':') || (n >= 5 && !memcmp(p, "data:", 5)) ||
           (n >= 6 && !memcmp(p, "event:", 6));
}

/* parses JSON text, first dropping \u0000 escapes (on a copy) when there are any */
static cJSON *parse_json(const char *body, size_t len)
{
    if (!memmem(body, len, "\\u0000", 6))
        return cJSON_ParseWithLength(body, len);
    char *copy = malloc(len + 1);
    if (!copy)
        return NULL;
    memcpy(copy, body, len);
    copy[len] = '\0';
    size_t n = llm_json_drop_nul_escapes(copy, len);
    cJSON *j = cJSON_ParseWithLength(copy, n);
    free(copy);
    return j;
}

cJSON *llm_response_error(const char *body, size_t len)
{
    if (!body || len == 0 || len > LLM_RESPONSE_MAX_BYTES)
        return NULL;
    cJSON *root = parse_json(body, len);
    if (!root)
        return NULL;
    cJSON *e = cJSON_DetachItemFromObjectCaseSensitive(root, "error");
    cJSON_Delete(root);
    if (e && !cJSON_IsObject(e)) {
        /* {"error": "text"}: wrap so that callers see one shape */
        cJSON *w = cJSON_CreateObject();
        if (w && cJSON_IsString(e))
            cJSON_AddStringToObject(w, "message", e->valuestring);
        cJSON_Delete(e);
        return w;
    }
    return e;
}

void llm_tool_call_id(char out[LLM_TOOL_CALL_ID_SIZE])
{
    static unsigned long long counter;
    unsigned long long r = 0;
    if (getrandom(&r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r)) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        r = ((unsigned long long)ts.tv_sec << 30) ^ (unsigned long long)ts.tv_nsec ^
            ((unsigned long long)getpid() << 48);
    }
    r ^= ++counter * 0x9e3779b97f4a7c15ull;
    snprintf(out, LLM_TOOL_CALL_ID_SIZE, "call_%016llx", r);
}

/* A validated copy of one tool call; arguments stays the model's string, verbatim. */
static cJSON *tool_call_copy(const cJSON *tc, int i, char *err, size_t errsz)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    const cJSON *id = cJSON_GetObjectItemCaseSensitive(tc, "id");
    if (!cJSON_IsObject(fn) || !cJSON_IsString(name)) {
        errf(err, errsz, "tool_calls[%d]: no function name", i);
        return NULL;
    }
    cJSON *out = cJSON_CreateObject();
    cJSON *f = cJSON_CreateObject();
    if (!out || !f) {
        cJSON_Delete(out);
        cJSON_Delete(f);
        errf(err, errsz, "out of memory");
        return NULL;
    }
    /* no id, or an empty one: a fresh random one, never the position in this reply (every
     * reply would start again at call_0); the agent's history checks uniqueness anyway */
    char idbuf[LLM_TOOL_CALL_ID_SIZE];
    bool have = cJSON_IsString(id) && id->valuestring[0];
    if (!have)
        llm_tool_call_id(idbuf);
    cJSON_AddStringToObject(out, "id", have ? id->valuestring : idbuf);
    cJSON_AddStringToObject(out, "type", "function");
    cJSON_AddStringToObject(f, "name", name->valuestring);
    if (cJSON_IsString(args))
        cJSON_AddStringToObject(f, "arguments", args->valuestring);
    else if (args && !cJSON_IsNull(args)) {
        /* some providers send an object; hand it on as the string the API promises */
        char *s = cJSON_PrintUnformatted(args);
        cJSON_AddStringToObject(f, "arguments", s ? s : "");
        free(s);
    } else
        cJSON_AddStringToObject(f, "arguments", "");
    cJSON_AddItemToObject(out, "function", f);
    return out;
}

int llm_response_parse(const char *body, size_t len, struct llm_reply *r, char *err, size_t errsz)
{
    memset(r, 0, sizeof(*r));
    if (!body || len == 0)
        return errf(err, errsz, "empty body");
    if (len > LLM_RESPONSE_MAX_BYTES)
        return errf(err, errsz, "body larger than %u bytes", LLM_RESPONSE_MAX_BYTES);
    cleanup_json cJSON *root = parse_json(body, len);
    if (!cJSON_IsObject(root))
        return errf(err, errsz, "body is not a JSON object");
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    if (cJSON_IsString(model))
        snprintf(r->model, sizeof(r->model), "%s", model->valuestring);
    r->has_usage = llm_usage_parse(cJSON_GetObjectItemCaseSensitive(root, "usage"), &r->usage);
    cJSON *top_err = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (top_err && !cJSON_IsNull(top_err)) {
        r->error = cJSON_Duplicate(top_err, true);
        return 0;
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    const cJSON *c0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    if (!cJSON_IsObject(c0))
        return errf(err, errsz, "no choices[0] in the response");
    const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
    if (cJSON_IsString(fr))
        snprintf(r->finish_reason, sizeof(r->finish_reason), "%s", fr->valuestring);
    const cJSON *cerr = cJSON_GetObjectItemCaseSensitive(c0, "error");
    if ((cerr && !cJSON_IsNull(cerr)) || !strcmp(r->finish_reason, "error")) {
        r->error =
            cerr && cJSON_IsObject(cerr) ? cJSON_Duplicate(cerr, true) : cJSON_CreateObject();
        if (r->error && !cJSON_GetObjectItemCaseSensitive(r->error, "message"))
            cJSON_AddStringToObject(r->error, "message", "finish_reason error");
        return 0;
    }
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(c0, "message");
    if (!cJSON_IsObject(msg))
        return errf(err, errsz, "choices[0].message missing");
    cJSON *m = cJSON_CreateObject();
    if (!m)
        return errf(err, errsz, "out of memory");
    cJSON_AddStringToObject(m, "role", "assistant");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    if (cJSON_IsString(content))
        cJSON_AddStringToObject(m, "content", content->valuestring);
    else
        cJSON_AddNullToObject(m, "content");
    const cJSON *reasoning = cJSON_GetObjectItemCaseSensitive(msg, "reasoning");
    if (cJSON_IsString(reasoning))
        cJSON_AddStringToObject(m, "reasoning", reasoning->valuestring);
    const cJSON *tcs = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
    if (cJSON_IsArray(tcs) && cJSON_GetArraySize(tcs) > 0) {
        if (cJSON_GetArraySize(tcs) > LLM_TOOL_CALLS_MAX) {
            cJSON_Delete(m);
            return errf(err, errsz, "more than %d tool calls", LLM_TOOL_CALLS_MAX);
        }
        cJSON *arr = cJSON_AddArrayToObject(m, "tool_calls");
        int i = 0;
        const cJSON *tc;
        cJSON_ArrayForEach(tc, tcs)
        {
            cJSON *copy = tool_call_copy(tc, i++, err, errsz);
            if (!copy) {
                cJSON_Delete(m);
                return -1;
            }
            cJSON_AddItemToArray(arr, copy);
        }
    }
    r->message = m;
    return 0;
}
