/* egress_listen: the cell side of egress: the socket, listening on 127.0.0.1 inside the
 * cell's own network namespace, that the supervisor's proxy accepts on. Made by the cell
 * before it drops its capabilities and handed to the parent; never kept by the cell. */
#include "cell_internal.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

int egress_listen_child(struct cell_child *ctx)
{
    int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return CHILD_FAIL(ctx, "proxy socket");
    int one = 1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(CELL_PROXY_PORT)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
        bind(s, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(s, 1024) < 0) {
        (void)close(s);
        return CHILD_FAIL(ctx, "proxy listen");
    }
    return s;
}
