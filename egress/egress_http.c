/* egress_http: parsing one proxy preamble and rewriting an absolute-URI request into the
 * origin-form one sent upstream (see egress_http.h). Strict on purpose: one request line of
 * three tokens, HTTP/1.x, no userinfo, no control bytes, bounded header count. */
#include "egress_http.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

size_t egress_preamble_end(const char *buf, size_t len)
{
    for (size_t i = 3; i < len; i++)
        if (buf[i] == '\n' && buf[i - 1] == '\r' && buf[i - 2] == '\n' && buf[i - 3] == '\r')
            return i + 1;
    return 0;
}

static bool token_ok(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] >= 0x7f)
            return false;
    return n > 0;
}

/* "host:port", "[v6]:port", or (default_port != 0) the same without ":port". */
static int parse_authority(const char *a, size_t n, uint16_t default_port,
                           struct egress_request *req)
{
    char buf[EGRESS_HOST_MAX + 16];
    if (n == 0 || n >= sizeof(buf) || memchr(a, '@', n))
        return -1;
    memcpy(buf, a, n);
    buf[n] = '\0';
    char *host = buf, *port = NULL;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close || (close[1] && close[1] != ':'))
            return -1;
        *close = '\0';
        host = buf + 1;
        if (!strchr(host, ':'))
            return -1;
        port = close[1] ? close + 2 : NULL;
    } else {
        char *c = strchr(buf, ':');
        if (c && strchr(c + 1, ':'))
            return -1; /* a bare IPv6 literal needs brackets here */
        if (c) {
            *c = '\0';
            port = c + 1;
        }
    }
    if (port) {
        if (!*port || strlen(port) > 5 || strspn(port, "0123456789") != strlen(port))
            return -1;
        long v = strtol(port, NULL, 10);
        if (v < 1 || v > 65535)
            return -1;
        req->port = (uint16_t)v;
    } else if (default_port) {
        req->port = default_port;
    } else {
        return -1;
    }
    if (strlen(host) > EGRESS_HOST_MAX)
        return -1;
    memcpy(req->host, host, strlen(host) + 1);
    return egress_host_normalize(req->host) ? 0 : -1;
}

static int parse_target(const char *t, size_t n, struct egress_request *req, const char **why)
{
    if (req->connect) {
        if (parse_authority(t, n, 0, req) < 0)
            return *why = "CONNECT needs HOST:PORT", 400;
        return 0;
    }
    if (n < 7 || strncasecmp(t, "http://", 7) != 0) {
        if (n >= 8 && strncasecmp(t, "https://", 8) == 0)
            return *why = "https:// URLs go through CONNECT (set HTTPS_PROXY)", 400;
        return *why = "a proxy request needs an absolute http:// URL", 400;
    }
    const char *a = t + 7, *end = t + n;
    const char *slash = a;
    while (slash < end && *slash != '/' && *slash != '?' && *slash != '#')
        slash++;
    if (parse_authority(a, (size_t)(slash - a), 80, req) < 0)
        return *why = "bad host in the URL", 400;
    if (slash < end && *slash == '#')
        return *why = "a fragment in the request target", 400;
    req->path = slash < end ? slash : "/";
    req->path_len = slash < end ? (size_t)(end - slash) : 1;
    return 0;
}

