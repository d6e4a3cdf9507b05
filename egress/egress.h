/* egress: the supervisor's handle on one cell's egress proxy helper. Starts the helper
 * (`agentbox __egress`, exec'd with an empty environment, as nobody when we are root) with
 * the cell's listening socket and the rules, relays its events, and collects the result's
 * "network" summary. Never gives the helper anything but the listening socket, its report
 * socket and the rules. */
#ifndef AGENTBOX_EGRESS_H
#define AGENTBOX_EGRESS_H

#include <cjson/cJSON.h>
#include <stddef.h>
#include <sys/types.h>

#include "egress_rules.h"

/* The proxy's address inside every cell (its own network namespace). */
#define EGRESS_PROXY_URL "http://127.0.0.1:3128"

struct egress;
/* fields is consumed by the callee; type is "net_connect" or "net_denied". */
typedef void (*egress_event_fn)(void *opaque, const char *type, cJSON *fields);

/* Takes ownership of listen_fd (closed on failure too). -1 + err. */
int egress_start(const struct egress_rules *rules, int listen_fd, struct egress **out, char *err,
                 size_t errsz);
/* Readable when the helper has events; pass to egress_read. */
int egress_fd(const struct egress *e);
void egress_read(struct egress *e, egress_event_fn fn, void *opaque);
/* Stops the helper (no new connections; open ones are cut), relays its last events and
 * returns the "network" object {connections, bytes_in, bytes_out, denied, denied_count}
 * (caller owns it); frees e. */
cJSON *egress_finish(struct egress *e, egress_event_fn fn, void *opaque);

/* base plus the proxy variables (HTTP(S)_PROXY, lower case, NO_PROXY, npm/pip/git's own),
 * malloc'd array of borrowed/static strings; NULL when out of memory. */
char **egress_cell_env(char *const *base);

#endif
