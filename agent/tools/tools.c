/* tools: schemas, aliases, argument checking and dispatch. Arguments come from the model
 * and are hostile: sizes are bounded, every field's type is checked, and the error text
 * names the field and shows a correct example. Lenient where models commonly slip and the
 * meaning is unambiguous (a number sent as a string, view_range sent as a JSON string). */
#include "tools.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "tool_editor.h"
#include "utf8.h"
#include "util.h"

struct tools {
    struct tool_bash_opts bash_opts;
    struct tool_bash *bash;
    struct tool_editor *editor;
};

/* ---------- names ---------- */

static const struct {
    const char *alias, *name;
} aliases[] = {
    {"execute_bash", "execute_bash"},
    {"bash", "execute_bash"},
    {"terminal", "execute_bash"},
    {"execute_command", "execute_bash"},
    {"run_command", "execute_bash"},
    {"shell", "execute_bash"},
    {"run_shell", "execute_bash"},
    {"cmd_run", "execute_bash"},
    {"execute_shell", "execute_bash"},
    {"str_replace_editor", "str_replace_editor"},
    {"str_replace", "str_replace_editor"},
    {"file_editor", "str_replace_editor"},
    {"edit_file", "str_replace_editor"},
    {"editor", "str_replace_editor"},
    {"text_editor", "str_replace_editor"},
    {"str_replace_based_edit_tool", "str_replace_editor"},
    {"think", "think"},
    {"thinking", "think"},
    {"finish", "finish"},
    {"done", "finish"},
    {"submit", "finish"},
    {"task_complete", "finish"},
};

const char *tools_canonical_name(const char *name)
{
    if (!name)
        return NULL;
    char norm[64];
    size_t n = strlen(name);
    if (n == 0 || n >= sizeof(norm))
        return NULL;
    for (size_t i = 0; i <= n; i++)
        norm[i] = name[i] == '-' ? '_' : (char)tolower((unsigned char)name[i]);
    for (size_t i = 0; i < ARRAY_SIZE(aliases); i++)
        if (strcmp(norm, aliases[i].alias) == 0)
            return aliases[i].name;
    return NULL;
}

/* ---------- schemas ---------- */

static const char BASH_DESC[] =
    "Execute a bash command in the terminal within a persistent shell session.\n\n"
    "### Command Execution\n"
    "* One command at a time: to run several commands in sequence, chain them with `&&` or "
    "`;`.\n"
    "* Persistent session: the working directory and exported environment variables persist "
    "between calls.\n"
    "* Timeout: a command that runs longer than `timeout` seconds (default 120) is killed; the "
    "shell stays usable. Pass a larger `timeout` for long builds or test runs.\n"
    "* No terminal: stdin is empty and there is no TTY; interactive programs will not wait "
    "for input. Pagers are disabled.\n\n"
    "### Long-running processes\n"
    "* Run servers and other commands that do not end in the background and redirect their "
    "output to a file, e.g. `python3 app.py > server.log 2>&1 &`.\n\n"
    "### Best Practices\n"
    "* Verify that a parent directory exists before creating files in it.\n"
    "* Prefer absolute paths to many `cd` calls. The workspace is /workspace.\n\n"
    "### Output Handling\n"
    "* Output longer than 30000 characters is truncated in the middle; redirect large output "
    "to a file and inspect it with grep, head or tail.";

static const char EDITOR_DESC[] =
    "Custom editing tool for viewing, creating and editing files in plain-text format\n"
    "* State is persistent across command calls and discussions with the user\n"
    "* If `path` is a text file, `view` displays the result of applying `cat -n`. If `path` "
    "is a directory, `view` lists non-hidden files and directories up to 2 levels deep\n"
    "* The `create` command cannot be used if the specified `path` already exists as a file\n"
    "* If a `command` generates a long output, it will be truncated and marked with "
    "`<response clipped>`\n"
    "* The `undo_edit` command will revert the last edit made to the file at `path`\n\n"
    "Before using this tool:\n"
    "1. Use the view tool to understand the file's contents and context\n"
    "2. When creating a file, verify that its parent directory exists\n\n"
    "CRITICAL REQUIREMENTS FOR USING THIS TOOL:\n"
    "1. EXACT MATCHING: The `old_str` parameter must match EXACTLY one or more consecutive "
    "lines from the file, including all whitespace and indentation.\n"
    "2. UNIQUENESS: The `old_str` must uniquely identify a single instance in the file: "
    "include enough context before and after the change point (3-5 lines recommended). If "
    "it matches several places, no replacement is made.\n"
    "3. REPLACEMENT: The `new_str` parameter should contain the edited lines that replace the "
    "`old_str`. Both strings must be different.\n\n"
    "Remember: when making several edits to the same file, send them in order, one call each.";

