/* result_report: see result_report.h. Owns the limits of what a result carries from its cell
 * and the marks that say what was cut or rewritten; must never pass on a string that is not
 * valid UTF-8, nor drop an entry without counting it. */
#include "result_report.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "task.h"
#include "utf8.h"

static bool is_hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

/* Bytes s takes as a JSON string (quotes and the escapes cJSON writes; no control
 * characters are left in an escaped name). */
static size_t json_len(const char *s)
{
    size_t n = 2;
    for (; *s; s++)
        n += (*s == '"' || *s == '\\') ? 2 : 1;
    return n;
}

/* One checked entry, or NULL when it is refused. */
static cJSON *checked_entry(const cJSON *f, size_t *json_bytes)
{
    const cJSON *path = cJSON_GetObjectItemCaseSensitive(f, "path");
    const cJSON *st = cJSON_GetObjectItemCaseSensitive(f, "status");
    const cJSON *size = cJSON_GetObjectItemCaseSensitive(f, "size");
    const cJSON *sha = cJSON_GetObjectItemCaseSensitive(f, "sha256");
    if (!cJSON_IsString(path) || !task_path_is_safe(path->valuestring) || !cJSON_IsString(st) ||
        (strcmp(st->valuestring, "added") && strcmp(st->valuestring, "modified") &&
         strcmp(st->valuestring, "deleted")))
        return NULL;
    bool escaped = false;
    char *name = utf8_escape_name(path->valuestring, &escaped);
    cJSON *e = name ? cJSON_CreateObject() : NULL;
    if (!e) {
        free(name);
        return NULL;
    }
    cJSON_AddStringToObject(e, "path", name);
    *json_bytes = json_len(name);
    free(name);
    if (escaped)
        cJSON_AddBoolToObject(e, "path_escaped", true);
    cJSON_AddStringToObject(e, "status", st->valuestring);
    if (cJSON_IsNumber(size) && size->valuedouble >= 0)
        cJSON_AddNumberToObject(e, "size", floor(size->valuedouble));
    else
        cJSON_AddNullToObject(e, "size");
    if (cJSON_IsString(sha) && is_hex64(sha->valuestring))
        cJSON_AddStringToObject(e, "sha256", sha->valuestring);
    else
        cJSON_AddNullToObject(e, "sha256");
    return e;
}

static cJSON *checked_files(const cJSON *files, struct result_cut *cut)
{
    cJSON *out = cJSON_CreateArray();
    size_t listed = 0, bytes = 0;
    const cJSON *f;
    cJSON_ArrayForEach(f, files)
    {
        size_t n = 0;
        cJSON *e = checked_entry(f, &n);
        if (!e) {
            cut->files_refused++;
            continue;
        }
        if (listed >= RESULT_FILES_MAX || bytes + n > RESULT_FILES_PATH_BYTES) {
            cut->files++;
            cJSON_Delete(e);
            continue;
        }
        cJSON_AddItemToArray(out, e);
        listed++;
        bytes += n;
    }
    return out;
}

/* s cut to at most max bytes, at the last line end (diff) or character boundary before. */
static size_t cut_point(const char *s, size_t len, size_t max, bool at_line)
{
    if (len <= max)
        return len;
    size_t n = max;
    if (at_line) {
        while (n > 0 && s[n - 1] != '\n')
            n--;
        if (n > 0)
            return n;
        n = max;
    }
    while (n > 0 && ((unsigned char)s[n] & 0xc0) == 0x80)
        n--;
    return n;
}

/* Replaces report[name] (a string) by its valid UTF-8 form cut to max; returns the bytes cut
 * and sets *lossy when bytes were replaced. A missing or non-string value is left out. */
static uint64_t clean_text(cJSON *report, const char *name, size_t max, bool at_line, bool *lossy)
{
    cJSON *v = cJSON_GetObjectItemCaseSensitive(report, name);
    if (!v)
        return 0;
    if (!cJSON_IsString(v)) {
        cJSON_DeleteItemFromObjectCaseSensitive(report, name);
        return 0;
    }
    size_t len = strlen(v->valuestring);
    char *text = v->valuestring;
    char *clean = NULL;
    if (!utf8_valid(text, len)) {
        clean = utf8_sanitize(text, len, &len);
        if (!clean) {
            cJSON_DeleteItemFromObjectCaseSensitive(report, name);
            return 0;
        }
        text = clean;
        if (lossy)
            *lossy = true;
    }
    size_t keep = cut_point(text, len, max, at_line);
    char saved = text[keep];
    text[keep] = '\0';
    cJSON *s = cJSON_CreateString(text);
    text[keep] = saved;
    free(clean);
    if (s)
        cJSON_ReplaceItemInObjectCaseSensitive(report, name, s);
    else
        cJSON_DeleteItemFromObjectCaseSensitive(report, name);
    return len - keep;
}

void result_report_clean(cJSON *report, struct result_cut *cut)
{
    memset(cut, 0, sizeof(*cut));
    if (!cJSON_IsObject(report))
        return;
    cut->cell_files = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(report, "files_truncated"));
    cut->cell_diff = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(report, "diff_truncated"));
    cJSON *files = checked_files(cJSON_GetObjectItemCaseSensitive(report, "files"), cut);
    cJSON_DeleteItemFromObjectCaseSensitive(report, "files");
    cJSON_AddItemToObject(report, "files", files);
    cut->diff_bytes = clean_text(report, "diff", RESULT_DIFF_MAX_BYTES, true, &cut->diff_lossy);
    cut->output_bytes = clean_text(report, "output", RESULT_OUTPUT_MAX_BYTES, false, NULL);
    /* the rest (end, error) is short and read as text: only made valid */
    (void)utf8_fix_json(report->child);
}

void result_report_add_cut(cJSON *result, const struct result_cut *cut)
{
    struct result_cut none = {0};
    if (!cut)
        cut = &none;
    cJSON *t = cJSON_AddObjectToObject(result, "truncated");
    cJSON_AddNumberToObject(t, "files", (double)cut->files);
    cJSON_AddNumberToObject(t, "files_refused", (double)cut->files_refused);
    cJSON_AddNumberToObject(t, "diff_bytes", (double)cut->diff_bytes);
    cJSON_AddNumberToObject(t, "output_bytes", (double)cut->output_bytes);
    cJSON_AddBoolToObject(t, "cell_files", cut->cell_files);
    cJSON_AddBoolToObject(t, "cell_diff", cut->cell_diff);
    cJSON_AddBoolToObject(result, "diff_lossy", cut->diff_lossy);
}
