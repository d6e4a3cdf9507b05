/* exec_tty: `agentbox exec -t`: a pseudo-terminal whose slave is the command's stdin, stdout
 * and stderr (and, through `setsid --ctty` in the cell, its controlling terminal, so job
 * control works), relayed to the caller's stdio, with the caller's terminal in raw mode for
 * the duration and restored on every exit path. TIOCSTI stays refused by the cell's seccomp
 * filter: the pty is the cell's, and nothing reaches the caller's terminal but bytes. */
#ifndef AGENTBOX_EXEC_TTY_H
#define AGENTBOX_EXEC_TTY_H

#include <stdbool.h>
#include <stddef.h>
#include <termios.h>

#include "cell.h"

struct exec_tty {
    int master, slave;
    bool raw;
    struct termios saved;
};

int exec_tty_open(struct exec_tty *t, char *err, size_t errsz);
/* Relays until pid 1 exits, the deadline, or a signal on sfd; returns the signal that made
 * agentbox kill the cell, or 0 (the same contract as exec's own wait). */
int exec_tty_wait(struct exec_tty *t, struct cell *c, int sfd, double timeout_s);
void exec_tty_close(struct exec_tty *t);

#endif
