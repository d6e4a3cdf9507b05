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

int atomic_write_file(const char *path, const void *data, size_t len, unsigned mode,
                      const char *crash_point)
{
    char tmp[4200];
    const char *slash = strrchr(path, '/');
    int w = snprintf(tmp, sizeof(tmp), "%.*s.%s.tmp", slash ? (int)(slash - path + 1) : 0, path,
                     slash ? slash + 1 : path);
    if (w < 0 || (size_t)w >= sizeof(tmp)) {
        errno = ENAMETOOLONG;
        return -1;
    }
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, (mode_t)mode);
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
    if (rc == 0 && rename(tmp, path) < 0) {
        rc = -1;
        saved = errno;
    }
    if (rc < 0) {
        (void)unlink(tmp);
        errno = saved;
        return -1;
    }
    return fsync_parent_dir(path);
}
