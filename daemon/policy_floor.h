/* policy_floor: is a policy at least as strict as the operator's floor policy? serve asks
 * before it runs a client's policy (named or inline), so that no client can weaken what
 * the operator requires: host network, Landlock off, loopback where the floor has none,
 * host paths the floor does not bind, or seccomp allowing what the floor denies. Resource
 * sizes are not compared (a task may set its own limits anyway). Reads policies only. */
#ifndef AGENTBOX_POLICY_FLOOR_H
#define AGENTBOX_POLICY_FLOOR_H

#include <stddef.h>

#include "policy.h"

/* 0 when p is at least as strict as floor; else -1 and err names the first weaker field. */
int policy_floor_check(const struct policy *p, const struct policy *floor, char *err, size_t errsz);

#endif
