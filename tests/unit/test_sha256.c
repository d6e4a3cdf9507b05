/* Unit tests for common/sha256.c: the NIST FIPS 180-4 example vectors (one block, two
 * blocks, one million 'a'), split updates at every boundary, and hashing a file descriptor. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "sha256.h"

static void test_nist_vectors(void **state)
{
    (void)state;
    char hex[SHA256_HEX_CHARS];
    sha256_hex("abc", 3, hex);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    sha256_hex("", 0, hex);
    assert_string_equal(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *two = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    sha256_hex(two, strlen(two), hex);
    assert_string_equal(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    const char *four = "abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjk"
                       "lmnopqklmnopqrlmnopqrsmnopqrstnopqrstu";
    sha256_hex(four, strlen(four), hex);
    assert_string_equal(hex, "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
}

static void test_million_a(void **state)
{
    (void)state;
    struct sha256 s;
    uint8_t d[SHA256_DIGEST_BYTES];
    char hex[SHA256_HEX_CHARS], chunk[1000];
    memset(chunk, 'a', sizeof(chunk));
    sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        sha256_update(&s, chunk, sizeof(chunk));
    sha256_final(&s, d);
    sha256_digest_hex(d, hex);
    assert_string_equal(hex, "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
}

/* Padding edge cases: lengths 55, 56, 63, 64 and 65 hashed whole must equal the same
 * bytes fed in two pieces split at every offset. */
static void test_split_updates_agree(void **state)
{
    (void)state;
    uint8_t data[130];
    for (size_t i = 0; i < sizeof(data); i++)
        data[i] = (uint8_t)(i * 7 + 3);
    const size_t lens[] = {0, 1, 55, 56, 57, 63, 64, 65, 119, 128, 130};
    for (size_t li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
        size_t len = lens[li];
        char whole[SHA256_HEX_CHARS], split[SHA256_HEX_CHARS];
        sha256_hex(data, len, whole);
        for (size_t cut = 0; cut <= len; cut++) {
            struct sha256 s;
            uint8_t d[SHA256_DIGEST_BYTES];
            sha256_init(&s);
            sha256_update(&s, data, cut);
            sha256_update(&s, data + cut, len - cut);
            sha256_final(&s, d);
            sha256_digest_hex(d, split);
            assert_string_equal(whole, split);
        }
    }
    /* A known 56-byte-boundary value: 55 'a' and 56 'a' differ and match sha256sum. */
    char hex[SHA256_HEX_CHARS], a56[56];
    memset(a56, 'a', sizeof(a56));
    sha256_hex(a56, 56, hex);
    assert_string_equal(hex, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
}

static void test_fd(void **state)
{
    (void)state;
    char path[] = "/tmp/agentbox-sha-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(unlink(path), 0);
    assert_int_equal(write(fd, "abc", 3), 3);
    assert_int_equal(lseek(fd, 0, SEEK_SET), 0);
    char hex[SHA256_HEX_CHARS];
    uint64_t n = 0;
    assert_int_equal(sha256_fd(fd, hex, &n), 0);
    assert_int_equal(n, 3);
    assert_string_equal(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    close(fd);
    assert_int_equal(sha256_fd(fd, hex, &n), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nist_vectors),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_split_updates_agree),
        cmocka_unit_test(test_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
