/* seccomp_cache: build once, apply many. The programs policy_seccomp_build made in this
 * process, keyed by a SHA-256 of everything a program is made of (the policy's rules, its
 * default action and errno, and which socket allow-list the network mode picks; the baseline
 * is fixed in the binary), so every later cell of the same policy content gets a copy of the
 * same BPF without going through libseccomp again. Keyed by content, not by name: a policy
 * file edited between two tasks is a new key, never a stale program. Safe for concurrent
 * use (one mutex; each caller gets its own copy, so nothing handed out is shared or freed
 * under it). Bounded (oldest entry replaced). Never builds a filter (seccomp.c does) and
 * never caches a failure. A child forked while another thread held the lock must not build
 * (none does: cells, the janitor and the egress helper never compile a filter). */
#include "seccomp_cache.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "sha256.h"

#define CACHE_ENTRIES 32

struct entry {
    bool used;
    uint8_t key[SECCOMP_CACHE_KEY_BYTES];
    struct sock_filter *filter;
    unsigned short len;
};

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static struct entry cache[CACHE_ENTRIES];
static unsigned next_victim;
static unsigned long hits;

static void put_u64(struct sha256 *s, uint64_t v)
{
    uint8_t b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (uint8_t)(v >> (8 * i)); /* fixed width and order: no padding bytes hashed */
    sha256_update(s, b, sizeof(b));
}

void seccomp_cache_key(const struct policy *p, bool sockets_local,
                       uint8_t key[SECCOMP_CACHE_KEY_BYTES])
{
    static const char tag[] = "agentbox seccomp program v1";
    struct sha256 s;
    sha256_init(&s);
    sha256_update(&s, tag, sizeof(tag));
    put_u64(&s, sockets_local);
    put_u64(&s, (uint64_t)p->default_action);
    put_u64(&s, (uint64_t)(int64_t)p->default_errno);
    put_u64(&s, p->nrules);
    for (size_t i = 0; i < p->nrules; i++) {
        const struct policy_rule *r = &p->rules[i];
        put_u64(&s, (uint64_t)(int64_t)r->nr);
        put_u64(&s, (uint64_t)r->action);
        put_u64(&s, (uint64_t)(int64_t)r->errno_value);
        put_u64(&s, r->nargs);
        for (unsigned a = 0; a < r->nargs && a < 6; a++) {
            put_u64(&s, r->args[a].index);
            put_u64(&s, (uint64_t)r->args[a].op);
            put_u64(&s, r->args[a].value);
            put_u64(&s, r->args[a].mask);
        }
    }
    sha256_final(&s, key);
}

static int copy_program(const struct sock_filter *f, unsigned short len, struct sock_fprog *out)
{
    struct sock_filter *c = malloc((size_t)len * sizeof(*c));
    if (!c)
        return -1;
    memcpy(c, f, (size_t)len * sizeof(*c));
    out->filter = c;
    out->len = len;
    return 0;
}

bool seccomp_cache_get(const uint8_t key[SECCOMP_CACHE_KEY_BYTES], struct sock_fprog *out)
{
    bool found = false;
    (void)pthread_mutex_lock(&lock);
    for (size_t i = 0; i < CACHE_ENTRIES && !found; i++) {
        const struct entry *e = &cache[i];
        if (e->used && memcmp(e->key, key, SECCOMP_CACHE_KEY_BYTES) == 0)
            found = copy_program(e->filter, e->len, out) == 0; /* out of memory: a miss */
    }
    if (found)
        hits++;
    (void)pthread_mutex_unlock(&lock);
    return found;
}

void seccomp_cache_put(const uint8_t key[SECCOMP_CACHE_KEY_BYTES], const struct sock_fprog *prog)
{
    struct sock_fprog copy;
    if (!prog->filter || !prog->len || copy_program(prog->filter, prog->len, &copy) < 0)
        return; /* not kept: the next cell builds its own */
    (void)pthread_mutex_lock(&lock);
    for (size_t i = 0; i < CACHE_ENTRIES; i++) {
        if (cache[i].used && memcmp(cache[i].key, key, SECCOMP_CACHE_KEY_BYTES) == 0) {
            (void)pthread_mutex_unlock(&lock); /* another thread was first: same program */
            free(copy.filter);
            return;
        }
    }
    struct entry *e = &cache[next_victim];
    next_victim = (next_victim + 1) % CACHE_ENTRIES;
    struct sock_filter *old = e->used ? e->filter : NULL;
    e->used = true;
    memcpy(e->key, key, SECCOMP_CACHE_KEY_BYTES);
    e->filter = copy.filter;
    e->len = copy.len;
    (void)pthread_mutex_unlock(&lock);
    free(old);
}

unsigned long seccomp_cache_hits(void)
{
    (void)pthread_mutex_lock(&lock);
    unsigned long h = hits;
    (void)pthread_mutex_unlock(&lock);
    return h;
}
