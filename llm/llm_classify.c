/* llm_classify: see llm_classify.h; the table it implements is docs/errors.md. Order of
 * evidence: transport (libcurl) first, then the HTTP status, then the error object's
 * metadata, then the body. Pure: never does I/O. */
#define CURL_DISABLE_TYPECHECK 1
#include "llm_classify.h"

#include <curl/curl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static const char *const type_names[LLM_ERROR_TYPES] = {
    "CONNECTION_ERROR", "TIMEOUT_ERROR", "AUTHENTICATION_ERROR", "RATE_LIMIT_ERROR",
    "VALIDATION_ERROR", "SDK_ERROR",     "UNKNOWN_ERROR",
};

const char *llm_error_type_name(enum llm_error_type t)
{
    if ((int)t < 0 || t >= LLM_ERROR_TYPES)
        return "UNKNOWN_ERROR";
    return type_names[t];
}

int llm_error_type_parse(const char *name)
{
    for (int i = 0; i < LLM_ERROR_TYPES; i++)
        if (strcmp(name, type_names[i]) == 0)
            return i;
    return -1;
}

double llm_retry_after_parse(const char *value, double now_wall)
{
    while (*value == ' ' || *value == '\t')
        value++;
    if (*value >= '0' && *value <= '9') {
        char *end;
        double v = strtod(value, &end);
        while (*end == ' ' || *end == '\t' || *end == '\r' || *end == '\n')
            end++;
        if (*end != '\0' || !isfinite(v) || v < 0)
            return -1;
        return v;
    }
    struct tm tm = {0};
    const char *end = strptime(value, "%a, %d %b %Y %H:%M:%S GMT", &tm);
    if (!end)
        return -1;
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return -1;
    double d = (double)t - now_wall;
    return d < 0 ? 0 : d;
}

static const cJSON *obj_get(const cJSON *o, const char *name)
{
    return cJSON_IsObject(o) ? cJSON_GetObjectItemCaseSensitive(o, name) : NULL;
}

