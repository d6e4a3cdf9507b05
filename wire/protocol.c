/* protocol: see protocol.h. Every field of a request is checked here and nowhere else;
 * unknown members are refused so that a typo ("folow") cannot pass silently. */
#include "protocol.h"

#include <stdio.h>
#include <string.h>

#include "json.h"
#include "util.h"

static const char *const error_names[] = {
    [PERR_BAD_REQUEST] = "bad_request",   [PERR_TOO_LARGE] = "too_large",
    [PERR_UNKNOWN_OP] = "unknown_op",     [PERR_NOT_FOUND] = "not_found",
    [PERR_DUPLICATE_ID] = "duplicate_id", [PERR_INVALID_TASK] = "invalid_task",
    [PERR_FORBIDDEN] = "forbidden",       [PERR_SHUTTING_DOWN] = "shutting_down",
    [PERR_QUEUE_FULL] = "queue_full",     [PERR_TIMEOUT] = "timeout",
    [PERR_INTERNAL] = "internal",         [PERR_NO_SPACE] = "no_space",
};

static const struct {
    const char *name;
    enum protocol_op op;
    const char *const *keys;
} ops[] = {
    {"submit", OP_SUBMIT,
     (const char *const[]){"op", "task", "workspace_tar", "workspace_tar_fd", NULL}},
    {"status", OP_STATUS, (const char *const[]){"op", "id", NULL}},
    {"wait", OP_WAIT, (const char *const[]){"op", "id", "timeout_s", NULL}},
    {"cancel", OP_CANCEL, (const char *const[]){"op", "id", NULL}},
    {"events", OP_EVENTS, (const char *const[]){"op", "id", "follow", NULL}},
    {"list", OP_LIST, (const char *const[]){"op", NULL}},
    {"health", OP_HEALTH, (const char *const[]){"op", NULL}},
    {"metrics", OP_METRICS, (const char *const[]){"op", NULL}},
    {"artifact", OP_ARTIFACT, (const char *const[]){"op", "id", "name", "offset", "length", NULL}},
};

const char *protocol_error_name(enum protocol_error code)
{
    return (unsigned)code < ARRAY_SIZE(error_names) ? error_names[code] : "internal";
}

const char *protocol_op_name(enum protocol_op op)
{
    for (size_t i = 0; i < ARRAY_SIZE(ops); i++)
        if (ops[i].op == op)
            return ops[i].name;
    return "?";
}

void request_free(struct request *req)
{
    cJSON_Delete(req->root);
    memset(req, 0, sizeof(*req));
}

static int fail(struct request *req, enum protocol_error *code, enum protocol_error c)
{
    request_free(req);
    *code = c;
    return -1;
}

static int parse_id(struct request *req, bool allow_all, char *err, size_t errsz)
{
    const char *id = NULL;
    int rc = json_get_string(req->root, "request", "id", &id, err, errsz);
    if (rc < 0)
        return -1;
    if (rc > 0)
        return errf(err, errsz, "request.id: required");
    if (allow_all && strcmp(id, "all") == 0) {
        req->all = true;
        return 0;
    }
    if (!task_id_is_valid(id))
        return errf(err, errsz, "request.id: not a valid task id");
    snprintf(req->id, sizeof(req->id), "%s", id);
    return 0;
}

