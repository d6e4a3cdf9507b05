/* caps: leaves the cell with no capability at all, in any set, and no way back: securebits
 * locked so that neither exec of a "root" file nor setuid can grant any (SECBIT_NOROOT),
 * bounding set emptied, ambient set cleared and its raising forbidden. Uses libcap. */
#include "cell_internal.h"

#include <errno.h>
#include <linux/securebits.h>
#include <sys/capability.h>
#include <sys/prctl.h>

int caps_drop_all(struct cell_child *ctx)
{
    /* Needs CAP_SETPCAP, so before the sets are emptied. */
    unsigned long bits = SECBIT_NOROOT | SECBIT_NOROOT_LOCKED | SECBIT_NO_SETUID_FIXUP |
                         SECBIT_NO_SETUID_FIXUP_LOCKED | SECBIT_KEEP_CAPS_LOCKED |
                         SECBIT_NO_CAP_AMBIENT_RAISE | SECBIT_NO_CAP_AMBIENT_RAISE_LOCKED;
    if (prctl(PR_SET_SECUREBITS, bits, 0, 0, 0) < 0)
        return CHILD_FAIL(ctx, "securebits");
    int max = cap_max_bits();
    for (int c = 0; c < max; c++)
        if (cap_drop_bound((cap_value_t)c) < 0 && errno != EINVAL)
            return CHILD_FAIL(ctx, "drop bounding set");
    if (cap_reset_ambient() < 0)
        return CHILD_FAIL(ctx, "clear ambient caps");
    cap_t none = cap_init();
    if (!none)
        return CHILD_FAIL(ctx, "cap_init");
    int r = cap_set_proc(none);
    int e = errno;
    (void)cap_free(none);
    if (r < 0) {
        errno = e;
        return CHILD_FAIL(ctx, "clear capabilities");
    }
    ctx->enforced |= FEAT(CELL_F_CAPS);
    return 0;
}
