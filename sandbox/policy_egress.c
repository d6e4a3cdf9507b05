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
