/* agent: the agent loop, pid 1 of an agent cell (`agentbox __agent`, exec'd by the cell with
 * its channel on fd 3). It never sees the API key and has no network: each LLM call is a
 * request over the channel that the supervisor performs. It runs the tools, detects when
 * it is stuck, condenses its history, reaps orphans (it is the pid namespace's init), and
 * at the end sends the files manifest, the diff and the requested outputs, then exits,
 * which takes every other process of the cell with it. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "agent_prompt.h"
#include "cell.h"
#include "channel.h"
#include "commands.h"
#include "fncall_text.h"
#include "history.h"
#include "json.h"
#include "procfs.h"
#include "stuck.h"
#include "task.h"
#include "tools.h"
#include "util.h"
#include "git_patch.h"
#include "workspace_diff.h"

#define AGENT_TASK_WAIT_MS     30000
#define AGENT_EVENT_TEXT_CHARS 2000 /* tool arguments / observations copied into events */
#define AGENT_CONTEXT_FRACTION 0.75 /* condense when a request would pass this share */
#define AGENT_KEEP_TURNS       4
/* below RESULT_DIFF_MAX_BYTES (what a result carries), so that the note saying where the
 * diff was cut fits in too */
#define AGENT_RESULT_DIFF_BYTES  ((2u << 20) - 4096)
#define AGENT_OUTPUT_FILE_BYTES  (32u << 20)
#define AGENT_OUTPUT_TOTAL_BYTES (128u << 20)
#define AGENT_MANIFEST_FILES     10000
#define AGENT_OUTPUT_FILES       1000
#define AGENT_DIFF_TIMEOUT_S     20.0
#define AGENT_MANIFEST_BYTES     (1ull << 30)
#define AGENT_SEED_SNAPSHOT      "/tmp/.agentbox-seed"

static const char system_prompt[] =
    "You are a capable software engineer working alone in a Linux sandbox. The task's files "
    "are in /workspace, which is your working directory. Use the tools to inspect, edit, "
    "build and test. Run commands non-interactively (no editors or pagers that wait for "
    "input); redirect the output of long-running background processes to a file. There is "
    "no network access. Work step by step, verify your changes, and when the task is "
    "complete call `finish` with a short summary of what you did.";

static const char nudge_text[] =
    "Please continue working on the task with whatever approach you think is suitable, "
    "using the tools. If you think you have solved the task, call `finish` with a summary.";

static volatile sig_atomic_t cancel_flag;

struct agent {
    int chan;
    struct channel_reader rd;
    unsigned chan_seen; /* channel types received (channel_dispatch) */
    cJSON *task;
    const char *id;
    unsigned max_iterations;
    double deadline;
    bool native_tools;
    unsigned long context_tokens;
    struct history *hist;
    struct tools *tools;
    struct stuck stuck;
    unsigned iterations;
    unsigned llm_id;
    size_t sent;       /* messages the supervisor holds from earlier requests */
    char *text_suffix; /* tool descriptions for the system prompt, in text tool-calling mode */
    /* finished, max_iterations, stuck, no_tool_calls, budget, llm_error, cancelled,
     * timeout or error */
    const char *end;
    char *output; /* the final message */
    char error[512];
};

static void on_signal(int sig)
{
    (void)sig;
    cancel_flag = 1;
}

static void send_event(struct agent *a, const char *type, cJSON *fields)
{
    cJSON *h = fields ? fields : cJSON_CreateObject();
    cJSON_AddStringToObject(h, "type", type);
    (void)channel_send_kind(a->chan, CH_EVENT, h, NULL, 0);
}

static char *clip(const char *s, size_t max)
{
    size_t n = strlen(s);
    if (n <= max)
        return strdup(s);
    char *out = malloc(max + 48);
    if (!out)
        return NULL;
    /* cut at a UTF-8 boundary so the event stays valid JSON text */
    while (max > 0 && ((unsigned char)s[max] & 0xC0) == 0x80)
        max--;
    memcpy(out, s, max);
    snprintf(out + max, 48, "... [%zu more bytes]", n - max);
    return out;
}

