/* egress_http: the egress proxy's reading of one client preamble (request line + headers),
 * and the request it forwards for a plain-HTTP absolute-URI request. Pure parsing over a
 * bounded buffer: never reads a socket, never decides what is allowed. */
#ifndef AGENTBOX_EGRESS_HTTP_H
#define AGENTBOX_EGRESS_HTTP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "egress_rules.h"

#define EGRESS_PREAMBLE_MAX 16384 /* request line + headers */
#define EGRESS_HEADERS_MAX  100

struct egress_request {
    bool connect; /* CONNECT host:port; else an absolute-URI request */
    char method[16];
    char host[EGRESS_HOST_MAX + 1]; /* normalized (lower case, no brackets) */
    uint16_t port;
    const char *path; /* origin-form target, points into the preamble (not NUL-terminated) */
    size_t path_len;
    const char *version; /* "HTTP/1.1" or "HTTP/1.0", points into the preamble */
    const char *headers; /* first header line, points into the preamble */
    size_t headers_len;  /* up to and excluding the blank line */
};

/* Offset just past the "\r\n\r\n" that ends the preamble in buf[0..len), or 0 if absent. */
size_t egress_preamble_end(const char *buf, size_t len);
/* Parses the preamble buf[0..len) (len from egress_preamble_end). Returns 0, or the HTTP
 * status to answer with (400, 405, 431, 505) and *why set to a static reason. */
int egress_request_parse(const char *buf, size_t len, struct egress_request *req, const char **why);
/* The request to send upstream for a non-CONNECT request: origin-form request line, the
 * client's headers minus hop-by-hop and proxy ones, "Connection: close". Writes at most
 * outsz bytes; returns the length, or 0 if it does not fit. */
size_t egress_request_rewrite(const struct egress_request *req, char *out, size_t outsz);

#endif
