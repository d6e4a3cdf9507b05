/* commands: the entry point of every `agentbox CMD`. Each takes the arguments after the
 * command name (argv[0] is the command name) and returns the process exit code.
 * Only this layer chooses exit codes and prints to the user. */
#ifndef AGENTBOX_COMMANDS_H
#define AGENTBOX_COMMANDS_H

#define AGENTBOX_VERSION "0.1.0"

/* Exit codes of run, wait and batch: a finished task's (EXIT_TASK_*) are status.h's. */
#include "status.h"
#define EXIT_USAGE 2
/* wait --timeout (and submit --wait --wait-timeout) gave up: the task is still running. */
#define EXIT_WAIT_TIMEOUT 5

/* The socket of `agentbox serve` and its clients when neither --socket nor $AGENTBOX_SOCKET
 * says otherwise: the path deploy/agentbox.socket and the Python client use. */
#define AGENTBOX_DEFAULT_SOCKET "/run/agentbox-api/agentbox.sock"
/* Exit codes of exec that are not the command's own. */
#define EXIT_EXEC_TIMEOUT 124
#define EXIT_EXEC_SETUP   125

/* Declared weak so a command whose module is not linked in is reported as absent. */
#define COMMAND(name) __attribute__((weak)) int name(int argc, char **argv)
COMMAND(cmd_exec);
COMMAND(cmd_run);
COMMAND(cmd_serve);
COMMAND(cmd_client); /* submit wait status cancel events list health metrics */
COMMAND(cmd_batch);
COMMAND(cmd_models);
COMMAND(cmd_policy);
COMMAND(cmd_llm);            /* drive the OpenRouter client directly (diagnostics) */
COMMAND(cmd_internal_agent); /* pid 1 of an agent cell; not for users */

COMMAND(cmd_internal_egress); /* a cell's egress proxy helper; not for users */
#undef COMMAND

#endif