/* pid 1 of a pid namespace inherits every orphan; reap those that are not the bash session
 * (tool_bash waits for its own shell). */
static void reap_orphans(struct agent *a)
{
    struct tool_bash *tb = a->tools ? tools_bash(a->tools) : NULL;
    pid_t keep = tb ? tool_bash_pid(tb) : -1;
    DIR *d = opendir("/proc");
    if (!d)
        return;
    struct dirent *e;
    pid_t self = getpid();
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (*end || pid <= 0 || pid == keep || pid == self)
            continue;
        struct procfs_stat st;
        if (procfs_stat((pid_t)pid, &st) == 0 && st.ppid == self && st.state == 'Z')
            (void)waitpid((pid_t)pid, NULL, WNOHANG);
    }
    (void)closedir(d);
}

/* What the agent accepts from its supervisor after the task (received first, once). */
struct recv_ctx {
    double want;    /* the id of the llm request waiting for its reply, 0: none */
    cJSON *outcome; /* that reply's outcome, once it came */
};

static void on_cancel(void *ctx, struct channel_msg *m)
{
    (void)ctx;
    (void)m;
    cancel_flag = 1;
}

static void on_llm_reply(void *ctx, struct channel_msg *m)
{
    struct recv_ctx *rc = ctx;
    const cJSON *rid = cJSON_GetObjectItemCaseSensitive(m->header, "id");
    if (rc->want && cJSON_IsNumber(rid) && rid->valuedouble == rc->want)
        rc->outcome = cJSON_DetachItemFromObjectCaseSensitive(m->header, "outcome");
}

static const struct channel_rule supervisor_rules[] = {
    {CH_LLM_REPLY, CH_TO_CELL, false, on_llm_reply},
    {CH_CANCEL, CH_TO_CELL, false, on_cancel},
};

/* One message from the supervisor through the table (and freed). -1 on a protocol violation:
 * the agent says so on stderr and stops. */
static int dispatch(struct agent *a, struct channel_msg *m, struct recv_ctx *rc)
{
    char why[100];
    int r = channel_dispatch(supervisor_rules, ARRAY_SIZE(supervisor_rules), &a->chan_seen, rc, m,
                             why, sizeof(why));
    channel_msg_clear(m);
    if (r < 0) {
        fprintf(stderr, "agentbox __agent: %s from the supervisor\n", why);
        cancel_flag = 1;
    }
    return r;
}

/* Checks the channel without blocking for a cancel from the supervisor. */
static void poll_cancel(struct agent *a)
{
    struct pollfd p = {.fd = a->chan, .events = POLLIN};
    while (!cancel_flag && poll(&p, 1, 0) > 0) {
        struct channel_msg m;
        int rc = channel_recv(&a->rd, a->chan, &m, 100);
        if (rc < 0) {
            cancel_flag = 1; /* the supervisor is gone: nothing to work for */
            return;
        }
        if (rc == 0)
            return;
        struct recv_ctx none = {0};
        if (dispatch(a, &m, &none) < 0)
            return;
    }
}

static int write_seed_files(const cJSON *files, const char *root, char *err, size_t errsz)
{
    const cJSON *f;
    cJSON_ArrayForEach(f, files)
    {
        if (!cJSON_IsString(f) || !task_path_is_safe(f->string))
            return errf(err, errsz, "bad seed file entry");
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", root, f->string);
        for (char *p = path + strlen(root) + 1; (p = strchr(p, '/')) != NULL; p++) {
            *p = '\0';
            if (mkdir(path, 0755) < 0 && errno != EEXIST)
                return errf(err, errsz, "mkdir %s: %s", path, strerror(errno));
            *p = '/';
        }
        cleanup_fd int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0644);
        if (fd < 0 || write_all(fd, f->valuestring, strlen(f->valuestring)) < 0)
            return errf(err, errsz, "write %s: %s", path, strerror(errno));
    }
    return 0;
}

