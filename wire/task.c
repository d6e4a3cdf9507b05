/* task: see task.h. All user-facing validation of a task lives here, so that `run`,
 * `batch` and `submit` refuse the same inputs with the same messages. */
#include "task.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include "git_workspace.h"
#include "json.h"
#include "policy.h"
#include "task_egress.h"
#include "util.h"
#include "verify.h"

#define TASK_PATH_MAX 1024

bool task_id_is_valid(const char *id)
{
    size_t n = strlen(id);
    if (n == 0 || n > TASK_ID_MAX || id[0] == '.' || id[0] == '-')
        return false;
    for (const char *p = id; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return false;
    }
    return true;
}

bool task_path_is_safe(const char *rel)
{
    size_t n = strlen(rel);
    if (n == 0 || n > TASK_PATH_MAX || rel[0] == '/')
        return false;
    const char *p = rel;
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t len = slash ? (size_t)(slash - p) : strlen(p);
        if (len == 0 || (len == 1 && p[0] == '.') || (len == 2 && p[0] == '.' && p[1] == '.'))
            return false;
        if (!slash)
            break;
        p = slash + 1;
        if (!*p)
            return false; /* trailing slash: not a file */
    }
    return true;
}

void task_make_id(char *buf, size_t bufsz)
{
    uint64_t r = 0;
    if (getrandom(&r, sizeof(r), 0) != (ssize_t)sizeof(r))
        r = (uint64_t)getpid() ^ ((uint64_t)(monotonic_s() * 1e9));
    snprintf(buf, bufsz, "task-%016llx", (unsigned long long)r);
}

static int dup_string(const cJSON *obj, const char *name, char **out, size_t max, char *err,
                      size_t errsz)
{
    const char *s = NULL;
    int rc = json_get_string(obj, "task", name, &s, err, errsz);
    if (rc != 0)
        return rc;
    if (strlen(s) > max)
        return errf(err, errsz, "task.%s: longer than %zu bytes", name, max);
    *out = strdup(s);
    return *out ? 0 : errf(err, errsz, "out of memory");
}

static int parse_models(const cJSON *json, struct task *t, char *err, size_t errsz)
{
    const cJSON *fb = cJSON_GetObjectItemCaseSensitive(json, "fallback_models");
    if (!fb || cJSON_IsNull(fb))
        return 0;
    if (!cJSON_IsArray(fb))
        return errf(err, errsz, "task.fallback_models: expected an array of model names");
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, fb)
    {
        if (!cJSON_IsString(it) || !it->valuestring[0] || strlen(it->valuestring) > 200)
            return errf(err, errsz, "task.fallback_models[%d]: expected a model name", i);
        if (t->nfallback >= TASK_MODELS_MAX)
            return errf(err, errsz, "task.fallback_models: at most %d models", TASK_MODELS_MAX);
        if (!(t->fallback_models[t->nfallback++] = strdup(it->valuestring)))
            return errf(err, errsz, "out of memory");
        i++;
    }
    return 0;
}

