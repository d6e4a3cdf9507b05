/* sha256: SHA-256 (FIPS 180-4) for the result's files manifest. Hand-written rather than
 * libcrypto: the agent process is pid 1 of every cell and must start lean, and keeping
 * libcrypto off its link line keeps ~1 ms and a large attack surface out of the cell. */
#ifndef AGENTBOX_SHA256_H
#define AGENTBOX_SHA256_H

#include <stddef.h>
#include <stdint.h>

#define SHA256_DIGEST_BYTES 32
#define SHA256_HEX_CHARS    65 /* 64 hex digits + NUL */

struct sha256 {
    uint32_t h[8];
    uint64_t total_bytes;
    uint8_t block[64];
    size_t used;
};

void sha256_init(struct sha256 *s);
void sha256_update(struct sha256 *s, const void *data, size_t len);
void sha256_final(struct sha256 *s, uint8_t digest[SHA256_DIGEST_BYTES]);
/* One-shot helpers. hex must hold SHA256_HEX_CHARS bytes. */
void sha256_hex(const void *data, size_t len, char hex[SHA256_HEX_CHARS]);
void sha256_digest_hex(const uint8_t digest[SHA256_DIGEST_BYTES], char hex[SHA256_HEX_CHARS]);
/* Hashes an open file descriptor from its current offset to EOF. Returns 0 or -1 (errno). */
int sha256_fd(int fd, char hex[SHA256_HEX_CHARS], uint64_t *bytes);

#endif
