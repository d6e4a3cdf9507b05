/* strbuf: a growable string for building observations and prompts, made with the most it may
 * ever hold (STRBUF_INIT(max), like curl's dynbuf): it never grows past that. Remembers an
 * allocation failure or an over-cap append instead of reporting each one, so callers check
 * once at the end (strbuf_steal returns NULL; strbuf_over says which). Never shrinks, never
 * frees what it has handed out. */
#ifndef AGENTBOX_STRBUF_H
#define AGENTBOX_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

struct strbuf {
    char *s;
    size_t len, cap;
    size_t max; /* the most text it may hold (bytes, without the NUL); 0: STRBUF_DEFAULT_MAX */
    bool oom;   /* an allocation failed or an append would have passed max: nothing more */
    bool over;  /* ... because of max */
};

#define STRBUF_DEFAULT_MAX ((size_t)64 << 20)
#define STRBUF_INIT(most)                                                                          \
    {                                                                                              \
        .max = (most)                                                                              \
    }

/* Whether appending stopped because the text would have passed the buffer's max. */
bool strbuf_over(const struct strbuf *sb);

void strbuf_add(struct strbuf *sb, const char *p, size_t n);
void strbuf_adds(struct strbuf *sb, const char *s);
__attribute__((format(printf, 2, 3))) void strbuf_printf(struct strbuf *sb, const char *fmt, ...);
/* Hands the NUL-terminated text to the caller (NULL after an allocation failure) and resets
 * sb to empty. */
char *strbuf_steal(struct strbuf *sb);
void strbuf_release(struct strbuf *sb);

#endif