/* The seed the diff compares against: /run/agentbox/seed as the cell exposed it, or, when the
 * task also brought inline files, a snapshot of both taken before the agent starts. */
static const char *prepare_seed(struct agent *a, char *err, size_t errsz)
{
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(a->task, "files");
    const cJSON *seeded = cJSON_GetObjectItemCaseSensitive(a->task, "seeded");
    bool has_dir = cJSON_IsTrue(seeded);
    if (cJSON_GetArraySize(files) == 0)
        return has_dir ? CELL_SEED_DIR : NULL;
    if (mkdir(AGENT_SEED_SNAPSHOT, 0700) < 0)
        return errf(err, errsz, "mkdir %s: %s", AGENT_SEED_SNAPSHOT, strerror(errno)),
               (const char *)NULL;
    if (has_dir) {
        pid_t pid = fork();
        if (pid == 0) {
            execl("/bin/cp", "cp", "-a", "--no-dereference", CELL_SEED_DIR "/.",
                  AGENT_SEED_SNAPSHOT, (char *)NULL);
            _exit(127);
        }
        int st = 0;
        if (pid < 0 || waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
            return errf(err, errsz, "could not snapshot the seed"), (const char *)NULL;
    }
    if (write_seed_files(files, AGENT_SEED_SNAPSHOT, err, errsz) < 0 ||
        write_seed_files(files, CELL_WORKSPACE, err, errsz) < 0)
        return NULL;
    return AGENT_SEED_SNAPSHOT;
}

/* ---- one LLM call through the supervisor ---- */

/* Sends only what the supervisor does not have yet: the messages after the first `keep` it
 * already holds (all of them after a condensation rewrote old ones). */
static cJSON *ask_llm(struct agent *a)
{
    size_t n = history_count(a->hist);
    size_t keep = a->sent <= n ? a->sent : 0;
    size_t total = 2;
    for (size_t i = keep; i < n; i++) {
        size_t len = 0;
        (void)history_message_text(a->hist, i, &len);
        total += len + 1;
    }
    cleanup_free char *payload = malloc(total);
    if (!payload)
        return NULL;
    char *p = payload;
    *p++ = '[';
    for (size_t i = keep; i < n; i++) {
        size_t len = 0;
        const char *t = history_message_text(a->hist, i, &len);
        if (i > keep)
            *p++ = ',';
        memcpy(p, t, len);
        p += len;
    }
    *p++ = ']';
    cJSON *h = cJSON_CreateObject();
    double id = ++a->llm_id;
    cJSON_AddNumberToObject(h, "id", id);
    cJSON_AddBoolToObject(h, "native_tools", a->native_tools);
    cJSON_AddNumberToObject(h, "keep", (double)keep);
    if (channel_send_kind(a->chan, CH_LLM, h, payload, (size_t)(p - payload)) < 0)
        return NULL;
    a->sent = n;
    for (;;) {
        struct channel_msg m;
        int rc = channel_recv(&a->rd, a->chan, &m, 1000);
        if (rc < 0)
            return NULL;
        if (rc == 0) {
            reap_orphans(a);
            continue;
        }
        /* a cancel sets the flag: the supervisor still answers the pending call */
        struct recv_ctx rcv = {.want = id};
        if (dispatch(a, &m, &rcv) < 0)
            return NULL;
        if (rcv.outcome)
            return rcv.outcome;
    }
}

/* ---- the steps ---- */

static void end_with(struct agent *a, const char *end, const char *output)
{
    a->end = end;
    free(a->output);
    a->output = strdup(output ? output : "");
}

/* call: the model's call as it came (its arguments text is what the tool validates);
 * call_id: the id the history gave it (unique in the conversation), which the result answers */
static void run_tool_call(struct agent *a, const cJSON *call, const char *call_id, bool *finished)
{
    const cJSON *fn = cJSON_GetObjectItemCaseSensitive(call, "function");
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(fn, "name");
    const cJSON *args = cJSON_GetObjectItemCaseSensitive(fn, "arguments");
    const char *n = cJSON_IsString(name) ? name->valuestring : "";
    const char *args_text = cJSON_IsString(args) ? args->valuestring : "";
    cleanup_free char *args_owned = NULL;
    if (cJSON_IsObject(args)) /* some providers send an object, not the documented string */
        args_text = args_owned = cJSON_PrintUnformatted(args);

    cJSON *ev = cJSON_CreateObject();
    cJSON_AddNumberToObject(ev, "iteration", a->iterations);
    cJSON_AddStringToObject(ev, "tool", n);
    cleanup_free char *args_clip = clip(args_text ? args_text : "", AGENT_EVENT_TEXT_CHARS);
    cJSON_AddStringToObject(ev, "arguments", args_clip ? args_clip : "");
    send_event(a, "tool_call", ev);

    double t0 = monotonic_s();
    struct tool_outcome out = {0};
    if (tools_dispatch(a->tools, n, args_text, &out) < 0) {
        end_with(a, "error", "out of memory");
        snprintf(a->error, sizeof(a->error), "out of memory running a tool");
        *finished = true;
        return;
    }
    double dur = monotonic_s() - t0;
    const char *obs = out.observation ? out.observation : "";
    ev = cJSON_CreateObject();
    cJSON_AddNumberToObject(ev, "iteration", a->iterations);
    cJSON_AddStringToObject(ev, "tool", out.tool ? out.tool : n);
    cJSON_AddNumberToObject(ev, "duration_s", dur);
    cJSON_AddBoolToObject(ev, "is_error", out.is_error);
    if (out.tool && strcmp(out.tool, "execute_bash") == 0) {
        cJSON_AddNumberToObject(ev, "exit_code", out.exit_code);
        cJSON_AddBoolToObject(ev, "timed_out", out.timed_out);
    }
    cleanup_free char *obs_clip = clip(obs, AGENT_EVENT_TEXT_CHARS);
    cJSON_AddStringToObject(ev, "observation", obs_clip ? obs_clip : "");
    send_event(a, "tool_result", ev);

    (void)history_add_tool_result(a->hist, call_id, out.tool ? out.tool : n, obs);
    cleanup_free char *sig = tools_signature(n, args_text);
    stuck_feed(&a->stuck, sig ? sig : n, obs, out.is_error, true);
    if (out.is_finish) {
        end_with(a, "finished", out.finish_message);
        *finished = true;
    }
    tool_outcome_free(&out);
}

static void condense_if_needed(struct agent *a)
{
    size_t budget = (size_t)((double)a->context_tokens * AGENT_CONTEXT_FRACTION);
    if (history_tokens(a->hist) <= budget)
        return;
    struct history_condense_stats st = {0};
    int rc = history_condense(a->hist, budget, AGENT_KEEP_TURNS, &st);
    if (rc < 0)
        return;
    a->sent = 0; /* old messages changed: send the whole history again */
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddNumberToObject(ev, "tokens_before", (double)st.tokens_before);
    cJSON_AddNumberToObject(ev, "tokens_after", (double)st.tokens_after);
    cJSON_AddNumberToObject(ev, "observations_condensed", (double)st.observations_condensed);
    cJSON_AddNumberToObject(ev, "messages_dropped", (double)st.messages_dropped);
    cJSON_AddBoolToObject(ev, "fits", rc == 0);
    send_event(a, "condensed", ev);
}

/* Forces a condensation after the API said the prompt is too long. */
static bool condense_harder(struct agent *a)
{
    size_t now = history_tokens(a->hist);
    struct history_condense_stats st = {0};
    int rc = history_condense(a->hist, now / 2, 1, &st);
    a->sent = 0;
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddNumberToObject(ev, "tokens_before", (double)st.tokens_before);
    cJSON_AddNumberToObject(ev, "tokens_after", (double)st.tokens_after);
    cJSON_AddStringToObject(ev, "reason", "context_length_exceeded");
    send_event(a, "condensed", ev);
    return rc == 0 && st.tokens_after < st.tokens_before;
}

/* Turns a text reply into a tool call for models without native tool calling
 * (<function=NAME><parameter=P>V</parameter></function>). */
static cJSON *text_tool_calls(struct agent *a, const char *content)
{
    if (!content)
        return NULL;
    cleanup_json cJSON *schema = tools_schema();
    struct fncall_text_call fc = {0};
    char err[256];
    if (!schema || fncall_text_parse(content, schema, &fc, err, sizeof(err)) != 1 || !fc.name) {
        fncall_text_call_free(&fc);
        return NULL;
    }
    cJSON *calls = cJSON_CreateArray();
    cJSON *c = cJSON_CreateObject();
    char idbuf[32];
    snprintf(idbuf, sizeof(idbuf), "text_call_%u", a->iterations + 1);
    cJSON_AddStringToObject(c, "id", idbuf);
    cJSON_AddStringToObject(c, "type", "function");
    cJSON *fn = cJSON_AddObjectToObject(c, "function");
    cJSON_AddStringToObject(fn, "name", fc.name);
    cJSON_AddStringToObject(fn, "arguments", fc.arguments ? fc.arguments : "{}");
    cJSON_AddItemToArray(calls, c);
    fncall_text_call_free(&fc);
    return calls;
}

/* Switches to tool calls written in the text : for a model the catalog
 * says has no native tool calling, or after "no endpoints that support tool use". */
static int enable_text_mode(struct agent *a)
{
    if (a->text_suffix)
        return 0;
    cleanup_json cJSON *schema = tools_schema();
    a->text_suffix = schema ? fncall_text_system_suffix(schema) : NULL;
    if (!a->text_suffix ||
        history_set_transform(a->hist, fncall_text_convert_message, a->text_suffix) < 0)
        return -1;
    a->native_tools = false;
    a->sent = 0; /* every message is re-rendered: send them all again */
    cJSON *ev = cJSON_CreateObject();
    cJSON_AddStringToObject(ev, "mode", "text");
    send_event(a, "tool_mode", ev);
    return 0;
}

static bool lacks_tool_endpoints(const cJSON *outcome)
{
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(outcome, "error");
    const cJSON *m = cJSON_GetObjectItemCaseSensitive(e, "message");
    return cJSON_IsString(m) && strcasestr(m->valuestring, "support tool use") != NULL;
}

/* Runs one reply's calls in order; the results answer the ids the history stored for them
 * (the i-th stored call is the i-th call of the reply). Returns true when the task ends. */
static bool run_calls(struct agent *a, const cJSON *calls, bool history_ok)
{
    const cJSON *last = history_ok ? history_message(a->hist, history_count(a->hist) - 1) : NULL;
    cleanup_json cJSON *stored =
        cJSON_Duplicate(cJSON_GetObjectItemCaseSensitive(last, "tool_calls"), true);
    if (cJSON_GetArraySize(stored) != cJSON_GetArraySize(calls)) {
        snprintf(a->error, sizeof(a->error), "out of memory recording the model's tool calls");
        end_with(a, "error", "");
        return true;
    }
    bool finished = false;
    const cJSON *call, *mine = stored ? stored->child : NULL;
    cJSON_ArrayForEach(call, calls)
    {
        if (finished || cancel_flag)
            break;
        const cJSON *id = cJSON_GetObjectItemCaseSensitive(mine, "id");
        run_tool_call(a, call, cJSON_IsString(id) ? id->valuestring : "", &finished);
        mine = mine->next;
    }
    return finished;
}

static void loop(struct agent *a)
{
    unsigned context_retries = 0;
    while (!a->end) {
        reap_orphans(a);
        poll_cancel(a);
        if (cancel_flag) {
            end_with(a, "cancelled", "");
            return;
        }
        if (monotonic_s() >= a->deadline) {
            end_with(a, "timeout", "");
            return;
        }
        condense_if_needed(a);
        cJSON *outcome = ask_llm(a);
        if (!outcome) {
            end_with(a, "error", "");
            snprintf(a->error, sizeof(a->error), "lost the channel to the supervisor");
            return;
        }
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(outcome, "status");
        const char *status = cJSON_IsString(st) ? st->valuestring : "failed";
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(outcome, "message");
        if (strcmp(status, "condense") == 0 && context_retries++ < 3 && condense_harder(a)) {
            cJSON_Delete(outcome);
            continue;
        }
        if (strcmp(status, "budget") == 0) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(outcome, "error");
            const cJSON *em = cJSON_GetObjectItemCaseSensitive(e, "message");
            snprintf(a->error, sizeof(a->error), "%s",
                     cJSON_IsString(em) ? em->valuestring : "budget spent");
            end_with(a, "budget", "");
            cJSON_Delete(outcome);
            return;
        }
        if (strcmp(status, "mock") == 0) {
            const cJSON *c = cJSON_GetObjectItemCaseSensitive(msg, "content");
            end_with(a, "finished", cJSON_IsString(c) ? c->valuestring : "");
            cJSON_Delete(outcome);
            return;
        }
        if (strcmp(status, "failed") == 0 && a->native_tools && lacks_tool_endpoints(outcome) &&
            enable_text_mode(a) == 0) {
            cJSON_Delete(outcome);
            continue;
        }
        if (strcmp(status, "ok") != 0 || !cJSON_IsObject(msg)) {
            end_with(a, "llm_error", "");
            cJSON_Delete(outcome);
            return;
        }
        context_retries = 0;
        const cJSON *content = cJSON_GetObjectItemCaseSensitive(msg, "content");
        const char *text = cJSON_IsString(content) ? content->valuestring : NULL;
        const cJSON *calls = cJSON_GetObjectItemCaseSensitive(msg, "tool_calls");
        cJSON *parsed = NULL;
        if (!cJSON_IsArray(calls) || cJSON_GetArraySize(calls) == 0) {
            parsed = text_tool_calls(a, text);
            calls = parsed;
        }
        bool history_ok =
            history_add_assistant(a->hist, text, cJSON_IsArray(calls) ? calls : NULL) == 0;
        if (!cJSON_IsArray(calls) || cJSON_GetArraySize(calls) == 0) {
            cJSON *ev = cJSON_CreateObject();
            cleanup_free char *c = clip(text ? text : "", AGENT_EVENT_TEXT_CHARS);
            cJSON_AddStringToObject(ev, "content", c ? c : "");
            send_event(a, "agent_message", ev);
            stuck_feed(&a->stuck, NULL, text, false, false);
            if (stuck_check(&a->stuck) == STUCK_MONOLOGUE) {
                cJSON *sev = cJSON_CreateObject();
                cJSON_AddStringToObject(sev, "kind", "monologue");
                send_event(a, "stuck", sev);
                snprintf(a->error, sizeof(a->error), "%d replies in a row without a tool call",
                         STUCK_MONOLOGUE_STEPS);
                end_with(a, "no_tool_calls", text);
            } else {
                (void)history_add_user(a->hist, nudge_text);
                send_event(a, "nudge", NULL);
            }
            cJSON_Delete(parsed);
            cJSON_Delete(outcome);
            continue;
        }
        a->iterations++;
        bool finished = run_calls(a, calls, history_ok);
        cJSON_Delete(parsed);
        cJSON_Delete(outcome);
        if (finished)
            return;
        enum stuck_kind k = stuck_check(&a->stuck);
        if (k == STUCK_ERROR_LOOP && stuck_error_nudge_once(&a->stuck)) {
            (void)history_add_user(a->hist,
                                   "The same action has failed three times in a row. Try a "
                                   "different approach.");
            send_event(a, "nudge", NULL);
        } else if (k != STUCK_NONE) {
            cJSON *sev = cJSON_CreateObject();
            cJSON_AddStringToObject(sev, "kind", stuck_kind_name(k));
            send_event(a, "stuck", sev);
            snprintf(a->error, sizeof(a->error), "stuck: %s", stuck_kind_name(k));
            end_with(a, "stuck", "");
            return;
        }
        if (a->iterations >= a->max_iterations) {
            snprintf(a->error, sizeof(a->error), "reached max_iterations (%u)", a->max_iterations);
            end_with(a, "max_iterations", "");
            return;
        }
    }
}

