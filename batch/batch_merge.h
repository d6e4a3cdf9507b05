/* batch_merge: `agentbox batch merge`: the result files of a batch's shards (their --out)
 * joined into one, with one JUnit report for all of them. An id that has a result in two
 * places is refused (which one is right is not ours to guess); with the batch's task file, a
 * task that has no result anywhere is named and counts as not run. Reads results and the task
 * file; never runs, resumes or changes a task or a shard's files. */
#ifndef AGENTBOX_BATCH_MERGE_H
#define AGENTBOX_BATCH_MERGE_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#define MERGE_PROBLEMS_MAX 1000u /* kept; the rest are only counted */

/* One result line of one shard's output, kept byte for byte. */
struct merge_line {
    const char *id; /* points into result */
    cJSON *result;
    char *raw; /* the line without its newline */
    size_t len;
    const char *file; /* borrowed: the name given on the command line */
    unsigned lineno;
    size_t order; /* position over all inputs, for a stable output */
};

struct merge_set {
    struct merge_line *lines;
    size_t n, cap;
    char **problems; /* refusals, in the order found */
    size_t nproblems, nproblems_all;
    unsigned dropped_tails; /* half-written last lines dropped (a shard killed mid-write) */
};

/* Adds every result line of f. A line that is not a JSON object with a string "id" is a
 * problem, except a last line without its newline (a shard killed while writing it), which
 * is dropped with a warning on stderr. Returns -1 only when f cannot be read. */
int merge_read(FILE *f, const char *name, struct merge_set *s, char *err, size_t errsz);
/* Sorts by id and records a problem for every id that has more than one line, naming each
 * place ("FILE:LINE"). Returns the number of duplicated ids. */
size_t merge_find_duplicates(struct merge_set *s);
/* The line of id, or NULL; after merge_find_duplicates. */
const struct merge_line *merge_find(const struct merge_set *s, const char *id);
void merge_set_free(struct merge_set *s);

int cmd_batch_merge(int argc, char **argv);

#endif
