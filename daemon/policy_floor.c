/* policy_floor: see policy_floor.h. The seccomp comparison is conservative: what the policy
 * allows must be allowed unconditionally by the floor, and each denial of the floor must be
 * in the policy unconditionally, identically, or through a denying default action. */
#include "policy_floor.h"

#include <stdbool.h>
#include <string.h>

#include "util.h"

static bool denies(enum policy_action a)
{
    return a >= POLICY_ACT_ERRNO;
}

static bool same_args(const struct policy_rule *a, const struct policy_rule *b)
{
    return a->nargs == b->nargs && memcmp(a->args, b->args, a->nargs * sizeof(a->args[0])) == 0;
}

/* The floor lets nr through whatever its arguments: no denying rule for it, and either an
 * unconditional allowing rule or an allowing default. */
static bool floor_allows_always(const struct policy *floor, int nr)
{
    bool explicit_allow = false;
    for (size_t i = 0; i < floor->nrules; i++) {
        const struct policy_rule *r = &floor->rules[i];
        if (r->nr != nr)
            continue;
        if (denies(r->action))
            return false;
        if (r->nargs == 0)
            explicit_allow = true;
    }
    return explicit_allow || !denies(floor->default_action);
}

/* The policy denies what floor rule f denies. */
static bool policy_denies_too(const struct policy *p, const struct policy_rule *f)
{
    bool any_rule = false;
    for (size_t i = 0; i < p->nrules; i++) {
        const struct policy_rule *r = &p->rules[i];
        if (r->nr != f->nr)
            continue;
        any_rule = true;
        if (denies(r->action) && (r->nargs == 0 || same_args(r, f)))
            return true;
    }
    return !any_rule && denies(p->default_action);
}

static bool path_within(const char *path, const char *top)
{
    size_t n = strlen(top);
    if (n == 1 && top[0] == '/')
        return true;
    return strncmp(path, top, n) == 0 && (path[n] == '\0' || path[n] == '/');
}

static int check_binds(const struct policy *p, const struct policy *floor, char *err, size_t errsz)
{
    for (size_t i = 0; i < p->nbinds; i++) {
        bool ok = false;
        for (size_t k = 0; !ok && k < floor->nbinds; k++)
            ok = path_within(p->binds[i].path, floor->binds[k].path);
        if (!ok || strstr(p->binds[i].path, "/../") || strstr(p->binds[i].path, "/./"))
            return errf(err, errsz,
                        "mounts.ro_binds: %s is not below a path the floor policy '%s' binds",
                        p->binds[i].path, floor->name ? floor->name : "?");
    }
    return 0;
}

int policy_floor_check(const struct policy *p, const struct policy *floor, char *err, size_t errsz)
{
    const char *fname = floor->name ? floor->name : "?";
    if (p->allow_network_host && !floor->allow_network_host)
        return errf(err, errsz, "network.allow_host: the floor policy '%s' allows no host network",
                    fname);
    if (!p->landlock && floor->landlock)
        return errf(err, errsz, "landlock: the floor policy '%s' requires Landlock", fname);
    if (p->loopback && !floor->loopback)
        return errf(err, errsz, "network.loopback: the floor policy '%s' has none", fname);
    if (check_binds(p, floor, err, errsz) < 0)
        return -1;
    if (denies(floor->default_action) && !denies(p->default_action))
        return errf(err, errsz,
                    "seccomp.default_action: %s, where the floor policy '%s' denies by default",
                    policy_action_name(p->default_action), fname);
    for (size_t i = 0; i < p->nrules; i++)
        if (!denies(p->rules[i].action) && !floor_allows_always(floor, p->rules[i].nr))
            return errf(err, errsz, "%s: allows %s, which the floor policy '%s' restricts",
                        p->rules[i].where, p->rules[i].syscall, fname);
    for (size_t i = 0; i < floor->nrules; i++)
        if (denies(floor->rules[i].action) && !policy_denies_too(p, &floor->rules[i]))
            return errf(err, errsz, "seccomp: %s is denied by the floor policy '%s' (%s), not here",
                        floor->rules[i].syscall, fname, floor->rules[i].where);
    return 0;
}