/* ---- results ---- */

static void send_outputs(struct agent *a)
{
    const cJSON *pats = cJSON_GetObjectItemCaseSensitive(a->task, "outputs");
    if (cJSON_GetArraySize(pats) == 0)
        return;
    const char *globs[TASK_OUTPUTS_MAX + 1] = {0};
    size_t n = 0;
    const cJSON *p;
    cJSON_ArrayForEach(p, pats)
    {
        if (cJSON_IsString(p) && n < TASK_OUTPUTS_MAX)
            globs[n++] = p->valuestring;
    }
    struct wsdiff_outputs outs = {0};
    char err[ERR_MSG_MAX];
    if (wsdiff_outputs(CELL_WORKSPACE, globs, n, AGENT_OUTPUT_FILES, AGENT_OUTPUT_TOTAL_BYTES,
                       &outs, err, sizeof(err)) < 0)
        return;
    for (size_t i = 0; i < outs.n; i++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/%s", CELL_WORKSPACE, outs.files[i].path);
        cleanup_free char *data = NULL;
        size_t len = 0;
        if (read_file(path, AGENT_OUTPUT_FILE_BYTES, &data, &len) < 0)
            continue;
        cJSON *h = cJSON_CreateObject();
        cJSON_AddStringToObject(h, "path", outs.files[i].path);
        (void)channel_send_kind(a->chan, CH_OUTPUT, h, data, len);
    }
    wsdiff_outputs_free(&outs);
}