static int parse_limits(const cJSON *json, struct task *t, char *err, size_t errsz)
{
    const cJSON *lim = cJSON_GetObjectItemCaseSensitive(json, "limits");
    if (!lim || cJSON_IsNull(lim))
        return 0;
    static const char *const keys[] = {"disk", "inodes", "memory", "pids", "cpu_s", NULL};
    if (json_check_keys(lim, "task.limits", keys, err, errsz) < 0)
        return -1;
    int rc;
    if ((rc = json_get_size(lim, "task.limits", "disk", &t->disk_bytes, err, errsz)) < 0)
        return -1;
    if (rc == 0)
        t->limits_set |= LIMIT_SET_DISK;
    if ((rc = json_get_uint(lim, "task.limits", "inodes", UINT32_MAX, &t->inodes, err, errsz)) < 0)
        return -1;
    if (rc == 0)
        t->limits_set |= LIMIT_SET_INODES;
    if ((rc = json_get_size(lim, "task.limits", "memory", &t->memory_bytes, err, errsz)) < 0)
        return -1;
    if (rc == 0)
        t->limits_set |= LIMIT_SET_MEMORY;
    if ((rc = json_get_uint(lim, "task.limits", "pids", 1u << 22, &t->pids, err, errsz)) < 0)
        return -1;
    if (rc == 0)
        t->limits_set |= LIMIT_SET_PIDS;
    if ((rc = json_get_number(lim, "task.limits", "cpu_s", 0, 366.0 * 86400, &t->cpu_s, err,
                              errsz)) < 0)
        return -1;
    if (rc == 0)
        t->limits_set |= LIMIT_SET_CPU;
    if ((t->limits_set & LIMIT_SET_DISK) && t->disk_bytes < POLICY_MIN_DISK_BYTES)
        return errf(err, errsz, "task.limits.disk: below the working minimum of 4K");
    if ((t->limits_set & LIMIT_SET_MEMORY) && t->memory_bytes < POLICY_MIN_MEMORY_BYTES)
        return errf(err, errsz, "task.limits.memory: below the working minimum of 8M");
    if ((t->limits_set & LIMIT_SET_PIDS) && t->pids < POLICY_MIN_PIDS)
        return errf(err, errsz, "task.limits.pids: below the working minimum of 2");
    return 0;
}

static int parse_workspace(const cJSON *json, struct task *t, char *err, size_t errsz)
{
    const cJSON *ws = cJSON_GetObjectItemCaseSensitive(json, "workspace");
    if (!ws || cJSON_IsNull(ws))
        return 0;
    static const char *const keys[] = {"from_dir", "files", "git", NULL};
    if (json_check_keys(ws, "task.workspace", keys, err, errsz) < 0)
        return -1;
    const cJSON *git = cJSON_GetObjectItemCaseSensitive(ws, "git");
    if (git && !cJSON_IsNull(git)) {
        if (cJSON_GetObjectItemCaseSensitive(ws, "from_dir"))
            return errf(err, errsz, "task.workspace: from_dir and git exclude each other");
        if (git_ws_spec_parse(git, "task.workspace.git", &t->git, err, errsz) < 0)
            return -1;
    }
    const char *dir = NULL;
    if (json_get_string(ws, "task.workspace", "from_dir", &dir, err, errsz) < 0)
        return -1;
    if (dir) {
        /* Only made absolute here: the name is resolved once, by seed_open, with the rights
         * of whoever asked (this process checking it would be a probe with its rights). */
        char abs[PATH_MAX];
        if (!*dir || seed_absolute_path(dir, abs, sizeof(abs)) < 0)
            return errf(err, errsz, "task.workspace.from_dir: %s: %s", dir,
                        *dir ? strerror(ENAMETOOLONG) : "empty");
        if (!(t->workspace_from = strdup(abs)))
            return errf(err, errsz, "out of memory");
    }
    const cJSON *files = cJSON_GetObjectItemCaseSensitive(ws, "files");
    if (files && !cJSON_IsNull(files)) {
        if (!cJSON_IsObject(files))
            return errf(err, errsz, "task.workspace.files: expected an object of path: content");
        size_t count = 0, bytes = 0;
        const cJSON *it;
        cJSON_ArrayForEach(it, files)
        {
            if (!task_path_is_safe(it->string))
                return errf(err, errsz,
                            "task.workspace.files[\"%.100s\"]: expected a relative path inside "
                            "the workspace (no '..', no leading '/')",
                            it->string);
            if (!cJSON_IsString(it))
                return errf(err, errsz, "task.workspace.files[\"%.100s\"]: expected a string",
                            it->string);
            bytes += strlen(it->valuestring);
            if (++count > TASK_FILES_MAX || bytes > TASK_FILES_MAX_BYTES)
                return errf(err, errsz, "task.workspace.files: more than %d files or %u bytes",
                            TASK_FILES_MAX, TASK_FILES_MAX_BYTES);
        }
        if (!(t->files = cJSON_Duplicate(files, 1)))
            return errf(err, errsz, "out of memory");
    }
    return 0;
}

