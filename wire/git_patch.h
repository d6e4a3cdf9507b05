/* git_patch: inside the cell, the change the agent made to a git workspace against the
 * commit it started from, as `git diff --binary` (new files included, deletions, modes).
 * Computed with the pristine repository of the read-only seed (its configuration, its
 * objects) and a throw-away index and object directory under /tmp: nothing the agent did to
 * /workspace/.git (hooks, config, a rewritten history, a deleted .git) changes what the patch
 * is measured against or what runs. */
#ifndef AGENTBOX_GIT_PATCH_H
#define AGENTBOX_GIT_PATCH_H

#include <stdbool.h>
#include <stddef.h>

/* seed_git: the seed's .git directory; worktree: /workspace; commit: 40/64 hex digits.
 * Returns 0 with *out (malloc'd, "" when nothing changed; *truncated when it passed max) or
 * -1 with err. */
int git_patch_compute(const char *seed_git, const char *worktree, const char *commit, size_t max,
                      double timeout_s, char **out, bool *truncated, char *err, size_t errsz);

/* Agent side: computes the patch of CELL_WORKSPACE against commit (the seed's .git) and
 * sends it as one "patch" message ({"truncated", "error"?}, the patch as the payload). */
#define GIT_PATCH_MAX_BYTES (32u << 20)
int git_patch_send(int chan, const char *commit);

#endif
