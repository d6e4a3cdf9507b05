"""Escape suite: kernel attack surface a cell must not reach.
Each test asks the kernel from inside a cell, through the real `agentbox exec`, with the
try-syscall probe, and asserts the call was denied (EPERM/EACCES, or the probe was killed by
the seccomp filter); where the kernel keeps host-visible state, that state is checked too."""
import os
import socket
import unittest

from cellcheck import AGENTBOX, CellTest, kv, marker

DENIED = ("EPERM", "EACCES", "SIG31")


def read_mountinfo():
    with open("/proc/self/mountinfo") as f:
        return f.read()


class SyscallEscapes(CellTest):
    def try_ops(self, *ops, **kw):
        r = self.probe("try-syscall", *ops, **kw)
        for op in ops:
            label = op if op.startswith("open:") else op.split(":")[0]
            self.assertIn(label, r.kv, "no answer for %s: %r" % (op, r))
        return r

    def assertAllDenied(self, r, ops, allowed=DENIED):
        bad = {op: r.kv.get(op) for op in ops if r.kv.get(op) not in allowed}
        self.assertEqual(bad, {}, "not denied: %r\n%r" % (bad, r))

    def test_io_uring(self):
        # io_uring performs socket/open/... from kernel workers, out of seccomp's sight.
        # ENOSYS is a fair answer: this kernel has io_uring enabled, so only the filter says it.
        ops = ["io_uring_setup", "io_uring_enter", "io_uring_register"]
        self.assertAllDenied(self.try_ops(*ops), ops, DENIED + ("ENOSYS",))

    def test_unshare_new_user_namespace(self):
        ops = ["unshare_user", "unshare_ns", "unshare_net", "unshare_pid", "unshare_ipc", "unshare_uts",
               "unshare_cgroup", "unshare_time"]
        self.assertAllDenied(self.try_ops(*ops), ops)

    def test_clone_new_user_namespace(self):
        # clone3 may be ENOSYS (so libc falls back to clone, whose flags seccomp can see).
        r = self.try_ops("clone_newuser", "clone3_newuser")
        self.assertAllDenied(r, ["clone_newuser"])
        self.assertAllDenied(r, ["clone3_newuser"], DENIED + ("ENOSYS",))

    def test_setns(self):
        ops = ["setns_mnt", "setns_net"]
        self.assertAllDenied(self.try_ops(*ops), ops)

    def test_kernel_keyrings(self):
        # Keyrings are not namespaced: a key added in a cell would be the host user's.
        mark = marker("key")
        r = self.try_ops("keyctl", "add_key:" + mark, "request_key")
        self.assertAllDenied(r, ["keyctl", "add_key", "request_key"])
        if os.path.exists("/proc/keys"):
            with open("/proc/keys") as f:
                self.assertNotIn(mark, f.read())

    def test_bpf_perf_userfaultfd(self):
        ops = ["bpf", "perf_event_open", "userfaultfd"]
        self.assertAllDenied(self.try_ops(*ops), ops)

    def test_mount_family(self):
        before = read_mountinfo()
        ops = ["mount", "umount2", "pivot_root", "fsopen", "fspick", "open_tree", "move_mount", "mount_setattr"]
        self.assertAllDenied(self.try_ops(*ops), ops)
        self.assertEqual(before, read_mountinfo())

    def test_chroot_and_mknod(self):
        ops = ["chroot", "mknod"]
        self.assertAllDenied(self.try_ops(*ops), ops)

    def test_kexec_modules_reboot(self):
        # Must be EPERM (or a kill), not ENOSYS/EINVAL: the filter answers before the kernel
        # looks at the (deliberately invalid) arguments.
        ops = ["kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module", "reboot"]
        self.assertAllDenied(self.try_ops(*ops), ops, ("EPERM", "SIG31"))

    def test_acct_swap_quota_syslog(self):
        ops = ["acct", "swapon", "swapoff", "quotactl", "syslog"]
        self.assertAllDenied(self.try_ops(*ops), ops)

    def test_ioport_and_clock(self):
        ops = ["iopl", "ioperm", "settimeofday"]
        self.assertAllDenied(self.try_ops(*ops), ops, DENIED + ("ENOSYS",))

    def test_personality_read_implies_exec(self):
        r = self.try_ops("personality", "personality_query")
        self.assertAllDenied(r, ["personality"])

    def test_foreign_abis_killed(self):
        # int 0x80 (i386 table) and the x32 bit from a 64-bit process: syscall numbers a
        # native-only filter would misread.
        r = self.probe("abi")
        self.assertIn(r.kv.get("i386"), ("SIG31", "EPERM", "SIG11"), repr(r))
        self.assertIn(r.kv.get("x32"), ("SIG31", "EPERM", "ENOSYS"), repr(r))
        self.assertNotEqual(r.kv.get("i386", "").startswith("ret"), True, repr(r))

    def test_open_by_handle_at_shocker(self):
        self.assertAllDenied(self.try_ops("open_by_handle_at"), ["open_by_handle_at"])

    def test_socket_families(self):
        # With --network none (the default) no family that reaches beyond the cell works;
        # AF_VSOCK and AF_ALG are denied in every case.
        ops = ["socket_packet", "socket_vsock", "socket_alg"]
        r = self.try_ops(*ops, "socket_unix")
        self.assertAllDenied(r, ops, DENIED + ("EAFNOSUPPORT",))
        self.assertEqual(r.kv.get("socket_unix"), "0", "AF_UNIX inside a cell must keep working: %r" % r)

    def test_ptrace_pid1_and_supervisor(self):
        # The supervisor's host pid means nothing in the cell's pid namespace (ESRCH) or is
        # some cell process; either way it must not be traced. Host side: our agentbox is never
        # traced while the probe runs.
        r = self.try_ops("ptrace:1", "process_vm_readv:1", "pidfd_getfd:1", "ptrace:%d" % os.getpid())
        self.assertAllDenied(r, ["ptrace", "process_vm_readv", "pidfd_getfd"], DENIED + ("ESRCH",))

    def test_ptrace_supervisor_host_pid(self):
        # The supervisor's host pid is handed to the cell on stdin once agentbox runs; the
        # probe attaches for 0.3 s if it can, and the host watches agentbox's TracerPid.
        import subprocess
        import time
        seed = self.seed("try-syscall")
        p = subprocess.Popen([AGENTBOX, "exec", "--workspace-from", seed, "--", "/bin/sh", "-c",
                              "read pid; exec /workspace/try-syscall ptrace:$pid process_vm_readv:$pid"
                              " pidfd_getfd:$pid kill0:$pid"],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        p.stdin.write(b"%d\n" % p.pid)
        p.stdin.close()
        def in_a_cell(pid):
            # NSpid lists one pid per pid namespace level: more than one means a cell process.
            # (LeakSanitizer's own tracer, under the ASan build, is agentbox's and has one.)
            try:
                with open("/proc/%s/status" % pid) as f:
                    return any(ln.startswith("NSpid:") and len(ln.split()) > 2 for ln in f)
            except OSError:
                return False

        traced = False
        while p.poll() is None:
            try:
                with open("/proc/%d/status" % p.pid) as f:
                    tracers = [ln.split()[1] for ln in f if ln.startswith("TracerPid:")]
                traced |= any(t != "0" and in_a_cell(t) for t in tracers)
            except OSError:
                pass
            time.sleep(0.02)
        out, err = p.stdout.read(), p.stderr.read()
        p.stdout.close()
        p.stderr.close()
        self.assertFalse(traced, "the cell attached to agentbox")
        r = kv(out.decode())
        self.assertEqual(len(r), 4, (out, err))
        bad = {k: v for k, v in r.items() if v not in DENIED + ("ESRCH",)}
        self.assertEqual(bad, {}, (out, err))

    def test_sethostname_stays_in_cell(self):
        host = socket.gethostname()
        mark = marker("h")[:40]
        r = self.try_ops("sethostname:" + mark)
        try:
            self.assertEqual(socket.gethostname(), host, "the host's hostname changed")
        finally:
            if socket.gethostname() != host and os.geteuid() == 0:
                socket.sethostname(host)
        self.assertAllDenied(r, ["sethostname"], DENIED + ("0",))

    def test_signal_host_processes(self):
        # SIGCONT is harmless to a running process; a handler records any arrival here.
        import signal
        got = []
        old = signal.signal(signal.SIGCONT, lambda *a: got.append(1))
        try:
            r = self.try_ops("kill0:%d" % os.getpid(), "killcont:%d" % os.getpid())
        finally:
            signal.signal(signal.SIGCONT, old)
        self.assertEqual(got, [], "a signal from the cell reached the test process")
        if os.getpid() > 1000:  # no pid of the cell's own namespace can be that high
            self.assertIn(r.kv.get("kill0"), ("ESRCH",) + DENIED, repr(r))


if __name__ == "__main__":
    unittest.main()
