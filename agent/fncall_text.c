/* fncall_text: the prompt format and parser. The parser is a plain scanner over the reply
 * (no regex): it finds the first `<function=`, reads a name of [A-Za-z0-9_.-], then
 * `<parameter=NAME>` blocks up to `</function>` or the end of the reply (models often stop
 * before the closing tags). A parameter value ends at `</parameter>`, or, when that is
 * missing, at the next `<parameter=` or `</function>`. One newline right after the opening
 * tag and one right before the closing tag are dropped; all other whitespace is kept, since
 * old_str must match indentation exactly. */
#include "fncall_text.h"

#include <ctype.h>
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "strbuf.h"
#include "util.h"

/* the most one rendered message or the functions' description may hold */
#define FNCALL_TEXT_MAX STRBUF_DEFAULT_MAX

/* ---------- rendering ---------- */

char *fncall_text_system_suffix(const cJSON *tools)
{
    struct strbuf sb = STRBUF_INIT(FNCALL_TEXT_MAX);
    strbuf_adds(&sb, "\n\nYou have access to the following functions:\n\n");
    const cJSON *t;
    int i = 0;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        const cJSON *desc = cJSON_GetObjectItemCaseSensitive(f, "description");
        if (!cJSON_IsString(name))
            continue;
        i++;
        strbuf_printf(&sb, "---- BEGIN FUNCTION #%d: %s ----\nDescription: %s\n", i,
                      name->valuestring, cJSON_IsString(desc) ? desc->valuestring : "");
        const cJSON *params = cJSON_GetObjectItemCaseSensitive(f, "parameters");
        const cJSON *props = cJSON_GetObjectItemCaseSensitive(params, "properties");
        const cJSON *req = cJSON_GetObjectItemCaseSensitive(params, "required");
        if (cJSON_GetArraySize(props) > 0) {
            strbuf_adds(&sb, "Parameters:\n");
            const cJSON *p;
            int j = 0;
            cJSON_ArrayForEach(p, props)
            {
                bool required = false;
                const cJSON *r;
                cJSON_ArrayForEach(r, req) required |=
                    cJSON_IsString(r) && strcmp(r->valuestring, p->string) == 0;
                const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
                const cJSON *pdesc = cJSON_GetObjectItemCaseSensitive(p, "description");
                strbuf_printf(&sb, "  (%d) %s (%s, %s): %s\n", ++j, p->string,
                              cJSON_IsString(type) ? type->valuestring : "string",
                              required ? "required" : "optional",
                              cJSON_IsString(pdesc) ? pdesc->valuestring : "");
                const cJSON *en = cJSON_GetObjectItemCaseSensitive(p, "enum");
                if (cJSON_IsArray(en)) {
                    strbuf_adds(&sb, "Allowed values: [");
                    const cJSON *v;
                    bool first = true;
                    cJSON_ArrayForEach(v, en)
                    {
                        if (cJSON_IsString(v))
                            strbuf_printf(&sb, "%s`%s`", first ? "" : ", ", v->valuestring);
                        first = false;
                    }
                    strbuf_adds(&sb, "]\n");
                }
            }
        } else {
            strbuf_adds(&sb, "No parameters are required for this function.\n");
        }
        strbuf_printf(&sb, "---- END FUNCTION #%d ----\n\n", i);
    }
    strbuf_adds(&sb, "If you choose to call a function ONLY reply in the following format with NO "
                     "suffix:\n\n"
                     "<function=example_function_name>\n"
                     "<parameter=example_parameter_1>value_1</parameter>\n"
                     "<parameter=example_parameter_2>\n"
                     "This is the value for the second parameter\n"
                     "that can span\n"
                     "multiple lines\n"
                     "</parameter>\n"
                     "</function>\n\n"
                     "<IMPORTANT>\n"
                     "Reminder:\n"
                     "- Function calls MUST follow the specified format, start with <function= and "
                     "end with </function>\n"
                     "- Required parameters MUST be specified\n"
                     "- Only call one function at a time\n"
                     "- You may provide optional reasoning for your function call in natural "
                     "language BEFORE the function call, but NOT after.\n"
                     "- If there is no function call available, answer the question like normal "
                     "with your current knowledge and do not tell the user about function calls\n"
                     "</IMPORTANT>\n");
    return strbuf_steal(&sb);
}

/* ---------- parsing ---------- */

static const char FN_OPEN[] = "<function=", FN_CLOSE[] = "</function>";
static const char P_OPEN[] = "<parameter=", P_CLOSE[] = "</parameter>";

static bool name_char(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '.';
}

/* Reads NAME> at p; returns the position after '>' or NULL. */
static const char *read_name(const char *p, char *name, size_t namesz)
{
    size_t n = 0;
    while (name_char(p[n]) && n + 1 < namesz)
        n++;
    if (n == 0 || p[n] != '>')
        return NULL;
    memcpy(name, p, n);
    name[n] = '\0';
    return p + n + 1;
}

