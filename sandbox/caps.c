/* caps: leaves the cell with no capability at all, in any set, and no way back: securebits
 * locked so that neither exec of a "root" file nor setuid can grant any (SECBIT_NOROOT),
 * bounding set emptied, ambient set cleared and its raising forbidden. Runs in a cell's child,
 * which may be a clone of a multi-threaded supervisor: raw prctl and capset only, nothing that
 * allocates (libcap's cap_init calls calloc, which deadlocked there on an arena lock another
 * thread held at the clone). */
#include "cell_internal.h"

#include <errno.h>
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

/* Far above any kernel's last capability (40 in Linux 6.x): the loop ends at the first the
 * kernel does not know (EINVAL). */
#define CAPS_PROBE_MAX 256

int caps_drop_all(struct cell_child *ctx)
{
    /* Needs CAP_SETPCAP, so before the sets are emptied. */
    unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                         SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                         SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0)
        return CHILD_FAIL(ctx, "securebits");
    for (unsigned long c = 0; c < CAPS_PROBE_MAX; c++)
        if (prctl(PR_CAPBSET_DROP, c, 0, 0, 0) < 0) {
            if (errno == EINVAL && c > 0)
                break; /* past the kernel's last capability */
            return CHILD_FAIL(ctx, "drop bounding set");
        }
    if (prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) < 0)
        return CHILD_FAIL(ctx, "clear ambient caps");
    struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
    struct __user_cap_data_struct none[_LINUX_CAPABILITY_U32S_3] = {{0}};
    if (syscall(SYS_capset, &hdr, none) < 0)
        return CHILD_FAIL(ctx, "clear capabilities");
    ctx->enforced |= FEAT(CELL_F_CAPS);
    return 0;
}
