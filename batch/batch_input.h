/* batch_input: a JSONL batch file read and validated as a whole before anything runs: one
 * task per line, blank and '#' lines skipped, every bad line collected with its line number
 * (so a CI user hears of all of them at once), ids derived from the line's content when the
 * task names none, duplicate ids refused, and the deterministic shard of each id.
 * Never starts a task and never touches the state directory. */
#ifndef AGENTBOX_BATCH_INPUT_H
#define AGENTBOX_BATCH_INPUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "task.h"

#define BATCH_LINE_MAX_BYTES (80u << 20) /* a task with its seed files, as --task-file */
#define BATCH_TASKS_MAX      1000000u
#define BATCH_SHARDS_MAX     1000000u
#define BATCH_ERRORS_MAX     1000u /* kept; the rest are only counted */
#define BATCH_ERRORS_SHOWN   50    /* printed; the rest are counted */

struct batch_item {
    unsigned line;   /* 1-based line number in the file */
    bool derived_id; /* the line named no id; task.id was derived from its content */
    struct task task;
};

struct batch_error {
    unsigned line;
    char *message;
};

struct batch_input {
    struct batch_item *items;
    size_t n, cap;
    struct batch_error *errors;
    size_t nerrors;     /* kept */
    size_t nerrors_all; /* including those past BATCH_ERRORS_MAX */
};

/* Reads every line of f (name is for messages). Returns -1 only when the file itself cannot
 * be read (err says why); bad lines are collected in in->errors, sorted by line. */
int batch_input_read(FILE *f, const char *name, struct batch_input *in, char *err, size_t errsz);
/* The same lines, blank and '#' lines, derived ids and duplicate checks, but of each task
 * only its id (task.id; the other fields stay empty and unchecked): for `batch merge`, which
 * may run where the tasks' workspace directories do not exist. */
int batch_input_read_ids(FILE *f, const char *name, struct batch_input *in, char *err,
                         size_t errsz);
void batch_input_free(struct batch_input *in);
/* Adds a refusal found by a later check (e.g. the policy), keeping the list sorted. */
__attribute__((format(printf, 3, 4))) void
batch_input_add_error(struct batch_input *in, unsigned line, const char *fmt, ...);

/* "task-" + the first 16 hex digits of SHA-256 of the line (leading and trailing white space
 * removed); the n-th identical anonymous line (n >= 2) gets "-n" appended. The same file
 * gives the same ids on every machine, which is what shards and --resume rely on. */
void batch_derive_id(const char *line, size_t len, unsigned occurrence, char *out, size_t outsz);

/* FNV-1a, 64 bit, over the id's bytes: task `id` belongs to shard (hash % count). */
uint64_t batch_shard_hash(const char *id);
bool batch_in_shard(const char *id, unsigned index, unsigned count);
/* "I/N" with 0 <= I < N <= BATCH_SHARDS_MAX. */
int batch_shard_parse(const char *text, unsigned *index, unsigned *count, char *err, size_t errsz);

#endif
