/* exec_tty: see exec_tty.h. */
#include "exec_tty.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "util.h"

int exec_tty_open(struct exec_tty *t, char *err, size_t errsz)
{
    memset(t, 0, sizeof(*t));
    t->slave = -1;
    t->master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (t->master < 0 || grantpt(t->master) < 0 || unlockpt(t->master) < 0)
        return errf(err, errsz, "-t: cannot open a pseudo-terminal: %s", strerror(errno));
    char name[128];
    if (ptsname_r(t->master, name, sizeof(name)) != 0 ||
        (t->slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0)
        return errf(err, errsz, "-t: cannot open %s: %s", name, strerror(errno));
    struct winsize ws;
    if (isatty(STDIN_FILENO) && ioctl(STDIN_FILENO, TIOCGWINSZ, &ws) == 0)
        (void)ioctl(t->master, TIOCSWINSZ, &ws);
    if (isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &t->saved) == 0) {
        struct termios raw = t->saved;
        cfmakeraw(&raw);
        if (tcsetattr(STDIN_FILENO, TCSANOW, &raw) == 0)
            t->raw = true;
    }
    return 0;
}

static bool pass(int from, int to)
{
    char buf[16384];
    ssize_t n = read(from, buf, sizeof(buf));
    if (n < 0 && (errno == EINTR || errno == EAGAIN))
        return true;
    return n > 0 && write_all(to, buf, (size_t)n) == 0;
}

int exec_tty_wait(struct exec_tty *t, struct cell *c, int sfd, double timeout_s)
{
    if (t->slave >= 0) { /* the cell holds its copies: EOF/EIO on the master when it is gone */
        (void)close(t->slave);
        t->slave = -1;
    }
    double deadline = timeout_s > 0 ? monotonic_s() + timeout_s : 0;
    bool in_open = true, out_open = true;
    int sig = 0;
    for (;;) {
        int ms = -1;
        if (deadline > 0) {
            double left = deadline - monotonic_s();
            ms = left <= 0 ? 0 : (int)(left * 1000) + 1;
        }
        struct pollfd p[4] = {{.fd = cell_pidfd(c), .events = POLLIN},
                              {.fd = sfd, .events = POLLIN},
                              {.fd = out_open ? t->master : -1, .events = POLLIN},
                              {.fd = in_open ? STDIN_FILENO : -1, .events = POLLIN}};
        int r = poll(p, 4, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            (void)cell_kill(c);
            break;
        }
        if (p[2].revents && !pass(t->master, STDOUT_FILENO))
            out_open = false;
        if (p[3].revents && !pass(STDIN_FILENO, t->master))
            in_open = false;
        if (p[0].revents)
            break;
        if (p[1].revents) {
            struct signalfd_siginfo si;
            if (read(sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
                (void)cell_kill(c);
                sig = (int)si.ssi_signo;
                break;
            }
        }
        if (deadline > 0 && monotonic_s() >= deadline) {
            (void)cell_timeout(c);
            break;
        }
    }
    /* what the command wrote just before it exited */
    (void)fcntl(t->master, F_SETFL, O_NONBLOCK);
    while (out_open && pass(t->master, STDOUT_FILENO)) {
        struct pollfd p = {.fd = t->master, .events = POLLIN};
        if (poll(&p, 1, 50) <= 0)
            break;
    }
    return sig;
}

void exec_tty_close(struct exec_tty *t)
{
    if (t->raw)
        (void)tcsetattr(STDIN_FILENO, TCSANOW, &t->saved);
    t->raw = false;
    if (t->slave >= 0)
        (void)close(t->slave);
    if (t->master > 0)
        (void)close(t->master);
    t->slave = t->master = -1;
}
