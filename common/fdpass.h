/* fdpass: one message with at most one file descriptor (SCM_RIGHTS) over a Unix socket. The
 * receiver keeps the first descriptor that came and closes any others, so a peer cannot make
 * it hold descriptors it does not expect. No allocation: usable between clone and exec. */
#ifndef AGENTBOX_FDPASS_H
#define AGENTBOX_FDPASS_H
#include <stddef.h>
#include <sys/types.h>

/* Sends len bytes as one message, with fd attached when fd >= 0; MSG_NOSIGNAL, retried on
 * EINTR. Returns what sendmsg returns. */
ssize_t fdpass_send(int sock, const void *buf, size_t len, int fd);

/* Receives one message into buf (flags as for recvmsg, e.g. MSG_DONTWAIT; retried on EINTR).
 * *fd is the first descriptor that came with it (close-on-exec), or -1. Returns what recvmsg
 * returns; on -1 no descriptor is kept. */
ssize_t fdpass_recv(int sock, void *buf, size_t len, int flags, int *fd);
#endif
