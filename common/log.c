/* log: see log.h. Messages are formatted into a bounded buffer, redacted, then written
 * with one write(2) so lines from concurrent processes do not interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util.h"

#define LOG_LINE_MAX  4096
#define SECRETS_MAX   4
#define REDACTED_TEXT "[REDACTED]"

static enum log_level current_level = LOG_WARN;
static const char *secrets[SECRETS_MAX];

void log_set_level(enum log_level level)
{
    current_level = level;
}

enum log_level log_get_level(void)
{
    return current_level;
}

void log_add_secret(const char *secret)
{
    if (!secret) {
        memset(secrets, 0, sizeof(secrets));
        return;
    }
    /* too short a secret would redact ordinary words; keys are far longer */
    if (strlen(secret) < 8)
        return;
    for (size_t i = 0; i < SECRETS_MAX; i++) {
        if (!secrets[i]) {
            secrets[i] = secret;
            return;
        }
    }
}

void log_redact(char *text)
{
    if (!text)
        return;
    for (size_t i = 0; i < SECRETS_MAX; i++) {
        const char *s = secrets[i];
        if (!s)
            continue;
        size_t slen = strlen(s), rlen = strlen(REDACTED_TEXT);
        char *hit;
        while ((hit = strstr(text, s)) != NULL) {
            memcpy(hit, REDACTED_TEXT, rlen);
            memmove(hit + rlen, hit + slen, strlen(hit + slen) + 1);
        }
    }
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > current_level)
        return;
    char line[LOG_LINE_MAX];
    int off = snprintf(line, sizeof(line), "agentbox: ");
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line + off, sizeof(line) - (size_t)off - 1, fmt, ap);
    va_end(ap);
    log_redact(line);
    size_t len = strlen(line);
    if (len == 0 || line[len - 1] != '\n') {
        line[len++] = '\n';
        line[len] = '\0';
    }
    (void)write_all(STDERR_FILENO, line, len);
}
