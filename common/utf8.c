/* utf8: validation by the table of well-formed byte sequences in Unicode 15 section 3.9
 * (table 3-7), so overlongs and surrogates are caught without decoding tricks. */
#include "utf8.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* Length of the well-formed sequence at p (1..4), or 0 if it is not one. */
static size_t seq_len(const unsigned char *p, size_t left)
{
    unsigned char c = p[0];
    if (c >= 0x01 && c <= 0x7f)
        return 1;
    if (c >= 0xc2 && c <= 0xdf)
        return left >= 2 && (p[1] & 0xc0) == 0x80 ? 2 : 0;
    if (c >= 0xe0 && c <= 0xef) {
        if (left < 3)
            return 0;
        unsigned char lo = c == 0xe0 ? 0xa0 : 0x80, hi = c == 0xed ? 0x9f : 0xbf;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xf0 && c <= 0xf4) {
        if (left < 4)
            return 0;
        unsigned char lo = c == 0xf0 ? 0x90 : 0x80, hi = c == 0xf4 ? 0x8f : 0xbf;
        return p[1] >= lo && p[1] <= hi && (p[2] & 0xc0) == 0x80 && (p[3] & 0xc0) == 0x80 ? 4 : 0;
    }
    return 0;
}

bool utf8_valid(const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    for (size_t i = 0; i < len;) {
        size_t n = seq_len(p + i, len - i);
        if (!n)
            return false;
        i += n;
    }
    return true;
}

char *utf8_sanitize(const char *data, size_t len, size_t *outlen)
{
    const unsigned char *p = (const unsigned char *)data;
    /* Worst case: every byte becomes the 3-byte replacement character. */
    if (len > (SIZE_MAX - 1) / 3)
        return NULL;
    char *out = malloc(len * 3 + 1);
    if (!out)
        return NULL;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = seq_len(p + i, len - i);
        if (n) {
            memcpy(out + o, p + i, n);
            o += n;
            i += n;
        } else {
            memcpy(out + o, "\xef\xbf\xbd", 3);
            o += 3;
            i++;
        }
    }
    out[o] = '\0';
    if (outlen)
        *outlen = o;
    char *shrunk = realloc(out, o + 1);
    return shrunk ? shrunk : out;
}

static bool needs_escape(const char *s, size_t len)
{
    const unsigned char *p = (const unsigned char *)s;
    for (size_t i = 0; i < len;) {
        size_t n = seq_len(p + i, len - i);
        if (!n || (n == 1 && (p[i] < 0x20 || p[i] == 0x7f)))
            return true;
        i += n;
    }
    return false;
}

char *utf8_escape_name(const char *s, bool *escaped)
{
    size_t len = strlen(s);
    *escaped = needs_escape(s, len);
    if (!*escaped)
        return strdup(s);
    if (len > (SIZE_MAX - 1) / 4)
        return NULL;
    char *out = malloc(len * 4 + 1); /* worst case: every byte as \xNN */
    if (!out)
        return NULL;
    const unsigned char *p = (const unsigned char *)s;
    static const char hex[] = "0123456789abcdef";
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = seq_len(p + i, len - i);
        if (n == 1 && p[i] == '\\') {
            out[o++] = '\\';
            out[o++] = '\\';
        } else if (n > 1 || (n == 1 && p[i] >= 0x20 && p[i] != 0x7f)) {
            memcpy(out + o, p + i, n);
            o += n;
        } else {
            n = 1;
            out[o++] = '\\';
            out[o++] = 'x';
            out[o++] = hex[p[i] >> 4];
            out[o++] = hex[p[i] & 15];
        }
        i += n;
    }
    out[o] = '\0';
    return out;
}

/* Replaces *s (a cJSON-owned string) by its sanitized copy if it is not valid UTF-8. */
static int fix_string(char **s)
{
    if (!*s || utf8_valid(*s, strlen(*s)))
        return 0;
    char *clean = utf8_sanitize(*s, strlen(*s), NULL);
    if (!clean)
        return -1;
    cJSON_free(*s);
    /* cJSON frees with its own hooks; agentbox never installs any, so malloc'd is right */
    *s = clean;
    return 1;
}

long utf8_fix_json(cJSON *item)
{
    long n = 0;
    for (; item; item = item->next) {
        if (item->string && !(item->type & cJSON_StringIsConst)) {
            int r = fix_string(&item->string);
            if (r < 0)
                return -1;
            n += r;
        }
        if (cJSON_IsString(item) && !(item->type & cJSON_IsReference)) {
            int r = fix_string(&item->valuestring);
            if (r < 0)
                return -1;
            n += r;
        }
        if (item->child) {
            long c = utf8_fix_json(item->child);
            if (c < 0)
                return -1;
            n += c;
        }
    }
    return n;
}
