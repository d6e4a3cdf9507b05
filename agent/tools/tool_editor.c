/* tool_editor: the file editor the model drives. Text files only (valid UTF-8, no NUL), at
 * most TOOL_EDITOR_MAX_FILE_BYTES; a file is read whole, edited in memory and written back.
 * Never follows the model into special files: a FIFO or device is refused before it is
 * opened for reading (O_NONBLOCK + fstat), so the agent cannot be made to hang on one.
 *
 * Deliberate differences from OpenHands: lines are counted as `cat -n` does (a trailing
 * newline does not start an empty last line); inserted text always ends with a newline;
 * tabs are not expanded. */
#include "tool_editor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "strbuf.h"
#include "utf8.h"
#include "grow.h"
#include "util.h"

#define ECHO_MAX_CHARS 1000 /* how much of old_str an error message quotes back */
/* the most any text the editor builds may hold: a whole file numbered as `cat -n` does, each
 * byte a line at worst (a number, a tab and the byte: under 10 bytes), plus its header */
#define EDITOR_TEXT_MAX (10 * (size_t)TOOL_EDITOR_MAX_FILE_BYTES + 65536)

struct edit {
    char *path;
    char *content; /* the file before the edit */
    size_t len;
};

struct tool_editor {
    struct edit *edits; /* oldest first */
    size_t n, cap;
    size_t bytes;
};

struct tool_editor *tool_editor_new(void)
{
    return calloc(1, sizeof(struct tool_editor));
}

void tool_editor_free(struct tool_editor *ed)
{
    if (!ed)
        return;
    for (size_t i = 0; i < ed->n; i++) {
        free(ed->edits[i].path);
        free(ed->edits[i].content);
    }
    free(ed->edits);
    free(ed);
}

size_t tool_editor_history_bytes(const struct tool_editor *ed)
{
    return ed->bytes;
}

static void drop_edit(struct tool_editor *ed, size_t i)
{
    ed->bytes -= ed->edits[i].len;
    free(ed->edits[i].path);
    free(ed->edits[i].content);
    memmove(ed->edits + i, ed->edits + i + 1, (ed->n - i - 1) * sizeof(struct edit));
    ed->n--;
}

/* Records the content a file had before an edit; bounded per file and in total. A failure
 * to record only costs the undo, never the edit. */
static void remember(struct tool_editor *ed, const char *path, const char *content, size_t len)
{
    if (len > TOOL_EDITOR_HISTORY_MAX_BYTES)
        return;
    size_t same = 0, oldest = SIZE_MAX;
    for (size_t i = 0; i < ed->n; i++)
        if (strcmp(ed->edits[i].path, path) == 0 && same++ == 0)
            oldest = i;
    if (same >= TOOL_EDITOR_HISTORY_PER_FILE)
        drop_edit(ed, oldest);
    while (ed->n && ed->bytes + len > TOOL_EDITOR_HISTORY_MAX_BYTES)
        drop_edit(ed, 0);
    if (GROW(ed->edits, ed->n, ed->cap, 16, (size_t)1 << 20) < 0)
        return;
    struct edit e = {strdup(path), malloc(len + 1), len};
    if (!e.path || !e.content) {
        free(e.path);
        free(e.content);
        return;
    }
    memcpy(e.content, content, len);
    e.content[len] = '\0';
    ed->edits[ed->n++] = e;
    ed->bytes += len;
}

/* ---------- observations ---------- */

static char *fail(bool *is_error, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static char *fail(bool *is_error, const char *fmt, ...)
{
    *is_error = true;
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    if (vasprintf(&s, fmt, ap) < 0)
        s = NULL;
    va_end(ap);
    return s;
}

/* `cat -n` of lines [first, last] (1-based, inclusive) of text. */
static void cat_n(struct strbuf *sb, const char *text, size_t len, size_t first, size_t last)
{
    size_t line = 1;
    const char *p = text, *end = text + len;
    while (p < end && line <= last) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
        if (line >= first)
            strbuf_printf(sb, "%6zu\t%.*s\n", line, (int)n, p);
        p += n + (nl ? 1 : 0);
        line++;
    }
}

