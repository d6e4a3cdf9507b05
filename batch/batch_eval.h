/* batch_eval: what an evaluation wants from a batch's results: SWE-bench-style predictions
 * (one {"instance_id", "model_name_or_path", "model_patch"} per line) and pass@1 over the
 * tasks that have a verify step. Reads results only; writes only the predictions file
 * (FILE.tmp, then renamed). */
#ifndef AGENTBOX_BATCH_EVAL_H
#define AGENTBOX_BATCH_EVAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

/* results[i] may be NULL (a task that never ran: no line). instance_id is the task's
 * metadata.instance_id when it is a string, else its id. */
int batch_predictions_write(const char *path, const cJSON *const *results, size_t n, char *err,
                            size_t errsz);
/* "pass@1 17/20 = 0.850 (tasks with a verify step)" into buf; false (buf "") when no task has
 * one. */
bool batch_pass_at_1(const cJSON *const *results, size_t n, char *buf, size_t bufsz);
/* True when a result counts as passed for --retry-failed (status succeeded). */
bool batch_result_passed(const cJSON *result);

#endif
