/* connect: tries to reach a host service from inside a cell. usage:
 *   connect abstract NAME   (abstract unix socket "\0NAME")
 *   connect unix PATH       connect tcp4 PORT   connect tcp6 PORT   connect udp4 PORT
 * Sends a marker line if it connects. Prints "connect=0" or "connect=ERRNO". */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 3)
        return 2;
    const char *kind = argv[1];
    struct sockaddr_storage ss;
    socklen_t len;
    int fam, type = SOCK_STREAM;
    memset(&ss, 0, sizeof ss);
    if (strcmp(kind, "abstract") == 0 || strcmp(kind, "unix") == 0) {
        struct sockaddr_un *un = (struct sockaddr_un *)&ss;
        fam = un->sun_family = AF_UNIX;
        size_t n = strlen(argv[2]);
        if (n > sizeof un->sun_path - 2)
            return 2;
        int off = kind[0] == 'a' ? 1 : 0;
        memcpy(un->sun_path + off, argv[2], n);
        len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + off + n);
    } else if (strcmp(kind, "tcp6") == 0) {
        struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
        fam = in6->sin6_family = AF_INET6;
        in6->sin6_port = htons((unsigned short)atoi(argv[2]));
        in6->sin6_addr = in6addr_loopback;
        len = sizeof *in6;
    } else {
        struct sockaddr_in *in = (struct sockaddr_in *)&ss;
        fam = in->sin_family = AF_INET;
        in->sin_port = htons((unsigned short)atoi(argv[2]));
        in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof *in;
        if (strcmp(kind, "udp4") == 0)
            type = SOCK_DGRAM;
    }
    int fd = socket(fam, type | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        printf("socket=%s\n", strerrorname_np(errno));
        return 0;
    }
    if (connect(fd, (struct sockaddr *)&ss, len) < 0) {
        printf("connect=%s\n", strerrorname_np(errno));
        return 0;
    }
    ssize_t w = send(fd, "ABX_CONNECTED\n", 14, 0);
    printf("connect=0 send=%zd\n", w);
    close(fd);
    return 0;
}