static size_t count_lines(const char *text, size_t len)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += text[i] == '\n';
    return n + (len && text[len - 1] != '\n');
}

static size_t line_of_offset(const char *text, size_t off)
{
    size_t n = 1;
    for (size_t i = 0; i < off; i++)
        n += text[i] == '\n';
    return n;
}

/* Byte offset where line `line` (1-based) starts; len if past the end. */
static size_t offset_of_line(const char *text, size_t len, size_t line)
{
    size_t off = 0;
    for (size_t l = 1; l < line && off < len; off++)
        if (text[off] == '\n')
            l++;
    return off;
}

static char *clip_echo(const char *s)
{
    size_t n = strlen(s);
    char *out = NULL;
    if (n <= ECHO_MAX_CHARS)
        return strdup(s);
    if (asprintf(&out, "%.*s[... %zu more characters]", ECHO_MAX_CHARS, s, n - ECHO_MAX_CHARS) < 0)
        return NULL;
    return out;
}

/* ---------- files ---------- */

enum load_result { LOAD_OK, LOAD_ERROR };

/* Reads a regular text file whole. On refusal returns LOAD_ERROR with *msg set. */
static enum load_result load(const char *path, char **out, size_t *outlen, char **msg,
                             bool *is_error)
{
    cleanup_fd int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        *msg = fail(is_error, "Error: cannot open %s: %s", path, strerror(errno));
        return LOAD_ERROR;
    }
    if (!S_ISREG(st.st_mode)) {
        *msg = fail(is_error,
                    "Error: %s is not a regular file; the editor works on text files only.", path);
        return LOAD_ERROR;
    }
    if ((unsigned long long)st.st_size > TOOL_EDITOR_MAX_FILE_BYTES) {
        *msg = fail(is_error,
                    "Error: %s is %lld bytes; the editor handles files up to %u bytes. Use "
                    "execute_bash (grep -n, sed -n) to work with it.",
                    path, (long long)st.st_size, TOOL_EDITOR_MAX_FILE_BYTES);
        return LOAD_ERROR;
    }
    char *buf = malloc((size_t)st.st_size + 1);
    size_t got = 0;
    if (!buf) {
        *msg = fail(is_error, "Error: out of memory reading %s", path);
        return LOAD_ERROR;
    }
    /* Read to EOF, but never past the cap, even if the file grows meanwhile. */
    for (;;) {
        if (got == (size_t)st.st_size)
            break;
        ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            free(buf);
            *msg = fail(is_error, "Error: cannot read %s: %s", path, strerror(errno));
            return LOAD_ERROR;
        }
        if (n == 0)
            break;
        got += (size_t)n;
    }
    buf[got] = '\0';
    if (!utf8_valid(buf, got)) {
        free(buf);
        *msg = fail(is_error,
                    "Error: %s looks binary (it has NUL bytes or is not UTF-8 text); the editor "
                    "handles text files only. Use execute_bash to inspect it.",
                    path);
        return LOAD_ERROR;
    }
    *out = buf;
    *outlen = got;
    return LOAD_OK;
}

/* Rewrites an existing file in place, keeping its inode, mode and owner. */
static int store(const char *path, const char *text, size_t len, char **msg, bool *is_error)
{
    cleanup_fd int fd = open(path, O_WRONLY | O_TRUNC | O_NONBLOCK | O_CLOEXEC | O_NOCTTY);
    if (fd < 0 || write_all(fd, text, len) != 0 || close(steal_fd(&fd)) != 0) {
        *msg = fail(is_error, "Error: cannot write %s: %s", path, strerror(errno));
        return -1;
    }
    return 0;
}

/* A failed write (ENOSPC under the workspace quota) leaves a truncated file: put the old
 * content back, best effort, and say which state the file is in. */
