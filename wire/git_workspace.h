/* git_workspace: a task's `workspace.git` ({"repo", "rev"}) on the host side: checks the
 * spec, makes a fresh clone of the repository at the revision in a private temporary
 * directory (git run as the requester, so it reads only what the requester may read), hands
 * its work tree to the cell as the seed, and removes it afterwards. Never writes to the
 * requester's repository (a --no-hardlinks clone copies the objects it needs), never fetches
 * from the network (git's transports are limited to file), never lets the cell reach the
 * clone other than through the read-only seed. */
#ifndef AGENTBOX_GIT_WORKSPACE_H
#define AGENTBOX_GIT_WORKSPACE_H

#include <cjson/cJSON.h>
#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define GIT_WS_REV_MAX 256

struct git_ws_spec {
    char *repo; /* an absolute path or a file:// URL */
    char *rev;
};

/* ctx names the field in errors ("task.workspace.git", "--git"). */
int git_ws_spec_parse(const cJSON *git, const char *ctx, struct git_ws_spec **out, char *err,
                      size_t errsz);
/* "REPO@REV" (the last '@'); REV defaults to HEAD. */
int git_ws_spec_from_arg(const char *arg, struct git_ws_spec **out, char *err, size_t errsz);
void git_ws_spec_free(struct git_ws_spec *s);
cJSON *git_ws_spec_json(const struct git_ws_spec *s);

struct git_ws {
    char top[PATH_MAX];      /* the private temporary directory (0711, the supervisor's) */
    char tree[PATH_MAX + 8]; /* top/ws: the clone's work tree, the seed (the requester's) */
    char commit[65];         /* REV resolved */
    bool drop;
    uid_t uid;
    gid_t gid;
    double prepare_s;
};

/* The requester: uid/gid git runs as (drop false: this process's own ids). ctx as above.
 * On error nothing is left on disk. */
int git_ws_prepare(const struct git_ws_spec *s, const char *ctx, bool drop, uid_t uid, gid_t gid,
                   struct git_ws *out, char *err, size_t errsz);
/* Removes the clone; safe to call twice or on a zeroed struct. */
void git_ws_cleanup(struct git_ws *w);

#endif