static const char *str_get(const cJSON *o, const char *name)
{
    const cJSON *v = obj_get(o, name);
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

/* seconds in a JSON number or numeric string; -1 when absent or junk */
static double seconds_get(const cJSON *o, const char *name)
{
    const cJSON *v = obj_get(o, name);
    double d = -1;
    if (cJSON_IsNumber(v))
        d = v->valuedouble;
    else if (cJSON_IsString(v) && v->valuestring)
        d = llm_retry_after_parse(v->valuestring, 0);
    return (isfinite(d) && d >= 0) ? d : -1;
}

/* error.code may be a number or a string ("429", "rate_limit_exceeded") */
static long code_number(const cJSON *error)
{
    const cJSON *code = obj_get(error, "code");
    if (cJSON_IsNumber(code) && code->valuedouble >= 100 && code->valuedouble < 1000)
        return (long)code->valuedouble;
    if (cJSON_IsString(code) && code->valuestring) {
        char *end;
        long v = strtol(code->valuestring, &end, 10);
        if (*end == '\0' && v >= 100 && v < 1000)
            return v;
    }
    return 0;
}

static bool contains_ci(const char *hay, const char *needle)
{
    return hay && strcasestr(hay, needle) != NULL;
}

static void set(struct llm_error_info *o, enum llm_error_type t, bool retryable)
{
    o->type = t;
    o->retryable = retryable;
}

/* OpenRouter's metadata.error_type names */
static bool from_error_type(const char *et, struct llm_error_info *o)
{
    if (!et)
        return false;
    if (!strcmp(et, "rate_limit_exceeded"))
        set(o, RATE_LIMIT_ERROR, true);
    else if (!strcmp(et, "provider_unavailable") || !strcmp(et, "provider_overloaded") ||
             !strcmp(et, "server_error") || !strcmp(et, "service_unavailable"))
        set(o, CONNECTION_ERROR, true);
    else if (!strcmp(et, "timeout"))
        set(o, TIMEOUT_ERROR, true);
    else if (!strcmp(et, "context_length_exceeded")) {
        set(o, VALIDATION_ERROR, false);
        o->context_length = true;
    } else if (!strcmp(et, "authentication") || !strcmp(et, "payment_required") ||
               !strcmp(et, "permission_denied") || !strcmp(et, "insufficient_credits"))
        set(o, AUTHENTICATION_ERROR, false);
    else if (!strcmp(et, "not_found") || !strcmp(et, "model_not_found")) {
        set(o, VALIDATION_ERROR, false);
        o->model_unavailable = true;
    } else if (!strcmp(et, "moderation") || !strcmp(et, "content_filter")) {
        set(o, VALIDATION_ERROR, false);
        o->moderation = true;
    } else if (!strcmp(et, "invalid_request") || !strcmp(et, "bad_request") ||
               !strcmp(et, "validation_error"))
        set(o, VALIDATION_ERROR, false);
    else
        return false;
    return true;
}

static void from_status(long st, const cJSON *error, struct llm_error_info *o)
{
    const cJSON *meta = obj_get(error, "metadata");
    const char *msg = str_get(error, "message");
    switch (st) {
    case 401:
    case 402:
        set(o, AUTHENTICATION_ERROR, false);
        return;
    case 403:
        if (obj_get(meta, "reasons") || contains_ci(msg, "moderation") ||
            contains_ci(msg, "flagged")) {
            set(o, VALIDATION_ERROR, false);
            o->moderation = true;
        } else
            set(o, AUTHENTICATION_ERROR, false);
        return;
    case 404:
        set(o, VALIDATION_ERROR, false);
        o->model_unavailable = true;
        return;
    case 408:
        set(o, TIMEOUT_ERROR, true);
        return;
    case 413:
        set(o, VALIDATION_ERROR, false);
        o->context_length = true;
        return;
    case 400:
    case 422:
        set(o, VALIDATION_ERROR, false);
        return;
    case 429:
        set(o, RATE_LIMIT_ERROR, true);
        return;
    default:
        break;
    }
    if (st >= 500 && st <= 599)
        set(o, CONNECTION_ERROR, true);
    else
        set(o, UNKNOWN_ERROR, false);
}

static void from_curl(int code, struct llm_error_info *o)
{
    switch (code) {
    case CURLE_OPERATION_TIMEDOUT:
        set(o, TIMEOUT_ERROR, true);
        break;
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
    case CURLE_HTTP3:
        set(o, CONNECTION_ERROR, true);
        break;
    case CURLE_PARTIAL_FILE:
    case CURLE_WRITE_ERROR:
    case CURLE_BAD_CONTENT_ENCODING:
    case CURLE_WEIRD_SERVER_REPLY:
        set(o, SDK_ERROR, true);
        break;
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
        set(o, UNKNOWN_ERROR, false);
        break;
    default:
        set(o, UNKNOWN_ERROR, true);
        break;
    }
}

void llm_classify(const struct llm_signal *s, struct llm_error_info *o)
{
    memset(o, 0, sizeof(*o));
    o->retry_after_s = s->retry_after_hdr_s >= 0 ? s->retry_after_hdr_s : -1;
    o->http_status = s->http_status;
    o->curl_code = s->curl_code;
    const cJSON *err = s->error;
    const cJSON *meta = obj_get(err, "metadata");
    const char *umsg = str_get(err, "message");
    const char *etype = str_get(meta, "error_type");
    const char *what;

    if (s->curl_code != 0 && !(s->truncated && s->http_status == 200)) {
        from_curl(s->curl_code, o);
        what = s->curl_code == CURLE_OPERATION_TIMEDOUT ? "request timed out"
               : o->type == SDK_ERROR                   ? "response body cut short"
               : o->type == UNKNOWN_ERROR               ? "transfer failed"
                                                        : "connection failed";
    } else if (s->in_200 || s->midstream) {
        /* an error inside a 200 or a stream is an SDK_ERROR and is retried; the
         * metadata can still say the prompt is too long, which no retry fixes */
        set(o, SDK_ERROR, true);
        struct llm_error_info tmp = {0};
        if (from_error_type(etype, &tmp) && tmp.context_length)
            *o = (struct llm_error_info){.type = VALIDATION_ERROR,
                                         .context_length = true,
                                         .retry_after_s = o->retry_after_s,
                                         .http_status = s->http_status};
        what = s->midstream ? "error in the middle of a stream" : "error inside a 200 response";
    } else if (s->http_status >= 200 && s->http_status < 300) {
        set(o, SDK_ERROR, true);
        what = s->body_empty  ? "empty response body"
               : s->truncated ? "stream ended before it was complete"
                              : "malformed response body";
    } else {
        from_status(s->http_status, err, o);
        /* metadata refines what the status alone cannot say (400 context length, 403
         * permission vs moderation, 503 vs provider timeout) */
        struct llm_error_info tmp = *o;
        tmp.context_length = tmp.model_unavailable = tmp.moderation = false;
        if (from_error_type(etype, &tmp)) {
            bool keep_auth = o->type == AUTHENTICATION_ERROR && tmp.type != AUTHENTICATION_ERROR &&
                             !tmp.moderation;
            if (!keep_auth) {
                o->type = tmp.type;
                o->retryable = tmp.retryable;
                o->context_length |= tmp.context_length;
                o->model_unavailable |= tmp.model_unavailable;
                o->moderation |= tmp.moderation;
            }
        }
        if (o->type == VALIDATION_ERROR && !o->context_length &&
            (contains_ci(umsg, "context length") || contains_ci(umsg, "maximum context") ||
             contains_ci(umsg, "context_length_exceeded")))
            o->context_length = true;
        if (o->moderation && o->type != VALIDATION_ERROR)
            o->type = VALIDATION_ERROR;
        if (contains_ci(umsg, "no endpoints found")) {
            o->type = VALIDATION_ERROR;
            o->retryable = false;
            o->model_unavailable = true;
        }
        what = NULL;
    }

    /* availability: OpenRouter's word on whether this model will come back soon */
    const cJSON *avail = obj_get(meta, "availability");
    if (!avail)
        avail = obj_get(err, "availability");
    if (cJSON_IsObject(avail)) {
        const cJSON *r = obj_get(avail, "retryable");
        if (cJSON_IsBool(r)) {
            o->retryable = cJSON_IsTrue(r);
            if (!o->retryable && o->type != AUTHENTICATION_ERROR)
                o->model_unavailable = true;
        }
        double ra = seconds_get(avail, "retry_after");
        if (ra >= 0 && o->retry_after_s < 0)
            o->retry_after_s = ra;
    }
    double ra = seconds_get(meta, "retry_after_seconds");
    if (ra >= 0 && o->retry_after_s < 0)
        o->retry_after_s = ra;
    if (o->type == AUTHENTICATION_ERROR || (o->type == VALIDATION_ERROR && !o->model_unavailable))
        o->retryable = false;

    long code = code_number(err);
    const char *provider = str_get(meta, "provider_name");
    char status[48] = "";
    if (s->http_status)
        snprintf(status, sizeof(status), "HTTP %ld", s->http_status);
    else if (s->curl_code)
        snprintf(status, sizeof(status), "transport error %d", s->curl_code);
    if (code && code != s->http_status) {
        size_t l = strlen(status);
        snprintf(status + l, sizeof(status) - l, "%scode %ld", l ? ", " : "", code);
    }
    const char *hint = "";
    if (o->type == AUTHENTICATION_ERROR)
        hint = s->http_status == 402 ? ": out of credits or the request needs max_tokens lowered"
                                     : ": check OPENROUTER_API_KEY and its permissions";
    else if (o->moderation)
        hint = ": the input was flagged by moderation";
    else if (o->context_length)
        hint = ": the conversation exceeds the model's context window";
    else if (o->model_unavailable)
        hint = ": the model is unavailable or has no endpoint for this request";
    snprintf(o->message, sizeof(o->message), "%s (%s)%s%s%s%s%s%s",
             what ? what : llm_error_type_name(o->type), status[0] ? status : "no status", hint,
             umsg ? ": " : "", umsg ? umsg : "", provider ? " [provider " : "",
             provider ? provider : "", provider ? "]" : "");
    if (s->detail) {
        size_t l = strlen(o->message);
        snprintf(o->message + l, sizeof(o->message) - l, "; %s", s->detail);
    }
}
