/* utf8: makes bytes from tools (command output, file contents) safe to put in JSON: every
 * invalid UTF-8 sequence and every NUL becomes U+FFFD. Never trusts its input's length. */
#ifndef AGENTBOX_UTF8_H
#define AGENTBOX_UTF8_H

#include <stdbool.h>
#include <stddef.h>

/* Returns a malloc'd NUL-terminated copy of data[0..len) with invalid sequences (overlong,
 * surrogates, > U+10FFFF, truncated) and NUL bytes replaced by U+FFFD; NULL if out of memory. */
char *utf8_sanitize(const char *data, size_t len, size_t *outlen);
/* True when data[0..len) is valid UTF-8 without NUL bytes. */
bool utf8_valid(const char *data, size_t len);

#endif
