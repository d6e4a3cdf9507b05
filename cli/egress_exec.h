/* egress_exec: the egress parts of `exec` and `run`: the --allow-host/--resolve options, the
 * effective rules of a cell (its policy's network.egress plus the caller's), and whether a
 * cell gets egress at all. Chooses nothing about the proxy itself. */
#ifndef AGENTBOX_EGRESS_EXEC_H
#define AGENTBOX_EGRESS_EXEC_H

#include <stdbool.h>
#include <stddef.h>

#include "cell.h"
#include "cmd_exec.h"
#include "egress.h"
#include "egress_rules.h"
#include "policy.h"

/* --allow-host V / --resolve V: checks V and records it in o. -1 + err naming the option. */
int egress_exec_option(struct exec_options *o, const char *name, const char *v, char *err,
                       size_t errsz);
/* run's --allow-host/--resolve over a task: network becomes (or extends) the object form
 * {"allow": [...], "resolve": {...}}. -1 + err when network is a string. */
int egress_task_override(cJSON *task, const char *const *allow, size_t nallow,
                         const char *const *resolve, size_t nresolve, char *err, size_t errsz);
/* Starts the proxy of a spawned cell (cfg.egress); on failure kills, reaps and frees the cell
 * and says why in err. */
int egress_exec_start(const struct egress_rules *r, struct cell *c, struct egress **out, char *err,
                      size_t errsz);
/* An egress_event_fn for exec: a refusal to stderr, so the user sees why a download failed. */
void egress_exec_print(void *opaque, const char *type, cJSON *fields);

#endif
