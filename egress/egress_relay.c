/* egress_relay: the byte pump of one proxied connection. splice(2) through a pipe per
 * direction, so the payload never enters user space (a plain copy loop where no pipe can be
 * had); non-blocking both ways, so neither side can stall the other; bounded by the
 * connection's deadline and the task's byte cap. Never looks at the bytes. */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress_proxy.h"
#include "util.h"

#define PIPE_BYTES (256 * 1024) /* x2 per connection, on demand; bounded by the concurrency cap */
#define SPINS      16           /* fill/drain rounds before polling again */
#define COPY_BYTES 65536

struct dir {
    int from, to;
    int pr, pw; /* the pipe (splice), or -1 (copy through buf) */
    char *buf;
    size_t cap;      /* the pipe's size, or COPY_BYTES */
    size_t len, off; /* bytes waiting (in the pipe or in buf) */
    bool eof, shut;  /* read side done; write side shut down after the last byte */
};

/* The pipe takes more while it has room (reading and writing overlap); the buffer only once
 * it is empty. */
static bool can_fill(const struct dir *x)
{
    return !x->eof && (x->pr >= 0 ? x->len < x->cap : x->len == 0);
}

/* Moves what is readable from x->from into the pipe or buffer. 1 data, 0 nothing now, -1 EOF
 * or error (the direction is done). */
static int fill(struct dir *x, size_t *n)
{
    ssize_t r = x->pr >= 0 ? splice(x->from, NULL, x->pw, NULL, x->cap - x->len,
                                    SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                           : recv(x->from, x->buf, COPY_BYTES, MSG_DONTWAIT);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r <= 0)
        return -1;
    *n = (size_t)r;
    if (x->pr >= 0) {
        x->len += (size_t)r;
    } else {
        x->len = (size_t)r;
        x->off = 0;
    }
    return 1;
}

/* Writes what is waiting to x->to. 0 ok (maybe partial), -1 the peer is gone. */
static int drain(struct dir *x)
{
    ssize_t r = x->pr >= 0
                    ? splice(x->pr, NULL, x->to, NULL, x->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK)
                    : send(x->to, x->buf + x->off, x->len, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0 && (errno == EAGAIN || errno == EINTR))
        return 0;
    if (r < 0)
        return -1;
    x->off += (size_t)r;
    x->len -= (size_t)r;
    return 0;
}

static int setup(struct dir *x, int from, int to, char *buf)
{
    int pfd[2];
    *x = (struct dir){.from = from, .to = to, .pr = -1, .pw = -1, .buf = buf, .cap = COPY_BYTES};
    if (pipe2(pfd, O_NONBLOCK | O_CLOEXEC) < 0)
        return buf ? 0 : -1;
    (void)fcntl(pfd[1], F_SETPIPE_SZ, PIPE_BYTES);
    int size = fcntl(pfd[1], F_GETPIPE_SZ); /* less than asked when over the user's quota */
    x->pr = pfd[0];
    x->pw = pfd[1];
    x->cap = size > 0 ? (size_t)size : 4096;
    return 0;
}

static enum egress_relay_end pump(struct egress_proxy *p, struct dir *d, int cell, int up,
                                  double deadline)
{
    while (!(d[0].shut && d[1].shut)) {
        struct pollfd pf[2] = {{.fd = cell}, {.fd = up}};
        for (int i = 0; i < 2; i++) {
            if (can_fill(&d[i]))
                pf[i].events |= POLLIN;
            if (d[i].len > 0)
                pf[1 - i].events |= POLLOUT;
        }
        int ms = (int)((deadline - monotonic_s()) * 1000);
        if (ms <= 0)
            return EGRESS_RELAY_DEADLINE;
        int r = poll(pf, 2, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r == 0)
            return EGRESS_RELAY_DEADLINE;
        if (r < 0)
            return EGRESS_RELAY_DONE;
        for (int i = 0; i < 2; i++) {
            struct dir *x = &d[i];
            /* a busy direction moves several chunks per poll: fewer system calls */
            for (int spin = 0; spin < SPINS; spin++) {
                size_t n = 0, before = x->len;
                int f = can_fill(x) ? fill(x, &n) : 0;
                if (f < 0)
                    x->eof = true;
                if (f > 0 && !egress_count_bytes(p, i == 1 ? n : 0, i == 0 ? n : 0))
                    return EGRESS_RELAY_BYTE_CAP;
                if (x->len > 0 && drain(x) < 0)
                    return EGRESS_RELAY_DONE;
                if (x->eof && x->len == 0 && !x->shut) {
                    x->shut = true; /* every byte passed on: pass the end on too */
                    (void)shutdown(x->to, SHUT_WR);
                }
                if (f <= 0 || x->len >= before + n)
                    break; /* nothing more to read now, or the writer took nothing */
            }
        }
    }
    return EGRESS_RELAY_DONE;
}

enum egress_relay_end egress_relay(struct egress_proxy *p, int cell, int up, double deadline)
{
    (void)fcntl(cell, F_SETFL, O_NONBLOCK);
    (void)fcntl(up, F_SETFL, O_NONBLOCK);
    struct dir d[2] = {{.pr = -1, .pw = -1}, {.pr = -1, .pw = -1}};
    char *mem = NULL;
    if (setup(&d[0], cell, up, NULL) < 0 || setup(&d[1], up, cell, NULL) < 0) {
        /* no pipes to be had (fd limit): copy through a buffer instead */
        for (int i = 0; i < 2; i++)
            if (d[i].pr >= 0) {
                (void)close(d[i].pr);
                (void)close(d[i].pw);
            }
        mem = malloc(2 * COPY_BYTES);
        if (!mem)
            return EGRESS_RELAY_DONE;
        d[0] = (struct dir){.from = cell, .to = up, .pr = -1, .pw = -1, .buf = mem};
        d[1] = (struct dir){.from = up, .to = cell, .pr = -1, .pw = -1, .buf = mem + COPY_BYTES};
    }
    enum egress_relay_end end = pump(p, d, cell, up, deadline);
    for (int i = 0; i < 2; i++)
        if (d[i].pr >= 0) {
            (void)close(d[i].pr);
            (void)close(d[i].pw);
        }
    free(mem);
    return end;
}
