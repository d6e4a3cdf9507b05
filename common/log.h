/* log: the one way agentbox prints diagnostics (stderr, "agentbox: " prefix).
 * Owns secret redaction: every registered secret is replaced by "[REDACTED]" in
 * anything that passes through here, so a key echoed by an upstream body never reaches a log. */
#ifndef AGENTBOX_LOG_H
#define AGENTBOX_LOG_H

#include <stddef.h>

enum log_level { LOG_ERROR = 0, LOG_WARN = 1, LOG_INFO = 2, LOG_DEBUG = 3 };

void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* Registers a secret to redact (not copied: the caller keeps it alive and wipes it).
 * Pass NULL to forget all secrets. Up to 4 secrets. */
void log_add_secret(const char *secret);
/* Replaces every registered secret in text, in place (the replacement is never longer). */
void log_redact(char *text);

__attribute__((format(printf, 2, 3))) void log_msg(enum log_level level, const char *fmt, ...);
#define log_error(...) log_msg(LOG_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_DEBUG, __VA_ARGS__)

#endif
