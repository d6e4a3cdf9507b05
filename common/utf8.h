/* utf8: makes bytes from tools (command output, file contents) safe to put in JSON: every
 * invalid UTF-8 sequence and every NUL becomes U+FFFD. Never trusts its input's length. */
#ifndef AGENTBOX_UTF8_H
#define AGENTBOX_UTF8_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* Returns a malloc'd NUL-terminated copy of data[0..len) with invalid sequences (overlong,
 * surrogates, > U+10FFFF, truncated) and NUL bytes replaced by U+FFFD; NULL if out of memory. */
char *utf8_sanitize(const char *data, size_t len, size_t *outlen);
/* True when data[0..len) is valid UTF-8 without NUL bytes. */
bool utf8_valid(const char *data, size_t len);

/* A name (a path from a cell) made printable without losing a byte: returned as it is
 * (*escaped false) when it is valid UTF-8 without control characters; otherwise (*escaped
 * true) with each invalid byte and control character as \xNN and each backslash doubled.
 * malloc'd; NULL if out of memory. */
char *utf8_escape_name(const char *s, bool *escaped);
/* Makes every string value and key of item, its siblings after it and everything below valid
 * UTF-8 (utf8_sanitize's replacement). Returns how many strings it replaced, -1 if out of
 * memory. For JSON that came out of a cell, before any of it is written anywhere. */
long utf8_fix_json(cJSON *item);

#endif
