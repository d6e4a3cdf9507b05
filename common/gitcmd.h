/* gitcmd: runs one helper program (git, sh) as a child with an environment the caller names
 * in full, optionally as another uid (the requester's), and captures its stdout (bounded)
 * and the tail of its stderr. Never uses a shell to build a command line, never passes this
 * process's environment, never lets the child run past its timeout. */
#ifndef AGENTBOX_GITCMD_H
#define AGENTBOX_GITCMD_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>

#define GITCMD_ERRTAIL 1024

struct gitcmd {
    char *const *argv; /* argv[0] is the program's absolute path */
    char *const *envp;
    const char *cwd; /* chdir'd to before dropping privileges; NULL = unchanged */
    bool drop;       /* become uid/gid (no supplementary groups) before exec */
    uid_t uid;
    gid_t gid;
    int stdin_fd;     /* -1: /dev/null */
    size_t max_out;   /* stdout bytes kept (0: stdout goes to /dev/null) */
    double timeout_s; /* 0: 600 s */
};

struct gitcmd_result {
    int status; /* exit code; 128+N for a signal; -1 when the timeout killed it */
    char *out;  /* malloc'd, NUL-terminated (NULL when max_out is 0) */
    size_t outlen;
    bool truncated;               /* stdout went past max_out (the child was killed) */
    char errtail[GITCMD_ERRTAIL]; /* last bytes of stderr, NUL-terminated, trimmed */
};

/* Returns 0 with *res filled (whatever the child's status), or -1 with err when it could
 * not be started. */
int gitcmd_run(const struct gitcmd *c, struct gitcmd_result *res, char *err, size_t errsz);
void gitcmd_result_free(struct gitcmd_result *res);
/* Removes the tree below path (symlinks removed, never followed), as uid/gid when drop.
 * Returns 0 when it is gone. */
int gitcmd_remove_tree(const char *path, bool drop, uid_t uid, gid_t gid);

#endif
