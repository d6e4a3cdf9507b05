/* history: messages with their serialized text cached. The request body is spliced from
 * cJSON-printed pieces (params object + each cached message) rather than printed whole,
 * because printing a 2 MB history on every step costs milliseconds and the text of an old
 * message never changes unless condensation rewrites it, which re-prints just that one.
 * Never holds a message whose role it does not know. */
#include "history.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grow.h"
#include "util.h"
#include "wire_calls.h"

enum role { ROLE_SYSTEM, ROLE_USER, ROLE_ASSISTANT, ROLE_TOOL };

struct msg {
    cJSON *json;
    char *text; /* serialized (transformed) message */
    size_t len;
    size_t tokens;
    enum role role;
    bool is_note; /* our own "earlier steps condensed" message */
};

struct history {
    struct msg *m;
    size_t n, cap;
    size_t chars;      /* sum of len */
    size_t raw_tokens; /* sum of tokens */
    history_transform_fn fn;
    void *ctx;
    size_t dropped_total;
    char *body; /* history_request's reused buffer */
    size_t body_cap;
    struct wire_ids ids; /* every tool-call id the conversation has used */
};

struct history *history_new(void)
{
    return calloc(1, sizeof(struct history));
}

void history_free(struct history *h)
{
    if (!h)
        return;
    for (size_t i = 0; i < h->n; i++) {
        cJSON_Delete(h->m[i].json);
        free(h->m[i].text);
    }
    free(h->m);
    free(h->body);
    wire_ids_free(&h->ids);
    free(h);
}

static size_t estimate_tokens(const char *text, size_t len)
{
    size_t ascii = 0, other = 0;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c < 0x80)
            ascii++;
        else if (c >= 0xc0)
            other++; /* a UTF-8 lead byte: one character, about one token */
    }
    return (ascii + 3) / 4 + other + HISTORY_MSG_OVERHEAD_TOKENS;
}

/* (Re)prints one message and updates the totals. */
static int serialize(struct history *h, struct msg *m)
{
    cJSON *t = h->fn ? h->fn(m->json, h->ctx) : NULL;
    char *text = cJSON_PrintUnformatted(t ? t : m->json);
    cJSON_Delete(t);
    if (!text)
        return -1;
    if (m->text) {
        h->chars -= m->len;
        h->raw_tokens -= m->tokens;
        free(m->text);
    }
    m->text = text;
    m->len = strlen(text);
    m->tokens = estimate_tokens(text, m->len);
    h->chars += m->len;
    h->raw_tokens += m->tokens;
    return 0;
}

int history_set_transform(struct history *h, history_transform_fn fn, void *ctx)
{
    h->fn = fn;
    h->ctx = ctx;
    for (size_t i = 0; i < h->n; i++)
        if (serialize(h, &h->m[i]) != 0)
            return -1;
    return 0;
}

static int role_of(const cJSON *msg, enum role *r)
{
    const cJSON *role = cJSON_GetObjectItemCaseSensitive(msg, "role");
    if (!cJSON_IsString(role))
        return -1;
    static const char *const names[] = {"system", "user", "assistant", "tool"};
    for (size_t i = 0; i < ARRAY_SIZE(names); i++)
        if (strcmp(role->valuestring, names[i]) == 0) {
            *r = (enum role)i;
            return 0;
        }
    return -1;
}

static int insert_at(struct history *h, size_t at, cJSON *msg, bool is_note)
{
    enum role r;
    if (!cJSON_IsObject(msg) || role_of(msg, &r) != 0 || h->n >= HISTORY_MAX_MESSAGES ||
        (r == ROLE_TOOL &&
         !cJSON_IsString(cJSON_GetObjectItemCaseSensitive(msg, "tool_call_id")))) {
        cJSON_Delete(msg);
        return -1;
    }
    if (GROW(h->m, h->n, h->cap, 64, HISTORY_MAX_MESSAGES) < 0) {
        cJSON_Delete(msg);
        return -1;
    }
    struct msg nm = {.json = msg, .role = r, .is_note = is_note};
    if (serialize(h, &nm) != 0) {
        cJSON_Delete(msg);
        return -1;
    }
    memmove(h->m + at + 1, h->m + at, (h->n - at) * sizeof(struct msg));
    h->m[at] = nm;
    h->n++;
    return 0;
}

