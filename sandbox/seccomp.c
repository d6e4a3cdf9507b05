/* seccomp: compiles a policy into one classic BPF program, in the parent, so the cell only
 * has to install it. The program is three filters run one after the other, the strictest
 * verdict winning (the kernel's rule for stacked filters): the fixed baseline below, which no
 * policy file can weaken or forget; a hand-written allow-list of argument values libseccomp
 * cannot express; and the policy's own rules. Never loads a filter into this process. */
#include "policy.h"

#include <errno.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/sched.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "seccomp_cache.h"
#include "util.h"

/* The hand-written allow-list filter compares the native architecture and reads an
 * argument's low 32 bits at its first four bytes (little-endian). */
#if !defined(__x86_64__) && !defined(__aarch64__)
// cppcheck-suppress preprocessorErrorDirective
#error "agentbox's seccomp filter supports x86_64 and aarch64"
#endif
#if defined(__aarch64__)
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_AARCH64
#else
#define NATIVE_AUDIT_ARCH AUDIT_ARCH_X86_64
#endif
_Static_assert(__BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__, "ARG_LO32 assumes little-endian");

/* ---- the baseline: every cell gets it, whatever its policy says ---- */

struct deny {
    int nr;
    int errno_value;
};

/* One line each, with the reason. EPERM unless said otherwise. */
static const struct deny baseline_denies[] = {
    /* clone3 passes its flags in memory seccomp cannot read; ENOSYS makes glibc fall back
     * to clone, whose flags the rules below do check. */
    {SCMP_SYS(clone3), ENOSYS},
    /* New namespaces, above all user namespaces, open kernel attack surface to an
     * unprivileged process (CVE-2022-0185 fsconfig overflow, CVE-2023-0386 overlayfs). */
    {SCMP_SYS(unshare), EPERM},
    {SCMP_SYS(setns), EPERM},
    /* Mounting, old and new API (CVE-2022-0185 is in fsconfig). */
    {SCMP_SYS(mount), EPERM},
    {SCMP_SYS(umount2), EPERM},
    {SCMP_SYS(pivot_root), EPERM},
    {SCMP_SYS(fsopen), EPERM},
    {SCMP_SYS(fsconfig), EPERM},
    {SCMP_SYS(fsmount), EPERM},
    {SCMP_SYS(fspick), EPERM},
    {SCMP_SYS(move_mount), EPERM},
    {SCMP_SYS(open_tree), EPERM},
    {SCMP_SYS(mount_setattr), EPERM},
    /* Kernel keyrings are not namespaced: keys would be shared with the host
     * (CVE-2016-0728 was a keyring refcount overflow). */
    {SCMP_SYS(keyctl), EPERM},
    {SCMP_SYS(add_key), EPERM},
    {SCMP_SYS(request_key), EPERM},
    /* Exploit helpers and large attack surfaces: the eBPF verifier (CVE-2021-3490), perf
     * (CVE-2013-2094), userfaultfd (makes kernel races reliable to win). */
    {SCMP_SYS(bpf), EPERM},
    {SCMP_SYS(perf_event_open), EPERM},
    {SCMP_SYS(userfaultfd), EPERM},
    /* io_uring runs openat, connect and more without a syscall, behind seccomp's back, and has
     * had many CVEs (CVE-2022-29582, CVE-2023-2598). ENOSYS: libuv and liburing fall back. */
    {SCMP_SYS(io_uring_setup), ENOSYS},
    {SCMP_SYS(io_uring_enter), ENOSYS},
    {SCMP_SYS(io_uring_register), ENOSYS},
    /* Reading or writing another process: pid 1 of the cell holds the channel to the
     * supervisor (CVE-2019-13272 was a ptrace privilege bug). */
    {SCMP_SYS(ptrace), EPERM},
    {SCMP_SYS(process_vm_readv), EPERM},
    {SCMP_SYS(process_vm_writev), EPERM},
    {SCMP_SYS(pidfd_getfd), EPERM},
    {SCMP_SYS(process_madvise), EPERM},
    /* Replacing the kernel or adding code to it. */
    {SCMP_SYS(kexec_load), EPERM},
    {SCMP_SYS(kexec_file_load), EPERM},
    {SCMP_SYS(init_module), EPERM},
    {SCMP_SYS(finit_module), EPERM},
    {SCMP_SYS(delete_module), EPERM},
    {SCMP_SYS(reboot), EPERM},
    /* Host-global state: accounting, swap, quotas, the kernel log (leaks kernel addresses),
     * I/O ports, the clock (time namespaces do not cover CLOCK_REALTIME). */
    {SCMP_SYS(acct), EPERM},
    {SCMP_SYS(swapon), EPERM},
    {SCMP_SYS(swapoff), EPERM},
    {SCMP_SYS(quotactl), EPERM},
    {SCMP_SYS(quotactl_fd), EPERM},
    {SCMP_SYS(syslog), EPERM},
    {SCMP_SYS(iopl), EPERM},
    {SCMP_SYS(ioperm), EPERM},
    {SCMP_SYS(settimeofday), EPERM},
    {SCMP_SYS(clock_settime), EPERM},
    {SCMP_SYS(clock_adjtime), EPERM},
    /* File handles ignore the mount tree: the 2014 "shocker" container escape read host
     * files through open_by_handle_at. */
    {SCMP_SYS(open_by_handle_at), EPERM},
    {SCMP_SYS(name_to_handle_at), EPERM},
};

