/* exec_opts: the options of `agentbox exec` for scripts: --env K[=V], --env-file FILE,
 * --workdir DIR, --ro-bind SRC[:DST], --output GLOB, --output-dir DIR, --git REPO[@REV] and
 * -t. Parses them, builds the cell's environment (only what was named: the caller's
 * environment never passes on its own, the API key never), wraps the command for its working
 * directory and terminal, adds the read-only binds to the policy, and copies the output
 * files out of the dead cell's workspace. Never writes to the host except below
 * --output-dir, and there only new files (O_EXCL), never through a link (O_NOFOLLOW). */
#ifndef AGENTBOX_EXEC_OPTS_H
#define AGENTBOX_EXEC_OPTS_H

#include <stdbool.h>
#include <stddef.h>

#include "policy.h"

#define EXEC_ENV_MAX     256
#define EXEC_BINDS_MAX   32
#define EXEC_OUTPUTS_MAX 64

struct exec_extra {
    char *env[EXEC_ENV_MAX + 1]; /* "K=V", malloc'd */
    size_t nenv;
    const char *workdir;
    char *bind_src[EXEC_BINDS_MAX], *bind_dst[EXEC_BINDS_MAX];
    size_t nbinds;
    const char *outputs[EXEC_OUTPUTS_MAX];
    size_t noutputs;
    const char *output_dir;
    const char *git; /* REPO[@REV] */
    bool tty;
    char **wrapped; /* the command as the cell runs it (malloc'd array) */
    char **envp;    /* the cell's environment (malloc'd array) */
};

/* The one set of these options of this process (static storage: exec runs once per
 * process), emptied (and freed) by exec_extra_reset. */
struct exec_extra *exec_extra_reset(void);
/* argv[*i] is an option: returns 1 when it was one of these (consumed, *i moved past its
 * value), 0 when it is not, -1 with err when its value is wrong. */
int exec_extra_option(int argc, char **argv, int *i, struct exec_extra *x, char *err, size_t errsz);
/* After parsing: the checks that need the whole command line. */
int exec_extra_check(const struct exec_extra *x, char *err, size_t errsz);
/* The cell's environment: cell_default_env() with the named variables over it. */
char *const *exec_extra_envp(struct exec_extra *x);
/* The command as the cell runs it (argv unchanged without --workdir and -t). */
char **exec_extra_argv(struct exec_extra *x, char **argv);
/* Adds the --ro-bind entries to the policy's read-only binds. */
int exec_extra_binds(const struct exec_extra *x, struct policy *pol, char *err, size_t errsz);
/* Copies the files matching --output from the workspace (a directory fd of the dead cell's
 * /workspace) into --output-dir; returns the count copied, -1 with err. */
int exec_extra_collect(const struct exec_extra *x, int ws_fd, char *err, size_t errsz);
void exec_extra_free(struct exec_extra *x);

#endif
