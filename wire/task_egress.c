/* task_egress: the task's network object (see task_egress.h). */
#include "task_egress.h"

#include <stdio.h>
#include <string.h>

#include "policy.h"
#include "util.h"

int task_egress_parse(const cJSON *netj, struct task *t, char *err, size_t errsz)
{
    static const char *const keys[] = {"allow",          "resolve",   "max_connections",
                                       "max_concurrent", "max_bytes", "max_connection_s"};
    const cJSON *it;
    cJSON_ArrayForEach(it, netj)
    {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(keys) && !known; i++)
            known = strcmp(it->string, keys[i]) == 0;
        if (!known)
            return errf(err, errsz, "task.network: unknown field '%s'", it->string);
    }
    struct egress_rules r;
    char why[ERR_MSG_MAX];
    if (egress_rules_from_json(netj, &r, why, sizeof(why)) < 0)
        return errf(err, errsz, "task.network.%s", why);
    if (r.nrules == 0)
        return errf(err, errsz, "task.network.allow: name at least one HOST[:PORT]");
    cJSON_Delete(t->egress);
    t->egress = cJSON_Duplicate(netj, 1);
    if (!t->egress)
        return errf(err, errsz, "out of memory");
    t->network_set = true;
    t->network_host = false;
    return 0;
}

static uint64_t cap_min(uint64_t task, uint64_t policy)
{
    return task && task < policy ? task : policy;
}

int task_egress_rules(const struct task *t, const struct policy *pol, struct egress_rules *out,
                      bool *on, char *err, size_t errsz)
{
    struct egress_rules own;
    memset(&own, 0, sizeof(own));
    char why[ERR_MSG_MAX];
    if (t->egress && egress_rules_from_json(t->egress, &own, why, sizeof(why)) < 0)
        return errf(err, errsz, "task.network.%s", why);
    const char *allow[EGRESS_RULES_MAX], *resolve[EGRESS_PINS_MAX];
    char allow_s[EGRESS_RULES_MAX][EGRESS_HOST_MAX + 16];
    char resolve_s[EGRESS_PINS_MAX][EGRESS_HOST_MAX + 80];
    for (size_t i = 0; i < own.nrules; i++) {
        egress_rule_str(&own.rules[i], allow_s[i], sizeof(allow_s[i]));
        allow[i] = allow_s[i];
    }
    for (size_t i = 0; i < own.npins; i++) {
        char addr[64];
        snprintf(resolve_s[i], sizeof(resolve_s[i]), "%s:%s", own.pins[i].host,
                 egress_addr_str((const struct sockaddr *)&own.pins[i].addr, addr, sizeof(addr)));
        resolve[i] = resolve_s[i];
    }
    int network = t->egress ? -1 : !t->network_set ? -1 : t->network_host ? 1 : 0;
    if (policy_egress_rules(pol, network, allow, own.nrules, resolve, own.npins, out, on, why,
                            sizeof(why)) < 0)
        return errf(err, errsz, "task.network: %s", why);
    /* a task may lower the policy's caps, never raise them */
    out->max_connections = cap_min(own.max_connections, out->max_connections);
    out->max_concurrent = cap_min(own.max_concurrent, out->max_concurrent);
    out->max_bytes = cap_min(own.max_bytes, out->max_bytes);
    if (own.max_conn_s > 0 && own.max_conn_s < out->max_conn_s)
        out->max_conn_s = own.max_conn_s;
    return 0;
}

int task_egress_within(const struct task *t, const struct egress_rules *ceiling, char *err,
                       size_t errsz)
{
    if (!t->egress)
        return 0;
    struct egress_rules own, none;
    memset(&none, 0, sizeof(none));
    char why[ERR_MSG_MAX];
    if (egress_rules_from_json(t->egress, &own, why, sizeof(why)) < 0)
        return errf(err, errsz, "task.network.%s", why);
    if (egress_rules_within(ceiling ? ceiling : &none, &own, why, sizeof(why)) < 0)
        return errf(err, errsz, "task.network: %s", why);
    return 0;
}