static int parse_outputs(const cJSON *json, struct task *t, char *err, size_t errsz)
{
    const cJSON *outs = cJSON_GetObjectItemCaseSensitive(json, "outputs");
    if (!outs || cJSON_IsNull(outs))
        return 0;
    if (!cJSON_IsArray(outs))
        return errf(err, errsz, "task.outputs: expected an array of glob patterns");
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, outs)
    {
        if (!cJSON_IsString(it) || !it->valuestring[0] || it->valuestring[0] == '/' ||
            strstr(it->valuestring, "..") || strlen(it->valuestring) > 512)
            return errf(err, errsz,
                        "task.outputs[%d]: expected a relative glob inside the workspace", i);
        if (t->noutputs >= TASK_OUTPUTS_MAX)
            return errf(err, errsz, "task.outputs: at most %d patterns", TASK_OUTPUTS_MAX);
        if (!(t->outputs[t->noutputs++] = strdup(it->valuestring)))
            return errf(err, errsz, "out of memory");
        i++;
    }
    return 0;
}

static int parse_budget(const cJSON *json, struct task *t, char *err, size_t errsz)
{
    const cJSON *b = cJSON_GetObjectItemCaseSensitive(json, "budget");
    if (!b || cJSON_IsNull(b))
        return 0;
    static const char *const keys[] = {"max_cost_usd", "max_tokens", NULL};
    if (json_check_keys(b, "task.budget", keys, err, errsz) < 0)
        return -1;
    if (json_get_number(b, "task.budget", "max_cost_usd", 0, 1e6, &t->max_cost_usd, err, errsz) < 0)
        return -1;
    if (json_get_uint(b, "task.budget", "max_tokens", UINT32_MAX, &t->max_tokens, err, errsz) < 0)
        return -1;
    return 0;
}