static const char *min_ptr(const char *a, const char *b)
{
    if (!a)
        return b;
    if (!b)
        return a;
    return a < b ? a : b;
}

/* The schema's type of a parameter of a function, or NULL. */
static const char *param_type(const cJSON *tools, const char *fn, const char *param)
{
    const cJSON *t;
    cJSON_ArrayForEach(t, tools)
    {
        const cJSON *f = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
        if (!cJSON_IsString(name) || strcmp(name->valuestring, fn) != 0)
            continue;
        const cJSON *p = cJSON_GetObjectItemCaseSensitive(
            cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(f, "parameters"),
                                             "properties"),
            param);
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        return cJSON_IsString(type) ? type->valuestring : NULL;
    }
    return NULL;
}

/* A value typed as the schema says when it reads as that type; else the raw string (the
 * tool registry then reports the type error to the model). */
static cJSON *typed_value(const char *type, const char *v)
{
    if (type && (strcmp(type, "integer") == 0 || strcmp(type, "number") == 0)) {
        char *end;
        errno = 0;
        double d = strtod(v, &end);
        while (end && isspace((unsigned char)*end))
            end++;
        if (!errno && end != v && !*end)
            return cJSON_CreateNumber(d);
    } else if (type && (strcmp(type, "array") == 0 || strcmp(type, "object") == 0 ||
                        strcmp(type, "boolean") == 0)) {
        cJSON *j = cJSON_Parse(v);
        if (j)
            return j;
    }
    return cJSON_CreateString(v);
}

/* A reply cut off inside a closing tag ("...ls\n</para"): the fragment is not the value's. */
static const char *strip_partial_tag(const char *v, const char *end)
{
    for (const char *lt = end; lt > v && end - lt < (ptrdiff_t)sizeof(FN_CLOSE); lt--) {
        if (lt[-1] != '<')
            continue;
        size_t n = (size_t)(end - (lt - 1));
        if (strncmp(lt - 1, P_CLOSE, n) == 0 || strncmp(lt - 1, FN_CLOSE, n) == 0)
            return lt - 1;
        break;
    }
    return end;
}

static char *trim_copy(const char *p, const char *end)
{
    if (p < end && *p == '\n')
        p++;
    if (end > p && end[-1] == '\n')
        end--;
    return strndup(p, (size_t)(end - p));
}

void fncall_text_call_free(struct fncall_text_call *c)
{
    if (!c)
        return;
    free(c->name);
    free(c->arguments);
    free(c->content);
    memset(c, 0, sizeof(*c));
}

int fncall_text_parse(const char *text, const cJSON *tools, struct fncall_text_call *out, char *err,
                      size_t errsz)
{
    memset(out, 0, sizeof(*out));
    if (!text)
        return 0;
    const char *start = strstr(text, FN_OPEN);
    if (!start)
        return 0;
    char name[FNCALL_TEXT_MAX_NAME + 1];
    const char *p = read_name(start + sizeof(FN_OPEN) - 1, name, sizeof(name));
    if (!p)
        return errf(err, errsz,
                    "Error: could not read the function name after `<function=`. Write "
                    "`<function=NAME>` with a name made of letters, digits and `_`, then the "
                    "parameters, then `</function>`.");
    const char *close = strstr(p, FN_CLOSE);
    /* A second <function= before this one's end: nested or unterminated calls. */
    const char *next_fn = strstr(p, FN_OPEN);
    if (next_fn && (!close || next_fn < close))
        return errf(err, errsz,
                    "Error: a `<function=` appeared inside another function call. Call one "
                    "function at a time and close it with `</function>`.");
    const char *body_end = close ? close : p + strlen(p);
    cleanup_json cJSON *args = cJSON_CreateObject();
    if (!args)
        return errf(err, errsz, "Error: out of memory");
    size_t nparams = 0;
    for (;;) {
        while (p < body_end && isspace((unsigned char)*p))
            p++;
        if (p >= body_end)
            break;
        if (strncmp(p, P_OPEN, sizeof(P_OPEN) - 1) != 0) {
            /* Models sometimes emit a truncated "</function" or "</" at the very end. */
            if (!close && strncmp(p, FN_CLOSE, strlen(p)) == 0)
                break;
            return errf(err, errsz,
                        "Error: unexpected text inside the function call; only "
                        "`<parameter=NAME>VALUE</parameter>` blocks may appear between "
                        "`<function=%s>` and `</function>`.",
                        name);
        }
        char pname[FNCALL_TEXT_MAX_NAME + 1];
        const char *v = read_name(p + sizeof(P_OPEN) - 1, pname, sizeof(pname));
        if (!v)
            return errf(err, errsz,
                        "Error: could not read a parameter name after `<parameter=` in the call "
                        "of `%s`.",
                        name);
        const char *pclose = strstr(v, P_CLOSE);
        const char *vend = pclose && pclose < body_end ? pclose : NULL;
        const char *next_p = strstr(v, P_OPEN);
        if (next_p && next_p > body_end)
            next_p = NULL;
        /* A missing </parameter>: the value runs to the next parameter, the end of the call
         * or the end of the reply. */
        if (!vend || (next_p && next_p < vend))
            vend = min_ptr(next_p, body_end);
        const char *value_end = vend;
        if (!close && vend == body_end)
            value_end = strip_partial_tag(v, vend);
        if (++nparams > FNCALL_TEXT_MAX_PARAMS)
            return errf(err, errsz, "Error: too many parameters in the call of `%s`.", name);
        if (cJSON_GetObjectItemCaseSensitive(args, pname))
            return errf(err, errsz, "Error: parameter `%s` of `%s` is given twice.", pname, name);
        cleanup_free char *value = trim_copy(v, value_end);
        cJSON *jv = value ? typed_value(param_type(tools, name, pname), value) : NULL;
        if (!jv || !cJSON_AddItemToObject(args, pname, jv)) {
            cJSON_Delete(jv);
            return errf(err, errsz, "Error: out of memory");
        }
        p = vend == pclose ? vend + sizeof(P_CLOSE) - 1 : vend;
    }
    /* Anything after the call that opens another one is a second call: one at a time. */
    for (const char *q = close ? close : body_end; (q = strstr(q, FN_OPEN)); q++)
        out->extra_calls++;
    const char *cend = start;
    while (cend > text && isspace((unsigned char)cend[-1]))
        cend--;
    out->name = strdup(name);
    out->arguments = cJSON_PrintUnformatted(args);
    out->content = strndup(text, (size_t)(cend - text));
    if (!out->name || !out->arguments || !out->content) {
        fncall_text_call_free(out);
        return errf(err, errsz, "Error: out of memory");
    }
    return 1;
}

