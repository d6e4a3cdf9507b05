/* strbuf: a growable string for building observations and prompts. Remembers an allocation
 * failure instead of reporting each one, so callers check once at the end (strbuf_steal
 * returns NULL). Never shrinks, never frees what it has handed out. */
#ifndef AGENTBOX_STRBUF_H
#define AGENTBOX_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *s;
    size_t len, cap;
    bool oom;
};

void strbuf_add(struct strbuf *sb, const char *p, size_t n);
void strbuf_adds(struct strbuf *sb, const char *s);
__attribute__((format(printf, 2, 3))) void strbuf_printf(struct strbuf *sb, const char *fmt, ...);
/* Hands the NUL-terminated text to the caller (NULL after an allocation failure) and resets
 * sb to empty. */
char *strbuf_steal(struct strbuf *sb);
void strbuf_release(struct strbuf *sb);

#endif