static void send_result(struct agent *a, const char *seed)
{
    cJSON *h = cJSON_CreateObject();
    cJSON_AddStringToObject(h, "end", a->end ? a->end : "error");
    cJSON_AddStringToObject(h, "output", a->output ? a->output : "");
    cJSON_AddNumberToObject(h, "iterations", a->iterations);
    if (a->error[0])
        cJSON_AddStringToObject(h, "error", a->error);
    struct wsdiff_manifest man = {0};
    const cJSON *commit = cJSON_GetObjectItemCaseSensitive(a->task, "git_commit");
    struct wsdiff_limits lim = {.max_files = AGENT_MANIFEST_FILES,
                                .max_hash_bytes = AGENT_MANIFEST_BYTES,
                                .skip_git = cJSON_IsString(commit)};
    if (cJSON_IsString(commit))
        wsdiff_unified_skip_git();
    char err[ERR_MSG_MAX];
    /* a workspace whose walk found nothing changed, nothing skipped and no limit met has an
     * empty diff: no diff(1) is run for it (most tasks of a batch or a busy serve) */
    bool unchanged = false;
    if (wsdiff_manifest(seed, CELL_WORKSPACE, &lim, &man, err, sizeof(err)) == 0) {
        cJSON_AddItemToObject(h, "files", wsdiff_manifest_json(&man));
        if (man.truncated)
            cJSON_AddBoolToObject(h, "files_truncated", true);
        unchanged = man.n == 0 && !man.truncated && !man.symlinks_skipped && !man.specials_skipped;
        wsdiff_manifest_free(&man);
    }
    cleanup_free char *diff = NULL;
    bool truncated = false;
    if (unchanged)
        cJSON_AddStringToObject(h, "diff", "");
    else if (wsdiff_unified(seed, CELL_WORKSPACE, AGENT_RESULT_DIFF_BYTES, AGENT_DIFF_TIMEOUT_S,
                            NULL, &diff, &truncated, err, sizeof(err)) == 0 &&
             diff) {
        cJSON_AddStringToObject(h, "diff", diff);
        if (truncated)
            cJSON_AddBoolToObject(h, "diff_truncated", true);
    }
    send_outputs(a);
    if (cJSON_IsString(commit))
        (void)git_patch_send(a->chan, commit->valuestring);
    (void)channel_send_kind(a->chan, CH_RESULT, h, NULL, 0);
}