int history_add_message(struct history *h, cJSON *msg)
{
    return insert_at(h, h->n, msg, false);
}

static int add_text(struct history *h, const char *role, const char *text)
{
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "role", role) ||
        !cJSON_AddStringToObject(m, "content", text ? text : "")) {
        cJSON_Delete(m);
        return -1;
    }
    return history_add_message(h, m);
}

int history_add_system(struct history *h, const char *text)
{
    return add_text(h, "system", text);
}

int history_add_user(struct history *h, const char *text)
{
    return add_text(h, "user", text);
}

int history_add_assistant(struct history *h, const char *content, const cJSON *tool_calls)
{
    cJSON *m = cJSON_CreateObject();
    bool ok = m && cJSON_AddStringToObject(m, "role", "assistant");
    /* null content is valid only beside tool calls: an empty reply is stored as "" */
    bool has_calls = tool_calls && cJSON_GetArraySize(tool_calls) > 0;
    if (ok)
        ok = content || !has_calls
                 ? cJSON_AddStringToObject(m, "content", content ? content : "") != NULL
                 : cJSON_AddNullToObject(m, "content") != NULL;
    if (ok && tool_calls && cJSON_GetArraySize(tool_calls) > 0) {
        /* ids unique in the conversation, arguments valid JSON: what strict servers demand */
        cJSON *dup = wire_calls_normalize(&h->ids, tool_calls);
        ok = dup && cJSON_AddItemToObject(m, "tool_calls", dup);
        if (!ok)
            cJSON_Delete(dup);
    }
    if (!ok) {
        cJSON_Delete(m);
        return -1;
    }
    return history_add_message(h, m);
}

int history_add_tool_result(struct history *h, const char *tool_call_id, const char *name,
                            const char *content)
{
    cJSON *m = cJSON_CreateObject();
    bool ok = m && cJSON_AddStringToObject(m, "role", "tool") &&
              cJSON_AddStringToObject(m, "tool_call_id", tool_call_id ? tool_call_id : "") &&
              cJSON_AddStringToObject(m, "content", content ? content : "");
    if (ok && name)
        ok = cJSON_AddStringToObject(m, "name", name) != NULL;
    if (!ok) {
        cJSON_Delete(m);
        return -1;
    }
    return history_add_message(h, m);
}

size_t history_count(const struct history *h)
{
    return h->n;
}

const cJSON *history_message(const struct history *h, size_t i)
{
    return i < h->n ? h->m[i].json : NULL;
}

size_t history_chars(const struct history *h)
{
    return h->chars + (h->n ? h->n - 1 : 0) + 2;
}

size_t history_tokens(const struct history *h)
{
    return h->raw_tokens;
}

/* ---------- condensation ---------- */

static size_t first_of(const struct history *h, enum role r)
{
    for (size_t i = 0; i < h->n; i++)
        if (h->m[i].role == r && !h->m[i].is_note)
            return i;
    return SIZE_MAX;
}

/* Index from which everything is kept as is: the start of the keep_turns-th last turn. */
static size_t protected_from(const struct history *h, size_t keep_turns)
{
    size_t seen = 0;
    for (size_t i = h->n; i > 0; i--)
        if (h->m[i - 1].role == ROLE_ASSISTANT && ++seen == keep_turns)
            return i - 1;
    return first_of(h, ROLE_ASSISTANT) == SIZE_MAX ? h->n : first_of(h, ROLE_ASSISTANT);
}

static bool fits(const struct history *h, size_t budget)
{
    return history_tokens(h) <= budget;
}