static int store_or_restore(const char *path, const char *text, size_t len, const char *old,
                            size_t oldlen, char **msg, bool *is_error)
{
    if (store(path, text, len, msg, is_error) == 0)
        return 0;
    char *ignored = NULL;
    bool restored = store(path, old, oldlen, &ignored, is_error) == 0;
    free(ignored);
    char *full = NULL;
    if (asprintf(&full, "%s. %s", *msg ? *msg : "Error: write failed",
                 restored ? "The file was left unchanged."
                          : "The file could not be restored and may be truncated.") >= 0) {
        free(*msg);
        *msg = full;
    }
    return -1;
}

/* ---------- commands ---------- */

static char *view_dir(const char *path, bool *is_error)
{
    struct strbuf sb = STRBUF_INIT(EDITOR_TEXT_MAX);
    size_t shown = 0, skipped = 0;
    strbuf_printf(&sb,
                  "Here's the files and directories up to 2 levels deep in %s, excluding hidden "
                  "items:\n%s\n",
                  path, path);
    struct dirent **top = NULL;
    int n = scandir(path, &top, NULL, alphasort);
    if (n < 0) {
        strbuf_release(&sb);
        return fail(is_error, "Error: cannot list %s: %s", path, strerror(errno));
    }
    const char *sep = path[strlen(path) - 1] == '/' ? "" : "/";
    for (int i = 0; i < n; i++) {
        const char *name = top[i]->d_name;
        if (name[0] == '.') {
            free(top[i]);
            continue;
        }
        char sub[4096];
        snprintf(sub, sizeof(sub), "%s%s%s", path, sep, name);
        struct stat st;
        bool is_dir = lstat(sub, &st) == 0 && S_ISDIR(st.st_mode);
        if (shown++ < TOOL_EDITOR_DIR_MAX_ENTRIES)
            strbuf_printf(&sb, "%s%s\n", sub, is_dir ? "/" : "");
        else
            skipped++;
        struct dirent **inner = NULL;
        int m = is_dir ? scandir(sub, &inner, NULL, alphasort) : 0;
        for (int j = 0; j < m; j++) {
            if (inner[j]->d_name[0] != '.') {
                char sub2[4096 + 256];
                snprintf(sub2, sizeof(sub2), "%s/%s", sub, inner[j]->d_name);
                bool d2 = lstat(sub2, &st) == 0 && S_ISDIR(st.st_mode);
                if (shown++ < TOOL_EDITOR_DIR_MAX_ENTRIES)
                    strbuf_printf(&sb, "%s%s\n", sub2, d2 ? "/" : "");
                else
                    skipped++;
            }
            free(inner[j]);
        }
        free(inner);
        free(top[i]);
    }
    free(top);
    if (skipped)
        strbuf_printf(&sb, "[... %zu more entries not shown]\n", skipped);
    char *s = strbuf_steal(&sb);
    return s ? s : fail(is_error, "Error: out of memory");
}

static char *view_file(const char *path, const struct tool_editor_args *a, bool *is_error)
{
    cleanup_free char *text = NULL;
    size_t len;
    char *msg = NULL;
    if (load(path, &text, &len, &msg, is_error) != LOAD_OK)
        return msg;
    size_t nlines = count_lines(text, len);
    size_t first = 1, last = nlines;
    if (a->has_view_range) {
        long long s = a->view_range[0], e = a->view_range[1];
        if (s < 1 || (size_t)s > (nlines ? nlines : 1))
            return fail(is_error,
                        "Invalid `view_range` parameter: [%lld, %lld]. Its first element `%lld` "
                        "should be within the range of lines of the file: [1, %zu].",
                        s, e, s, nlines);
        if (e != -1 && (size_t)e > nlines)
            return fail(is_error,
                        "Invalid `view_range` parameter: [%lld, %lld]. Its second element `%lld` "
                        "should be smaller than the number of lines in the file: `%zu`.",
                        s, e, e, nlines);
        if (e != -1 && e < s)
            return fail(is_error,
                        "Invalid `view_range` parameter: [%lld, %lld]. Its second element `%lld` "
                        "should be larger or equal than its first `%lld`.",
                        s, e, e, s);
        first = (size_t)s;
        last = e == -1 ? nlines : (size_t)e;
    }
    struct strbuf sb = STRBUF_INIT(EDITOR_TEXT_MAX);
    strbuf_printf(&sb, "Here's the result of running `cat -n` on %s:\n", path);
    cat_n(&sb, text, len, first, last);
    if (!sb.oom && sb.len > TOOL_EDITOR_VIEW_MAX_CHARS) {
        /* Cut at a line end so no line number is left dangling. */
        size_t cut = TOOL_EDITOR_VIEW_MAX_CHARS;
        while (cut > 0 && sb.s[cut - 1] != '\n')
            cut--;
        sb.len = cut;
        sb.s[cut] = '\0';
        strbuf_adds(&sb, "<response clipped><NOTE>To save on context only part of this file has "
                         "been shown to you. You should retry this tool after you have searched "
                         "inside the file with `grep -n` in order to find the line numbers of "
                         "what you are looking for.</NOTE>\n");
    }
    char *s = strbuf_steal(&sb);
    return s ? s : fail(is_error, "Error: out of memory");
}

