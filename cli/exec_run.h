/* exec_run: what exec's script options (exec_opts.h) do around the one cell of `agentbox
 * exec`: the environment and command line it gets, the extra read-only binds, a git
 * workspace (--git REPO[@REV], a fresh clone read with the caller's rights), the terminal
 * (-t) and the output files copied out afterwards. cmd_exec calls it at fixed points and
 * keeps its own flow, messages and exit codes. */
#ifndef AGENTBOX_EXEC_RUN_H
#define AGENTBOX_EXEC_RUN_H

#include <stdbool.h>
#include <stddef.h>

#include "cell.h"
#include "cmd_exec.h"
#include "exec_tty.h"
#include "git_workspace.h"

#define EXEC_RUN_USAGE                                                                             \
    "  --env NAME=VALUE|NAME  set a variable in the cell (NAME alone: this environment's "         \
    "value);\n"                                                                                    \
    "                         nothing else of this environment passes (repeatable)\n"              \
    "  --env-file FILE        NAME=VALUE lines (# comments, optional 'export ')\n"                 \
    "  --workdir DIR          run the command in DIR (relative: below /workspace)\n"               \
    "  --ro-bind SRC[:DST]    bind host SRC read-only at DST (default: the same path)\n"           \
    "  --output GLOB          copy matching /workspace files out after the command (repeatable)\n" \
    "  --output-dir DIR       where --output files go (new files only; links never followed)\n"    \
    "  --git REPO[@REV]       /workspace is a fresh clone of REPO (local or file://) at REV\n"     \
    "  -t, --tty              give the command a pseudo-terminal (interactive use)\n"

struct exec_run {
    struct exec_extra *x;
    char **argv;
    char *const *envp;
    struct git_ws_spec *gspec;
    struct git_ws git;
    const char *seed;
    int seed_fd; /* the clone, opened like any seed (the cell gets this descriptor) */
    struct exec_tty tty;
    bool tty_on;
    int ws_fd;
};

/* After the policy is loaded: checks the options, adds the binds, builds argv and envp. */
int exec_run_prepare(struct exec_run *r, const struct exec_options *o, struct policy *pol,
                     char *err, size_t errsz);
/* Right before the cell: the git clone and the terminal; sets cfg's seed and stdio. */
int exec_run_start(struct exec_run *r, struct cell_config *cfg, char *err, size_t errsz);
/* Between pid 1's exit and cell_reap: keeps a handle on /workspace when outputs are wanted. */
void exec_run_keep_workspace(struct exec_run *r, const struct cell *c);
/* After the cell: the outputs (when ran), the terminal restored, the clone removed. Returns
 * -1 when outputs were asked for and could not all be copied (the message is printed). */
int exec_run_finish(struct exec_run *r, bool ran);

#endif