static int condense_observations(struct history *h, size_t end, size_t budget, size_t *count)
{
    for (size_t i = 0; i < end && !fits(h, budget); i++) {
        struct msg *m = &h->m[i];
        const cJSON *c = cJSON_GetObjectItemCaseSensitive(m->json, "content");
        if (m->role != ROLE_TOOL || !cJSON_IsString(c) ||
            strlen(c->valuestring) < HISTORY_CONDENSE_MIN_CHARS)
            continue;
        char note[96];
        snprintf(note, sizeof(note), "[observation condensed: %zu chars]", strlen(c->valuestring));
        cJSON *s = cJSON_CreateString(note);
        if (!s || !cJSON_ReplaceItemInObjectCaseSensitive(m->json, "content", s)) {
            cJSON_Delete(s);
            return -1;
        }
        if (serialize(h, m) != 0)
            return -1;
        (*count)++;
    }
    return 0;
}

static int condense_arguments(struct history *h, size_t end, size_t budget, size_t *count)
{
    for (size_t i = 0; i < end && !fits(h, budget); i++) {
        struct msg *m = &h->m[i];
        cJSON *calls = cJSON_GetObjectItemCaseSensitive(m->json, "tool_calls");
        bool changed = false;
        cJSON *call;
        cJSON_ArrayForEach(call, calls)
        {
            cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
            cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
            if (!cJSON_IsString(args) || strlen(args->valuestring) < HISTORY_ARGS_CONDENSE_CHARS)
                continue;
            /* Still a JSON object: some providers re-parse the arguments of past calls. */
            char note[128];
            snprintf(note, sizeof(note), "{\"condensed\":\"[arguments condensed: %zu chars]\"}",
                     strlen(args->valuestring));
            cJSON *s = cJSON_CreateString(note);
            if (!s || !cJSON_ReplaceItemInObjectCaseSensitive(fn, "arguments", s)) {
                cJSON_Delete(s);
                return -1;
            }
            changed = true;
        }
        if (changed) {
            if (serialize(h, m) != 0)
                return -1;
            (*count)++;
        }
    }
    return 0;
}

static void remove_range(struct history *h, size_t from, size_t to)
{
    for (size_t i = from; i < to; i++) {
        h->chars -= h->m[i].len;
        h->raw_tokens -= h->m[i].tokens;
        cJSON_Delete(h->m[i].json);
        free(h->m[i].text);
    }
    memmove(h->m + from, h->m + to, (h->n - to) * sizeof(struct msg));
    h->n -= to - from;
}

static int update_note(struct history *h, size_t task)
{
    char text[256];
    snprintf(text, sizeof(text),
             "[Earlier steps condensed: %zu messages were removed to fit the context window. "
             "The task is above; continue from the latest steps below.]",
             h->dropped_total);
    for (size_t i = 0; i < h->n; i++)
        if (h->m[i].is_note) {
            cJSON *s = cJSON_CreateString(text);
            if (!s || !cJSON_ReplaceItemInObjectCaseSensitive(h->m[i].json, "content", s)) {
                cJSON_Delete(s);
                return -1;
            }
            return serialize(h, &h->m[i]);
        }
    cJSON *m = cJSON_CreateObject();
    if (!m || !cJSON_AddStringToObject(m, "role", "user") ||
        !cJSON_AddStringToObject(m, "content", text)) {
        cJSON_Delete(m);
        return -1;
    }
    return insert_at(h, task + 1, m, true);
}

/* Drops whole turns (an assistant message, its tool results and any user messages up to the
 * next assistant message), oldest first. */
