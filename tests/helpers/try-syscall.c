/* try-syscall: asks the kernel for each operation named on the command line, in a forked child,
 * and prints one line "NAME=0" (allowed and succeeded), "NAME=EPERM" (failed with that errno) or
 * "NAME=SIG31" (the child was killed, e.g. by a seccomp kill action). In the style of bubblewrap's
 * tests/try-syscall.c. Every call is chosen so that it does nothing harmful even where it is
 * allowed (invalid magic, nonexistent paths, own namespaces, undone at once). Never run it as root
 * outside a sandbox with sethostname or ptrace_1. */
#include <errno.h>
#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/keyctl.h>
#include <linux/perf_event.h>
#include <linux/sched.h>
#include <linux/userfaultfd.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/ptrace.h>
#include <sys/personality.h>
#include <sys/quota.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/time.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef AF_VSOCK
#define AF_VSOCK 40
#endif
#ifndef AF_ALG
#define AF_ALG 38
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif

static long ret_fd(long r)
{
    if (r >= 0)
        close((int)r);
    return r < 0 ? -1 : 0;
}

static long do_clone_newuser(void)
{
    long pid = syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid < 0 ? -1 : 0;
}

static long do_clone3(unsigned long long flags)
{
    struct clone_args ca;
    memset(&ca, 0, sizeof ca);
    ca.flags = flags;
    ca.exit_signal = SIGCHLD;
    long pid = syscall(SYS_clone3, &ca, sizeof ca);
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, 0);
    return pid < 0 ? -1 : 0;
}

static long do_setns(const char *ns)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/self/ns/%s", ns);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    long r = setns(fd, 0);
    int e = errno;
    close(fd);
    errno = e;
    return r;
}

static long do_open_by_handle(void)
{
    /* Shocker (2014): a forged handle for inode 2 (the root of an ext fs) of the mount. */
    struct {
        struct file_handle fh;
        unsigned char buf[128];
    } h;
    int mnt_id;
    memset(&h, 0, sizeof h);
    h.fh.handle_bytes = 128;
    if (syscall(SYS_name_to_handle_at, AT_FDCWD, "/etc", &h.fh, &mnt_id, 0) != 0) {
        h.fh.handle_bytes = 8;
        h.fh.handle_type = 1;
        uint32_t ino_gen[2] = {2, 0};
        memcpy(h.fh.f_handle, ino_gen, sizeof ino_gen);
    }
    int mfd = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (mfd < 0)
        return -1;
    long r = syscall(SYS_open_by_handle_at, mfd, &h.fh, O_RDONLY | O_CLOEXEC);
    int e = errno;
    close(mfd);
    errno = e;
    return ret_fd(r);
}

static long do_bpf(void)
{
    union bpf_attr a;
    memset(&a, 0, sizeof a);
    a.map_type = BPF_MAP_TYPE_ARRAY;
    a.key_size = 4;
    a.value_size = 4;
    a.max_entries = 1;
    return ret_fd(syscall(SYS_bpf, BPF_MAP_CREATE, &a, sizeof a));
}

static long do_perf(void)
{
    struct perf_event_attr a;
    memset(&a, 0, sizeof a);
    a.size = sizeof a;
    a.type = PERF_TYPE_SOFTWARE;
    a.config = PERF_COUNT_SW_CPU_CLOCK;
    a.exclude_kernel = 1;
    a.exclude_hv = 1;
    return ret_fd(syscall(SYS_perf_event_open, &a, 0, -1, -1, 0));
}

static long do_uring(void)
{
    unsigned char params[120]; /* struct io_uring_params */
    memset(params, 0, sizeof params);
    return ret_fd(syscall(SYS_io_uring_setup, 1, params));
}

static long do_mount_tmp(void)
{
    char dir[] = "/tmp/abx-mnt-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    long r = mount("none", dir, "tmpfs", 0, "size=1m");
    int e = errno;
    if (r == 0)
        umount2(dir, MNT_DETACH);
    rmdir(dir);
    errno = e;
    return r;
}

static long do_umount_tmp(void)
{
    char dir[] = "/tmp/abx-umnt-XXXXXX";
    if (!mkdtemp(dir))
        return -1;
    long r = umount2(dir, 0); /* not a mount point: EINVAL when allowed */
    int e = errno;
    rmdir(dir);
    errno = e;
    return r;
}

static long do_mknod(void)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/abx-mknod-%d", (int)getpid());
    long r = mknod(path, S_IFCHR | 0600, makedev(1, 3));
    int e = errno;
    if (r == 0)
        unlink(path);
    errno = e;
    return r;
}

static long do_socket(int fam, int type, int proto)
{
    return ret_fd(socket(fam, type | SOCK_CLOEXEC, proto));
}

