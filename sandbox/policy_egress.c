/* policy_egress: a policy's "network.egress" section: the hosts every cell under the policy
 * may reach through the egress proxy, its name pins and its caps (docs/policy.md). Parses and
 * validates only; the proxy enforces. */
#include <stdlib.h>
#include <string.h>

#include "egress_rules.h"
#include "policy.h"
#include "util.h"

int policy_parse_egress(const struct cJSON *o, struct policy *p, char *err, size_t errsz)
{
    static const char *const keys[] = {"allow",          "resolve",   "max_connections",
                                       "max_concurrent", "max_bytes", "max_connection_s"};
    const cJSON *it;
    cJSON_ArrayForEach(it, o)
    {
        bool known = false;
        for (size_t i = 0; i < ARRAY_SIZE(keys) && !known; i++)
            known = strcmp(it->string, keys[i]) == 0;
        if (!known)
            return errf(err, errsz, "network.egress: unknown field '%s'", it->string);
    }
    if (!p->loopback)
        return errf(err, errsz,
                    "network.egress: needs network.loopback true (the cell reaches "
                    "the proxy over its loopback)");
    struct egress_rules *r = malloc(sizeof(*r));
    if (!r)
        return errf(err, errsz, "out of memory");
    char why[ERR_MSG_MAX];
    if (egress_rules_from_json(o, r, why, sizeof(why)) < 0) {
        free(r);
        return errf(err, errsz, "network.egress: %s", why);
    }
    free(p->egress);
    p->egress = r;
    return 0;
}

int policy_egress_rules(const struct policy *pol, int network, const char *const *allow,
                        size_t nallow, const char *const *resolve, size_t nresolve,
                        struct egress_rules *out, bool *on, char *err, size_t errsz)
{
    memset(out, 0, sizeof(*out));
    *on = false;
    if (pol->egress)
        *out = *pol->egress;
    char why[ERR_MSG_MAX];
    for (size_t i = 0; i < nallow; i++)
        if (egress_rules_add(out, allow[i], why, sizeof(why)) < 0)
            return errf(err, errsz, "allowed hosts: %s", why);
    for (size_t i = 0; i < nresolve; i++) {
        struct egress_pin p;
        if (egress_pin_parse(resolve[i], &p, why, sizeof(why)) < 0)
            return errf(err, errsz, "resolve: %s", why);
        /* the caller's pin replaces the policy's pin of the same name */
        bool replaced = false;
        for (size_t k = 0; k < out->npins && !replaced; k++)
            if (strcmp(out->pins[k].host, p.host) == 0) {
                out->pins[k] = p;
                replaced = true;
            }
        if (!replaced && egress_rules_add_pin(out, resolve[i], why, sizeof(why)) < 0)
            return errf(err, errsz, "resolve: %s", why);
    }
    if (network == 1 && nallow > 0)
        return errf(err, errsz, "allowed hosts make no sense with network host (it has them all)");
    if (network == 0 && nallow > 0)
        return errf(err, errsz, "allowed hosts make no sense with network none");
    egress_rules_defaults(out);
    *on = network == -1 && out->nrules > 0;
    if (*on && !pol->loopback)
        return errf(err, errsz,
                    "policy '%s' has network.loopback false: egress needs the cell's loopback",
                    pol->name);
    return 0;
}
