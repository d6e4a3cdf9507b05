/* task_egress: a task's "network": {"allow": [...], "resolve": {...}, "max_connections": N,
 * "max_bytes": N} field: its validation, the cell's effective rules (the policy's plus the
 * task's, caps never above the policy's), and the check against a supervisor's ceiling.
 * Never starts a proxy. */
#ifndef AGENTBOX_TASK_EGRESS_H
#define AGENTBOX_TASK_EGRESS_H

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>

#include "egress_rules.h"
#include "policy.h"
#include "task.h"

/* Validates netj and keeps a copy in t->egress. -1 + "task.network...: why". */
int task_egress_parse(const cJSON *netj, struct task *t, char *err, size_t errsz);
/* The cell's rules and whether it gets egress at all (see policy_egress_rules). */
int task_egress_rules(const struct task *t, const struct policy *pol, struct egress_rules *out,
                      bool *on, char *err, size_t errsz);
/* The task's own allow-list and pins against the supervisor's ceiling (NULL = an empty one).
 * -1 + err naming the first entry outside it. */
int task_egress_within(const struct task *t, const struct egress_rules *ceiling, char *err,
                       size_t errsz);

#endif
