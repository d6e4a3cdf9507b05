/* mounts_restrict: adds attributes to a mount, the one helper both the root's set-up
 * (mounts.c) and the workspace's (workspace.c) use, kept apart so that neither calls the
 * other back. Never clears an attribute. */
#include "cell_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/statvfs.h>

/* Adds flags to a mount (and, when recursive, to every mount below it). mount_setattr
 * (Linux 5.12) only sets bits, so flags the kernel locked (a mount inherited from a more
 * privileged namespace) stay as they were; the older remount needs them restated, read
 * back with statvfs, or it fails with EPERM. */
int mounts_restrict(const char *path, unsigned attrs, bool recursive)
{
    struct mount_attr ma = {.attr_set = attrs};
    if (mount_setattr(AT_FDCWD, path, recursive ? AT_RECURSIVE : 0, &ma, sizeof(ma)) == 0)
        return 0;
    if (errno != ENOSYS)
        return -1;
    struct statvfs sv;
    if (statvfs(path, &sv) < 0)
        return -1;
    unsigned long fl = MS_BIND | MS_REMOUNT;
    fl |= (sv.f_flag & ST_RDONLY) || (attrs & MOUNT_ATTR_RDONLY) ? MS_RDONLY : 0;
    fl |= (sv.f_flag & ST_NOSUID) || (attrs & MOUNT_ATTR_NOSUID) ? MS_NOSUID : 0;
    fl |= (sv.f_flag & ST_NODEV) || (attrs & MOUNT_ATTR_NODEV) ? MS_NODEV : 0;
    fl |= (sv.f_flag & ST_NOEXEC) || (attrs & MOUNT_ATTR_NOEXEC) ? MS_NOEXEC : 0;
    fl |= sv.f_flag & ST_NOATIME ? MS_NOATIME : 0;
    fl |= sv.f_flag & ST_NODIRATIME ? MS_NODIRATIME : 0;
    fl |= sv.f_flag & ST_RELATIME ? MS_RELATIME : 0;
    return mount(NULL, path, NULL, fl, NULL);
}