static const char THINK_DESC[] =
    "Use the tool to think about something. It will not obtain new information or make any "
    "changes to the repository, but just log the thought. Use it when complex reasoning or "
    "brainstorming is needed, for example to weigh several ways of fixing a bug or to plan "
    "the next steps after reading test output.";

static const char FINISH_DESC[] =
    "Signals the completion of the current task. Use this tool when you have successfully "
    "completed the requested task, or when you cannot proceed further. The message should "
    "include a clear summary of the actions taken and their results, and anything the user "
    "needs to know (files changed, tests run, what is left).";

static cJSON *prop(cJSON *props, const char *name, const char *type, const char *desc)
{
    cJSON *p = cJSON_AddObjectToObject(props, name);
    if (p) {
        cJSON_AddStringToObject(p, "type", type);
        cJSON_AddStringToObject(p, "description", desc);
    }
    return p;
}

static cJSON *function(cJSON *arr, const char *name, const char *desc, cJSON **props,
                       const char *const *required)
{
    cJSON *t = cJSON_CreateObject();
    cJSON_AddItemToArray(arr, t);
    cJSON_AddStringToObject(t, "type", "function");
    cJSON *f = cJSON_AddObjectToObject(t, "function");
    cJSON_AddStringToObject(f, "name", name);
    cJSON_AddStringToObject(f, "description", desc);
    cJSON *params = cJSON_AddObjectToObject(f, "parameters");
    cJSON_AddStringToObject(params, "type", "object");
    *props = cJSON_AddObjectToObject(params, "properties");
    cJSON *req = cJSON_AddArrayToObject(params, "required");
    for (size_t i = 0; required[i]; i++)
        cJSON_AddItemToArray(req, cJSON_CreateString(required[i]));
    return t;
}

cJSON *tools_schema(void)
{
    cJSON *arr = cJSON_CreateArray(), *props = NULL;
    if (!arr)
        return NULL;
    function(arr, "execute_bash", BASH_DESC, &props, (const char *const[]){"command", NULL});
    prop(props, "command", "string",
         "The bash command to execute. Chain several commands with `&&` or `;`.");
    prop(props, "timeout", "number",
         "Optional. Seconds after which the command is killed (default 120).");

    function(arr, "str_replace_editor", EDITOR_DESC, &props,
             (const char *const[]){"command", "path", NULL});
    cJSON *cmd = prop(props, "command", "string",
                      "The commands to run. Allowed options are: `view`, `create`, "
                      "`str_replace`, `insert`, `undo_edit`.");
    cJSON *e = cJSON_AddArrayToObject(cmd, "enum");
    const char *cmds[] = {"view", "create", "str_replace", "insert", "undo_edit"};
    for (size_t i = 0; i < ARRAY_SIZE(cmds); i++)
        cJSON_AddItemToArray(e, cJSON_CreateString(cmds[i]));
    prop(props, "path", "string",
         "Absolute path to file or directory, e.g. `/workspace/file.py` or `/workspace`.");
    prop(props, "file_text", "string",
         "Required parameter of `create` command, with the content of the file to be created.");
    prop(props, "old_str", "string",
         "Required parameter of `str_replace` command containing the string in `path` to "
         "replace.");
    prop(props, "new_str", "string",
         "Optional parameter of `str_replace` command containing the new string (if not "
         "given, no string will be added). Required parameter of `insert` command containing "
         "the string to insert.");
    prop(props, "insert_line", "integer",
         "Required parameter of `insert` command. The `new_str` will be inserted AFTER the line "
         "`insert_line` of `path` (0 inserts at the top).");
    cJSON *vr = prop(props, "view_range", "array",
                     "Optional parameter of `view` command when `path` points to a file. If "
                     "none is given, the full file is shown. If provided, the file will be "
                     "shown in the indicated line number range, e.g. [11, 12] will show lines "
                     "11 and 12. Indexing at 1 to start. Setting `[start_line, -1]` shows all "
                     "lines from `start_line` to the end of the file.");
    cJSON *items = cJSON_AddObjectToObject(vr, "items");
    cJSON_AddStringToObject(items, "type", "integer");

    function(arr, "think", THINK_DESC, &props, (const char *const[]){"thought", NULL});
    prop(props, "thought", "string", "The thought to log.");

    function(arr, "finish", FINISH_DESC, &props, (const char *const[]){"message", NULL});
    prop(props, "message", "string", "Final message to send to the user.");

    /* One check at the end: any failed allocation above left a hole somewhere. */
    char *printed = cJSON_PrintUnformatted(arr);
    bool ok = printed && strstr(printed, "\"view_range\"") && strstr(printed, "\"Final message");
    free(printed);
    if (!ok) {
        cJSON_Delete(arr);
        return NULL;
    }
    return arr;
}

