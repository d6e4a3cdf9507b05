/* tar_in: extracts a tar archive a client uploaded (ustar, GNU long names, pax path and
 * linkpath) into an empty directory. Refuses the whole archive, before or while writing,
 * for: a member with an absolute path or a ".." component, a hard link, a symlink whose
 * target is absolute or leaves the tree, device nodes and FIFOs, a member below a symlink,
 * a duplicate member, more than the byte or entry limits, a damaged header. Writes only below
 * the directory it is given, new files only (O_EXCL), never through a link (O_NOFOLLOW);
 * modes are 0644/0755 (owners, setuid bits and times of the archive are ignored). */
#ifndef AGENTBOX_TAR_IN_H
#define AGENTBOX_TAR_IN_H

#include <stddef.h>
#include <stdint.h>

#define TAR_IN_MAX_ENTRIES 100000

/* Returns the number of members written, or -1 with err (what is already written stays: the
 * caller removes the directory). */
int tar_in_extract(const unsigned char *data, size_t len, int dirfd, uint64_t max_bytes, char *err,
                   size_t errsz);

#endif
