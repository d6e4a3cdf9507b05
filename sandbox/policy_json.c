/* policy_json: a parsed policy back to JSON, "extends" resolved (what `agentbox policy show`
 * prints and what serve logs as the effective policy). Reads a struct policy and builds
 * cJSON; never parses, opens files or changes the policy. */
#include "policy.h"

#include <inttypes.h>
#include <stdio.h>

#include "egress_rules.h"
#include "policy_names.h"
#include "util.h"

static cJSON *errno_json(int e)
{
    const char *n = policy_errno_name(e);
    return n ? cJSON_CreateString(n) : cJSON_CreateNumber(e);
}

static cJSON *hex_json(uint64_t v)
{
    char buf[24];
    snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
    return cJSON_CreateString(buf);
}

static bool add_size(cJSON *obj, const char *name, uint64_t v)
{
    char buf[32];
    return cJSON_AddStringToObject(obj, name, size_format(v, buf, sizeof(buf))) != NULL;
}

/* Adds item to obj (or to an array if name is NULL); on failure frees it. */
static bool add(cJSON *obj, const char *name, cJSON *item)
{
    if (!item)
        return false;
    if (name ? cJSON_AddItemToObject(obj, name, item) : cJSON_AddItemToArray(obj, item))
        return true;
    cJSON_Delete(item);
    return false;
}

static cJSON *rule_json(const struct policy_rule *r)
{
    cJSON *o = cJSON_CreateObject();
    cJSON *sys = o ? cJSON_AddArrayToObject(o, "syscalls") : NULL;
    bool ok = sys && add(sys, NULL, cJSON_CreateString(r->syscall)) &&
              cJSON_AddStringToObject(o, "action", policy_action_name(r->action));
    if (ok && r->action == POLICY_ACT_ERRNO)
        ok = add(o, "errno", errno_json(r->errno_value));
    cJSON *args = ok && r->nargs ? cJSON_AddArrayToObject(o, "args") : NULL;
    if (r->nargs && !args)
        ok = false;
    for (unsigned i = 0; ok && i < r->nargs; i++) {
        const struct policy_arg *a = &r->args[i];
        cJSON *ao = cJSON_CreateObject();
        ok = add(args, NULL, ao) && cJSON_AddNumberToObject(ao, "index", a->index) &&
             cJSON_AddStringToObject(ao, "op", policy_op_names[a->op]) &&
             add(ao, "value", hex_json(a->value)) &&
             (a->op != POLICY_OP_MASKED_EQ || add(ao, "mask", hex_json(a->mask)));
    }
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}

cJSON *policy_to_json(const struct policy *p)
{
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return NULL;
    bool ok = cJSON_AddStringToObject(o, "name", p->name ? p->name : "") &&
              (!p->description || cJSON_AddStringToObject(o, "description", p->description));
    cJSON *sec = ok ? cJSON_AddObjectToObject(o, "seccomp") : NULL;
    ok = sec &&
         cJSON_AddStringToObject(sec, "default_action", policy_action_name(p->default_action)) &&
         add(sec, "default_errno", errno_json(p->default_errno));
    cJSON *rules = ok ? cJSON_AddArrayToObject(sec, "rules") : NULL;
    ok = rules != NULL;
    for (size_t i = 0; ok && i < p->nrules; i++)
        ok = add(rules, NULL, rule_json(&p->rules[i]));
    cJSON *mounts = ok ? cJSON_AddObjectToObject(o, "mounts") : NULL;
    cJSON *binds = mounts ? cJSON_AddArrayToObject(mounts, "ro_binds") : NULL;
    ok = binds != NULL;
    for (size_t i = 0; ok && i < p->nbinds; i++) {
        cJSON *b = cJSON_CreateObject();
        ok = add(binds, NULL, b) && cJSON_AddStringToObject(b, "path", p->binds[i].path) &&
             (!p->binds[i].optional || cJSON_AddTrueToObject(b, "optional"));
    }
    ok = ok && add_size(mounts, "tmp_size", p->tmp_bytes) &&
         add_size(mounts, "shm_size", p->shm_bytes);
    cJSON *net = ok ? cJSON_AddObjectToObject(o, "network") : NULL;
    ok = net && cJSON_AddBoolToObject(net, "allow_host", p->allow_network_host) &&
         cJSON_AddBoolToObject(net, "loopback", p->loopback) &&
         (!p->egress || add(net, "egress", egress_rules_to_json(p->egress))) &&
         cJSON_AddBoolToObject(o, "landlock", p->landlock);
    cJSON *lim = ok ? cJSON_AddObjectToObject(o, "limits") : NULL;
    ok = lim && add_size(lim, "disk", p->limits.disk_bytes) &&
         cJSON_AddNumberToObject(lim, "inodes", (double)p->limits.inodes) &&
         add_size(lim, "memory", p->limits.memory_bytes) &&
         cJSON_AddNumberToObject(lim, "pids", (double)p->limits.pids) &&
         cJSON_AddNumberToObject(lim, "nofile", (double)p->limits.nofile) &&
         add_size(lim, "fsize", p->limits.fsize_bytes) &&
         cJSON_AddNumberToObject(lim, "cpu_s", p->limits.cpu_s) &&
         cJSON_AddNumberToObject(lim, "timeout_s", p->limits.timeout_s);
    if (!ok) {
        cJSON_Delete(o);
        return NULL;
    }
    return o;
}
