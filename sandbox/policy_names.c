/* policy_names: the closed tables of names a policy file may use (errno values, the
 * constants an argument value may name, actions, comparison operators) and the lookups in
 * them; shared by the parser (policy.c) and the printer (policy_json.c). Holds no state and
 * never accepts a name that is not listed here. */
#include "policy_names.h"

#include <errno.h>
#include <linux/sched.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>

#include "util.h"

const struct policy_named policy_errno_names[] = {
    {"EPERM", EPERM},
    {"ENOENT", ENOENT},
    {"ESRCH", ESRCH},
    {"EINTR", EINTR},
    {"EIO", EIO},
    {"ENXIO", ENXIO},
    {"E2BIG", E2BIG},
    {"EBADF", EBADF},
    {"ECHILD", ECHILD},
    {"EAGAIN", EAGAIN},
    {"ENOMEM", ENOMEM},
    {"EACCES", EACCES},
    {"EFAULT", EFAULT},
    {"EBUSY", EBUSY},
    {"EEXIST", EEXIST},
    {"ENODEV", ENODEV},
    {"EINVAL", EINVAL},
    {"ENFILE", ENFILE},
    {"EMFILE", EMFILE},
    {"ENOTTY", ENOTTY},
    {"EFBIG", EFBIG},
    {"ENOSPC", ENOSPC},
    {"EROFS", EROFS},
    {"ENOSYS", ENOSYS},
    {"ENOTSUP", ENOTSUP},
    {"EOPNOTSUPP", EOPNOTSUPP},
    {"EAFNOSUPPORT", EAFNOSUPPORT},
    {"EPROTONOSUPPORT", EPROTONOSUPPORT},
    {"ENETUNREACH", ENETUNREACH},
    {"ECONNREFUSED", ECONNREFUSED},
};

const struct policy_named policy_constant_names[] = {
    {"AF_UNIX", AF_UNIX},
    {"AF_INET", AF_INET},
    {"AF_INET6", AF_INET6},
    {"AF_NETLINK", AF_NETLINK},
    {"AF_PACKET", AF_PACKET},
    {"AF_ALG", AF_ALG},
    {"AF_VSOCK", AF_VSOCK},
    {"SOCK_STREAM", SOCK_STREAM},
    {"SOCK_DGRAM", SOCK_DGRAM},
    {"SOCK_RAW", SOCK_RAW},
    {"CLONE_NEWNS", CLONE_NEWNS},
    {"CLONE_NEWUSER", CLONE_NEWUSER},
    {"CLONE_NEWPID", CLONE_NEWPID},
    {"CLONE_NEWNET", CLONE_NEWNET},
    {"CLONE_NEWIPC", CLONE_NEWIPC},
    {"CLONE_NEWUTS", CLONE_NEWUTS},
    {"CLONE_NEWCGROUP", CLONE_NEWCGROUP},
    {"CLONE_THREAD", CLONE_THREAD},
    {"CLONE_VM", CLONE_VM},
    {"TIOCSTI", TIOCSTI},
    {"TIOCLINUX", TIOCLINUX},
    {"TIOCSETD", TIOCSETD},
};

const char *const policy_action_names[] = {
    [POLICY_ACT_ALLOW] = "allow",
    [POLICY_ACT_LOG] = "log",
    [POLICY_ACT_ERRNO] = "errno",
    [POLICY_ACT_KILL_PROCESS] = "kill_process",
};

const char *const policy_op_names[] = {
    [POLICY_OP_EQ] = "eq",
    [POLICY_OP_NE] = "ne",
    [POLICY_OP_LT] = "lt",
    [POLICY_OP_LE] = "le",
    [POLICY_OP_GT] = "gt",
    [POLICY_OP_GE] = "ge",
    [POLICY_OP_MASKED_EQ] = "masked_eq",
};

const char *policy_action_name(enum policy_action a)
{
    return (unsigned)a < POLICY_ACTION_NAMES ? policy_action_names[a] : "?";
}

int policy_name_index(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; i < n; i++)
        if (names[i] && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

const size_t POLICY_ERRNO_NAMES = ARRAY_SIZE(policy_errno_names);
const size_t POLICY_CONSTANT_NAMES = ARRAY_SIZE(policy_constant_names);
const size_t POLICY_ACTION_NAMES = ARRAY_SIZE(policy_action_names);
const size_t POLICY_OP_NAMES = ARRAY_SIZE(policy_op_names);

const char *policy_errno_name(int e)
{
    for (size_t i = 0; i < POLICY_ERRNO_NAMES; i++)
        if ((int)policy_errno_names[i].value == e)
            return policy_errno_names[i].name;
    return NULL;
}
