/* egress_proxy: the proxy helper process (`agentbox __egress`), exec'd fresh by the
 * supervisor for one cell (no copy of the supervisor's memory, so never the API key). It
 * accepts on a listening socket that lives in the cell's network namespace (fd 3) and
 * connects out from the host's, under egress_rules; it reports over a SOCK_SEQPACKET socket
 * (fd 4): the rules arrive first, then it sends one JSON event per message (net_connect,
 * net_denied) and, when the supervisor shuts its side down, a final "summary". It never
 * reads anything from the host but what the rules name, and never connects before the
 * destination address has been checked. */
#ifndef AGENTBOX_EGRESS_PROXY_H
#define AGENTBOX_EGRESS_PROXY_H

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdint.h>

#include "egress_rules.h"

#define EGRESS_LISTEN_FD  3
#define EGRESS_REPORT_FD  4
#define EGRESS_DENIED_MAX 50    /* denied entries kept for the summary */
#define EGRESS_EVENTS_MAX 5000u /* events sent per task; the rest are only counted */

struct egress_proxy {
    struct egress_rules rules;
    int listen_fd, report_fd;
    uint16_t listen_port; /* in the cell's namespace: a destination of "itself" */
    pthread_mutex_t mu;   /* guards everything below */
    uint64_t accepted, open, connections, bytes_in, bytes_out, ndenied, events_sent;
    cJSON *denied; /* [{host, port, why}], at most EGRESS_DENIED_MAX */
};

/* egress_proxy.c: one event to the supervisor (never blocks: dropped when the socket is
 * full). fields is consumed. */
void egress_emit(struct egress_proxy *p, const char *type, cJSON *fields);
/* A refusal: counted, kept for the summary, emitted as net_denied. */
void egress_denied(struct egress_proxy *p, const char *host, unsigned port, const char *why);
/* Adds to the byte counters; false once the task's byte cap is passed. */
bool egress_count_bytes(struct egress_proxy *p, uint64_t in, uint64_t out);

/* egress_conn.c: serves one accepted connection to its end, then closes fd. */
void egress_conn_serve(struct egress_proxy *p, int fd);
/* egress_relay.c: relays bytes both ways between the cell's connection and the upstream one
 * until both sides are done, the deadline, or the task's byte cap (counted as it goes). */
enum egress_relay_end { EGRESS_RELAY_DONE, EGRESS_RELAY_BYTE_CAP, EGRESS_RELAY_DEADLINE };
enum egress_relay_end egress_relay(struct egress_proxy *p, int cell, int up, double deadline);
/* Writes a short HTTP error response with a plain-text body that names the reason. */
void egress_respond(int fd, int status, const char *reason, const char *detail);

#endif
