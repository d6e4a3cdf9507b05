/* sse: see sse.h. Line endings are CRLF, LF or CR (the SSE spec allows all three), and a
 * CRLF may be split across two chunks: skip_lf carries that one byte of state. */
#include "sse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "util.h"

/* Each buffer says at its use how large it may get (max bytes, + the NUL): past that, -1
 * and the parser fails with what grew too large, never a larger allocation. */
static int buf_add(struct sse_buf *b, const char *s, size_t n, size_t max)
{
    if (n > max || b->len > max - n)
        return -1;
    if (grow_to_fit(&b->p, b->len + n, &b->cap, 1, 256, max + 1) < 0)
        return -1;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
    return 0;
}

static void buf_free(struct sse_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof(*b));
}

void sse_init(struct sse_parser *p)
{
    memset(p, 0, sizeof(*p));
}

void sse_free(struct sse_parser *p)
{
    buf_free(&p->line);
    buf_free(&p->data);
    buf_free(&p->content);
    buf_free(&p->reasoning);
    for (int i = 0; i < p->ntools; i++) {
        free(p->tools[i].id);
        free(p->tools[i].name);
        buf_free(&p->tools[i].args);
    }
    cJSON_Delete(p->error);
    memset(p, 0, sizeof(*p));
}

static int fail(struct sse_parser *p, const char *msg)
{
    if (!p->failed) {
        p->failed = true;
        snprintf(p->fail_msg, sizeof(p->fail_msg), "%s", msg);
    }
    return -1;
}

static int set_once(char **dst, const cJSON *v)
{
    if (*dst || !cJSON_IsString(v) || !v->valuestring[0])
        return 0;
    *dst = strdup(v->valuestring);
    return *dst ? 0 : -1;
}

static int merge_tool_calls(struct sse_parser *p, const cJSON *tcs)
{
    const cJSON *tc;
    cJSON_ArrayForEach(tc, tcs)
    {
        const cJSON *idx = cJSON_GetObjectItemCaseSensitive(tc, "index");
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(tc, "id");
        int i;
        if (cJSON_IsNumber(idx)) {
            if (idx->valuedouble < 0 || idx->valuedouble >= LLM_TOOL_CALLS_MAX)
                return fail(p, "tool call index out of range");
            i = (int)idx->valuedouble;
        } else {
            /* no index: a fragment with a new id starts a call, else it continues the last */
            bool new_call =
                p->ntools == 0 || (cJSON_IsString(id) && p->tools[p->ntools - 1].id &&
                                   strcmp(p->tools[p->ntools - 1].id, id->valuestring) != 0);
            i = new_call ? p->ntools : p->ntools - 1;
            if (i >= LLM_TOOL_CALLS_MAX)
                return fail(p, "too many tool calls");
        }
        if (i >= p->ntools)
            p->ntools = i + 1;
        struct sse_tool *t = &p->tools[i];
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(tc, "function");
        if (set_once(&t->id, id) < 0 ||
            set_once(&t->name, cJSON_GetObjectItemCaseSensitive(fn, "name")) < 0)
            return fail(p, "out of memory");
        const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
        if (cJSON_IsString(args) && buf_add(&t->args, args->valuestring, strlen(args->valuestring),
                                            SSE_CONTENT_MAX_BYTES) < 0)
            return fail(p, "tool call arguments too large");
    }
    return 0;
}

static void take_error(struct sse_parser *p, const cJSON *e)
{
    if (!p->error)
        p->error = cJSON_IsObject(e) ? cJSON_Duplicate(e, true) : cJSON_CreateObject();
    if (p->error && !cJSON_GetObjectItemCaseSensitive(p->error, "message"))
        cJSON_AddStringToObject(p->error, "message",
                                cJSON_IsString(e) ? e->valuestring : "error in stream");
    p->done = true;
}

static int dispatch(struct sse_parser *p)
{
    const char *d = p->data.p ? p->data.p : "";
    p->has_data = false;
    p->events++;
    int rc = 0;
    if (p->done)
        goto out;
    if (!strcmp(d, "[DONE]")) {
        p->done = true;
        goto out;
    }
    if (p->data.p)
        p->data.len = llm_json_drop_nul_escapes(p->data.p, p->data.len);
    cJSON *chunk = cJSON_ParseWithLength(d, p->data.len);
    if (!cJSON_IsObject(chunk)) {
        cJSON_Delete(chunk);
        rc = fail(p, "a stream chunk is not a JSON object");
        goto out;
    }
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(chunk, "model");
    if (cJSON_IsString(model) && !p->model[0])
        snprintf(p->model, sizeof(p->model), "%s", model->valuestring);
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(chunk, "usage");
    if (cJSON_IsObject(usage))
        p->has_usage = llm_usage_parse(usage, &p->usage);
    const cJSON *top_err = cJSON_GetObjectItemCaseSensitive(chunk, "error");
    if (top_err && !cJSON_IsNull(top_err)) {
        take_error(p, top_err);
        cJSON_Delete(chunk);
        goto out;
    }
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(chunk, "choices");
    const cJSON *c0 = cJSON_IsArray(choices) ? cJSON_GetArrayItem(choices, 0) : NULL;
    if (cJSON_IsObject(c0)) {
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(c0, "delta");
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(delta, "content");
        const cJSON *reasoning = cJSON_GetObjectItemCaseSensitive(delta, "reasoning");
        const cJSON *tcs = cJSON_GetObjectItemCaseSensitive(delta, "tool_calls");
        if (cJSON_IsString(content) &&
            buf_add(&p->content, content->valuestring, strlen(content->valuestring),
                    SSE_CONTENT_MAX_BYTES) < 0)
            rc = fail(p, "content too large");
        if (rc == 0 && cJSON_IsString(reasoning) &&
            buf_add(&p->reasoning, reasoning->valuestring, strlen(reasoning->valuestring),
                    SSE_CONTENT_MAX_BYTES) < 0)
            rc = fail(p, "reasoning too large");
        if (rc == 0 && cJSON_IsArray(tcs))
            rc = merge_tool_calls(p, tcs);
        const cJSON *fr = cJSON_GetObjectItemCaseSensitive(c0, "finish_reason");
        if (cJSON_IsString(fr))
            snprintf(p->finish_reason, sizeof(p->finish_reason), "%s", fr->valuestring);
        const cJSON *cerr = cJSON_GetObjectItemCaseSensitive(c0, "error");
        if ((cerr && !cJSON_IsNull(cerr)) || !strcmp(p->finish_reason, "error"))
            take_error(p, cerr);
    }
    cJSON_Delete(chunk);
out:
    p->data.len = 0;
    if (p->data.p)
        p->data.p[0] = '\0';
    return rc;
}