/* clone(2) with any namespace flag (see unshare above). CLONE_NEWTIME is absent on purpose:
 * in clone(2) its bit is part of the exit-signal byte and the kernel ignores it there. */
static const uint64_t baseline_clone_flags[] = {
    CLONE_NEWNS,  CLONE_NEWUSER, CLONE_NEWPID,    CLONE_NEWNET,
    CLONE_NEWIPC, CLONE_NEWUTS,  CLONE_NEWCGROUP,
};

/* ioctl requests, compared on their low 32 bits only: the kernel ignores the high bits, so
 * comparing all 64 would let 0xffffffff00005412 through (CVE-2019-10063, flatpak). */
static const uint64_t baseline_ioctls[] = {
    TIOCSTI,   /* push input into the terminal's queue: runs commands as the user outside
                  (CVE-2017-5226, bubblewrap) */
    TIOCLINUX, /* the same through the Linux console (TIOCL_PASTESEL) */
    TIOCSETD,  /* line disciplines: CVE-2017-2636 (n_hdlc) was reachable unprivileged */
};

/* ---- the allow-lists: "arg must be one of these", which libseccomp cannot say in a
 * filter whose default is to allow ---- */

struct allow_set {
    int nr;
    unsigned arg;
    int errno_value;
    size_t nvalues;
    uint32_t values[8]; /* compared with the argument's low 32 bits: all three are int args */
};

/* personality(2): only what Docker allows; others switch on READ_IMPLIES_EXEC,
 * ADDR_NO_RANDOMIZE, MMAP_PAGE_ZERO (old null-dereference exploit helpers). */
static const struct allow_set allow_personality = {
    SCMP_SYS(personality),
    0,
    EPERM,
    5,
    {PER_LINUX, PER_LINUX32, UNAME26, PER_LINUX32 | UNAME26, 0xffffffff /* query */}};

/* socket(2) families. Others are rarely used and have had exploitable bugs reachable
 * without privileges (AF_ALG, AF_VSOCK CVE-2021-26708, AF_PACKET CVE-2017-7308, AF_CAN
 * CVE-2021-3609, AF_TIPC, AF_RDS). AF_NETLINK stays: glibc's getaddrinfo and `ip` use it,
 * and it sees only the cell's network namespace. */
static const struct allow_set allow_socket_inet = {
    SCMP_SYS(socket), 0, EAFNOSUPPORT, 4, {AF_UNIX, AF_INET, AF_INET6, AF_NETLINK}};
/* --network none with a policy whose "loopback" is false. */
static const struct allow_set allow_socket_local = {
    SCMP_SYS(socket), 0, EAFNOSUPPORT, 2, {AF_UNIX, AF_NETLINK}};
static const struct allow_set allow_socketpair = {
    SCMP_SYS(socketpair), 0, EAFNOSUPPORT, 1, {AF_UNIX}};

#define ARG_LO32(i)  ((uint32_t)(offsetof(struct seccomp_data, args) + 8 * (i)))
#define RET_ERRNO(e) (SECCOMP_RET_ERRNO | ((uint32_t)(e)&SECCOMP_RET_DATA))