/* ---------- dispatch ---------- */

struct tools *tools_new(const struct tool_bash_opts *bash_opts)
{
    struct tools *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    if (bash_opts)
        t->bash_opts = *bash_opts;
    if (!(t->editor = tool_editor_new())) {
        free(t);
        return NULL;
    }
    return t;
}

void tools_free(struct tools *t)
{
    if (!t)
        return;
    tool_bash_stop(t->bash);
    tool_editor_free(t->editor);
    free(t);
}

struct tool_bash *tools_bash(struct tools *t)
{
    return t->bash;
}

void tool_outcome_free(struct tool_outcome *o)
{
    if (!o)
        return;
    free(o->observation);
    free(o->finish_message);
    memset(o, 0, sizeof(*o));
}

static int refuse(struct tool_outcome *out, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static int refuse(struct tool_outcome *out, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    char *s = NULL;
    int n = vasprintf(&s, fmt, ap);
    va_end(ap);
    if (n < 0)
        return -1;
    out->observation = utf8_sanitize(s, (size_t)n, NULL);
    free(s);
    out->is_error = true;
    return out->observation ? 0 : -1;
}

/* A string parameter: absent -> *v = NULL. Non-strings are refused (a model that sends
 * {"command": ["ls"]} must learn, not have it guessed). */
static int str_arg(const cJSON *args, const char *tool, const char *name, bool required,
                   const char **v, struct tool_outcome *out, int *rc)
{
    const cJSON *it = cJSON_GetObjectItemCaseSensitive(args, name);
    *v = NULL;
    if (!it || cJSON_IsNull(it)) {
        if (required)
            *rc = refuse(out,
                         "Error: missing required parameter `%s` for tool `%s`. Call it again "
                         "with `%s` set.",
                         name, tool, name);
        return required ? -1 : 0;
    }
    if (!cJSON_IsString(it)) {
        *rc = refuse(out, "Error: parameter `%s` of tool `%s` must be a string.", name, tool);
        return -1;
    }
    *v = it->valuestring;
    return 0;
}

/* An integer parameter; accepts a JSON integer or a string holding one. */
static int int_value(const cJSON *it, long long *v)
{
    if (cJSON_IsNumber(it)) {
        double d = it->valuedouble;
        if (!isfinite(d) || d != floor(d) || fabs(d) > 1e15)
            return -1;
        *v = (long long)d;
        return 0;
    }
    if (cJSON_IsString(it)) {
        char *end;
        errno = 0;
        long long x = strtoll(it->valuestring, &end, 10);
        if (errno || end == it->valuestring || *end)
            return -1;
        *v = x;
        return 0;
    }
    return -1;
}

static int run_bash(struct tools *t, const cJSON *args, struct tool_outcome *out)
{
    const char *command;
    int rc = 0;
    if (str_arg(args, "execute_bash", "command", true, &command, out, &rc) != 0)
        return rc;
    if (!*command)
        return refuse(out, "Error: `command` is empty. Send the bash command to run, e.g. "
                           "{\"command\": \"ls -la /workspace\"}.");
    double timeout = 0;
    const cJSON *to = cJSON_GetObjectItemCaseSensitive(args, "timeout");
    if (to && !cJSON_IsNull(to)) {
        char *end = NULL;
        if (cJSON_IsNumber(to))
            timeout = to->valuedouble;
        else if (cJSON_IsString(to))
            timeout = strtod(to->valuestring, &end);
        if ((!cJSON_IsNumber(to) && !(end && end != to->valuestring && !*end)) ||
            !isfinite(timeout) || timeout <= 0)
            return refuse(out, "Error: parameter `timeout` of tool `execute_bash` must be a "
                               "positive number of seconds, e.g. 300.");
    }
    char err[ERR_MSG_MAX];
    if (!t->bash && tool_bash_start(&t->bash, &t->bash_opts, err, sizeof(err)) != 0)
        return refuse(out, "Error: the bash session could not be started: %s", err);
    struct tool_bash_result res;
    if (tool_bash_run(t->bash, command, timeout, &res, err, sizeof(err)) != 0)
        return refuse(out, "Error: %s", err);
    out->observation = tool_bash_observation(&res);
    out->exit_code = res.exit_code;
    out->timed_out = res.timed_out;
    tool_bash_result_free(&res);
    return out->observation ? 0 : -1;
}

static int run_editor(struct tools *t, const cJSON *args, struct tool_outcome *out)
{
    struct tool_editor_args a = {0};
    int rc = 0;
    const char *T = "str_replace_editor";
    if (str_arg(args, T, "command", true, &a.command, out, &rc) ||
        str_arg(args, T, "path", true, &a.path, out, &rc) ||
        str_arg(args, T, "file_text", false, &a.file_text, out, &rc) ||
        str_arg(args, T, "old_str", false, &a.old_str, out, &rc) ||
        str_arg(args, T, "new_str", false, &a.new_str, out, &rc))
        return rc;
    const cJSON *il = cJSON_GetObjectItemCaseSensitive(args, "insert_line");
    if (il && !cJSON_IsNull(il)) {
        if (int_value(il, &a.insert_line) != 0)
            return refuse(out, "Error: parameter `insert_line` of tool `str_replace_editor` "
                               "must be an integer line number, e.g. 10.");
        a.has_insert_line = true;
    }
    const cJSON *vr0 = cJSON_GetObjectItemCaseSensitive(args, "view_range"), *vr = vr0;
    cleanup_json cJSON *vr_parsed = NULL;
    if (cJSON_IsString(vr0)) /* some models send "[1, 20]" */
        vr = vr_parsed = cJSON_Parse(vr0->valuestring);
    if (vr0 && !cJSON_IsNull(vr0)) {
        if (!cJSON_IsArray(vr) || cJSON_GetArraySize(vr) != 2 ||
            int_value(cJSON_GetArrayItem(vr, 0), &a.view_range[0]) != 0 ||
            int_value(cJSON_GetArrayItem(vr, 1), &a.view_range[1]) != 0)
            return refuse(out, "Error: parameter `view_range` of tool `str_replace_editor` must "
                               "be an array of two integers, e.g. [1, 50] or [100, -1].");
        a.has_view_range = true;
    }
    bool is_error = false;
    char *obs = tool_editor_run(t->editor, &a, &is_error);
    if (!obs)
        return -1;
    out->observation = utf8_sanitize(obs, strlen(obs), NULL);
    free(obs);
    out->is_error = is_error;
    return out->observation ? 0 : -1;
}

int tools_dispatch(struct tools *t, const char *name, const char *arguments,
                   struct tool_outcome *out)
{
    memset(out, 0, sizeof(*out));
    out->exit_code = -1;
    const char *canon = tools_canonical_name(name);
    if (!canon) {
        char shown[80];
        snprintf(shown, sizeof(shown), "%s", name ? name : "");
        return refuse(out,
                      "Error: unknown tool `%s`. The available tools are: execute_bash, "
                      "str_replace_editor, think, finish.",
                      shown);
    }
    out->tool = canon;
    size_t alen = arguments ? strlen(arguments) : 0;
    if (alen > TOOLS_MAX_ARGUMENTS_BYTES)
        return refuse(out, "Error: the arguments of `%s` are %zu bytes; the limit is %u.", canon,
                      alen, TOOLS_MAX_ARGUMENTS_BYTES);
    const char *text = arguments;
    while (text && isspace((unsigned char)*text))
        text++;
    cleanup_json cJSON *args =
        text && *text ? cJSON_ParseWithLength(arguments, alen) : cJSON_CreateObject();
    if (!args)
        return refuse(out,
                      "Error: the arguments of tool `%s` are not valid JSON. Send one JSON "
                      "object, e.g. {\"command\": \"ls\"}.",
                      canon);
    if (!cJSON_IsObject(args))
        return refuse(out,
                      "Error: the arguments of tool `%s` must be a JSON object with named "
                      "parameters, not a %s.",
                      canon,
                      cJSON_IsArray(args)    ? "list"
                      : cJSON_IsString(args) ? "string"
                                             : "bare value");
    if (strcmp(canon, "execute_bash") == 0)
        return run_bash(t, args, out);
    if (strcmp(canon, "str_replace_editor") == 0)
        return run_editor(t, args, out);
    const char *v;
    int rc = 0;
    if (strcmp(canon, "think") == 0) {
        if (str_arg(args, "think", "thought", true, &v, out, &rc) != 0)
            return rc;
        out->observation = strdup("Your thought has been logged.");
        return out->observation ? 0 : -1;
    }
    if (str_arg(args, "finish", "message", true, &v, out, &rc) != 0)
        return rc;
    out->is_finish = true;
    out->finish_message = utf8_sanitize(v, strlen(v), NULL);
    out->observation = strdup("The task is finished.");
    return out->observation && out->finish_message ? 0 : -1;
}

char *tools_signature(const char *name, const char *arguments)
{
    const char *canon = tools_canonical_name(name);
    cleanup_json cJSON *args = arguments && *arguments ? cJSON_Parse(arguments) : NULL;
    cleanup_free char *compact = args ? cJSON_PrintUnformatted(args) : NULL;
    char *sig = NULL;
    if (asprintf(&sig, "%s %s", canon ? canon : (name ? name : "?"),
                 compact ? compact : (arguments ? arguments : "")) < 0)
        return NULL;
    return sig;
}
