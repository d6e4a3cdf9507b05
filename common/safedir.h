/* safedir: the one judge of the directories agentbox writes state and outputs into (serve's
 * state dir, run's and batch's workspace roots, events dirs, the socket's directory), and
 * the fd-relative helpers that write and remove inside them. A directory is trusted when
 * it belongs to the running uid and nobody else may write to it, and every directory
 * above it belongs to root or the running uid and is writable by nobody else (unless
 * sticky, as /tmp is). Then no other local user can swap a path component for a symlink,
 * so a root agentbox never writes where a user steered it. Never follows a symlink inside
 * a trusted directory; never chmods or chowns to make a directory pass. */
#ifndef AGENTBOX_SAFEDIR_H
#define AGENTBOX_SAFEDIR_H

#include <stddef.h>

/* Creates path (mode 0700; its parent must exist) or accepts the existing directory, when
 * it and every directory above it are trusted (see above). Fills real (may be NULL) with
 * the resolved absolute path, which callers use from then on. -1 with errno and err
 * naming the directory at fault with its owner and mode. */
int dir_ensure_trusted(const char *path, char *real, size_t realsz, char *err, size_t errsz);
/* The same test for an existing directory, creating nothing (the directory of a file
 * agentbox will create, e.g. a socket or an --out file). */
int dir_check_trusted(const char *path, char *real, size_t realsz, char *err, size_t errsz);
/* The directory of a file path (".", when it has no slash) checked as above. */
int parent_check_trusted(const char *file, char *err, size_t errsz);
/* Opens a trusted directory (O_DIRECTORY | O_NOFOLLOW) for the *at() calls below. */
int dir_open_trusted(const char *path, char *err, size_t errsz);

/* Opens dir/name below dfd, following no symlink on the way (neither dir nor name):
 * flags gain O_NOFOLLOW | O_CLOEXEC. A task's files below the state dir's fd. */
int openat_below(int dfd, const char *dir, const char *name, int flags, unsigned mode);

/* Reads a whole regular file name below dfd (AT_FDCWD: a path) without following a final
 * symlink, without blocking (a FIFO or device is refused, not opened for long) and up to
 * max bytes. NUL-terminated; -1 with errno (EFBIG when larger, EINVAL when not regular). */
int read_regular_at(int dfd, const char *name, int follow, size_t max, char **out, size_t *outlen);

/* Removes name below dfd and, if it is a directory, everything in it, walking by fd
 * (openat O_NOFOLLOW, unlinkat): a symlink met anywhere is removed, never followed. */
int remove_tree_at(int dfd, const char *name);

#endif
