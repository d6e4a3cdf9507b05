/* tools: the agent's tool registry. Owns the tools' JSON schemas (the request's `tools`
 * array), name aliases, argument validation and dispatch to tool_bash / tool_editor.
 * Never fails a task over a bad call: every malformed call becomes an error observation
 * that tells the model what to fix. Never logs or returns anything but observations. */
#ifndef AGENTBOX_TOOLS_H
#define AGENTBOX_TOOLS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "tool_bash.h"

#define TOOLS_MAX_ARGUMENTS_BYTES (12u << 20) /* a 10 MB file_text plus JSON escaping */

/* Accepted aliases (what models trained on other harnesses call the same tools):
 *   execute_bash       <- bash, terminal, execute_command, run_command, shell, run_shell,
 *                         cmd_run, execute_shell
 *   str_replace_editor <- str_replace, file_editor, edit_file, editor, text_editor,
 *                         str_replace_based_edit_tool
 *   think              <- thinking
 *   finish             <- done, submit, task_complete
 * Matching ignores ASCII case and treats '-' as '_'. */
const char *tools_canonical_name(const char *name);

/* The request's `tools` array (OpenAI function-calling format); caller owns it. NULL if out
 * of memory. */
cJSON *tools_schema(void);

struct tools;

struct tool_outcome {
    char *observation;    /* what goes back to the model (malloc'd, valid UTF-8) */
    char *finish_message; /* set when is_finish */
    const char *tool;     /* canonical name, or NULL for an unknown tool */
    bool is_error;        /* the call was malformed or the tool refused it */
    bool is_finish;
    int exit_code;  /* execute_bash only; -1 otherwise or on timeout */
    bool timed_out; /* execute_bash only */
};

/* The bash session is started on the first execute_bash call, with bash_opts (copied; its
 * strings must outlive t). bash_opts may be NULL. */
struct tools *tools_new(const struct tool_bash_opts *bash_opts);
void tools_free(struct tools *t);
/* Runs one call: name as the model sent it, arguments its JSON text (may be NULL or ""
 * for none). Fills out; returns -1 only when out of memory (out is then empty). */
int tools_dispatch(struct tools *t, const char *name, const char *arguments,
                   struct tool_outcome *out);
void tool_outcome_free(struct tool_outcome *o);
/* A stable signature of a call for stuck detection: canonical name + compact arguments
 * (whitespace differences do not count). malloc'd; NULL if out of memory. */
char *tools_signature(const char *name, const char *arguments);
/* The bash session, if started (for the loop's reaper: never reap this pid itself). */
struct tool_bash *tools_bash(struct tools *t);

#endif
