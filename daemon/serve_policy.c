/* serve_policy: the policies serve runs its clients' tasks under. A client names a policy
 * the operator installed (policies/NAME.json where data files are found; a name, never a
 * path) or sends a whole policy object inline; either must be at least as strict as the
 * operator's floor policy unless the operator passed --allow-weaker-policies. Compiled
 * entries are cached (bounded, least recently used evicted, never one a running task
 * borrows). Never reads a file a client chose; reads only regular files, without blocking. */
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "policy_floor.h"
#include "serve.h"
#include "sha256.h"
#include "taskprep.h"
#include "util.h"

static bool name_ok(const char *name)
{
    size_t n = strlen(name);
    if (n == 0 || n > 64)
        return false;
    for (const char *p = name; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') || *p == '_' || *p == '-'))
            return false;
    return true;
}

/* The cache key: the name, or "inline:" + the SHA-256 of the policy's text. */
static int cache_key(const struct task *tk, char *key, size_t keysz, char *err, size_t errsz)
{
    if (tk->policy_inline) {
        cleanup_free char *text = cJSON_PrintUnformatted(tk->policy_inline);
        if (!text)
            return errf(err, errsz, "out of memory");
        char hex[SHA256_HEX_CHARS];
        sha256_hex(text, strlen(text), hex);
        snprintf(key, keysz, "inline:%s", hex);
        return 0;
    }
    const char *name = tk->policy ? tk->policy : "default";
    if (!name_ok(name))
        return errf(err, errsz,
                    "task.policy: a client of serve names a policy the operator installed "
                    "(1-64 of a-z 0-9 _ -) or sends one inline as a JSON object; not a path");
    snprintf(key, keysz, "%s", name);
    return 0;
}

/* A free cache entry: a new one, or the least recently used that no running task holds. */
static struct policy_entry *take_entry(struct server *s)
{
    if (s->npolicies < SERVE_POLICY_CACHE_MAX)
        return &s->policies[s->npolicies++];
    struct policy_entry *lru = NULL;
    for (int i = 0; i < s->npolicies; i++)
        if (s->policies[i].refs == 0 && (!lru || s->policies[i].used < lru->used))
            lru = &s->policies[i];
    if (lru) {
        policy_bpf_free(&lru->prog);
        policy_free(lru->pol);
        memset(lru, 0, sizeof(*lru));
    }
    return lru;
}

int serve_policy_get(struct server *s, const struct task *tk, struct policy_entry **out, char *err,
                     size_t errsz)
{
    bool network_none = !tk->network_host;
    char key[256];
    if (cache_key(tk, key, sizeof(key), err, errsz) < 0)
        return -1;
    for (int i = 0; i < s->npolicies; i++)
        if (s->policies[i].network_none == network_none && strcmp(s->policies[i].name, key) == 0) {
            s->policies[i].used = ++s->policy_clock;
            *out = &s->policies[i];
            return 0;
        }
    struct policy *pol = NULL;
    if (taskprep_policy_load(tk, &pol, err, errsz) < 0)
        return -1;
    char ferr[ERR_MSG_MAX];
    if (!s->allow_weaker && s->floor && policy_floor_check(pol, s->floor, ferr, sizeof(ferr)) < 0) {
        errf(err, errsz, "task.policy: weaker than the server's floor: %s", ferr);
        policy_free(pol);
        return -1;
    }
    if (!network_none && !pol->allow_network_host) {
        errf(err, errsz, "task.network: policy '%s' does not allow network host",
             pol->name ? pol->name : "inline");
        policy_free(pol);
        return -1;
    }
    struct sock_fprog prog = {0};
    if (policy_seccomp_build(pol, network_none, &prog, err, errsz) < 0) {
        policy_free(pol);
        return -1;
    }
    struct policy_entry *e = take_entry(s);
    if (!e) {
        policy_bpf_free(&prog);
        policy_free(pol);
        return errf(err, errsz,
                    "task.policy: all %d cached policies are in use by running tasks; try again "
                    "when one ends",
                    SERVE_POLICY_CACHE_MAX);
    }
    snprintf(e->name, sizeof(e->name), "%s", key);
    e->network_none = network_none;
    e->pol = pol;
    e->prog = prog;
    e->refs = 0;
    e->used = ++s->policy_clock;
    *out = e;
    return 0;
}

void serve_policy_put(struct policy_entry *e)
{
    if (e && e->refs > 0)
        e->refs--;
}

int serve_policy_init(struct server *s, char *err, size_t errsz)
{
    const char *name = s->floor_name ? s->floor_name : "default";
    char perr[ERR_MSG_MAX];
    if (policy_load(name, &s->floor, perr, sizeof(perr)) < 0)
        return errf(err, errsz, "--policy-floor: %s", perr);
    if (s->allow_weaker)
        log_info("--allow-weaker-policies: clients may run policies weaker than '%s'", name);
    return 0;
}

void serve_policy_free(struct server *s)
{
    for (int i = 0; i < s->npolicies; i++) {
        policy_bpf_free(&s->policies[i].prog);
        policy_free(s->policies[i].pol);
    }
    s->npolicies = 0;
    policy_free(s->floor);
    s->floor = NULL;
}