static char *create(const char *path, const struct tool_editor_args *a, bool *is_error)
{
    if (!a->file_text)
        return fail(is_error, "Parameter `file_text` is required for command: create.");
    size_t len = strlen(a->file_text);
    if (len > TOOL_EDITOR_MAX_FILE_BYTES)
        return fail(is_error, "Error: file_text is %zu bytes; the editor writes at most %u bytes.",
                    len, TOOL_EDITOR_MAX_FILE_BYTES);
    /* O_EXCL: refusing to overwrite must not race with the file appearing. */
    cleanup_fd int fd =
        open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY, 0644);
    if (fd < 0 && errno == EEXIST)
        return fail(is_error,
                    "File already exists at: %s. Cannot overwrite files using command "
                    "`create`.",
                    path);
    if (fd < 0 && errno == ENOENT)
        return fail(is_error,
                    "Error: the parent directory of %s does not exist. Create it first (for "
                    "example with `mkdir -p` through execute_bash).",
                    path);
    if (fd < 0)
        return fail(is_error, "Error: cannot create %s: %s", path, strerror(errno));
    if (write_all(fd, a->file_text, len) != 0 || close(steal_fd(&fd)) != 0)
        return fail(is_error, "Error: cannot write %s: %s", path, strerror(errno));
    char *s = NULL;
    if (asprintf(&s, "File created successfully at: %s", path) < 0)
        return NULL;
    return s;
}

static char *snippet_result(const char *path, const char *text, size_t len, size_t from, size_t to,
                            const char *tail, bool *is_error)
{
    struct strbuf sb = STRBUF_INIT(EDITOR_TEXT_MAX);
    strbuf_printf(&sb,
                  "The file %s has been edited. Here's the result of running `cat -n` on a "
                  "snippet of %s:\n",
                  path, path);
    cat_n(&sb, text, len, from, to);
    strbuf_adds(&sb, tail);
    char *s = strbuf_steal(&sb);
    return s ? s : fail(is_error, "Error: out of memory");
}

