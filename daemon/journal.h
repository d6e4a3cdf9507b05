/* journal: the supervisor's append-only record of task transitions (STATE/journal.jsonl),
 * fsync'd at each one that a restart depends on, so that after a crash (even SIGKILL) a
 * restarted supervisor knows every task it had accepted. Compacted on open. Never holds results:
 * those are the runners' result.json files; the journal only says which tasks exist and how far
 * they got. */
#ifndef AGENTBOX_JOURNAL_H
#define AGENTBOX_JOURNAL_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "task.h"

#define JOURNAL_LINE_MAX_BYTES (8u << 20)
#define JOURNAL_FILE_MAX_BYTES (4ull << 30)

struct journal_entry {
    char id[TASK_ID_MAX + 1];
    cJSON *task;                      /* as accepted, id filled in */
    double submitted, started, ended; /* wall clock; 0 = not reached */
    char status[16];                  /* when finished */
    long owner;                       /* the submitting client's uid; -1 unknown (older) */
};

struct journal {
    int fd;
    int dfd; /* the state dir: the journal and its compacted copy are opened below it */
    char path[4096];
    uint64_t appended; /* bytes written since the last compaction */
    uint64_t size;     /* the end of the last whole record */
    bool torn;         /* a failed record could not be cut back yet */
};

/* Reads STATE/journal.jsonl (a torn last line from a crash is cut off), compacts it
 * (forgotten tasks dropped, one line per transition kept; skipped when the disk has no room
 * for the copy) and opens it for appending.
 * Fills a malloc'd array of entries in submission order. */
int journal_open(struct journal *j, const char *state_dir, struct journal_entry **entries,
                 size_t *nentries, char *err, size_t errsz);
void journal_entries_free(struct journal_entry *entries, size_t n);
void journal_close(struct journal *j);

/* Each returns 0 once the record is durable, or -1 with errno (ENOSPC: the disk is full)
 * and nothing of the record left in the file. owner: the submitting client's uid (kept
 * across restarts and compactions). Except `started`: written, not synced on its own (it
 * carries only the start time, which a restart does not need): the next record syncs it. */
int journal_submitted(struct journal *j, const char *id, const cJSON *task, double ts, long owner);
int journal_started(struct journal *j, const char *id, double ts);
int journal_finished(struct journal *j, const char *id, const char *status, double ts);
/* The task's records are dropped at the next compaction (retention). */
int journal_forget(struct journal *j, const char *id);
/* Compacts a running journal from the caller's view of its tasks (entries in submission
 * order; task NULL for a finished one, whose task JSON is no longer needed): written beside
 * it, fsync'd, renamed over it, reopened. On failure the old journal stays in use. */
int journal_rewrite(struct journal *j, const struct journal_entry *entries, size_t n, char *err,
                    size_t errsz);

#endif
