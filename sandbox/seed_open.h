/* seed_open: opens a seed directory (--workspace-from, workspace.from_dir) on the host side,
 * with the rights of whoever asked for it, before any cell exists. The cell then gets only the
 * descriptor: nothing on the cell side ever resolves the host path. Never opens anything with
 * more rights than the requester has, and never lets another user redirect a root requester
 * into a directory that user could not read. */
#ifndef AGENTBOX_SEED_OPEN_H
#define AGENTBOX_SEED_OPEN_H

#include <stddef.h>
#include <sys/types.h>

#define SEED_GROUPS_MAX 64

/* Who asked for the seed: a serve client (SO_PEERCRED / SO_PEERGROUPS). */
struct seed_requester {
    uid_t uid;
    gid_t gid;
    gid_t groups[SEED_GROUPS_MAX];
    int ngroups;
};

/* An absolute form of path: as given, or below the current directory; nothing on the file
 * system is looked at (a name is only resolved by seed_open). -1 if it does not fit. */
int seed_absolute_path(const char *path, char *out, size_t outsz);

/* Fills *who with the credentials of the peer of a connected Unix socket; -1 on error. */
int seed_requester_from_socket(int fd, struct seed_requester *who);

/* Opens path (absolute) as a directory the requester may read and search, and returns the
 * descriptor (O_RDONLY | O_DIRECTORY | O_CLOEXEC), or -1 with "PATH: why" in err.
 * who NULL: this process's own rights. A requester that is root (or this process, when it is
 * root) walks the path one name at a time and refuses to go through a directory another user
 * owns or may write (a sticky one only for entries root owns) or to follow a symlink another
 * user owns: the policy the kernel applies to symlinks with fs.protected_symlinks, for every
 * component. Another requester is read with its own uid, gid and groups (this thread's file
 * system ids switched for the open, then restored); a non-root process can only open for its
 * own uid. */
int seed_open(const char *path, const struct seed_requester *who, char *err, size_t errsz);

#endif
