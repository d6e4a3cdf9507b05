/* cmd_exec: `agentbox exec [OPTS] -- CMD [ARG...]` (SPEC.md). The option parser is a separate
 * function so it can be tested without running anything. */
#ifndef AGENTBOX_CMD_EXEC_H
#define AGENTBOX_CMD_EXEC_H

#include <stdbool.h>
#include <stddef.h>

#include "exec_opts.h"
#include "policy.h"

/* Which limits an option overrode (bits), so policy defaults fill in the rest. */
enum {
    EXEC_SET_TIMEOUT = 1 << 0,
    EXEC_SET_DISK = 1 << 1,
    EXEC_SET_INODES = 1 << 2,
    EXEC_SET_MEMORY = 1 << 3,
    EXEC_SET_PIDS = 1 << 4,
    EXEC_SET_CPU = 1 << 5,
};

struct exec_options {
    const char *policy; /* NAME or PATH; "default" */
    struct policy_limits limits;
    unsigned set; /* EXEC_SET_* */
    const char *workspace_from;
    int network_host; /* -1 not given, 0 none, 1 host */
    const char *meta;
    bool help;
    char **argv;          /* the command, NULL-terminated (points into argv) */
    struct exec_extra *x; /* --env, --workdir, --ro-bind, --output, --git, -t (exec_opts.h) */
};

/* Parses argv (argv[0] = "exec"). Returns 0, or -1 with a message naming the option. */
int exec_options_parse(int argc, char **argv, struct exec_options *o, char *err, size_t errsz);
/* Applies the options' overrides to a policy's default limits. */
void exec_options_limits(const struct exec_options *o, const struct policy_limits *defaults,
                         struct policy_limits *out);

#endif
