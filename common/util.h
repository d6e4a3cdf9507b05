/* util: small helpers every module uses: scope-bound cleanup (bubblewrap's idiom),
 * error-message buffers, and the one place where sizes and durations are parsed
 * and printed. Never allocates behind the caller's back except where a name says so. */
#ifndef AGENTBOX_UTIL_H
#define AGENTBOX_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

/* ---- cleanup at scope exit: declare once at the variable, hand on with steal_pointer ---- */
static inline void cleanup_freep(void *p)
{
    free(*(void **)p);
}
static inline void cleanup_closep(int *fd)
{
    if (*fd >= 0)
        (void)close(*fd);
}
#define cleanup_free __attribute__((cleanup(cleanup_freep)))
#define cleanup_fd   __attribute__((cleanup(cleanup_closep)))

static inline void *steal_pointer_impl(void *pp)
{
    void **p = pp;
    void *v = *p;
    *p = NULL;
    return v;
}
#define steal_pointer(pp) ((__typeof__(*(pp)))steal_pointer_impl(pp))

static inline int steal_fd(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}

/* ---- error messages: functions return 0 or -1 and fill `err` (may be NULL) ---- */
#define ERR_MSG_MAX 512
__attribute__((format(printf, 3, 4))) int errf(char *err, size_t errsz, const char *fmt, ...);

/* ---- sizes and times: parsed in one place, printed in one format ---- */
/* "512", "64K", "512M", "2G" (powers of 1024; optional trailing "B" or "iB"). */
int size_parse(const char *text, uint64_t *out);
/* "1.5", "300", "300s", "5m", "2h". Refuses negative, NaN, exponents ("1e3") and absurd
 * (> 1 year) values. */
int seconds_parse(const char *text, double *out);
/* Non-negative decimal integer that fits in *out; no sign, no junk. */
int uint_parse(const char *text, uint64_t max, uint64_t *out);
/* "512M"-style text for a byte count, into buf. */
const char *size_format(uint64_t bytes, char *buf, size_t bufsz);
/* A command-line option's value, with one wording for every command's refusal
 * ("--memory: expected a size (like 512M; K, M, G are powers of 1024), got '1e3'";
 * "--memory: 1 is below the working minimum of 8M"). 0 or -1 with err filled. */
int opt_seconds(const char *opt, const char *text, int zero_ok, double *out, char *err,
                size_t errsz);
int opt_size(const char *opt, const char *text, uint64_t min, uint64_t *out, char *err,
             size_t errsz);
int opt_count(const char *opt, const char *text, uint64_t min, uint64_t max, uint64_t *out,
              char *err, size_t errsz);

/* ---- time ---- */
double monotonic_s(void);
double wallclock_s(void);

/* ---- I/O that retries EINTR and short transfers ---- */
int write_all(int fd, const void *buf, size_t len);
/* The one bounded whole-file read: fd from its current offset to its end, at most max bytes
 * (the caller's cap), NUL-terminated into a new buffer. -1 with errno EFBIG past max (a
 * regular file larger than max is refused before anything is read; a pipe or a file that
 * grows while it is read, at the first byte past max), nothing returned then. */
int read_fd_bounded(int fd, size_t max, char **out, size_t *outlen);
/* Reads a whole (small) regular file (EINVAL for anything else) with read_fd_bounded. */
int read_file(const char *path, size_t max, char **out, size_t *outlen);
/* read_file, or all of stdin (a pipe or a file) when path is "-". */
int read_input(const char *path, size_t max, char **out, size_t *outlen);
/* mkdir(path, 0700) that accepts an existing directory of the running uid that no one else
 * may write (EPERM otherwise; ENOTDIR for anything else there, a symlink included). Only
 * for directories below one safedir.h has judged: it looks at the last component alone. */
int dir_ensure(const char *path);

/* Absolute path of the running agentbox binary, resolved on first call (main calls it at
 * start) so data files can be found relative to it wherever it is installed. */
const char *self_exe_path(void);

/* Finds a data file shipped with agentbox by its path in the source tree
 * ("policies/default.json", "catalog/models.json"): first below $AGENTBOX_DATA_DIR, then
 * beside the binary (build tree), then in ../share/agentbox relative to the binary
 * (installed). Fills out and returns 0, or -1 with errno ENOENT. */
int data_path(const char *rel, char *out, size_t outsz);

#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

#endif
