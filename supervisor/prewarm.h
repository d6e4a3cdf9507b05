/* prewarm: N cells made ahead of their tasks for one cell configuration (a policy, its
 * seccomp program, the effective limits; no network, no egress proxy, no seed), each with
 * its namespaces, root, empty /workspace tmpfs, cgroups and the agent as pid 1 waiting on
 * its channel for a task. A task whose cell would be made exactly so takes one (it gets its
 * task frame at once); any other task has its cell made for it. A prepared cell serves one
 * task and is never returned: nothing of one task reaches another. */
#ifndef AGENTBOX_PREWARM_H
#define AGENTBOX_PREWARM_H

#include <linux/filter.h>
#include <stdbool.h>

#include "cell.h"
#include "policy.h"

#define PREWARM_MAX 64

struct prewarm;

/* policy and seccomp are borrowed for the pool's life; limits.timeout_s is ignored (the
 * runner keeps the wall clock). envp: the cells' environment (NULL: the default). */
int prewarm_new(unsigned n, const struct policy *policy, const struct sock_fprog *seccomp,
                const struct policy_limits *limits, char *const *envp, struct prewarm **out,
                char *err, size_t errsz);
/* Starts making cells until n are ready or being made (on the spawner threads); not within
 * a short delay after a cell was taken (prewarm_next_fill says until when). */
void prewarm_fill(struct prewarm *p);
/* When (monotonic) a refill held back after a take may start; 0 when none was. The loop
 * wakes by then to call prewarm_fill. */
double prewarm_next_fill(const struct prewarm *p);
/* A ready cell for exactly this configuration, with its channel (non-blocking), or false. */
bool prewarm_take(struct prewarm *p, const struct policy *policy, const struct sock_fprog *seccomp,
                  const struct policy_limits *limits, char *const *envp, struct cell **cell,
                  int *chan);
/* Ready cells now (for tests and logs). */
unsigned prewarm_ready(struct prewarm *p);
/* Waits for cells being made, kills and reaps every cell. */
void prewarm_free(struct prewarm *p);

#endif
