/* relay_floor: the reference bench_egress.py measures the egress proxy against besides a direct
 * download: the least any relay in the path costs on this machine. It is not a proxy: no
 * request is parsed, nothing is checked or counted. It listens on 127.0.0.1 (the port is
 * printed on stdout), and for each connection opens one to 127.0.0.1:TARGET and moves the
 * bytes both ways with splice(2) through a pipe per direction, one thread per connection, as
 * the proxy's relay does.
 *
 *   relay_floor TARGET_PORT
 *
 * Runs until killed. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

#define PIPE_BYTES (256 * 1024)

static int target_port;

struct pair {
    int client, server;
};

/* Moves what is there from one socket to the other; 0 at EOF, -1 on error, 1 otherwise. */
static int pump(int from, int to, int p[2])
{
    ssize_t n = splice(from, NULL, p[1], NULL, PIPE_BYTES, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n == 0)
        return 0;
    if (n < 0)
        return errno == EAGAIN ? 1 : -1;
    while (n > 0) {
        ssize_t w = splice(p[0], NULL, to, NULL, (size_t)n, SPLICE_F_MOVE);
        if (w <= 0)
            return -1;
        n -= w;
    }
    return 1;
}

static void *relay(void *arg)
{
    struct pair *pr = arg;
    int up[2], down[2];
    if (pipe2(up, 0) < 0 || pipe2(down, 0) < 0)
        goto out;
    (void)fcntl(up[1], F_SETPIPE_SZ, PIPE_BYTES);
    (void)fcntl(down[1], F_SETPIPE_SZ, PIPE_BYTES);
    struct pollfd fds[2] = {{.fd = pr->client, .events = POLLIN},
                            {.fd = pr->server, .events = POLLIN}};
    while (poll(fds, 2, -1) > 0) {
        if (fds[0].revents && pump(pr->client, pr->server, up) <= 0)
            break;
        if (fds[1].revents && pump(pr->server, pr->client, down) <= 0)
            break;
    }
out:
    close(pr->client);
    close(pr->server);
    free(pr);
    return NULL;
}

static int connect_target(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)target_port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(s);
        return -1;
    }
    return s;
}

int main(int argc, char **argv)
{
    if (argc != 2)
        return 2;
    target_port = atoi(argv[1]);
    int l = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof(a);
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(l, 512) < 0 ||
        getsockname(l, (struct sockaddr *)&a, &al) < 0)
        return 1;
    printf("%d\n", ntohs(a.sin_port));
    fflush(stdout);
    for (;;) {
        int c = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        if (c < 0)
            continue;
        struct pair *pr = malloc(sizeof(*pr));
        int s = connect_target();
        pthread_t t;
        if (!pr || s < 0) {
            close(c);
            if (s >= 0)
                close(s);
            free(pr);
            continue;
        }
        *pr = (struct pair){c, s};
        if (pthread_create(&t, NULL, relay, pr) != 0) {
            close(c);
            close(s);
            free(pr);
            continue;
        }
        pthread_detach(t);
    }
}
