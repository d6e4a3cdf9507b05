/* statefile: the one place `agentbox serve` names and opens a task's files below its state
 * dir (STATE/ID, STATE/ID/NAME, STATE/.uploads/ID). The id is checked to be a task id first
 * (task_id_is_valid: no '/', no leading dot, so never "..", ".uploads" or a journal file);
 * every path fits one buffer size; files are opened and read relative to the state dir's fd,
 * following no symlink on the way (safedir.h). Never creates or removes anything itself and
 * never reaches above the state dir. */
#ifndef AGENTBOX_STATEFILE_H
#define AGENTBOX_STATEFILE_H

#include <stddef.h>

#include "config.h"
#include "task.h"

/* STATE (at most CONFIG_URL_MAX - 1 bytes) + "/.uploads/" + ID + "/" + a file name */
#define STATEFILE_NAME_MAX 64
#define STATEFILE_PATH_MAX (CONFIG_URL_MAX + 16 + TASK_ID_MAX + STATEFILE_NAME_MAX)

/* STATE/ID, or STATE/ID/NAME when name is not NULL, into out (a path for messages, results
 * and the runner's state dir). 0, or -1 with errno EINVAL (not a task id) or ENAMETOOLONG. */
int statefile_path(const char *state_dir, const char *id, const char *name, char *out,
                   size_t outsz);
/* STATE/.uploads/ID: a task's uploaded workspace. */
int statefile_upload_path(const char *state_dir, const char *id, char *out, size_t outsz);
/* Opens ID (name NULL) or ID/NAME below the state dir's fd; flags gain O_NOFOLLOW and
 * O_CLOEXEC, and neither ID nor NAME may be a symlink. -1 with errno (EINVAL: not a task id). */
int statefile_open(int state_dfd, const char *id, const char *name, int flags, unsigned mode);
/* The whole of the regular file ID/NAME below the state dir's fd, at most max bytes
 * (read_regular_at: no link followed, a FIFO never opened, EFBIG past max). */
int statefile_read(int state_dfd, const char *id, const char *name, size_t max, char **out,
                   size_t *outlen);

/* ID/NAME below the state dir's fd replaced whole (atomicfile.h: temp, fsync, rename, fsync
 * of ID's directory), mode 0600; crash_point as atomic_write_file's. -1 with errno. */
int statefile_write(int state_dfd, const char *id, const char *name, const void *data, size_t len,
                    const char *crash_point);

#endif