static int end_line(struct sse_parser *p)
{
    const char *l = p->line.p ? p->line.p : "";
    size_t n = p->line.len;
    int rc = 0;
    if (n == 0) {
        if (p->has_data)
            rc = dispatch(p);
    } else if (l[0] != ':') {
        const char *colon = memchr(l, ':', n);
        size_t flen = colon ? (size_t)(colon - l) : n;
        const char *v = colon ? colon + 1 : l + n;
        if (*v == ' ')
            v++;
        if (flen == 4 && !memcmp(l, "data", 4)) {
            if ((p->has_data && buf_add(&p->data, "\n", 1, SSE_CONTENT_MAX_BYTES) < 0) ||
                buf_add(&p->data, v, (size_t)(l + n - v), SSE_CONTENT_MAX_BYTES) < 0)
                rc = fail(p, "event data too large");
            p->has_data = true;
        }
        /* event:, id:, retry: carry nothing OpenRouter uses */
    }
    p->line.len = 0;
    if (p->line.p)
        p->line.p[0] = '\0';
    return rc;
}

int sse_feed(struct sse_parser *p, const char *buf, size_t len)
{
    size_t i = 0;
    if (p->failed)
        return -1;
    while (i < len) {
        if (p->skip_lf) {
            p->skip_lf = false;
            if (buf[i] == '\n') {
                i++;
                continue;
            }
        }
        size_t j = i;
        while (j < len && buf[j] != '\n' && buf[j] != '\r')
            j++;
        if (j > i && buf_add(&p->line, buf + i, j - i, SSE_LINE_MAX_BYTES) < 0)
            return fail(p, "a stream line is too long");
        if (j == len)
            break;
        p->skip_lf = buf[j] == '\r';
        if (end_line(p) < 0)
            return -1;
        i = j + 1;
    }
    return 0;
}

int sse_finish(struct sse_parser *p, struct llm_reply *r, char *err, size_t errsz)
{
    memset(r, 0, sizeof(*r));
    /* a last line without its newline, then a last event without its blank line */
    if (!p->failed && p->line.len > 0)
        (void)end_line(p);
    if (!p->failed && p->has_data)
        (void)dispatch(p);
    if (p->failed)
        return errf(err, errsz, "malformed stream: %s", p->fail_msg);
    snprintf(r->model, sizeof(r->model), "%s", p->model);
    snprintf(r->finish_reason, sizeof(r->finish_reason), "%s", p->finish_reason);
    r->has_usage = p->has_usage;
    r->usage = p->usage;
    if (p->error) {
        r->error = steal_pointer(&p->error);
        return 0;
    }
    if (!p->done && !p->finish_reason[0])
        return errf(err, errsz, "stream ended before [DONE] (%zu events)", p->events), -2;
    if (p->content.len == 0 && p->ntools == 0 && !p->finish_reason[0])
        return errf(err, errsz, "stream carried no message");
    cJSON *m = cJSON_CreateObject();
    if (!m)
        return errf(err, errsz, "out of memory");
    cJSON_AddStringToObject(m, "role", "assistant");
    if (p->content.len || p->ntools == 0)
        cJSON_AddStringToObject(m, "content", p->content.p ? p->content.p : "");
    else
        cJSON_AddNullToObject(m, "content");
    if (p->reasoning.len)
        cJSON_AddStringToObject(m, "reasoning", p->reasoning.p);
    if (p->ntools) {
        cJSON *arr = cJSON_AddArrayToObject(m, "tool_calls");
        for (int i = 0; i < p->ntools; i++) {
            struct sse_tool *t = &p->tools[i];
            if (!t->name) {
                cJSON_Delete(m);
                return errf(err, errsz, "malformed stream: tool call %d has no name", i);
            }
            char idbuf[LLM_TOOL_CALL_ID_SIZE];
            if (!t->id) /* none came (set_once ignores empty ones): a fresh one, see llm_response */
                llm_tool_call_id(idbuf);
            cJSON *tc = cJSON_CreateObject();
            cJSON *fn = cJSON_CreateObject();
            if (!tc || !fn) {
                cJSON_Delete(tc);
                cJSON_Delete(fn);
                cJSON_Delete(m);
                return errf(err, errsz, "out of memory");
            }
            cJSON_AddStringToObject(tc, "id", t->id ? t->id : idbuf);
            cJSON_AddStringToObject(tc, "type", "function");
            cJSON_AddStringToObject(fn, "name", t->name);
            cJSON_AddStringToObject(fn, "arguments", t->args.p ? t->args.p : "");
            cJSON_AddItemToObject(tc, "function", fn);
            cJSON_AddItemToArray(arr, tc);
        }
    }
    r->message = m;
    return 0;
}
