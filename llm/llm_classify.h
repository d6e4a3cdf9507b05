/* llm_classify: turns every signal an OpenRouter call can give (HTTP status, the error
 * object's code and metadata, availability, libcurl's code, a bad body) into one of the
 * seven ERROR_TYPEs plus the flags recovery needs. Pure: no I/O, never sees the API key. */
#ifndef AGENTBOX_LLM_CLASSIFY_H
#define AGENTBOX_LLM_CLASSIFY_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

enum llm_error_type {
    CONNECTION_ERROR = 0,
    TIMEOUT_ERROR,
    AUTHENTICATION_ERROR,
    RATE_LIMIT_ERROR,
    VALIDATION_ERROR,
    SDK_ERROR,
    UNKNOWN_ERROR,
    LLM_ERROR_TYPES /* count */
};

/* What one HTTP attempt produced. Fill what is known; zero the rest. */
struct llm_signal {
    int curl_code;       /* CURLcode of the transfer; 0 = completed */
    long http_status;    /* 0 when no response arrived */
    const cJSON *error;  /* the upstream error object ({"code","message","metadata"}), if any */
    bool in_200;         /* the error arrived inside a 200 (choices[0].error or top-level) */
    bool midstream;      /* ... inside an SSE stream */
    bool body_empty;     /* 2xx with no body */
    bool body_malformed; /* 2xx whose body did not parse / had no choices */
    bool truncated;      /* stream ended without [DONE] or finish_reason */
    double retry_after_hdr_s; /* Retry-After header in seconds; < 0 when absent */
    const char *detail;       /* extra text for the message (parser or libcurl error) */
};

struct llm_error_info {
    enum llm_error_type type;
    bool retryable;         /* worth asking the same model again */
    bool context_length;    /* the prompt is too long: the caller should condense */
    bool model_unavailable; /* 404 / no endpoints / availability.retryable=false: next model */
    bool moderation;        /* 403 with metadata.reasons */
    double retry_after_s;   /* from header, availability or metadata; < 0 when none */
    long http_status;
    int curl_code;
    char message[512]; /* human-readable; not yet redacted (callers run log_redact) */
};

/* Classifies a failed attempt. Always fills out. */
void llm_classify(const struct llm_signal *s, struct llm_error_info *out);

const char *llm_error_type_name(enum llm_error_type t);
/* "CONNECTION_ERROR" -> CONNECTION_ERROR; -1 when unknown. */
int llm_error_type_parse(const char *name);

/* Parses a Retry-After header value (delta-seconds or an HTTP-date, RFC 9110 10.2.3) into
 * seconds from now; -1 when it is neither. */
double llm_retry_after_parse(const char *value, double now_wall);

#endif
