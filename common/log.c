/* log: see log.h. Messages are formatted into a bounded buffer, redacted, then written
 * with one write(2) so lines from concurrent processes do not interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
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

static const char *const level_names[] = {"error", "warn", "info", "debug"};
static enum log_format current_format = LOG_FORMAT_PLAIN;
static bool journal; /* stderr is the systemd journal */

int log_level_parse(const char *text, enum log_level *out)
{
    for (int i = 0; i < 4; i++)
        if (strcmp(text, level_names[i]) == 0) {
            *out = (enum log_level)i;
            return 0;
        }
    return -1;
}

int log_format_parse(const char *text, enum log_format *out)
{
    if (strcmp(text, "text") == 0)
        *out = LOG_FORMAT_TEXT;
    else if (strcmp(text, "json") == 0)
        *out = LOG_FORMAT_JSON;
    else
        return -1;
    return 0;
}

/* JOURNAL_STREAM is "DEV:INODE" of the stream systemd connected to stdout/stderr; it counts
 * only if stderr is still that stream (a child may have redirected it). */
static bool stderr_is_journal(void)
{
    const char *js = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!js || sscanf(js, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) < 0)
        return false;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void log_configure(enum log_level level, enum log_format format)
{
    current_level = level;
    current_format = format;
    journal = stderr_is_journal();
}

/* "2026-12-03T11:59:37.123Z" */
static void stamp(char *buf, size_t bufsz)
{
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(buf, bufsz, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf + n, bufsz - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void emit(enum log_level level, const char *event, const cJSON *fields, const char *msg)
{
    static const int syslog_prio[] = {3, 4, 6, 7}; /* err, warning, info, debug */
    char line[LOG_LINE_MAX + 256], ts[40];
    size_t len = 0;
    if (journal)
        len = (size_t)snprintf(line, sizeof(line), "<%d>", syslog_prio[level]);
    if (current_format == LOG_FORMAT_JSON) {
        cJSON *o = fields ? cJSON_Duplicate(fields, 1) : cJSON_CreateObject();
        stamp(ts, sizeof(ts));
        cJSON *head = cJSON_CreateObject();
        if (head && !journal)
            cJSON_AddStringToObject(head, "ts", ts);
        if (head)
            cJSON_AddStringToObject(head, "level", level_names[level]);
        if (head && event)
            cJSON_AddStringToObject(head, "event", event);
        if (head)
            cJSON_AddStringToObject(head, "msg", msg);
        for (cJSON *m = o ? o->child : NULL; head && m;) { /* fields after the fixed keys */
            cJSON *next = m->next;
            cJSON_AddItemToObject(head, m->string, cJSON_DetachItemViaPointer(o, m));
            m = next;
        }
        char *text = head ? cJSON_PrintUnformatted(head) : NULL;
        snprintf(line + len, sizeof(line) - len, "%s\n", text ? text : msg);
        free(text);
        cJSON_Delete(head);
        cJSON_Delete(o);
    } else if (current_format == LOG_FORMAT_TEXT && !journal) {
        stamp(ts, sizeof(ts));
        snprintf(line + len, sizeof(line) - len, "%s %s %s\n", ts, level_names[level], msg);
    } else if (current_format == LOG_FORMAT_TEXT) {
        snprintf(line + len, sizeof(line) - len, "%s\n", msg);
    } else {
        snprintf(line + len, sizeof(line) - len, "agentbox: %s\n", msg);
    }
    log_redact(line);
    len = strlen(line);
    if (len && line[len - 1] != '\n') { /* truncated: still one line */
        line[len - 1] = '\n';
    }
    (void)write_all(STDERR_FILENO, line, len);
}

void log_msg(enum log_level level, const char *fmt, ...)
{
    if (level > current_level)
        return;
    char msg[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    size_t n = strlen(msg);
    if (n && msg[n - 1] == '\n')
        msg[n - 1] = '\0';
    emit(level, NULL, NULL, msg);
}

void log_event(enum log_level level, const char *event, const cJSON *fields, const char *fmt, ...)
{
    if (level > current_level)
        return;
    char msg[LOG_LINE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    emit(level, event, fields, msg);
}
