/* egress_rules: what a cell's egress proxy may connect to. The allow-list (HOST[:PORT],
 * "*.example.org" for subdomains, IP literals only when listed literally), the name pins
 * (HOST -> ADDR, as curl's --resolve), the caps, and the address classes that are refused
 * after resolution (loopback, private, link-local, CGNAT, multicast, metadata...).
 * Pure data and checks: never resolves a name, never opens a socket. */
#ifndef AGENTBOX_EGRESS_RULES_H
#define AGENTBOX_EGRESS_RULES_H

#include <cjson/cJSON.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define EGRESS_HOST_MAX  253
#define EGRESS_RULES_MAX 64
#define EGRESS_PINS_MAX  32

/* Caps per task (0 = the default below). */
#define EGRESS_DEFAULT_MAX_CONNECTIONS 4096u        /* connections accepted over the task */
#define EGRESS_DEFAULT_MAX_CONCURRENT  64u          /* open at the same time */
#define EGRESS_DEFAULT_MAX_BYTES       (4ull << 30) /* in + out, over the task */
#define EGRESS_DEFAULT_MAX_CONN_S      3600.0       /* one connection's duration */
#define EGRESS_PREAMBLE_TIMEOUT_S      10.0         /* the request line and headers */
#define EGRESS_CONNECT_TIMEOUT_S       15.0

struct egress_rule {
    char host[EGRESS_HOST_MAX + 1]; /* lower case, no trailing dot; without "*." */
    bool wildcard;                  /* "*.host": any name below host (not host itself) */
    bool literal;                   /* host is an IP literal (v6 without brackets) */
    uint16_t port;                  /* 0: 80 and 443 */
};

struct egress_pin {
    char host[EGRESS_HOST_MAX + 1];
    struct sockaddr_storage addr; /* port 0 */
    socklen_t addrlen;
};

struct egress_rules {
    struct egress_rule rules[EGRESS_RULES_MAX];
    size_t nrules;
    struct egress_pin pins[EGRESS_PINS_MAX];
    size_t npins;
    uint64_t max_connections, max_concurrent, max_bytes;
    double max_conn_s;
};

/* "pypi.org", "*.npmjs.org:443", "10.0.0.5:8080", "[fd00::1]:443", "::1". -1 + err. */
int egress_rule_parse(const char *spec, struct egress_rule *r, char *err, size_t errsz);
/* "HOST:ADDR" (or curl's "HOST:PORT:ADDR", the port ignored). -1 + err. */
int egress_pin_parse(const char *spec, struct egress_pin *p, char *err, size_t errsz);
int egress_rules_add(struct egress_rules *r, const char *spec, char *err, size_t errsz);
int egress_rules_add_pin(struct egress_rules *r, const char *spec, char *err, size_t errsz);
/* Fills the caps left at 0 with the defaults. */
void egress_rules_defaults(struct egress_rules *r);

/* Lower-cases host and strips one trailing dot in place; false if it is not a plausible
 * DNS name or IP literal (bad characters, empty label, too long). */
bool egress_host_normalize(char *host);
/* true if host parses as an IPv4 or IPv6 literal (no brackets). */
bool egress_is_ip_literal(const char *host);
/* NULL if host:port is allowed by the list, else why not (a static string). */
const char *egress_check_host(const struct egress_rules *r, const char *host, uint16_t port);
/* The pinned address of host, or NULL. */
const struct egress_pin *egress_find_pin(const struct egress_rules *r, const char *host);
/* NULL if a connection to sa is acceptable for a resolved (not pinned, not listed) name,
 * else the class that refuses it: "loopback", "private", "link-local", "CGNAT",
 * "multicast", "metadata", "unspecified", "reserved". IPv4-mapped, NAT64 and 6to4 IPv6
 * addresses are judged by the IPv4 address they carry. */
const char *egress_addr_refused(const struct sockaddr *sa);
/* "1.2.3.4" / "::1" into buf. */
const char *egress_addr_str(const struct sockaddr *sa, char *buf, size_t bufsz);

/* Every rule of task must be within a rule of ceiling (same host, or a ceiling wildcard
 * above it; a port the ceiling rule allows), and every pin must be a ceiling pin. -1 + err
 * naming the first that is not. */
int egress_rules_within(const struct egress_rules *ceiling, const struct egress_rules *task,
                        char *err, size_t errsz);
/* "pypi.org", "*.npmjs.org:443" (the form the parser takes back) */
void egress_rule_str(const struct egress_rule *r, char *buf, size_t bufsz);
/* The wire form between the supervisor and the proxy helper: {"allow": [...], "resolve":
 * {...}, "max_connections": ...}. from_json validates everything again. */
cJSON *egress_rules_to_json(const struct egress_rules *r);
int egress_rules_from_json(const cJSON *j, struct egress_rules *r, char *err, size_t errsz);

#endif