static char *str_replace(struct tool_editor *ed, const char *path, const struct tool_editor_args *a,
                         bool *is_error)
{
    if (!a->old_str)
        return fail(is_error, "Parameter `old_str` is required for command: str_replace.");
    if (!*a->old_str)
        return fail(is_error, "Error: `old_str` is empty; it must be text that occurs exactly "
                              "once in the file. To add text use the `insert` command.");
    const char *new_str = a->new_str ? a->new_str : "";
    if (strcmp(a->old_str, new_str) == 0)
        return fail(is_error, "No replacement was performed. `new_str` and `old_str` must be "
                              "different.");
    cleanup_free char *text = NULL;
    size_t len;
    char *msg = NULL;
    if (load(path, &text, &len, &msg, is_error) != LOAD_OK)
        return msg;
    size_t olen = strlen(a->old_str), nlen = strlen(new_str);
    const char *hit = memmem(text, len, a->old_str, olen);
    cleanup_free char *echo = clip_echo(a->old_str);
    if (!hit)
        return fail(is_error,
                    "No replacement was performed, old_str `%s` did not appear verbatim in %s.",
                    echo ? echo : "", path);
    /* Overlapping occurrences count too: the match must be unambiguous. */
    struct strbuf lines = STRBUF_INIT(EDITOR_TEXT_MAX);
    size_t count = 0;
    for (const char *p = hit; p; p = memmem(p + 1, (size_t)(text + len - p - 1), a->old_str, olen))
        if (count++ < 20)
            strbuf_printf(&lines, "%s%zu", count > 1 ? ", " : "",
                          line_of_offset(text, (size_t)(p - text)));
    if (count > 1) {
        cleanup_free char *where = strbuf_steal(&lines);
        return fail(is_error,
                    "No replacement was performed. Multiple occurrences of old_str `%s` in lines "
                    "[%s%s]. Please ensure it is unique.",
                    echo ? echo : "", where ? where : "?", count > 20 ? ", ..." : "");
    }
    strbuf_release(&lines);
    if (len - olen + nlen > TOOL_EDITOR_MAX_FILE_BYTES)
        return fail(is_error, "Error: the edit would make %s larger than %u bytes.", path,
                    TOOL_EDITOR_MAX_FILE_BYTES);
    size_t at = (size_t)(hit - text), newlen = len - olen + nlen;
    cleanup_free char *out = malloc(newlen + 1);
    if (!out)
        return fail(is_error, "Error: out of memory");
    memcpy(out, text, at);
    memcpy(out + at, new_str, nlen);
    memcpy(out + at + nlen, text + at + olen, len - at - olen);
    out[newlen] = '\0';
    if (store_or_restore(path, out, newlen, text, len, &msg, is_error) != 0)
        return msg;
    remember(ed, path, text, len);
    size_t line = line_of_offset(text, at), added = 0;
    for (size_t i = 0; i < nlen; i++)
        added += new_str[i] == '\n';
    size_t from = line > TOOL_EDITOR_SNIPPET_LINES ? line - TOOL_EDITOR_SNIPPET_LINES : 1;
    return snippet_result(path, out, newlen, from, line + added + TOOL_EDITOR_SNIPPET_LINES,
                          "Review the changes and make sure they are as expected. Edit the file "
                          "again if necessary.",
                          is_error);
}

static char *insert(struct tool_editor *ed, const char *path, const struct tool_editor_args *a,
                    bool *is_error)
{
    if (!a->has_insert_line)
        return fail(is_error, "Parameter `insert_line` is required for command: insert.");
    if (!a->new_str)
        return fail(is_error, "Parameter `new_str` is required for command: insert.");
    cleanup_free char *text = NULL;
    size_t len;
    char *msg = NULL;
    if (load(path, &text, &len, &msg, is_error) != LOAD_OK)
        return msg;
    size_t nlines = count_lines(text, len);
    if (a->insert_line < 0 || (unsigned long long)a->insert_line > nlines)
        return fail(is_error,
                    "Invalid `insert_line` parameter: %lld. It should be within the range of "
                    "lines of the file: [0, %zu]",
                    a->insert_line, nlines);
    size_t il = (size_t)a->insert_line, nlen = strlen(a->new_str);
    bool need_nl_before = il == nlines && len && text[len - 1] != '\n';
    bool need_nl_after = !nlen || a->new_str[nlen - 1] != '\n';
    size_t at = offset_of_line(text, len, il + 1);
    size_t newlen = len + nlen + need_nl_before + need_nl_after;
    if (newlen > TOOL_EDITOR_MAX_FILE_BYTES)
        return fail(is_error, "Error: the edit would make %s larger than %u bytes.", path,
                    TOOL_EDITOR_MAX_FILE_BYTES);
    cleanup_free char *out = malloc(newlen + 1);
    if (!out)
        return fail(is_error, "Error: out of memory");
    size_t o = 0;
    memcpy(out, text, at);
    o = at;
    if (need_nl_before)
        out[o++] = '\n';
    memcpy(out + o, a->new_str, nlen);
    o += nlen;
    if (need_nl_after)
        out[o++] = '\n';
    memcpy(out + o, text + at, len - at);
    out[newlen] = '\0';
    if (store_or_restore(path, out, newlen, text, len, &msg, is_error) != 0)
        return msg;
    remember(ed, path, text, len);
    size_t added = count_lines(a->new_str, nlen);
    size_t from = il > TOOL_EDITOR_SNIPPET_LINES ? il - TOOL_EDITOR_SNIPPET_LINES + 1 : 1;
    return snippet_result(path, out, newlen, from, il + added + TOOL_EDITOR_SNIPPET_LINES,
                          "Review the changes and make sure they are as expected (correct "
                          "indentation, no duplicate lines, etc). Edit the file again if "
                          "necessary.",
                          is_error);
}