int egress_request_parse(const char *buf, size_t len, struct egress_request *req, const char **why)
{
    memset(req, 0, sizeof(*req));
    *why = "bad request";
    if (len > EGRESS_PREAMBLE_MAX)
        return *why = "request headers too large", 431;
    const char *eol = memchr(buf, '\r', len);
    if (!eol || eol + 1 >= buf + len || eol[1] != '\n')
        return *why = "no request line", 400;
    const char *sp1 = memchr(buf, ' ', (size_t)(eol - buf));
    const char *sp2 = sp1 ? memchr(sp1 + 1, ' ', (size_t)(eol - sp1 - 1)) : NULL;
    if (!sp1 || !sp2 || memchr(sp2 + 1, ' ', (size_t)(eol - sp2 - 1)))
        return *why = "the request line must be METHOD TARGET VERSION", 400;
    size_t mlen = (size_t)(sp1 - buf), tlen = (size_t)(sp2 - sp1 - 1);
    size_t vlen = (size_t)(eol - sp2 - 1);
    if (!token_ok(buf, mlen) || mlen >= sizeof(req->method) || !token_ok(sp1 + 1, tlen))
        return 400;
    for (size_t i = 0; i < mlen; i++)
        if (buf[i] < 'A' || buf[i] > 'Z')
            return *why = "bad method", 400;
    if (vlen != 8 || (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 && memcmp(sp2 + 1, "HTTP/1.0", 8) != 0))
        return *why = "only HTTP/1.0 and HTTP/1.1 are proxied", 505;
    memcpy(req->method, buf, mlen);
    req->method[mlen] = '\0';
    req->version = sp2 + 1;
    req->connect = strcmp(req->method, "CONNECT") == 0;
    int st = parse_target(sp1 + 1, tlen, req, why);
    if (st)
        return st;
    /* headers: each "NAME: value\r\n", no bare CR/LF, no NUL, bounded count */
    const char *h = eol + 2, *end = buf + len - 2; /* the final CRLF */
    req->headers = h;
    req->headers_len = (size_t)(end - h);
    unsigned count = 0;
    while (h < end) {
        const char *e = memchr(h, '\r', (size_t)(end - h));
        if (!e || e[1] != '\n')
            return *why = "bad header line", 400;
        const char *colon = memchr(h, ':', (size_t)(e - h));
        if (!colon || colon == h || !token_ok(h, (size_t)(colon - h)))
            return *why = "bad header line", 400;
        for (const char *c = h; c < e; c++)
            if (*c == '\0' || *c == '\n')
                return *why = "bad header line", 400;
        if (++count > EGRESS_HEADERS_MAX)
            return *why = "too many request headers", 431;
        h = e + 2;
    }
    return 0;
}

static bool header_dropped(const char *h, size_t n)
{
    static const char *const drop[] = {
        "connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate",
        "te",         "upgrade",          "host"};
    const char *colon = memchr(h, ':', n);
    size_t klen = colon ? (size_t)(colon - h) : n;
    for (size_t i = 0; i < sizeof(drop) / sizeof(drop[0]); i++)
        if (strlen(drop[i]) == klen && strncasecmp(h, drop[i], klen) == 0)
            return true;
    return false;
}

size_t egress_request_rewrite(const struct egress_request *req, char *out, size_t outsz)
{
    size_t o = 0;
#define PUT(p, n)                                                                                  \
    do {                                                                                           \
        if (o + (n) > outsz)                                                                       \
            return 0;                                                                              \
        memcpy(out + o, (p), (n));                                                                 \
        o += (n);                                                                                  \
    } while (0)
    PUT(req->method, strlen(req->method));
    PUT(" ", 1);
    PUT(req->path, req->path_len);
    PUT(" ", 1);
    PUT(req->version, 8);
    PUT("\r\n", 2);
    const char *h = req->headers, *end = req->headers + req->headers_len;
    while (h < end) {
        const char *e = memchr(h, '\r', (size_t)(end - h));
        if (!e)
            break;
        if (!header_dropped(h, (size_t)(e - h)))
            PUT(h, (size_t)(e - h) + 2);
        h = e + 2;
    }
    /* the Host the origin sees is the one that was checked, never the client's own */
    char host[EGRESS_HOST_MAX + 32];
    bool v6 = strchr(req->host, ':') != NULL;
    int hn = req->port == 80 ? snprintf(host, sizeof(host), "Host: %s%s%s\r\n", v6 ? "[" : "",
                                        req->host, v6 ? "]" : "")
                             : snprintf(host, sizeof(host), "Host: %s%s%s:%u\r\n", v6 ? "[" : "",
                                        req->host, v6 ? "]" : "", (unsigned)req->port);
    if (hn < 0 || (size_t)hn >= sizeof(host))
        return 0;
    PUT(host, (size_t)hn);
    PUT("Connection: close\r\n\r\n", 21);
#undef PUT
    return o;
}
