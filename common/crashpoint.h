/* crashpoint: a test hook that makes the process SIGKILL itself at a named point of a
 * durable write (AGENTBOX_TEST_CRASH_AT=NAME, or NAME:N for its N-th passage), so tests can
 * put a crash exactly between two writes instead of hoping a timed kill lands there. Read
 * once by crashpoint_init; without the variable every call is one comparison. It grants
 * nothing: whoever sets a process's environment can already kill it. */
#ifndef AGENTBOX_CRASHPOINT_H
#define AGENTBOX_CRASHPOINT_H

/* Takes AGENTBOX_TEST_CRASH_AT from the environment and removes it (children never see it). */
void crashpoint_init(void);
/* SIGKILLs the calling process when name is the armed point (at its N-th passage). */
void crashpoint(const char *name);

#endif
