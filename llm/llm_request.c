/* llm_request: see llm_request.h. max_tokens is never left out: without it OpenRouter
 * reserves the model's whole output budget and a low-credit key gets a 402. */
#include "llm_request.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"

char *llm_request_body(const cJSON *base, const char *model, bool stream,
                       unsigned default_max_tokens, char *err, size_t errsz)
{
    if (!cJSON_IsObject(base)) {
        errf(err, errsz, "request: expected a JSON object");
        return NULL;
    }
    const cJSON *msgs = cJSON_GetObjectItemCaseSensitive(base, "messages");
    if (!cJSON_IsArray(msgs) || cJSON_GetArraySize(msgs) == 0) {
        errf(err, errsz, "request.messages: expected a non-empty array");
        return NULL;
    }
    if (!model || !*model) {
        errf(err, errsz, "request.model: empty");
        return NULL;
    }
    cleanup_json cJSON *b = cJSON_Duplicate(base, true);
    if (!b) {
        errf(err, errsz, "out of memory");
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(b, "model");
    cJSON_DeleteItemFromObjectCaseSensitive(b, "stream");
    cJSON_DeleteItemFromObjectCaseSensitive(b, "stream_options");
    cJSON_DeleteItemFromObjectCaseSensitive(b, "usage");
    cJSON_AddStringToObject(b, "model", model);
    const cJSON *mt = cJSON_GetObjectItemCaseSensitive(b, "max_tokens");
    if (!cJSON_IsNumber(mt) || mt->valuedouble < 1) {
        cJSON_DeleteItemFromObjectCaseSensitive(b, "max_tokens");
        cJSON_AddNumberToObject(b, "max_tokens", default_max_tokens);
    }
    cJSON_AddBoolToObject(b, "stream", stream);
    if (stream) {
        cJSON *so = cJSON_AddObjectToObject(b, "stream_options");
        if (so)
            cJSON_AddBoolToObject(so, "include_usage", true);
    }
    cJSON *usage = cJSON_AddObjectToObject(b, "usage");
    if (usage)
        cJSON_AddBoolToObject(usage, "include", true);
    char *text = cJSON_PrintUnformatted(b);
    if (!text) {
        errf(err, errsz, "out of memory");
        return NULL;
    }
    if (strlen(text) > LLM_REQUEST_MAX_BYTES) {
        free(text);
        errf(err, errsz, "request body larger than %u bytes", LLM_REQUEST_MAX_BYTES);
        return NULL;
    }
    return text;
}

static const char tools_json[] =
    "["
    "{\"type\":\"function\",\"function\":{\"name\":\"execute_bash\",\"description\":"
    "\"Run a bash command in the sandbox's persistent shell. Output is clipped at 30000 "
    "characters.\",\"parameters\":{\"type\":\"object\",\"properties\":{\"command\":{\"type\":"
    "\"string\",\"description\":\"The bash command.\"},\"timeout\":{\"type\":\"number\","
    "\"description\":\"Seconds before the command is interrupted.\"}},\"required\":"
    "[\"command\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"str_replace_editor\",\"description\":"
    "\"View, create and edit files under /workspace.\",\"parameters\":{\"type\":\"object\","
    "\"properties\":{\"command\":{\"type\":\"string\",\"enum\":[\"view\",\"create\","
    "\"str_replace\",\"insert\",\"undo_edit\"]},\"path\":{\"type\":\"string\"},\"file_text\":"
    "{\"type\":\"string\"},\"old_str\":{\"type\":\"string\"},\"new_str\":{\"type\":\"string\"},"
    "\"insert_line\":{\"type\":\"integer\"},\"view_range\":{\"type\":\"array\",\"items\":"
    "{\"type\":\"integer\"}}},\"required\":[\"command\",\"path\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"think\",\"description\":\"Think out loud; "
    "changes nothing.\",\"parameters\":{\"type\":\"object\",\"properties\":{\"thought\":"
    "{\"type\":\"string\"}},\"required\":[\"thought\"]}}},"
    "{\"type\":\"function\",\"function\":{\"name\":\"finish\",\"description\":\"Finish the task "
    "with a final message.\",\"parameters\":{\"type\":\"object\",\"properties\":{\"message\":"
    "{\"type\":\"string\"}},\"required\":[\"message\"]}}}"
    "]";

cJSON *llm_request_tools(bool minimal)
{
    cJSON *all = cJSON_Parse(tools_json);
    if (!all || !minimal)
        return all;
    cJSON *out = cJSON_CreateArray();
    cJSON *t;
    cJSON_ArrayForEach(t, all)
    {
        const cJSON *fn = cJSON_GetObjectItemCaseSensitive(t, "function");
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
        if (out && cJSON_IsString(name) && !strcmp(name->valuestring, "think")) {
            cJSON_AddItemToArray(out, cJSON_Duplicate(t, true));
            break;
        }
    }
    cJSON_Delete(all);
    return out;
}

char *llm_request_auth_header(const char *key)
{
    static const char prefix[] = "Authorization: Bearer ";
    size_t kl = strlen(key);
    char *h = malloc(sizeof(prefix) + kl);
    if (!h)
        return NULL;
    memcpy(h, prefix, sizeof(prefix) - 1);
    memcpy(h + sizeof(prefix) - 1, key, kl + 1);
    return h;
}

char *llm_request_body_spliced(const cJSON *base, const char *messages_json, size_t messages_len,
                               const char *model, bool stream, unsigned default_max_tokens,
                               char *err, size_t errsz)
{
    static const char placeholder[] = "\"messages\":[\"__agentbox_messages_splice__\"]";
    if (!messages_json || messages_len < 2 || messages_json[0] != '[' ||
        messages_json[messages_len - 1] != ']' || messages_len > LLM_REQUEST_MAX_BYTES) {
        errf(err, errsz, "request.messages: expected a non-empty array");
        return NULL;
    }
    /* build the small part around a placeholder, then put the real array in its place */
    cleanup_json cJSON *b = cJSON_Duplicate(base, true);
    cJSON *msgs = cJSON_CreateArray();
    if (!b || !msgs ||
        !cJSON_AddItemToArray(msgs, cJSON_CreateString("__agentbox_messages_splice__"))) {
        cJSON_Delete(msgs);
        errf(err, errsz, "out of memory");
        return NULL;
    }
    cJSON_DeleteItemFromObjectCaseSensitive(b, "messages");
    cJSON_AddItemToObject(b, "messages", msgs);
    cleanup_free char *head = llm_request_body(b, model, stream, default_max_tokens, err, errsz);
    if (!head)
        return NULL;
    char *at = strstr(head, placeholder);
    if (!at) {
        errf(err, errsz, "request: placeholder not found");
        return NULL;
    }
    size_t before = (size_t)(at - head) + strlen("\"messages\":");
    const char *after = at + sizeof(placeholder) - 1;
    size_t alen = strlen(after);
    char *out = malloc(before + messages_len + alen + 1);
    if (!out) {
        errf(err, errsz, "out of memory");
        return NULL;
    }
    memcpy(out, head, before);
    memcpy(out + before, messages_json, messages_len);
    memcpy(out + before + messages_len, after, alen + 1);
    return out;
}
