/* seccomp_cache: the per-process cache of compiled seccomp programs behind
 * policy_seccomp_build (seccomp_cache.c says what it owns). Safe for concurrent use. */
#ifndef AGENTBOX_SECCOMP_CACHE_H
#define AGENTBOX_SECCOMP_CACHE_H

#include <linux/filter.h>
#include <stdbool.h>
#include <stdint.h>

#include "policy.h"

#define SECCOMP_CACHE_KEY_BYTES 32

/* The key of the program built from p with this socket allow-list (sockets_local: the
 * network is "none" and the policy has no loopback, so IPv4/IPv6 sockets are refused). */
void seccomp_cache_key(const struct policy *p, bool sockets_local,
                       uint8_t key[SECCOMP_CACHE_KEY_BYTES]);
/* A malloc'd copy of the program under key in *out (free with policy_bpf_free); false if
 * there is none (or no memory for the copy). */
bool seccomp_cache_get(const uint8_t key[SECCOMP_CACHE_KEY_BYTES], struct sock_fprog *out);
/* Keeps a copy of prog under key (the caller keeps prog); silently skipped without memory. */
void seccomp_cache_put(const uint8_t key[SECCOMP_CACHE_KEY_BYTES], const struct sock_fprog *prog);
/* How many builds were answered from the cache so far (for tests and figures). */
unsigned long seccomp_cache_hits(void);

#endif
