/* policy_limits: a caller's own limits over a policy's defaults, for a task and for exec
 * alike (LIMIT_SET_* in policy.h). Never checks a value: the parsers did. */
#include "policy.h"

void policy_limits_override(struct policy_limits *l, unsigned set, const struct policy_limits *over)
{
    if (set & LIMIT_SET_DISK)
        l->disk_bytes = over->disk_bytes;
    if (set & LIMIT_SET_INODES)
        l->inodes = over->inodes;
    if (set & LIMIT_SET_MEMORY)
        l->memory_bytes = over->memory_bytes;
    if (set & LIMIT_SET_PIDS)
        l->pids = over->pids;
    if (set & LIMIT_SET_CPU)
        l->cpu_s = over->cpu_s;
    if (set & LIMIT_SET_TIMEOUT)
        l->timeout_s = over->timeout_s;
}
