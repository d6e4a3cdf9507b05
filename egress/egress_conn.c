/* egress_conn: one proxied connection from a cell: read a bounded preamble within a
 * deadline, check the name and port against the allow-list, resolve once (pins first),
 * check every resolved address and connect to exactly the address checked (no second
 * lookup), then relay bytes both ways under the task's byte cap and the connection's
 * duration cap. Never connects to an address before it has been judged. */
#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "egress_http.h"
#include "egress_proxy.h"
#include "util.h"

#define RELAY_BUF      65536
#define MAX_CANDIDATES 8

void egress_respond(int fd, int status, const char *reason, const char *detail)
{
    /* the reason also goes in the status line: pip and npm print that, not the body */
    char why[512], body[768], msg[2048];
    snprintf(why, sizeof(why), "%s", detail);
    for (char *c = why; *c; c++)
        if ((unsigned char)*c < 0x20 || (unsigned char)*c == 0x7f)
            *c = ' ';
    snprintf(body, sizeof(body), "agentbox egress proxy: %s\n", why);
    int n = snprintf(msg, sizeof(msg),
                     "HTTP/1.1 %d %s (agentbox egress: %s)\r\n"
                     "Content-Type: text/plain; charset=utf-8\r\n"
                     "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                     status, reason, why, strlen(body), body);
    if (n > 0)
        (void)send(fd, msg, (size_t)n < sizeof(msg) ? (size_t)n : sizeof(msg) - 1,
                   MSG_NOSIGNAL | MSG_DONTWAIT);
}

static const char *status_reason(int st)
{
    switch (st) {
    case 400:
        return "Bad Request";
    case 403:
        return "Forbidden";
    case 408:
        return "Request Timeout";
    case 431:
        return "Request Header Fields Too Large";
    case 502:
        return "Bad Gateway";
    case 504:
        return "Gateway Timeout";
    default:
        return "HTTP Version Not Supported";
    }
}

/* Reads until the blank line, at most EGRESS_PREAMBLE_MAX bytes, before the deadline.
 * Returns the preamble length (buf holds *got bytes, maybe more than the preamble), or the
 * status to answer with (-408, -431), or -1 when the client went away. */
static long read_preamble(int fd, char *buf, size_t cap, size_t *got, double deadline)
{
    *got = 0;
    for (;;) {
        int ms = (int)((deadline - monotonic_s()) * 1000);
        if (ms <= 0)
            return -408;
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        int r = poll(&pfd, 1, ms);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return r == 0 ? -408 : -1;
        if (*got >= cap)
            return -431;
        ssize_t n = recv(fd, buf + *got, cap - *got, 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return -1;
        size_t start = *got > 3 ? *got - 3 : 0;
        *got += (size_t)n;
        size_t end = egress_preamble_end(buf + start, *got - start);
        if (end)
            return (long)(start + end);
        if (*got >= EGRESS_PREAMBLE_MAX)
            return -431;
    }
}

static int connect_timeout(const struct sockaddr *sa, socklen_t len, double timeout_s)
{
    int s = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (s < 0)
        return -1;
    if (connect(s, sa, len) < 0 && errno != EINPROGRESS) {
        int e = errno;
        (void)close(s);
        errno = e;
        return -1;
    }
    struct pollfd pfd = {.fd = s, .events = POLLOUT};
    int r;
    do
        r = poll(&pfd, 1, (int)(timeout_s * 1000));
    while (r < 0 && errno == EINTR);
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    if (r <= 0 || getsockopt(s, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr) {
        (void)close(s);
        errno = r == 0 ? ETIMEDOUT : soerr ? soerr : errno;
        return -1;
    }
    return s;
}

static void net_connect_event(struct egress_proxy *p, const char *host, unsigned port,
                              const char *addr, bool allowed, const char *why)
{
    cJSON *f = cJSON_CreateObject();
    cJSON_AddStringToObject(f, "host", host);
    cJSON_AddNumberToObject(f, "port", port);
    cJSON_AddStringToObject(f, "address", addr);
    cJSON_AddBoolToObject(f, "allowed", allowed);
    if (why)
        cJSON_AddStringToObject(f, "why", why);
    egress_emit(p, "net_connect", f);
}

/* The candidate addresses: the pin, the listed literal, or one lookup. exempt: the caller
 * named the address itself, so the private-address classes do not apply. */
static int candidates(struct egress_proxy *p, const char *host, struct sockaddr_storage *out,
                      socklen_t *lens, bool *exempt, const char **why)
{
    const struct egress_pin *pin = egress_find_pin(&p->rules, host);
    *exempt = true;
    if (pin) {
        memcpy(&out[0], &pin->addr, pin->addrlen);
        lens[0] = pin->addrlen;
        return 1;
    }
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    if (egress_is_ip_literal(host))
        hints.ai_flags = AI_NUMERICHOST;
    else
        *exempt = false;
    struct addrinfo *res = NULL;
    int rc = getaddrinfo(host, NULL, &hints, &res);
    if (rc != 0) {
        *why = rc == EAI_NONAME || rc == EAI_NODATA ? "name does not resolve" : "lookup failed";
        return 0;
    }
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < MAX_CANDIDATES; ai = ai->ai_next) {
        if ((ai->ai_family != AF_INET && ai->ai_family != AF_INET6) ||
            ai->ai_addrlen > sizeof(out[0]))
            continue;
        memcpy(&out[n], ai->ai_addr, ai->ai_addrlen);
        lens[n++] = ai->ai_addrlen;
    }
    freeaddrinfo(res);
    if (n == 0)
        *why = "name has no IPv4/IPv6 address";
    return n;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
    if (ss->ss_family == AF_INET)
        ((struct sockaddr_in *)ss)->sin_port = htons(port);
    else
        ((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* Judges each candidate, then connects to the first acceptable one that answers. Returns
 * the upstream socket, or -1 with *status and *why for the client. */
static int open_upstream(struct egress_proxy *p, const struct egress_request *req, int *status,
                         char *why, size_t whysz)
{
    struct sockaddr_storage cand[MAX_CANDIDATES];
    socklen_t lens[MAX_CANDIDATES];
    bool exempt;
    const char *w = NULL;
    int n = candidates(p, req->host, cand, lens, &exempt, &w);
    *status = 502;
    if (n == 0) {
        snprintf(why, whysz, "%s", w);
        return -1;
    }
    *status = 403;
    snprintf(why, whysz, "no address of %s may be connected to", req->host);
    for (int i = 0; i < n; i++) {
        char addr[64];
        const struct sockaddr *sa = (const struct sockaddr *)&cand[i];
        egress_addr_str(sa, addr, sizeof(addr));
        set_port(&cand[i], req->port);
        const char *refused = exempt ? NULL : egress_addr_refused(sa);
        bool loop = egress_addr_refused(sa) && !strcmp(egress_addr_refused(sa), "loopback");
        if (!refused && loop && req->port == p->listen_port)
            refused = "the proxy itself";
        if (refused) {
            snprintf(why, whysz, "%s resolves to %s, a %s address", req->host, addr, refused);
            net_connect_event(p, req->host, req->port, addr, false, refused);
            continue;
        }
        net_connect_event(p, req->host, req->port, addr, true, NULL);
        int s = connect_timeout(sa, lens[i], EGRESS_CONNECT_TIMEOUT_S);
        if (s >= 0) {
            pthread_mutex_lock(&p->mu);
            p->connections++;
            pthread_mutex_unlock(&p->mu);
            return s;
        }
        *status = errno == ETIMEDOUT ? 504 : 502;
        snprintf(why, whysz, "connecting to %s port %u: %s", addr, req->port, strerror(errno));
    }
    return -1;
}

/* Sends the CONNECT answer or the rewritten request, plus whatever the client already sent
 * past its preamble. */
static int send_start(struct egress_proxy *p, int fd, int up, const struct egress_request *req,
                      const char *extra, size_t nextra)
{
    if (req->connect) {
        static const char ok[] = "HTTP/1.1 200 Connection established\r\n\r\n";
        if (write_all(fd, ok, sizeof(ok) - 1) < 0)
            return -1;
    } else {
        char out[EGRESS_PREAMBLE_MAX + 64];
        size_t n = egress_request_rewrite(req, out, sizeof(out));
        if (n == 0 || write_all(up, out, n) < 0)
            return -1;
        (void)egress_count_bytes(p, 0, n);
    }
    if (nextra && write_all(up, extra, nextra) < 0)
        return -1;
    (void)egress_count_bytes(p, 0, nextra);
    return 0;
}

void egress_conn_serve(struct egress_proxy *p, int fd)
{
    double start = monotonic_s();
    char *buf = malloc(EGRESS_PREAMBLE_MAX);
    if (!buf) {
        (void)close(fd);
        return;
    }
    size_t got = 0;
    long end = read_preamble(fd, buf, EGRESS_PREAMBLE_MAX, &got, start + EGRESS_PREAMBLE_TIMEOUT_S);
    struct egress_request req;
    const char *why = NULL;
    char detail[512];
    int st = end < -1 ? (int)-end : 0;
    if (end == -1)
        goto done;
    if (st == 0)
        st = egress_request_parse(buf, (size_t)end, &req, &why);
    else
        why =
            st == 408 ? "the request headers did not arrive in time" : "request headers too large";
    if (st) {
        egress_denied(p, "", 0, why);
        egress_respond(fd, st, status_reason(st), why);
        goto done;
    }
    const char *deny = egress_check_host(&p->rules, req.host, req.port);
    if (deny) {
        snprintf(detail, sizeof(detail),
                 "%s port %u denied: %s (agentbox --allow-host, "
                 "task network.allow)",
                 req.host, req.port, deny);
        egress_denied(p, req.host, req.port, deny);
        egress_respond(fd, 403, "Forbidden", detail);
        goto done;
    }
    int up = open_upstream(p, &req, &st, detail, sizeof(detail));
    if (up < 0) {
        egress_denied(p, req.host, req.port, detail);
        egress_respond(fd, st, status_reason(st), detail);
        goto done;
    }
    if (send_start(p, fd, up, &req, buf + end, got - (size_t)end) == 0) {
        enum egress_relay_end e = egress_relay(p, fd, up, start + p->rules.max_conn_s);
        if (e != EGRESS_RELAY_DONE)
            egress_denied(p, req.host, req.port,
                          e == EGRESS_RELAY_BYTE_CAP ? "cut: the task's byte limit was reached"
                                                     : "cut: the connection's time limit was "
                                                       "reached");
    }
    (void)close(up);
done:
    free(buf);
    (void)close(fd);
}
