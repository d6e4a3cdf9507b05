/* namespaces: which namespaces a cell gets, its uid/gid maps (written by the parent), the
 * switch to the cell user inside, the hostname and the loopback interface.
 * Never maps more than one id: inside the cell only CELL_UID/CELL_GID exist. */
#include "cell_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <net/if.h>
#include <linux/sched.h>
#include <linux/securebits.h>
#include <sched.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "util.h"

uint64_t ns_clone_flags(const struct cell_config *cfg)
{
    uint64_t f =
        CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP;
    if (!cfg->network_host)
        f |= CLONE_NEWNET;
    return f;
}

static int write_proc(pid_t pid, const char *file, const char *text, char *err, size_t errsz)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return errf(err, errsz, "%s: %s", file, strerror(errno));
    size_t len = strlen(text);
    ssize_t n = write(fd, text, len);
    int e = errno;
    if (close(fd) < 0 && n == (ssize_t)len)
        return errf(err, errsz, "%s: %s", file, strerror(errno));
    if (n != (ssize_t)len)
        return errf(err, errsz, "%s: %s", file, n < 0 ? strerror(e) : "short write");
    return 0;
}

int ns_write_maps(pid_t pid, uid_t host_uid, gid_t host_gid, bool root_caller, char *err,
                  size_t errsz)
{
    char map[64];
    /* Unprivileged writers must give up setgroups first (CVE-2014-8989: dropping a group
     * could otherwise grant access); root keeps it so the cell can clear its groups. */
    if (!root_caller && write_proc(pid, "setgroups", "deny", err, errsz) < 0)
        return -1;
    snprintf(map, sizeof(map), "%u %u 1\n", CELL_UID, (unsigned)host_uid);
    if (write_proc(pid, "uid_map", map, err, errsz) < 0)
        return -1;
    snprintf(map, sizeof(map), "%u %u 1\n", CELL_GID, (unsigned)host_gid);
    return write_proc(pid, "gid_map", map, err, errsz);
}

long ns_clone3_as(struct clone_args *ca, uid_t uid, gid_t gid)
{
    /* Only this thread's ids change (raw system calls; glibc's would change every thread),
     * for the clone only. SECBIT_NO_SETUID_FIXUP keeps the capabilities in effect while the
     * effective uid is not 0 (CLONE_INTO_CGROUP writes a root-owned cgroup). */
    int bits = prctl(PR_GET_SECUREBITS, 0, 0, 0, 0);
    if (bits < 0)
        return -1;
    if (prctl(PR_SET_SECUREBITS, (unsigned long)bits | SECBIT_NO_SETUID_FIXUP, 0, 0, 0) < 0) {
        /* Root without CAP_SETPCAP and CAP_SYS_ADMIN (a hardened systemd unit's bounding
         * set) can neither keep its capabilities across the switch nor write the maps of a
         * user namespace another uid owns: the namespace is then root's, as before, and the
         * cell's counters are held only by the per-cell caps (limits_cap_ucounts). */
        if (errno != EPERM)
            return -1;
        return syscall(SYS_clone3, ca, sizeof(*ca));
    }
    long pid = -1;
    int e = 0;
    if (syscall(SYS_setresgid, -1, gid, -1) < 0 || syscall(SYS_setresuid, -1, uid, -1) < 0)
        e = errno;
    else {
        pid = syscall(SYS_clone3, ca, sizeof(*ca));
        if (pid == 0)
            return 0; /* the child: its ids and bits are its own user namespace's now */
        e = errno;
    }
    /* Going on as root with the wrong ids would be worse than stopping. */
    if (syscall(SYS_setresuid, -1, 0, -1) < 0 || syscall(SYS_setresgid, -1, 0, -1) < 0 ||
        prctl(PR_SET_SECUREBITS, (unsigned long)bits, 0, 0, 0) < 0)
        abort();
    errno = e;
    return pid;
}

int ns_become_user(struct cell_child *ctx)
{
    /* As root the child starts as host uid 0, which is unmapped inside: files it creates
     * would fail with EOVERFLOW. Switching to the mapped id keeps the capabilities of the new
     * user namespace, because the kernel's "was root" test compares against inside-0, which
     * is unmapped here (cap_emulate_setxuid).
     * Raw system calls: the child of a clone made on a supervisor's spawner thread is one
     * thread, but glibc still lists the parent's other threads and its set*id wrappers would
     * wait forever for them to follow (supervisor/spawner.c). */
    if (ctx->root_caller && syscall(SYS_setgroups, 0, NULL) < 0)
        return CHILD_FAIL(ctx, "setgroups");
    if (syscall(SYS_setresgid, CELL_GID, CELL_GID, CELL_GID) < 0)
        return CHILD_FAIL(ctx, "setresgid");
    if (syscall(SYS_setresuid, CELL_UID, CELL_UID, CELL_UID) < 0)
        return CHILD_FAIL(ctx, "setresuid");
    return 0;
}

int ns_set_hostname_and_lo(struct cell_child *ctx)
{
    if (sethostname(CELL_HOSTNAME, strlen(CELL_HOSTNAME)) < 0)
        return CHILD_FAIL(ctx, "sethostname");
    /* A policy without loopback denies IP sockets anyway (seccomp): no need for lo. */
    if (ctx->cfg->network_host || (!ctx->cfg->policy->loopback && !ctx->cfg->egress))
        return 0;
    int s = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    if (s < 0)
        return CHILD_FAIL(ctx, "loopback socket");
    struct ifreq ifr;
    memset(&ifr, 0, sizeof(ifr));
    snprintf(ifr.ifr_name, sizeof(ifr.ifr_name), "lo");
    ifr.ifr_flags = IFF_UP | IFF_RUNNING;
    int r = ioctl(s, SIOCSIFFLAGS, &ifr);
    int e = errno;
    (void)close(s);
    if (r < 0) {
        errno = e;
        return CHILD_FAIL(ctx, "loopback up");
    }
    return 0;
}
