/* tool_editor: str_replace_editor with OpenHands' semantics (view, create, str_replace,
 * insert, undo_edit) and its messages, so models trained on OpenHands read them as they
 * expect. Owns the per-file undo history. Never crashes on bad input: every refusal is an
 * observation; never reads or keeps more than TOOL_EDITOR_MAX_FILE_BYTES of one file. */
#ifndef AGENTBOX_TOOL_EDITOR_H
#define AGENTBOX_TOOL_EDITOR_H

#include <stdbool.h>
#include <stddef.h>

#define TOOL_EDITOR_MAX_FILE_BYTES    (10u << 20)
#define TOOL_EDITOR_HISTORY_PER_FILE  10
#define TOOL_EDITOR_HISTORY_MAX_BYTES (64u << 20)
#define TOOL_EDITOR_VIEW_MAX_CHARS    16000 /* OpenHands' MAX_RESPONSE_LEN */
#define TOOL_EDITOR_SNIPPET_LINES     4
#define TOOL_EDITOR_DIR_MAX_ENTRIES   1000

/* One call's arguments, already type-checked by the tool registry (tools.c). Absent
 * strings are NULL. */
struct tool_editor_args {
    const char *command; /* view | create | str_replace | insert | undo_edit */
    const char *path;
    const char *file_text;
    const char *old_str;
    const char *new_str;
    bool has_insert_line;
    long long insert_line;
    bool has_view_range;
    long long view_range[2];
};

struct tool_editor;

struct tool_editor *tool_editor_new(void);
void tool_editor_free(struct tool_editor *ed);
/* Runs one command. Returns a malloc'd observation (NULL only when out of memory) and sets
 * *is_error when the command was refused or failed. */
char *tool_editor_run(struct tool_editor *ed, const struct tool_editor_args *a, bool *is_error);
/* Bytes the undo history holds now (for tests and metrics). */
size_t tool_editor_history_bytes(const struct tool_editor *ed);

#endif