/* ---------- converting history ---------- */

static void render_call(struct strbuf *sb, const cJSON *call)
{
    const cJSON *f = cJSON_GetObjectItemCaseSensitive(call, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(f, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(f, "arguments");
    strbuf_printf(sb, "<function=%s>\n", cJSON_IsString(name) ? name->valuestring : "unknown");
    cleanup_json cJSON *parsed = cJSON_IsString(args) ? cJSON_Parse(args->valuestring) : NULL;
    const cJSON *p;
    cJSON_ArrayForEach(p, parsed)
    {
        if (cJSON_IsString(p)) {
            bool multiline = strchr(p->valuestring, '\n') != NULL;
            strbuf_printf(sb, "<parameter=%s>%s%s%s</parameter>\n", p->string,
                          multiline ? "\n" : "", p->valuestring, multiline ? "\n" : "");
        } else {
            cleanup_free char *v = cJSON_PrintUnformatted(p);
            strbuf_printf(sb, "<parameter=%s>%s</parameter>\n", p->string, v ? v : "");
        }
    }
    strbuf_adds(sb, "</function>");
}

static cJSON *text_message(const char *role, char *content /* taken */)
{
    cJSON *m = cJSON_CreateObject();
    if (!content || !m || !cJSON_AddStringToObject(m, "role", role) ||
        !cJSON_AddStringToObject(m, "content", content)) {
        cJSON_Delete(m);
        m = NULL;
    }
    free(content);
    return m;
}

static cJSON *convert(const cJSON *msg, const char *suffix, const char *tool_name)
{
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
    const char *text = cJSON_IsString(content) ? content->valuestring : "";
    if (!cJSON_IsString(role))
        return NULL;
    struct strbuf sb = STRBUF_INIT(FNCALL_TEXT_MAX);
    if (strcmp(role->valuestring, "system") == 0 && suffix) {
        strbuf_adds(&sb, text);
        strbuf_adds(&sb, suffix);
        return text_message("system", strbuf_steal(&sb));
    }
    if (strcmp(role->valuestring, "assistant") == 0) {
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
        if (cJSON_GetArraySize(calls) == 0)
            return NULL;
        strbuf_adds(&sb, text);
        const cJSON *c;
        cJSON_ArrayForEach(c, calls)
        {
            if (sb.len)
                strbuf_adds(&sb, "\n\n");
            render_call(&sb, c);
        }
        return text_message("assistant", strbuf_steal(&sb));
    }
    if (strcmp(role->valuestring, "tool") == 0) {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(msg, "name");
        if (!tool_name)
            tool_name = cJSON_IsString(name) ? name->valuestring : "tool";
        strbuf_printf(&sb, "EXECUTION RESULT of [%s]:\n%s", tool_name, text);
        return text_message("user", strbuf_steal(&sb));
    }
    return NULL;
}

cJSON *fncall_text_convert_message(const cJSON *msg, void *ctx)
{
    return convert(msg, ctx, NULL);
}
