/* batch_eval: see batch_eval.h. */
#include "batch_eval.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "json.h"
#include "util.h"

static const char *str_or(const cJSON *o, const char *name, const char *dflt)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);
    return cJSON_IsString(v) ? v->valuestring : dflt;
}

static cJSON *prediction(const cJSON *r)
{
    const cJSON *md = cJSON_GetObjectItemCaseSensitive(r, "metadata");
    const char *iid = str_or(md, "instance_id", str_or(r, "id", ""));
    cJSON *p = cJSON_CreateObject();
    if (!p)
        return NULL;
    cJSON_AddStringToObject(p, "instance_id", iid);
    cJSON_AddStringToObject(p, "model_name_or_path", str_or(r, "model", ""));
    cJSON_AddStringToObject(p, "model_patch", str_or(r, "patch", ""));
    return p;
}

int batch_predictions_write(const char *path, const cJSON *const *results, size_t n, char *err,
                            size_t errsz)
{
    char tmp[4200];
    snprintf(tmp, sizeof(tmp), "%s.tmp", path);
    cleanup_fd int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0644);
    if (fd < 0)
        return errf(err, errsz, "--predictions %s: %s", tmp, strerror(errno));
    for (size_t i = 0; i < n; i++) {
        if (!results[i])
            continue;
        cleanup_json cJSON *p = prediction(results[i]);
        cleanup_free char *line = p ? cJSON_PrintUnformatted(p) : NULL;
        if (!line || write_all(fd, line, strlen(line)) < 0 || write_all(fd, "\n", 1) < 0)
            return errf(err, errsz, "--predictions %s: %s", tmp,
                        line ? strerror(errno) : "out of memory");
    }
    if (fsync(fd) < 0 || rename(tmp, path) < 0)
        return errf(err, errsz, "--predictions %s: %s", path, strerror(errno));
    return 0;
}

bool batch_result_passed(const cJSON *result)
{
    return result && strcmp(str_or(result, "status", ""), "succeeded") == 0;
}

bool batch_pass_at_1(const cJSON *const *results, size_t n, char *buf, size_t bufsz)
{
    size_t with = 0, passed = 0;
    for (size_t i = 0; i < n; i++) {
        const cJSON *v = results[i] ? cJSON_GetObjectItemCaseSensitive(results[i], "verify") : NULL;
        if (!cJSON_IsObject(v))
            continue;
        with++;
        if (batch_result_passed(results[i]) && strcmp(str_or(v, "status", ""), "passed") == 0)
            passed++;
    }
    buf[0] = '\0';
    if (!with)
        return false;
    snprintf(buf, bufsz, "pass@1 %zu/%zu = %.3f (tasks with a verify step)", passed, with,
             (double)passed / (double)with);
    return true;
}
