/* statefile: see statefile.h. */
#include "statefile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "atomicfile.h"
#include "safedir.h"
#include "util.h"

static bool name_ok(const char *name)
{
    return !name || (*name && strlen(name) < STATEFILE_NAME_MAX && !strchr(name, '/') &&
                     strcmp(name, ".") != 0 && strcmp(name, "..") != 0);
}

static int build(const char *state_dir, const char *mid, const char *id, const char *name,
                 char *out, size_t outsz)
{
    if (!task_id_is_valid(id) || !name_ok(name)) {
        errno = EINVAL;
        return -1;
    }
    int n =
        snprintf(out, outsz, "%s/%s%s%s%s", state_dir, mid, id, name ? "/" : "", name ? name : "");
    if (n < 0 || (size_t)n >= outsz) {
        errno = ENAMETOOLONG;
        return -1;
    }
    return 0;
}

int statefile_path(const char *state_dir, const char *id, const char *name, char *out, size_t outsz)
{
    return build(state_dir, "", id, name, out, outsz);
}

int statefile_upload_path(const char *state_dir, const char *id, char *out, size_t outsz)
{
    return build(state_dir, ".uploads/", id, NULL, out, outsz);
}

int statefile_open(int state_dfd, const char *id, const char *name, int flags, unsigned mode)
{
    if (!task_id_is_valid(id) || !name_ok(name)) {
        errno = EINVAL;
        return -1;
    }
    if (!name)
        return openat(state_dfd, id, flags | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    return openat_below(state_dfd, id, name, flags, mode);
}

int statefile_read(int state_dfd, const char *id, const char *name, size_t max, char **out,
                   size_t *outlen)
{
    if (!name) {
        errno = EINVAL;
        return -1;
    }
    cleanup_fd int dfd = statefile_open(state_dfd, id, NULL, O_RDONLY | O_DIRECTORY, 0);
    if (dfd < 0)
        return -1;
    return read_regular_at(dfd, name, 0, max, out, outlen);
}

int statefile_write(int state_dfd, const char *id, const char *name, const void *data, size_t len,
                    const char *crash_point)
{
    if (!name || !name_ok(name)) {
        errno = EINVAL;
        return -1;
    }
    cleanup_fd int dfd = statefile_open(state_dfd, id, NULL, O_RDONLY | O_DIRECTORY, 0);
    if (dfd < 0)
        return -1;
    return atomic_write_at(dfd, name, data, len, 0600, crash_point);
}