static int allow_sets_program(const struct allow_set *const *sets, size_t n, struct sock_fprog *out)
{
    size_t len = 5; /* arch check (3), load nr, final ret */
    for (size_t i = 0; i < n; i++)
        len += sets[i]->nvalues + 4;
    struct sock_filter *f = calloc(len, sizeof(*f));
    if (!f)
        return -1;
    size_t pc = 0;
    f[pc++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
    f[pc++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, NATIVE_AUDIT_ARCH, 1, 0);
    /* other architectures: the libseccomp filters kill them */
    f[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    f[pc++] =
        (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr));
    for (size_t i = 0; i < n; i++) {
        const struct allow_set *s = sets[i];
        size_t k = s->nvalues;
        /* not this syscall: skip the block, with A still holding nr */
        f[pc++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)s->nr, 0,
                                               (uint8_t)(k + 3));
        f[pc++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_W | BPF_ABS, ARG_LO32(s->arg));
        for (size_t v = 0; v < k; v++)
            f[pc++] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, s->values[v],
                                                   (uint8_t)(k - v), 0);
        f[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, RET_ERRNO(s->errno_value));
        f[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    }
    f[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
    out->filter = f;
    out->len = (unsigned short)pc;
    return 0;
}

/* ---- libseccomp ---- */

static uint32_t scmp_action(enum policy_action a, int errno_value)
{
    switch (a) {
    case POLICY_ACT_ALLOW:
        return SCMP_ACT_ALLOW;
    case POLICY_ACT_LOG:
        return SCMP_ACT_LOG;
    case POLICY_ACT_ERRNO:
        return SCMP_ACT_ERRNO((uint32_t)errno_value);
    case POLICY_ACT_KILL_PROCESS:
        break;
    }
    return SCMP_ACT_KILL_PROCESS;
}

static scmp_filter_ctx new_ctx(uint32_t default_action, char *err, size_t errsz)
{
    scmp_filter_ctx ctx = seccomp_init(default_action);
    if (!ctx) {
        errf(err, errsz, "seccomp_init failed");
        return NULL;
    }
    /* Only the native ABI: i386 (int 0x80) and x32 syscalls kill the whole process
     * (libseccomp's x86_64 filter also refuses numbers with the x32 bit). Binary-tree
     * dispatch keeps long rule lists cheap per syscall. */
    int r = seccomp_attr_set(ctx, SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
    if (r == 0)
        r = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_OPTIMIZE, 2);
    if (r < 0) {
        errf(err, errsz, "seccomp_attr_set: %s", strerror(-r));
        seccomp_release(ctx);
        return NULL;
    }
    return ctx;
}

static scmp_filter_ctx baseline_ctx(char *err, size_t errsz)
{
    scmp_filter_ctx ctx = new_ctx(SCMP_ACT_ALLOW, err, errsz);
    if (!ctx)
        return NULL;
    int r = 0;
    for (size_t i = 0; r == 0 && i < ARRAY_SIZE(baseline_denies); i++)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO((uint32_t)baseline_denies[i].errno_value),
                             baseline_denies[i].nr, 0);
    for (size_t i = 0; r == 0 && i < ARRAY_SIZE(baseline_clone_flags); i++)
        r = seccomp_rule_add(
            ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(clone), 1,
            SCMP_A0(SCMP_CMP_MASKED_EQ, baseline_clone_flags[i], baseline_clone_flags[i]));
    for (size_t i = 0; r == 0 && i < ARRAY_SIZE(baseline_ioctls); i++)
        r = seccomp_rule_add(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(ioctl), 1,
                             SCMP_A1(SCMP_CMP_MASKED_EQ, 0xffffffffu, baseline_ioctls[i]));
    if (r < 0) {
        errf(err, errsz, "seccomp baseline: %s", strerror(-r));
        seccomp_release(ctx);
        return NULL;
    }
    return ctx;
}

static const enum scmp_compare scmp_ops[] = {
    [POLICY_OP_EQ] = SCMP_CMP_EQ,
    [POLICY_OP_NE] = SCMP_CMP_NE,
    [POLICY_OP_LT] = SCMP_CMP_LT,
    [POLICY_OP_LE] = SCMP_CMP_LE,
    [POLICY_OP_GT] = SCMP_CMP_GT,
    [POLICY_OP_GE] = SCMP_CMP_GE,
    [POLICY_OP_MASKED_EQ] = SCMP_CMP_MASKED_EQ,
};

