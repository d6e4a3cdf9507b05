/* main: dispatches `agentbox CMD ...` to its command. Knows nothing about any command. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "util.h"

struct command {
    const char *name;
    int (**fn)(int, char **); /* pointer to the (weak) symbol */
    const char *summary;
};

static int (*p_exec)(int, char **) = cmd_exec;
static int (*p_run)(int, char **) = cmd_run;
static int (*p_serve)(int, char **) = cmd_serve;
static int (*p_client)(int, char **) = cmd_client;
static int (*p_batch)(int, char **) = cmd_batch;
static int (*p_models)(int, char **) = cmd_models;
static int (*p_policy)(int, char **) = cmd_policy;
static int (*p_llm)(int, char **) = cmd_llm;
static int (*p_agent)(int, char **) = cmd_internal_agent;
static int (*p_egress)(int, char **) = cmd_internal_egress;

static const struct command commands[] = {
    {"exec", &p_exec, "run one command in a fresh cell (no LLM)"},
    {"run", &p_run, "run one agent task in a cell; result JSON on stdout"},
    {"serve", &p_serve, "the supervisor daemon on a Unix socket"},
    {"submit", &p_client, "submit a task to a supervisor"},
    {"wait", &p_client, "wait for a task's result"},
    {"status", &p_client, "a task's status"},
    {"cancel", &p_client, "cancel a task"},
    {"events", &p_client, "a task's events (or all)"},
    {"list", &p_client, "list tasks"},
    {"health", &p_client, "supervisor health"},
    {"metrics", &p_client, "supervisor metrics (Prometheus text)"},
    {"batch", &p_batch, "run a JSONL batch of tasks (CI)"},
    {"models", &p_models, "the model catalog"},
    {"policy", &p_policy, "check a policy file, or show the effective policy"},
    {"llm", &p_llm, "send one chat request through the client (diagnostics)"},
};

static void usage(FILE *out)
{
    fprintf(out, "usage: agentbox COMMAND [OPTIONS] ...\n\n"
                 "A sandbox executor for untrusted LLM agent tasks.\n\ncommands:\n");
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
        if (*commands[i].fn)
            fprintf(out, "  %-8s %s\n", commands[i].name, commands[i].summary);
    fprintf(out,
            "\n`agentbox help COMMAND` (or `agentbox COMMAND --help`) describes each command;\n"
            "`agentbox --version` (-V) prints the version.\n");
}

int main(int argc, char **argv)
{
    (void)self_exe_path(); /* resolve before anything could change what it points to */
    if (argc < 2) {
        usage(stderr);
        return EXIT_USAGE;
    }
    const char *name = argv[1];
    if (strcmp(name, "help") == 0 && argc >= 3) { /* `agentbox help CMD`: CMD --help */
        static char help_opt[] = "--help";
        char *hargv[] = {argv[2], help_opt, NULL};
        for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
            if (strcmp(argv[2], commands[i].name) == 0 && *commands[i].fn)
                return (*commands[i].fn)(2, hargv);
        fprintf(stderr, "agentbox: no command '%s' (try agentbox --help)\n", argv[2]);
        return EXIT_USAGE;
    }
    if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 || strcmp(name, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(name, "--version") == 0 || strcmp(name, "-V") == 0) {
        printf("agentbox %s\n", AGENTBOX_VERSION);
        return 0;
    }
    if (strcmp(name, "__agent") == 0 && p_agent)
        return p_agent(argc - 1, argv + 1);
    if (strcmp(name, "__egress") == 0 && p_egress)
        return p_egress(argc - 1, argv + 1);
    for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++) {
        if (strcmp(name, commands[i].name) != 0)
            continue;
        if (!*commands[i].fn) {
            fprintf(stderr, "agentbox: '%s' is not part of this build\n", name);
            return EXIT_USAGE;
        }
        return (*commands[i].fn)(argc - 1, argv + 1);
    }
    fprintf(stderr, "agentbox: unknown command '%s' (try agentbox --help)\n", name);
    return EXIT_USAGE;
}
