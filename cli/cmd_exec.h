/* cmd_exec: `agentbox exec [OPTS] -- CMD [ARG...]`. The option parser is a separate
 * function so it can be tested without running anything. */
#ifndef AGENTBOX_CMD_EXEC_H
#define AGENTBOX_CMD_EXEC_H

#include <stdbool.h>
#include <stddef.h>

#include "exec_opts.h"
#include "policy.h"

struct exec_options {
    const char *policy; /* NAME or PATH; "default" */
    struct policy_limits limits;
    unsigned set; /* LIMIT_SET_* */
    const char *workspace_from;
    int network_host; /* -1 not given, 0 none, 1 host */
    const char *meta;
    const char *allow[64]; /* --allow-host (egress_exec.c) */
    size_t nallow;
    const char *resolve[32]; /* --resolve */
    size_t nresolve;
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
