/* workspace_diff: what a task changed in /workspace against its seed: the files manifest
 * (added / modified / deleted regular files with size and sha256), the unified diff (by
 * running diffutils' `diff`), and the `outputs` collector (regular files matching globs).
 * Never follows a symlink (every step is openat + O_NOFOLLOW / fstatat(AT_SYMLINK_NOFOLLOW)),
 * never opens a special file, never reads or returns more than the limits it is given.
 * Symlinks and special files are skipped and counted, not listed: the result's `files`
 * holds regular files only; the diff still shows symlink changes (--no-dereference). */
#ifndef AGENTBOX_WORKSPACE_DIFF_H
#define AGENTBOX_WORKSPACE_DIFF_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define WSDIFF_DEFAULT_MAX_FILES      10000
#define WSDIFF_DEFAULT_MAX_SCAN       1000000 /* directory entries looked at, in all */
#define WSDIFF_DEFAULT_MAX_HASH_BYTES (1ull << 30)
#define WSDIFF_DEFAULT_MAX_DIFF_BYTES (4u << 20)
#define WSDIFF_DEFAULT_DIFF_TIMEOUT_S 60.0
#define WSDIFF_MAX_DEPTH              128
#define WSDIFF_MAX_PATTERN_CHARS      256

enum wsdiff_status { WSDIFF_ADDED, WSDIFF_MODIFIED, WSDIFF_DELETED };

struct wsdiff_file {
    char *path; /* relative to the workspace, no leading "./" */
    enum wsdiff_status status;
    uint64_t size;   /* the new size; for a deleted file, the size it had in the seed */
    char sha256[65]; /* of the new content; "" for deleted files and files not hashed */
};

struct wsdiff_limits {
    size_t max_files;        /* entries in the manifest (0 = default) */
    size_t max_scan;         /* directory entries examined (0 = default) */
    uint64_t max_hash_bytes; /* bytes read for comparing and hashing (0 = default) */
    bool skip_git;           /* leave out a top-level .git (a git workspace: the patch has it) */
};

struct wsdiff_manifest {
    struct wsdiff_file *files;
    size_t n;
    bool truncated;          /* a limit stopped the walk or the hashing */
    size_t symlinks_skipped; /* symlinks met on either side */
    size_t specials_skipped; /* FIFOs, sockets, devices */
    uint64_t bytes_read;
};

/* Compares seed (NULL or absent = empty) with workspace. Returns 0 or -1 (err). */
int wsdiff_manifest(const char *seed, const char *workspace, const struct wsdiff_limits *lim,
                    struct wsdiff_manifest *out, char *err, size_t errsz);
void wsdiff_manifest_free(struct wsdiff_manifest *m);
/* The result's `files` array: [{"path","status","size","sha256"}] (sha256 null when not hashed). */
cJSON *wsdiff_manifest_json(const struct wsdiff_manifest *m);
const char *wsdiff_status_name(enum wsdiff_status s);

/* `diff -ruN --no-dereference SEED WORKSPACE` with paths rewritten to a/REL and b/REL and
 * timestamps dropped; at most max_bytes (0 = default), cut at a line end with a note.
 * diff_path NULL = /usr/bin/diff. Returns 0 and *out (malloc'd, "" when identical) or -1. */
/* From now on wsdiff_unified leaves out every entry named .git (diff -x .git). */
void wsdiff_unified_skip_git(void);
int wsdiff_unified(const char *seed, const char *workspace, size_t max_bytes, double timeout_s,
                   const char *diff_path, char **out, bool *truncated, char *err, size_t errsz);

struct wsdiff_output {
    char *path; /* relative to the workspace */
    uint64_t size;
};

struct wsdiff_outputs {
    struct wsdiff_output *files;
    size_t n;
    uint64_t total_bytes;
    bool truncated;
};

/* Checks one `outputs` glob: relative, no ".." component, not empty, bounded. */
int wsdiff_pattern_check(const char *pattern, char *err, size_t errsz);
/* True when rel (a relative path) matches pattern: fnmatch per path component, and a "**"
 * component matches any number of directories. */
bool wsdiff_pattern_match(const char *pattern, const char *rel);
/* Regular files below workspace matching any pattern (checked first), in path order, at
 * most max_files and max_total_bytes of file sizes. */
int wsdiff_outputs(const char *workspace, const char *const *patterns, size_t npatterns,
                   size_t max_files, uint64_t max_total_bytes, struct wsdiff_outputs *out,
                   char *err, size_t errsz);
void wsdiff_outputs_free(struct wsdiff_outputs *o);

#endif
