/* atomicfile: see atomicfile.h. The temporary name is a dot name in the same directory
 * (so the rename stays on one filesystem, and no task id, which never starts with a dot,
 * can be in the way). */
#include "atomicfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "crashpoint.h"
#include "util.h"

int errno_is_no_space(int err)
{
    return err == ENOSPC || err == EDQUOT;
}

int fsync_parent_dir(const char *path)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    int saved = errno;
    (void)close(fd);
    errno = saved;
    /* some filesystems cannot fsync a directory; the rename is then as durable as it gets */
    return rc < 0 && errno != EINVAL && errno != EROFS ? -1 : 0;
}

/* The directory part of path ("." or "/" when it has none) opened without following a
 * final symlink, and the name inside it. */
static int open_parent(const char *path, const char **name)
{
    char dir[4096];
    const char *slash = strrchr(path, '/');
    if (!slash)
        snprintf(dir, sizeof(dir), ".");
    else if (slash == path)
        snprintf(dir, sizeof(dir), "/");
    else if ((size_t)(slash - path) >= sizeof(dir)) {
        errno = ENAMETOOLONG;
        return -1;
    } else
        snprintf(dir, sizeof(dir), "%.*s", (int)(slash - path), path);
    *name = slash ? slash + 1 : path;
    return open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
}

int atomic_write_file(const char *path, const void *data, size_t len, unsigned mode,
                      const char *crash_point)
{
    /* every step relative to the directory's fd: the name that is renamed over is the one in
     * the directory that was opened, whatever happens to the path meanwhile */
    const char *name;
    cleanup_fd int dfd = open_parent(path, &name);
    if (dfd < 0)
        return -1;
    return atomic_write_at(dfd, name, data, len, mode, crash_point);
}

int atomic_write_at(int dfd, const char *name, const void *data, size_t len, unsigned mode,
                    const char *crash_point)
{
    char tmp[512];
    int w = snprintf(tmp, sizeof(tmp), ".%s.tmp", name);
    if (w < 0 || (size_t)w >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = openat(dfd, tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
    if (fd < 0)
        return -1;
    size_t half = len / 2;
    int rc = write_all(fd, data, half);
    if (rc == 0 && crash_point)
        crashpoint(crash_point);
    if (rc == 0)
        rc = write_all(fd, (const char *)data + half, len - half);
    if (rc == 0)
        rc = fsync(fd);
    int saved = errno;
    if (close(fd) < 0 && rc == 0) {
        rc = -1;
        saved = errno;
    }
    if (rc == 0 && renameat(dfd, tmp, dfd, name) < 0) {
        rc = -1;
        saved = errno;
    }
    if (rc < 0) {
        (void)unlinkat(dfd, tmp, 0);
        errno = saved;
        return -1;
    }
    /* some filesystems cannot fsync a directory; the rename is then as durable as it gets */
    if (fsync(dfd) < 0 && errno != EINVAL && errno != EROFS)
        return -1;
    return 0;
}
