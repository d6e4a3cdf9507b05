/* runner_record: the result record's file and its shape for tasks that never ran (see
 * runner.h): written whole or not at all (atomicfile.h). Holds no state and decides no
 * status: the runner and the supervisor do. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "atomicfile.h"
#include "json.h"
#include "result_report.h"
#include "runner.h"
#include "util.h"

int runner_write_result(int state_dfd, const cJSON *res, const char *crash_point)
{
    cleanup_free char *text = json_print_pretty(res);
    if (!text) {
        errno = ENOMEM;
        return -1;
    }
    size_t n = strlen(text);
    char *line = realloc(text, n + 2);
    if (!line)
        return -1;
    text = line;
    memcpy(text + n, "\n", 2);
    return atomic_write_at(state_dfd, "result.json", text, n + 1, 0600, crash_point);
}

cJSON *runner_result_unrun(const char *id, const char *status, cJSON *error, double elapsed,
                           const char *model, const char *events_file, const cJSON *metadata)
{
    cJSON *r = cJSON_CreateObject();
    if (!r) {
        cJSON_Delete(error);
        return NULL;
    }
    cJSON_AddStringToObject(r, "id", id);
    cJSON_AddStringToObject(r, "status", status);
    cJSON_AddBoolToObject(r, "success", false);
    cJSON_AddStringToObject(r, "output", "");
    cJSON_AddNumberToObject(r, "execution_time", elapsed);
    cJSON_AddItemToObject(r, "error", error ? error : cJSON_CreateNull());
    cJSON_AddNumberToObject(r, "iterations", 0);
    cJSON_AddStringToObject(r, "model", model ? model : "");
    cJSON_AddArrayToObject(r, "models_tried");
    cJSON *u = cJSON_AddObjectToObject(r, "usage");
    cJSON_AddNumberToObject(u, "prompt_tokens", 0);
    cJSON_AddNumberToObject(u, "completion_tokens", 0);
    cJSON_AddNumberToObject(u, "total_tokens", 0);
    cJSON_AddNumberToObject(u, "cost_usd", 0);
    cJSON_AddArrayToObject(r, "files");
    cJSON_AddStringToObject(r, "diff", "");
    result_report_add_cut(r, NULL);
    cJSON_AddNullToObject(r, "outputs_dir");
    if (events_file)
        cJSON_AddStringToObject(r, "events_file", events_file);
    else
        cJSON_AddNullToObject(r, "events_file");
    cJSON_AddNullToObject(r, "sandbox");
    cJSON_AddItemToObject(r, "metadata",
                          cJSON_IsObject(metadata) ? cJSON_Duplicate(metadata, 1)
                                                   : cJSON_CreateObject());
    return r;
}
