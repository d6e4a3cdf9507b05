/* result_report: turns the report a cell sent (hostile bytes) into what a result may carry:
 * the files manifest checked, each path made printable (escaped and marked when it is not
 * valid UTF-8 or holds control characters), the diff valid UTF-8 (marked when bytes were
 * replaced), everything bounded, and what was cut counted. Never drops an entry without
 * counting it, never lets a string that is not valid UTF-8 through. */
#ifndef AGENTBOX_RESULT_REPORT_H
#define AGENTBOX_RESULT_REPORT_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stdint.h>

/* What one result may carry from its cell: about 5 MiB in all at the very most. */
#define RESULT_FILES_MAX        10000      /* entries of `files` */
#define RESULT_FILES_PATH_BYTES (1u << 20) /* their paths together, as JSON strings */
#define RESULT_DIFF_MAX_BYTES   (2u << 20) /* `diff` */
#define RESULT_OUTPUT_MAX_BYTES (1u << 20) /* the agent's final message */

struct result_cut {
    uint64_t files;         /* manifest entries not listed: past the limits */
    uint64_t files_refused; /* entries refused: a path that is not relative and inside the
                               workspace, an unknown status */
    uint64_t diff_bytes;    /* bytes of the cell's diff not included */
    uint64_t output_bytes;  /* bytes of the agent's final message not included */
    bool cell_files;        /* the cell said its own walk stopped at a limit */
    bool cell_diff;         /* the cell said it cut its diff */
    bool diff_lossy;        /* bytes of the diff that were not UTF-8 became U+FFFD */
};

/* Rewrites report in place (files and diff checked and bounded, every other string valid
 * UTF-8) and fills cut. Call once, when the report arrives. */
void result_report_clean(cJSON *report, struct result_cut *cut);
/* Adds `truncated` and `diff_lossy` to a result (cut NULL: nothing was cut). */
void result_report_add_cut(cJSON *result, const struct result_cut *cut);

#endif
