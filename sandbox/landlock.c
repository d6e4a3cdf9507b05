/* landlock: where the kernel has it (Linux 5.13+), the cell may write only below /workspace,
 * /tmp and /dev/shm (and to the device nodes in /dev); it reads everything it can see. From
 * ABI 6 it also cannot reach abstract Unix sockets or signal processes outside the cell.
 * The constants are defined here because Debian 12's headers predate ABI 2. */
#include "cell_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule       445
#define SYS_landlock_restrict_self  446
#endif

#define LL_CREATE_RULESET_VERSION (1u << 0)
#define LL_RULE_PATH_BENEATH      1

#define LL_FS_WRITE_FILE  (1ull << 1)
#define LL_FS_REMOVE_DIR  (1ull << 4)
#define LL_FS_REMOVE_FILE (1ull << 5)
#define LL_FS_MAKE_CHAR   (1ull << 6)
#define LL_FS_MAKE_DIR    (1ull << 7)
#define LL_FS_MAKE_REG    (1ull << 8)
#define LL_FS_MAKE_SOCK   (1ull << 9)
#define LL_FS_MAKE_FIFO   (1ull << 10)
#define LL_FS_MAKE_BLOCK  (1ull << 11)
#define LL_FS_MAKE_SYM    (1ull << 12)
#define LL_FS_REFER       (1ull << 13) /* ABI 2 */
#define LL_FS_TRUNCATE    (1ull << 14) /* ABI 3 */

#define LL_SCOPE_ABSTRACT_UNIX_SOCKET (1ull << 0) /* ABI 6 */
#define LL_SCOPE_SIGNAL               (1ull << 1) /* ABI 6 */

struct ll_ruleset_attr {
    uint64_t handled_access_fs;
    uint64_t handled_access_net; /* ABI 4 */
    uint64_t scoped;             /* ABI 6 */
};

struct ll_path_beneath_attr {
    uint64_t allowed_access;
    int32_t parent_fd;
} __attribute__((packed));

static int add_rule(int ruleset, const char *path, uint64_t access)
{
    int fd = open(path, O_PATH | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -1;
    struct ll_path_beneath_attr pb = {.allowed_access = access, .parent_fd = fd};
    long r = syscall(SYS_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0);
    int e = errno;
    (void)close(fd);
    errno = e;
    return r < 0 ? -1 : 0;
}

int landlock_apply(struct cell_child *ctx)
{
    if (!ctx->cfg->policy->landlock)
        return 0;
    long abi = syscall(SYS_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
    if (abi < 1) {
        /* ENOSYS: kernel without Landlock; EOPNOTSUPP: built in but disabled at boot. */
        ctx->unavailable |= FEAT(CELL_F_LANDLOCK);
        return 0;
    }
    uint64_t write = LL_FS_WRITE_FILE | LL_FS_REMOVE_DIR | LL_FS_REMOVE_FILE | LL_FS_MAKE_CHAR |
                     LL_FS_MAKE_DIR | LL_FS_MAKE_REG | LL_FS_MAKE_SOCK | LL_FS_MAKE_FIFO |
                     LL_FS_MAKE_BLOCK | LL_FS_MAKE_SYM;
    if (abi >= 2)
        write |= LL_FS_REFER;
    if (abi >= 3)
        write |= LL_FS_TRUNCATE;
    struct ll_ruleset_attr attr = {.handled_access_fs = write};
    size_t attr_size = sizeof(uint64_t);
    if (abi >= 6) {
        attr.scoped = LL_SCOPE_ABSTRACT_UNIX_SOCKET | LL_SCOPE_SIGNAL;
        attr_size = sizeof(attr);
    }
    int rs = (int)syscall(SYS_landlock_create_ruleset, &attr, attr_size, 0);
    if (rs < 0)
        return CHILD_FAIL(ctx, "landlock ruleset");
    static const char *const writable[] = {CELL_WORKSPACE, "/tmp", "/dev/shm"};
    for (size_t i = 0; i < sizeof(writable) / sizeof(writable[0]); i++)
        if (add_rule(rs, writable[i], write) < 0) {
            (void)close(rs);
            return CHILD_FAIL(ctx, "landlock rule");
        }
    /* "> /dev/null" opens with O_TRUNC. */
    if (add_rule(rs, "/dev", LL_FS_WRITE_FILE | (abi >= 3 ? LL_FS_TRUNCATE : 0)) < 0) {
        (void)close(rs);
        return CHILD_FAIL(ctx, "landlock rule");
    }
    long r = syscall(SYS_landlock_restrict_self, rs, 0);
    int e = errno;
    (void)close(rs);
    if (r < 0) {
        errno = e;
        return CHILD_FAIL(ctx, "landlock restrict");
    }
    ctx->landlock_abi = (int)abi;
    ctx->enforced |= FEAT(CELL_F_LANDLOCK);
    return 0;
}
