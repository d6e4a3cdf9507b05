/* b64: standard base64 (RFC 4648, with padding) for bytes carried in JSON lines. Never reads
 * or writes past the lengths it is given. */
#ifndef AGENTBOX_B64_H
#define AGENTBOX_B64_H

#include <stddef.h>

/* malloc'd, NUL-terminated; NULL when out of memory. */
char *b64_encode(const unsigned char *data, size_t len);
/* Decodes text (whitespace not allowed); returns 0 with *out (malloc'd) and *outlen, or -1
 * for invalid input or when the result would pass max bytes. */
int b64_decode(const char *text, size_t len, size_t max, unsigned char **out, size_t *outlen);

#endif