static long do_proc_vm(pid_t pid)
{
    char c;
    struct iovec l = {&c, 1}, r = {(void *)0x1000, 1}; /* EFAULT when allowed */
    return syscall(SYS_process_vm_readv, pid, &l, 1, &r, 1, 0) < 0 ? -1 : 0;
}

static long do_ptrace(pid_t pid)
{
    long r = ptrace(PTRACE_SEIZE, pid, 0, 0);
    if (r == 0) {
        usleep(300 * 1000); /* lets the host side see TracerPid */
        ptrace(PTRACE_DETACH, pid, 0, 0);
    }
    return r;
}

static long do_pidfd_getfd(pid_t pid)
{
    int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (pfd < 0)
        return -1;
    long r = syscall(SYS_pidfd_getfd, pfd, 0, 0);
    int e = errno;
    close(pfd);
    errno = e;
    return ret_fd(r);
}

/* open:PATH:r|w|c  - c creates a new file (removed again at once); w never writes. */
static long do_open(const char *spec)
{
    char path[512];
    snprintf(path, sizeof path, "%s", spec);
    char *colon = strrchr(path, ':');
    char mode = 'r';
    if (colon && colon[1] && !colon[2]) {
        mode = colon[1];
        *colon = 0;
    }
    int flags = mode == 'w' ? O_WRONLY : mode == 'c' ? O_WRONLY | O_CREAT | O_EXCL : O_RDONLY;
    int fd = open(path, flags | O_CLOEXEC | O_NOCTTY, 0600);
    if (fd < 0)
        return -1;
    if (mode == 'r') {
        char c;
        ssize_t n = read(fd, &c, 1);
        int e = errno;
        close(fd);
        errno = e;
        if (n < 0)
            return -1;
        if (n == 0) {
            errno = 0; /* opened but empty: a masked file (bound /dev/null) */
            return -2;
        }
        return 0;
    }
    close(fd);
    if (mode == 'c')
        unlink(path);
    return 0;
}

