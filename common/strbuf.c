/* strbuf: amortised doubling up to the buffer's max; every size computation checked against
 * overflow. */
#include "strbuf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool grow(struct strbuf *sb, size_t extra)
{
    if (sb->oom)
        return false;
    size_t max = sb->max ? sb->max : STRBUF_DEFAULT_MAX;
    if (extra > max || sb->len > max - extra) {
        sb->oom = sb->over = true;
        return false;
    }
    size_t need = sb->len + extra + 1; /* <= max + 1: no overflow */
    if (need <= sb->cap)
        return true;
    size_t cap = sb->cap ? sb->cap : 256;
    while (cap < need)
        cap = cap > (max + 1) / 2 ? max + 1 : cap * 2;
    char *s = realloc(sb->s, cap);
    if (!s) {
        sb->oom = true;
        return false;
    }
    sb->s = s;
    sb->cap = cap;
    return true;
}

void strbuf_add(struct strbuf *sb, const char *p, size_t n)
{
    if (!grow(sb, n))
        return;
    memcpy(sb->s + sb->len, p, n);
    sb->len += n;
    sb->s[sb->len] = '\0';
}

void strbuf_adds(struct strbuf *sb, const char *s)
{
    strbuf_add(sb, s, strlen(s));
}

void strbuf_printf(struct strbuf *sb, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) {
        sb->oom = true;
        return;
    }
    if (!grow(sb, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(sb->s + sb->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    sb->len += (size_t)n;
}

char *strbuf_steal(struct strbuf *sb)
{
    char *s = NULL;
    if (!sb->oom) {
        s = sb->s ? sb->s : strdup("");
        sb->s = NULL;
    }
    strbuf_release(sb);
    return s;
}

void strbuf_release(struct strbuf *sb)
{
    free(sb->s);
    sb->s = NULL;
    sb->len = sb->cap = 0;
    sb->oom = sb->over = false;
}

bool strbuf_over(const struct strbuf *sb)
{
    return sb->over;
}