static scmp_filter_ctx policy_ctx(const struct policy *p, char *err, size_t errsz)
{
    scmp_filter_ctx ctx = new_ctx(scmp_action(p->default_action, p->default_errno), err, errsz);
    if (!ctx)
        return NULL;
    for (size_t i = 0; i < p->nrules; i++) {
        const struct policy_rule *rule = &p->rules[i];
        if (rule->nr < 0) /* a syscall of another architecture: cannot happen here */
            continue;
        struct scmp_arg_cmp cmp[6];
        for (unsigned a = 0; a < rule->nargs; a++) {
            const struct policy_arg *pa = &rule->args[a];
            bool masked = pa->op == POLICY_OP_MASKED_EQ;
            cmp[a] = (struct scmp_arg_cmp){pa->index, scmp_ops[pa->op],
                                           masked ? pa->mask : pa->value, masked ? pa->value : 0};
        }
        int r = seccomp_rule_add_array(ctx, scmp_action(rule->action, rule->errno_value), rule->nr,
                                       rule->nargs, cmp);
        if (r < 0) {
            errf(err, errsz, "%s: libseccomp refused the \"%s\" rule: %s", rule->where,
                 rule->syscall, strerror(-r));
            seccomp_release(ctx);
            return NULL;
        }
    }
    return ctx;
}

/* libseccomp 2.5 exports only to a file descriptor: go through a memfd. */
static int export_bpf(scmp_filter_ctx ctx, struct sock_fprog *out, char *err, size_t errsz)
{
    cleanup_fd int fd = memfd_create("agentbox-bpf", MFD_CLOEXEC);
    if (fd < 0)
        return errf(err, errsz, "memfd_create: %s", strerror(errno));
    int r = seccomp_export_bpf(ctx, fd);
    if (r < 0)
        return errf(err, errsz, "seccomp_export_bpf: %s", strerror(-r));
    struct stat st;
    if (fstat(fd, &st) < 0)
        return errf(err, errsz, "fstat: %s", strerror(errno));
    size_t n = (size_t)st.st_size / sizeof(struct sock_filter);
    if (n == 0 || n > BPF_MAXINSNS || (size_t)st.st_size % sizeof(struct sock_filter))
        return errf(err, errsz, "seccomp_export_bpf wrote %lld bytes", (long long)st.st_size);
    struct sock_filter *f = malloc((size_t)st.st_size);
    if (!f)
        return errf(err, errsz, "out of memory");
    if (pread(fd, f, (size_t)st.st_size, 0) != st.st_size) {
        free(f);
        return errf(err, errsz, "reading the exported filter back failed");
    }
    out->filter = f;
    out->len = (unsigned short)n;
    return 0;
}

static int ctx_to_bpf(scmp_filter_ctx ctx, struct sock_fprog *out, char *err, size_t errsz)
{
    if (!ctx)
        return -1;
    int r = export_bpf(ctx, out, err, errsz);
    seccomp_release(ctx);
    return r;
}

/* ---- linking several filters into one program ----
 * Each filter's "ret K" becomes a jump (same length, so its own jumps stay valid) to a stub
 * that keeps the stricter of K and the verdict so far in scratch word M[SCRATCH], then goes
 * on to the next filter; the last step returns M[SCRATCH]. Stricter means what it means for
 * stacked filters in the kernel (kernel/seccomp.c): the lower ACTION_ONLY as a signed
 * number, so kill_process < errno < log < allow. On a tie the earlier filter's value stays,
 * so the baseline's errno wins over the policy's. */

#define SCRATCH    15
#define STUB_INSNS 7

static uint32_t rank_key(uint32_t ret) /* unsigned order of this = signed order of action */
{
    return (ret & SECCOMP_RET_ACTION_FULL) ^ 0x80000000u;
}

static bool scratch_used(const struct sock_fprog *p)
{
    for (unsigned i = 0; i < p->len; i++) {
        uint16_t c = p->filter[i].code;
        if ((c == (BPF_LD | BPF_MEM) || c == (BPF_LDX | BPF_MEM) || c == BPF_ST || c == BPF_STX) &&
            p->filter[i].k == SCRATCH)
            return true;
    }
    return false;
}

/* "ret ALLOW" cannot make the verdict stricter: it jumps straight to the next filter. */
static bool needs_stub(struct sock_filter ins)
{
    return ins.code == (BPF_RET | BPF_K) && ins.k != SECCOMP_RET_ALLOW;
}