static char *undo(struct tool_editor *ed, const char *path, bool *is_error)
{
    size_t i = ed->n;
    while (i > 0 && strcmp(ed->edits[i - 1].path, path) != 0)
        i--;
    if (!i)
        return fail(is_error, "No edit history found for %s.", path);
    struct edit *e = &ed->edits[i - 1];
    char *msg = NULL;
    if (store(path, e->content, e->len, &msg, is_error) != 0)
        return msg;
    struct strbuf sb = STRBUF_INIT(EDITOR_TEXT_MAX);
    strbuf_printf(&sb,
                  "Last edit to %s undone successfully. Here's the result of running `cat -n` on "
                  "%s:\n",
                  path, path);
    cat_n(&sb, e->content, e->len, 1, SIZE_MAX);
    drop_edit(ed, i - 1);
    char *s = strbuf_steal(&sb);
    return s ? s : fail(is_error, "Error: out of memory");
}

char *tool_editor_run(struct tool_editor *ed, const struct tool_editor_args *a, bool *is_error)
{
    *is_error = false;
    static const char *const commands[] = {"view", "create", "str_replace", "insert", "undo_edit"};
    const char *cmd = a->command;
    bool known = false;
    for (size_t i = 0; cmd && i < ARRAY_SIZE(commands); i++)
        known |= strcmp(cmd, commands[i]) == 0;
    if (!known)
        return fail(is_error,
                    "Unrecognized command %s. The allowed commands for the str_replace_editor "
                    "tool are: view, create, str_replace, insert, undo_edit.",
                    cmd ? cmd : "(none)");
    const char *path = a->path;
    if (!path || !*path)
        return fail(is_error, "Parameter `path` is required for command: %s.", cmd);
    if (path[0] != '/')
        return fail(is_error,
                    "The path %s is not an absolute path, it should start with `/`. Maybe you "
                    "meant /workspace/%s?",
                    path, path);
    if (strlen(path) >= 4096)
        return fail(is_error, "Error: the path is too long.");
    struct stat st;
    bool exists = stat(path, &st) == 0;
    if (strcmp(cmd, "create") == 0)
        return exists ? fail(is_error,
                             "File already exists at: %s. Cannot overwrite files using command "
                             "`create`.",
                             path)
                      : create(path, a, is_error);
    if (!exists)
        return fail(is_error, "The path %s does not exist. Please provide a valid path.", path);
    if (S_ISDIR(st.st_mode)) {
        if (strcmp(cmd, "view") != 0)
            return fail(is_error,
                        "The path %s is a directory and only the `view` command can be used on "
                        "directories.",
                        path);
        if (a->has_view_range)
            return fail(is_error, "The `view_range` parameter is not allowed when `path` points "
                                  "to a directory.");
        return view_dir(path, is_error);
    }
    if (strcmp(cmd, "view") == 0)
        return view_file(path, a, is_error);
    if (strcmp(cmd, "str_replace") == 0)
        return str_replace(ed, path, a, is_error);
    if (strcmp(cmd, "insert") == 0)
        return insert(ed, path, a, is_error);
    return undo(ed, path, is_error);
}