int protocol_parse(const char *line, size_t len, struct request *req, enum protocol_error *code,
                   char *err, size_t errsz)
{
    memset(req, 0, sizeof(*req));
    req->timeout_s = -1;
    if (len > PROTOCOL_REQUEST_MAX_BYTES) {
        errf(err, errsz, "request: longer than %u bytes", PROTOCOL_REQUEST_MAX_BYTES);
        return fail(req, code, PERR_TOO_LARGE);
    }
    if (memchr(line, '\0', len)) {
        errf(err, errsz, "request: contains a NUL byte");
        return fail(req, code, PERR_BAD_REQUEST);
    }
    const char *end = NULL;
    req->root = cJSON_ParseWithLengthOpts(line, len, &end, false);
    if (!req->root) {
        errf(err, errsz, "request: not valid JSON");
        return fail(req, code, PERR_BAD_REQUEST);
    }
    for (; end && end < line + len; end++)
        if (!strchr(" \t\r", *end)) {
            errf(err, errsz, "request: junk after the JSON object");
            return fail(req, code, PERR_BAD_REQUEST);
        }
    if (!cJSON_IsObject(req->root)) {
        errf(err, errsz, "request: expected a JSON object");
        return fail(req, code, PERR_BAD_REQUEST);
    }
    const char *opname = NULL;
    int rc = json_get_string(req->root, "request", "op", &opname, err, errsz);
    if (rc != 0) {
        if (rc > 0)
            errf(err, errsz, "request.op: required");
        return fail(req, code, PERR_BAD_REQUEST);
    }
    size_t i = 0;
    while (i < ARRAY_SIZE(ops) && strcmp(ops[i].name, opname) != 0)
        i++;
    if (i == ARRAY_SIZE(ops)) {
        errf(err, errsz,
             "request.op: unknown op (one of submit status wait cancel events list "
             "health metrics artifact)");
        return fail(req, code, PERR_UNKNOWN_OP);
    }
    req->op = ops[i].op;
    if (json_check_keys(req->root, "request", ops[i].keys, err, errsz) < 0)
        return fail(req, code, PERR_BAD_REQUEST);
    switch (req->op) {
    case OP_SUBMIT:
        req->task = cJSON_GetObjectItemCaseSensitive(req->root, "task");
        if (!cJSON_IsObject(req->task)) {
            errf(err, errsz, "request.task: required, a JSON object");
            return fail(req, code, PERR_BAD_REQUEST);
        }
        break;
    case OP_STATUS:
    case OP_CANCEL:
    case OP_ARTIFACT:
        if (parse_id(req, false, err, errsz) < 0)
            return fail(req, code, PERR_BAD_REQUEST);
        break;
    case OP_WAIT:
        if (parse_id(req, false, err, errsz) < 0 ||
            json_get_number(req->root, "request", "timeout_s", 0, PROTOCOL_WAIT_MAX_S,
                            &req->timeout_s, err, errsz) < 0)
            return fail(req, code, PERR_BAD_REQUEST);
        break;
    case OP_EVENTS:
        if (parse_id(req, true, err, errsz) < 0 ||
            json_get_bool(req->root, "request", "follow", &req->follow, err, errsz) < 0)
            return fail(req, code, PERR_BAD_REQUEST);
        break;
    case OP_LIST:
    case OP_HEALTH:
    case OP_METRICS:
        break;
    }
    return 0;
}

static char *line_of(cJSON *obj)
{
    char *text = obj ? cJSON_PrintUnformatted(obj) : NULL;
    cJSON_Delete(obj);
    if (!text)
        return NULL;
    size_t n = strlen(text);
    char *out = realloc(text, n + 2);
    if (!out) {
        free(text);
        return NULL;
    }
    out[n] = '\n';
    out[n + 1] = '\0';
    return out;
}

char *protocol_ok_line(cJSON *fields)
{
    cJSON *obj = cJSON_CreateObject();
    if (!obj || !cJSON_AddBoolToObject(obj, "ok", true)) {
        cJSON_Delete(obj);
        cJSON_Delete(fields);
        return NULL;
    }
    if (fields) {
        cJSON *item;
        while ((item = fields->child) != NULL) {
            cJSON_DetachItemViaPointer(fields, item);
            if (item->string && strcmp(item->string, "ok") == 0) {
                cJSON_Delete(item);
                continue;
            }
            cJSON_AddItemToObject(obj, item->string, item);
        }
        cJSON_Delete(fields);
    }
    return line_of(obj);
}

char *protocol_error_line(enum protocol_error code, const char *message)
{
    cJSON *obj = cJSON_CreateObject();
    cJSON *e = obj ? cJSON_CreateObject() : NULL;
    if (!obj || !e || !cJSON_AddBoolToObject(obj, "ok", false) ||
        !cJSON_AddStringToObject(e, "code", protocol_error_name(code)) ||
        !cJSON_AddStringToObject(e, "message", message ? message : "")) {
        cJSON_Delete(e);
        cJSON_Delete(obj);
        return NULL;
    }
    cJSON_AddItemToObject(obj, "error", e);
    return line_of(obj);
}
