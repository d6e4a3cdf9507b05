/* atomicfile: writing a whole file so that a crash at any instant leaves either the old
 * file or the new one, never a torn one: the bytes go to a temporary file beside the
 * target, are fsync'd, renamed over the target, and the directory is fsync'd so the rename
 * itself survives. Never follows a symlink at the target or the temporary name. */
#ifndef AGENTBOX_ATOMICFILE_H
#define AGENTBOX_ATOMICFILE_H

#include <stddef.h>

/* Writes len bytes of data to path (mode for a new file). Returns 0, or -1 with errno set
 * (ENOSPC, EDQUOT when the disk is full); on failure the target is untouched and the
 * temporary file removed. crash_point (may be NULL) names the test crash point hit when
 * half the bytes are written (crashpoint.h). */
int atomic_write_file(const char *path, const void *data, size_t len, unsigned mode,
                      const char *crash_point);
/* The same in the directory open in dfd (name: a plain name in it, never followed). */
int atomic_write_at(int dfd, const char *name, const void *data, size_t len, unsigned mode,
                    const char *crash_point);
/* The directory holding path is fsync'd (after a rename or a create in it). */
int fsync_parent_dir(const char *path);
/* True for the errno values that mean "the disk is full" (ENOSPC, EDQUOT). */
int errno_is_no_space(int err);

#endif