static long attempt(const char *name)
{
    const char *arg = strchr(name, ':');
    arg = arg ? arg + 1 : "";
#define IS(s) (strncmp(name, s, strlen(s)) == 0 && (name[strlen(s)] == 0 || name[strlen(s)] == ':'))
    if (IS("io_uring_setup"))
        return do_uring();
    if (IS("io_uring_enter"))
        return syscall(SYS_io_uring_enter, -1, 0, 0, 0, NULL, 0);
    if (IS("io_uring_register"))
        return syscall(SYS_io_uring_register, -1, 0, NULL, 0);
    if (IS("unshare_user"))
        return unshare(CLONE_NEWUSER);
    if (IS("unshare_ns"))
        return unshare(CLONE_NEWNS);
    if (IS("unshare_net"))
        return unshare(CLONE_NEWNET);
    if (IS("unshare_pid"))
        return unshare(CLONE_NEWPID);
    if (IS("unshare_ipc"))
        return unshare(CLONE_NEWIPC);
    if (IS("unshare_uts"))
        return unshare(CLONE_NEWUTS);
    if (IS("unshare_cgroup"))
        return unshare(CLONE_NEWCGROUP);
    if (IS("unshare_time"))
        return unshare(CLONE_NEWTIME);
    if (IS("clone_newuser"))
        return do_clone_newuser();
    if (IS("clone3_newuser"))
        return do_clone3(CLONE_NEWUSER);
    if (IS("clone3"))
        return do_clone3(0);
    if (IS("setns_mnt"))
        return do_setns("mnt");
    if (IS("setns_net"))
        return do_setns("net");
    if (IS("keyctl"))
        return syscall(SYS_keyctl, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1) < 0 ? -1 : 0;
    if (IS("add_key"))
        return syscall(SYS_add_key, "user", *arg ? arg : "abx-probe-key", "x", 1,
                       KEY_SPEC_PROCESS_KEYRING) < 0
                   ? -1
                   : 0;
    if (IS("request_key"))
        return syscall(SYS_request_key, "user", "abx-nonexistent-key", NULL, 0) < 0 ? -1 : 0;
    if (IS("bpf"))
        return do_bpf();
    if (IS("perf_event_open"))
        return do_perf();
    if (IS("userfaultfd"))
        return ret_fd(syscall(SYS_userfaultfd, O_CLOEXEC | UFFD_USER_MODE_ONLY));
    if (IS("mount"))
        return do_mount_tmp();
    if (IS("umount2"))
        return do_umount_tmp();
    if (IS("pivot_root"))
        return syscall(SYS_pivot_root, "/nonexistent-abx", "/nonexistent-abx");
    if (IS("fsopen"))
        return ret_fd(syscall(SYS_fsopen, "tmpfs", 0));
    if (IS("fspick"))
        return ret_fd(syscall(SYS_fspick, AT_FDCWD, "/nonexistent-abx", 0));
    if (IS("open_tree"))
        return ret_fd(syscall(SYS_open_tree, AT_FDCWD, "/", 1 /* OPEN_TREE_CLONE */));
    if (IS("move_mount"))
        return syscall(SYS_move_mount, -1, "", -1, "", 0);
    if (IS("mount_setattr")) {
        uint64_t attr[4] = {0, 0, 0, 0};
        return syscall(SYS_mount_setattr, -1, "", 0, attr, sizeof attr);
    }
    if (IS("chroot"))
        return chroot("/tmp");
    if (IS("mknod"))
        return do_mknod();
    if (IS("kexec_load"))
        return syscall(SYS_kexec_load, 0, 0, NULL, 0x100UL /* unknown flag */);
    if (IS("kexec_file_load"))
        return syscall(SYS_kexec_file_load, -1, -1, 0, "", 0x80000000UL);
    if (IS("init_module"))
        return syscall(SYS_init_module, NULL, 0, "");
    if (IS("finit_module"))
        return syscall(SYS_finit_module, -1, "", 0);
    if (IS("delete_module"))
        return syscall(SYS_delete_module, "abx_nonexistent_module", O_NONBLOCK);
    if (IS("reboot"))
        return syscall(SYS_reboot, 0xdead, 0xbeef, 0x1234, NULL); /* invalid magic */
    if (IS("acct"))
        return acct("/nonexistent-abx/acct");
    if (IS("swapon"))
        return syscall(SYS_swapon, "/nonexistent-abx", 0);
    if (IS("swapoff"))
        return syscall(SYS_swapoff, "/nonexistent-abx");
    if (IS("syslog"))
        return syscall(SYS_syslog, 10 /* SIZE_BUFFER */, NULL, 0) < 0 ? -1 : 0;
    if (IS("iopl"))
        return syscall(SYS_iopl, 3);
    if (IS("ioperm"))
        return syscall(SYS_ioperm, 0x80, 1, 1);
    if (IS("settimeofday"))
        return syscall(SYS_settimeofday, NULL, NULL);
    if (IS("quotactl"))
        return quotactl(QCMD(Q_GETINFO, USRQUOTA), "/dev/nonexistent-abx", 0, NULL);
    if (IS("personality"))
        return personality(READ_IMPLIES_EXEC) < 0 ? -1 : 0;
    if (IS("personality_query"))
        return personality(0xffffffff) < 0 ? -1 : 0;
    if (IS("open_by_handle_at"))
        return do_open_by_handle();
    if (IS("socket_inet"))
        return do_socket(AF_INET, SOCK_STREAM, 0);
    if (IS("socket_inet6"))
        return do_socket(AF_INET6, SOCK_STREAM, 0);
    if (IS("socket_packet"))
        return do_socket(AF_PACKET, SOCK_RAW, 0);
    if (IS("socket_netlink"))
        return do_socket(AF_NETLINK, SOCK_RAW, 0);
    if (IS("socket_vsock"))
        return do_socket(AF_VSOCK, SOCK_STREAM, 0);
    if (IS("socket_alg"))
        return do_socket(AF_ALG, SOCK_SEQPACKET, 0);
    if (IS("socket_unix"))
        return do_socket(AF_UNIX, SOCK_STREAM, 0);
    if (IS("sethostname"))
        return sethostname(arg, strlen(arg));
    if (IS("ptrace"))
        return do_ptrace((pid_t)atoi(arg));
    if (IS("process_vm_readv"))
        return do_proc_vm((pid_t)atoi(arg));
    if (IS("pidfd_getfd"))
        return do_pidfd_getfd((pid_t)atoi(arg));
    if (IS("kill0"))
        return kill((pid_t)atoi(arg), 0);
    if (IS("killcont"))
        return kill((pid_t)atoi(arg), SIGCONT);
    if (IS("open"))
        return do_open(arg);
#undef IS
    fprintf(stderr, "try-syscall: unknown operation %s\n", name);
    exit(2);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: try-syscall NAME[:ARG]...\n");
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        char label[128];
        snprintf(label, sizeof label, "%s", argv[i]);
        if (strncmp(label, "open:", 5) != 0) {
            char *c = strchr(label, ':');
            if (c)
                *c = 0;
        }
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0) {
            printf("%s=FORK_%s\n", label, strerrorname_np(errno));
            continue;
        }
        if (pid == 0) {
            errno = 0;
            long r = attempt(argv[i]);
            if (r == -2)
                printf("%s=EMPTY\n", label);
            else if (r < 0)
                printf("%s=%s\n", label, strerrorname_np(errno) ? strerrorname_np(errno) : "E?");
            else
                printf("%s=0\n", label);
            fflush(stdout);
            _exit(0);
        }
        int st;
        if (waitpid(pid, &st, 0) < 0)
            return 1;
        if (WIFSIGNALED(st))
            printf("%s=SIG%d\n", label, WTERMSIG(st));
        else if (WEXITSTATUS(st) != 0)
            return WEXITSTATUS(st);
    }
    return 0;
}
