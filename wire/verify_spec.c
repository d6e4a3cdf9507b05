/* verify_spec: the `verify` field of a task, checked field by field (verify.h). Kept apart
 * from the verify cell so that task parsing links without the sandbox. */
#include <stdlib.h>
#include <string.h>

#include "json.h"
#include "util.h"
#include "verify.h"

int verify_spec_parse(const cJSON *v, struct verify_spec **out, char *err, size_t errsz)
{
    *out = NULL;
    if (!cJSON_IsObject(v))
        return errf(err, errsz, "task.verify: expected an object {\"command\": ..., ...}");
    static const char *const keys[] = {"command", "timeout_s", "reset", NULL};
    if (json_check_keys(v, "task.verify", keys, err, errsz) < 0)
        return -1;
    const char *cmd = NULL;
    if (json_get_string(v, "task.verify", "command", &cmd, err, errsz) < 0)
        return -1;
    if (!cmd || !cmd[0] || strlen(cmd) > VERIFY_COMMAND_MAX)
        return errf(err, errsz,
                    "task.verify.command: required, a shell command of at most %u bytes",
                    VERIFY_COMMAND_MAX);
    struct verify_spec *s = calloc(1, sizeof(*s));
    if (!s || !(s->command = strdup(cmd))) {
        free(s);
        return errf(err, errsz, "out of memory");
    }
    s->timeout_s = VERIFY_DEFAULT_TIMEOUT;
    if (json_get_number(v, "task.verify", "timeout_s", 1, 86400, &s->timeout_s, err, errsz) < 0)
        goto fail;
    const cJSON *reset = cJSON_GetObjectItemCaseSensitive(v, "reset");
    if (reset && !cJSON_IsNull(reset) && !cJSON_IsArray(reset)) {
        errf(err, errsz, "task.verify.reset: expected an array of path globs");
        goto fail;
    }
    const cJSON *it;
    int i = 0;
    cJSON_ArrayForEach(it, reset)
    {
        const char *p = cJSON_IsString(it) ? it->valuestring : NULL;
        if (!p || !p[0] || p[0] == '/' || strstr(p, "..") || strlen(p) > 512 || p[0] == ':') {
            errf(err, errsz, "task.verify.reset[%d]: expected a relative path glob", i);
            goto fail;
        }
        if (s->nreset >= VERIFY_RESET_MAX) {
            errf(err, errsz, "task.verify.reset: at most %d globs", VERIFY_RESET_MAX);
            goto fail;
        }
        if (!(s->reset[s->nreset++] = strdup(p))) {
            errf(err, errsz, "out of memory");
            goto fail;
        }
        i++;
    }
    *out = s;
    return 0;
fail:
    verify_spec_free(s);
    return -1;
}

void verify_spec_free(struct verify_spec *s)
{
    if (!s)
        return;
    free(s->command);
    for (size_t i = 0; i < s->nreset; i++)
        free(s->reset[i]);
    free(s);
}