static int link_filters(const struct sock_fprog *in, size_t n, struct sock_fprog *out, char *err,
                        size_t errsz)
{
    size_t total = 2 + 2; /* prologue, epilogue */
    for (size_t i = 0; i < n; i++) {
        if (scratch_used(&in[i]))
            return errf(err, errsz, "seccomp: a filter uses scratch memory M[%d]", SCRATCH);
        total += in[i].len;
        for (unsigned j = 0; j < in[i].len; j++) {
            if (BPF_CLASS(in[i].filter[j].code) == BPF_RET &&
                in[i].filter[j].code != (BPF_RET | BPF_K))
                return errf(err, errsz, "seccomp: a filter returns a computed value");
            total += needs_stub(in[i].filter[j]) ? STUB_INSNS : 0;
        }
    }
    if (total > BPF_MAXINSNS)
        return errf(err, errsz, "seccomp: the filter would have %zu instructions (max %d)", total,
                    BPF_MAXINSNS);
    struct sock_filter *f = calloc(total, sizeof(*f));
    if (!f)
        return errf(err, errsz, "out of memory");
    size_t pc = 0;
    f[pc++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_IMM, SECCOMP_RET_ALLOW);
    f[pc++] = (struct sock_filter)BPF_STMT(BPF_ST, SCRATCH);
    for (size_t i = 0; i < n; i++) {
        size_t nstubs = 0;
        for (unsigned j = 0; j < in[i].len; j++)
            nstubs += needs_stub(in[i].filter[j]);
        size_t s = pc + in[i].len, next = s + nstubs * STUB_INSNS;
        for (unsigned j = 0; j < in[i].len; j++, pc++) {
            struct sock_filter ins = in[i].filter[j];
            if (ins.code != (BPF_RET | BPF_K)) {
                f[pc] = ins;
                continue;
            }
            if (!needs_stub(ins)) {
                f[pc] = (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, (uint32_t)(next - pc - 1));
                continue;
            }
            uint32_t k = ins.k;
            f[pc] = (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, (uint32_t)(s - pc - 1));
            f[s + 0] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_MEM, SCRATCH);
            f[s + 1] =
                (struct sock_filter)BPF_STMT(BPF_ALU | BPF_AND | BPF_K, SECCOMP_RET_ACTION_FULL);
            f[s + 2] = (struct sock_filter)BPF_STMT(BPF_ALU | BPF_XOR | BPF_K, 0x80000000u);
            /* verdict so far less strict than k: keep k */
            f[s + 3] = (struct sock_filter)BPF_JUMP(BPF_JMP | BPF_JGT | BPF_K, rank_key(k), 0, 2);
            f[s + 4] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_IMM, k);
            f[s + 5] = (struct sock_filter)BPF_STMT(BPF_ST, SCRATCH);
            f[s + 6] =
                (struct sock_filter)BPF_STMT(BPF_JMP | BPF_JA, (uint32_t)(next - (s + 6) - 1));
            s += STUB_INSNS;
        }
        pc = next;
    }
    f[pc++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_MEM, SCRATCH);
    f[pc++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_A, 0);
    out->filter = f;
    out->len = (unsigned short)pc;
    return 0;
}

/* ---- the interface ---- */

int policy_seccomp_build(const struct policy *p, bool network_none, struct sock_fprog *prog,
                         char *err, size_t errsz)
{
    struct sock_fprog parts[3] = {{0}};
    int r = -1;
    prog->filter = NULL;
    prog->len = 0;
    bool sockets_local = network_none && !p->loopback;
    uint8_t key[SECCOMP_CACHE_KEY_BYTES];
    seccomp_cache_key(p, sockets_local, key);
    if (seccomp_cache_get(key, prog))
        return 0; /* built before for the same rules: the same program (seccomp_cache.c) */
    const struct allow_set *sets[] = {
        &allow_personality,
        sockets_local ? &allow_socket_local : &allow_socket_inet,
        &allow_socketpair,
    };
    if (ctx_to_bpf(baseline_ctx(err, errsz), &parts[0], err, errsz) < 0)
        goto out;
    if (allow_sets_program(sets, ARRAY_SIZE(sets), &parts[1]) < 0) {
        errf(err, errsz, "out of memory");
        goto out;
    }
    if (ctx_to_bpf(policy_ctx(p, err, errsz), &parts[2], err, errsz) < 0)
        goto out;
    r = link_filters(parts, ARRAY_SIZE(parts), prog, err, errsz);
    if (r == 0)
        seccomp_cache_put(key, prog);
out:
    for (size_t i = 0; i < ARRAY_SIZE(parts); i++)
        free(parts[i].filter);
    return r;
}

void policy_bpf_free(struct sock_fprog *prog)
{
    if (!prog)
        return;
    free(prog->filter);
    prog->filter = NULL;
    prog->len = 0;
}

int policy_seccomp_export_pfc(const struct policy *p, int fd, char *err, size_t errsz)
{
    scmp_filter_ctx ctx = policy_ctx(p, err, errsz);
    if (!ctx)
        return -1;
    int r = seccomp_export_pfc(ctx, fd);
    seccomp_release(ctx);
    return r < 0 ? errf(err, errsz, "seccomp_export_pfc: %s", strerror(-r)) : 0;
}
