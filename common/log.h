/* log: the one way agentbox prints diagnostics (stderr, "agentbox: " prefix).
 * Owns secret redaction: every registered secret is replaced by "[REDACTED]" in
 * anything that passes through here, so a key echoed by an upstream body never reaches a log.
 * A daemon (serve) switches to its own line shape with log_configure: a timestamp and level
 * per line, or JSON lines, or, under journald, "<N>" priority prefixes without timestamps. */
#ifndef AGENTBOX_LOG_H
#define AGENTBOX_LOG_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };
enum log_format { LOG_FORMAT_PLAIN = 0, LOG_FORMAT_TEXT, LOG_FORMAT_JSON };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "error", "warn", "info", "debug": 0, or -1 for anything else. */
int log_level_parse(const char *text, enum log_level *out);
/* "text", "json": 0, or -1. */
int log_format_parse(const char *text, enum log_format *out);
/* A daemon's logging: format (TEXT: "TIME LEVEL message"; JSON: one object per line) and
 * level. When stderr is the journal (JOURNAL_STREAM names it), TEXT lines carry a "<N>"
 * syslog priority and no time (the journal adds its own); JSON lines get the prefix too. */
void log_configure(enum log_level level, enum log_format format);
/* Registers a secret to redact (not copied: the caller keeps it alive and wipes it).
 * Pass NULL to forget all secrets. Up to 4 secrets. */
void log_add_secret(const char *secret);
/* Replaces every registered secret in text, in place (the replacement is never longer). */
void log_redact(char *text);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);
/* One lifecycle event: the message as log_msg would print it; in JSON, also "event" and the
 * members of fields (may be NULL; not consumed). */
__attribute__((format(printf, 4, 5))) void log_event(enum log_level level, const char *event,
                                                     const cJSON *fields, const char *fmt, ...);
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