int cmd_internal_agent(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    /* exec made us dumpable again: nothing else in the cell may ptrace or read our memory */
    if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) < 0)
        return 125;
    struct sigaction sa = {.sa_handler = on_signal};
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    signal(SIGPIPE, SIG_IGN);

    struct agent a = {.chan = CELL_CHANNEL_FD};
    channel_reader_init(&a.rd);
    struct channel_msg m;
    if (channel_recv(&a.rd, a.chan, &m, AGENT_TASK_WAIT_MS) != 1 || m.kind != CH_TASK) {
        fprintf(stderr, "agentbox __agent: no task arrived on fd %d\n", CELL_CHANNEL_FD);
        return 1;
    }
    a.task = cJSON_DetachItemFromObjectCaseSensitive(m.header, "task");
    channel_msg_clear(&m);
    const cJSON *t = a.task;
    const cJSON *v;
    a.id = (v = cJSON_GetObjectItemCaseSensitive(t, "id")) && cJSON_IsString(v) ? v->valuestring
                                                                                : "task";
    v = cJSON_GetObjectItemCaseSensitive(t, "max_iterations");
    a.max_iterations = cJSON_IsNumber(v) && v->valuedouble >= 1 ? (unsigned)v->valuedouble : 100;
    v = cJSON_GetObjectItemCaseSensitive(t, "timeout_s");
    a.deadline = monotonic_s() + (cJSON_IsNumber(v) ? v->valuedouble : 300.0);
    a.native_tools = !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(t, "native_tools"));
    v = cJSON_GetObjectItemCaseSensitive(t, "context_tokens");
    a.context_tokens =
        cJSON_IsNumber(v) && v->valuedouble >= 1024 ? (unsigned long)v->valuedouble : 32768;
    const cJSON *prompt = cJSON_GetObjectItemCaseSensitive(t, "prompt");

    char err[ERR_MSG_MAX] = "";
    const char *seed = prepare_seed(&a, err, sizeof(err));
    if (err[0]) {
        snprintf(a.error, sizeof(a.error), "seeding the workspace: %.400s", err);
        end_with(&a, "error", "");
    }
    a.hist = history_new();
    struct tool_bash_opts bo = {.cwd = CELL_WORKSPACE,
                                .tmp_dir = "/tmp",
                                .cancel = &cancel_flag,
                                .task_deadline_s = a.deadline};
    a.tools = tools_new(&bo);
    stuck_reset(&a.stuck);
    if (!a.hist || !a.tools || !cJSON_IsString(prompt)) {
        snprintf(a.error, sizeof(a.error), "could not start the agent");
        end_with(&a, "error", "");
    } else {
        char *sys = agent_prompt_with_network(system_prompt, a.task);
        (void)history_add_system(a.hist, sys ? sys : system_prompt);
        free(sys);
        (void)history_add_user(a.hist, prompt->valuestring);
        if (!a.native_tools && enable_text_mode(&a) < 0) {
            snprintf(a.error, sizeof(a.error), "could not describe the tools in the prompt");
            end_with(&a, "error", "");
        }
    }
    if (!a.end)
        loop(&a);
    tools_free(a.tools); /* ends the bash session and its background jobs */
    a.tools = NULL;
    reap_orphans(&a);
    send_result(&a, seed);
    history_free(a.hist);
    free(a.text_suffix);
    free(a.output);
    cJSON_Delete(a.task);
    channel_reader_free(&a.rd);
    return 0;
}