static int parse_all(const cJSON *json, struct task *t, char *err, size_t errsz)
{
    static const char *const keys[] = {
        "id",        "prompt", "model",    "fallback_models", "max_iterations",
        "timeout_s", "policy", "network",  "limits",          "workspace",
        "outputs",   "budget", "metadata", "verify",          NULL};
    if (json_check_keys(json, "task", keys, err, errsz) < 0)
        return -1;
    const char *id = NULL;
    if (json_get_string(json, "task", "id", &id, err, errsz) < 0)
        return -1;
    if (id) {
        if (!task_id_is_valid(id))
            return errf(err, errsz,
                        "task.id: 1-%d letters, digits, '.', '_' or '-', not starting with '.' "
                        "or '-'",
                        TASK_ID_MAX);
        snprintf(t->id, sizeof(t->id), "%s", id);
    } else {
        task_make_id(t->id, sizeof(t->id));
    }
    if (dup_string(json, "prompt", &t->prompt, TASK_PROMPT_MAX_BYTES, err, errsz) < 0)
        return -1;
    if (!t->prompt || !t->prompt[0])
        return errf(err, errsz, "task.prompt: required, a non-empty string");
    if (dup_string(json, "model", &t->model, 200, err, errsz) < 0)
        return -1;
    if (t->model && !t->model[0])
        return errf(err, errsz, "task.model: expected a model name");
    if (parse_models(json, t, err, errsz) < 0)
        return -1;
    if (json_get_uint(json, "task", "max_iterations", 100000, &t->max_iterations, err, errsz) < 0)
        return -1;
    if (cJSON_GetObjectItemCaseSensitive(json, "max_iterations") && t->max_iterations == 0)
        return errf(err, errsz, "task.max_iterations: at least 1");
    if (json_get_number(json, "task", "timeout_s", 0.001, 366.0 * 86400, &t->timeout_s, err,
                        errsz) < 0)
        return -1;
    const cJSON *pol = cJSON_GetObjectItemCaseSensitive(json, "policy");
    if (cJSON_IsObject(pol)) {
        t->policy_inline = cJSON_Duplicate(pol, 1);
        if (!t->policy_inline)
            return errf(err, errsz, "out of memory");
    } else if (dup_string(json, "policy", &t->policy, 4096, err, errsz) < 0) {
        return -1;
    }
    const char *net = NULL;
    const cJSON *netj = cJSON_GetObjectItemCaseSensitive(json, "network");
    if (cJSON_IsObject(netj)) {
        if (task_egress_parse(netj, t, err, errsz) < 0)
            return -1;
    } else if (json_get_string(json, "task", "network", &net, err, errsz) < 0)
        return -1;
    if (net) {
        if (strcmp(net, "none") && strcmp(net, "host"))
            return errf(err, errsz,
                        "task.network: expected \"none\", \"host\" or "
                        "{\"allow\": [HOST[:PORT], ...]}");
        t->network_host = strcmp(net, "host") == 0;
        t->network_set = true;
    }
    if (parse_limits(json, t, err, errsz) < 0 || parse_workspace(json, t, err, errsz) < 0 ||
        parse_outputs(json, t, err, errsz) < 0 || parse_budget(json, t, err, errsz) < 0)
        return -1;
    const cJSON *vf = cJSON_GetObjectItemCaseSensitive(json, "verify");
    if (vf && !cJSON_IsNull(vf)) {
        if (!t->git)
            return errf(err, errsz,
                        "task.verify: needs a git workspace (workspace.git): verify runs on the "
                        "agent's patch against the original commit");
        if (verify_spec_parse(vf, &t->verify, err, errsz) < 0)
            return -1;
    }
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(json, "metadata");
    if (md && !cJSON_IsNull(md)) {
        if (!cJSON_IsObject(md))
            return errf(err, errsz, "task.metadata: expected an object");
        if (!(t->metadata = cJSON_Duplicate(md, 1)))
            return errf(err, errsz, "out of memory");
    }
    return 0;
}

int task_parse(const cJSON *json, struct task *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    out->seed_fd = -1;
    if (!cJSON_IsObject(json))
        return errf(err, errsz, "task: expected a JSON object");
    if (parse_all(json, out, err, errsz) < 0) {
        task_free(out);
        return -1;
    }
    return 0;
}

int task_parse_text(const char *text, struct task *out, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    cleanup_json cJSON *json = cJSON_Parse(text);
    if (!json) {
        const char *at = cJSON_GetErrorPtr();
        size_t off = at && at >= text ? (size_t)(at - text) : 0;
        return errf(err, errsz, "task: not valid JSON (near byte %zu)", off);
    }
    return task_parse(json, out, err, errsz);
}

int task_open_seed(struct task *t, const struct seed_requester *who, char *err, size_t errsz)
{
    if (!t->workspace_from || t->seed_fd >= 0)
        return 0;
    char why[ERR_MSG_MAX];
    t->seed_fd = seed_open(t->workspace_from, who, why, sizeof(why));
    if (t->seed_fd < 0)
        return errf(err, errsz, "task.workspace.from_dir: %s", why);
    return 0;
}

void task_free(struct task *t)
{
    if (t->seed_fd > 2)
        (void)close(t->seed_fd);
    t->seed_fd = -1;
    free(t->prompt);
    free(t->model);
    for (size_t i = 0; i < t->nfallback; i++)
        free(t->fallback_models[i]);
    free(t->policy);
    cJSON_Delete(t->policy_inline);
    free(t->workspace_from);
    cJSON_Delete(t->files);
    for (size_t i = 0; i < t->noutputs; i++)
        free(t->outputs[i]);
    cJSON_Delete(t->metadata);
    cJSON_Delete(t->egress);
    git_ws_spec_free(t->git);
    verify_spec_free(t->verify);
    memset(t, 0, sizeof(*t));
}
