/* json: typed access to cJSON objects that fails with the field's name, so that every
 * refusal of user input says exactly what was wrong ("task.limits.disk: expected a size").
 * All functions return 0 when the field was read, 1 when it is absent (out untouched),
 * -1 with a message in err when it is present but wrong. */
#ifndef AGENTBOX_JSON_H
#define AGENTBOX_JSON_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

static inline void cleanup_cjsonp(cJSON **j)
{
    cJSON_Delete(*j);
}
#define cleanup_json __attribute__((cleanup(cleanup_cjsonp)))

int json_get_string(const cJSON *obj, const char *ctx, const char *name, const char **out,
                    char *err, size_t errsz);
int json_get_bool(const cJSON *obj, const char *ctx, const char *name, bool *out, char *err,
                  size_t errsz);
int json_get_uint(const cJSON *obj, const char *ctx, const char *name, uint64_t max, uint64_t *out,
                  char *err, size_t errsz);
int json_get_number(const cJSON *obj, const char *ctx, const char *name, double min, double max,
                    double *out, char *err, size_t errsz);
/* A size: a JSON integer (bytes) or a string like "512M". */
int json_get_size(const cJSON *obj, const char *ctx, const char *name, uint64_t *out, char *err,
                  size_t errsz);
/* Refuses members of obj not named in allowed (NULL-terminated): typos must not pass silently. */
int json_check_keys(const cJSON *obj, const char *ctx, const char *const *allowed, char *err,
                    size_t errsz);
/* Reads a file of at most max bytes holding one JSON object; NULL if it cannot be read, is
 * not JSON or not an object. */
cJSON *json_read_object_file(const char *path, size_t max);
/* Parses text (a whole file's content) into one JSON value; NULL with
 * "SOURCE:LINE:COLUMN: JSON syntax error near \"...\"" in err when it is not JSON. */
cJSON *json_parse_located(const char *text, const char *source, char *err, size_t errsz);
/* Prints compactly into a malloc'd string; NULL on allocation failure. */
char *json_print(const cJSON *obj);
/* Prints for people and jq alike: two spaces per level, "key": value, members in the object's
 * order (stable from run to run); malloc'd, NULL on allocation failure. */
char *json_print_pretty(const cJSON *obj);

#endif