static int drop_turns(struct history *h, size_t keep_turns, size_t budget, size_t *count)
{
    size_t task = first_of(h, ROLE_USER);
    while (!fits(h, budget)) {
        size_t end = protected_from(h, keep_turns);
        size_t start = SIZE_MAX;
        for (size_t i = (task == SIZE_MAX ? 0 : task + 1); i < end; i++)
            if (h->m[i].role == ROLE_ASSISTANT) {
                start = i;
                break;
            }
        if (start == SIZE_MAX)
            return 0;
        size_t stop = start + 1;
        while (stop < end && h->m[stop].role != ROLE_ASSISTANT)
            stop++;
        /* Notes and system messages inside the range are kept (they are not the turn's). */
        size_t dropped = 0;
        for (size_t i = stop; i > start; i--) {
            struct msg *m = &h->m[i - 1];
            if (m->is_note || m->role == ROLE_SYSTEM)
                continue;
            remove_range(h, i - 1, i);
            dropped++;
        }
        *count += dropped;
        h->dropped_total += dropped;
        if (update_note(h, task == SIZE_MAX ? 0 : task) != 0)
            return -1;
    }
    return 0;
}

int history_condense(struct history *h, size_t budget_tokens, size_t keep_turns,
                     struct history_condense_stats *stats)
{
    struct history_condense_stats st = {.tokens_before = history_tokens(h)};
    if (keep_turns < 1)
        keep_turns = 1;
    int rc = 0;
    if (!fits(h, budget_tokens)) {
        size_t end = protected_from(h, keep_turns);
        if (condense_observations(h, end, budget_tokens, &st.observations_condensed) != 0 ||
            condense_arguments(h, end, budget_tokens, &st.arguments_condensed) != 0 ||
            drop_turns(h, keep_turns, budget_tokens, &st.messages_dropped) != 0)
            rc = -1;
    }
    st.tokens_after = history_tokens(h);
    if (stats)
        *stats = st;
    if (rc)
        return rc;
    return fits(h, budget_tokens) ? 0 : 1;
}

/* ---------- output ---------- */

/* Writes the body into *buf (grown as needed). The caller's buffer is reused from step to
 * step: a fresh 2 MB malloc per step costs more in page faults than the copying itself. */
static char *build(const struct history *h, const cJSON *params, char **buf, size_t *cap,
                   size_t *len)
{
    cleanup_free char *head = params ? cJSON_PrintUnformatted(params) : strdup("{}");
    if (!head)
        return NULL;
    size_t hl = strlen(head);
    if (hl < 2 || head[0] != '{' || head[hl - 1] != '}')
        return NULL;
    bool members = hl > 2;
    static const char key[] = "\"messages\":[";
    size_t total = (hl - 1) + members + (sizeof(key) - 1) + history_chars(h) - 2 + 2 + 1;
    if (total > *cap) {
        char *nb = realloc(*buf, total);
        if (!nb)
            return NULL;
        *buf = nb;
        *cap = total;
    }
    char *p = *buf;
    memcpy(p, head, hl - 1);
    p += hl - 1;
    if (members)
        *p++ = ',';
    memcpy(p, key, sizeof(key) - 1);
    p += sizeof(key) - 1;
    for (size_t i = 0; i < h->n; i++) {
        if (i)
            *p++ = ',';
        memcpy(p, h->m[i].text, h->m[i].len);
        p += h->m[i].len;
    }
    *p++ = ']';
    *p++ = '}';
    *p = '\0';
    if (len)
        *len = (size_t)(p - *buf);
    return *buf;
}

char *history_build_request(const struct history *h, const cJSON *params, size_t *len)
{
    char *buf = NULL;
    size_t cap = 0;
    if (!build(h, params, &buf, &cap, len)) {
        free(buf);
        return NULL;
    }
    return buf;
}

const char *history_request(struct history *h, const cJSON *params, size_t *len)
{
    return build(h, params, &h->body, &h->body_cap, len);
}

cJSON *history_to_json(const struct history *h)
{
    cJSON *arr = cJSON_CreateArray();
    for (size_t i = 0; arr && i < h->n; i++) {
        cJSON *d = cJSON_Duplicate(h->m[i].json, true);
        if (!d || !cJSON_AddItemToArray(arr, d)) {
            cJSON_Delete(d);
            cJSON_Delete(arr);
            return NULL;
        }
    }
    return arr;
}

const char *history_message_text(const struct history *h, size_t i, size_t *len)
{
    if (i >= h->n)
        return NULL;
    *len = h->m[i].len;
    return h->m[i].text;
}
