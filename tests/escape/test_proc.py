"""Escape suite: /proc and /sys. Secrets through /proc/PID/environ, the kernel's dangerous
files (sysrq-trigger, kcore, core_pattern, release_agent, uevent_helper), the read-only
/proc/sys and /sys, and the host's processes (a fresh /proc for the cell's pid namespace)."""
import os
import unittest

from cellcheck import CellTest

DENIED = ("EPERM", "EACCES", "EROFS", "ENOENT", "SIG31", "EMPTY")  # EMPTY: masked by /dev/null


class ProcEscapes(CellTest):
    def test_api_key_not_in_cell_environment(self):
        # agentbox's own environment holds the key; no process of the cell may see it.
        key = "sk-test-canary-" + os.urandom(8).hex()
        r = self.cell(["/bin/sh", "-c", "env; for p in /proc/[0-9]*; do echo \"== $p\";"
                       " tr '\\0' '\\n' < $p/environ; tr '\\0' ' ' < $p/cmdline; echo; done 2>&1; true"],
                      env={"OPENROUTER_API_KEY": key, "ABX_OTHER_SECRET": key})
        self.assertIn("== /proc/1", r.out, r)
        self.assertNotIn(key, r.out + r.err, "the API key reached the cell")
        self.assertNotIn("OPENROUTER_API_KEY", r.out)

    def test_pid1_environ_and_memory(self):
        r = self.probe("try-syscall", "open:/proc/1/environ:r", "open:/proc/1/mem:r", "open:/proc/1/root/.:r")
        # pid 1 of the cell is ours to keep: unreadable (non-dumpable) or not a host process
        for op in ("open:/proc/1/mem:r",):
            self.assertIn(r.kv.get(op), DENIED + ("EIO",), r)

    def test_kernel_trigger_files(self):
        ops = ["open:/proc/sysrq-trigger:w", "open:/proc/kcore:r", "open:/proc/sys/kernel/core_pattern:w",
               "open:/proc/sys/vm/drop_caches:w", "open:/proc/sys/kernel/modprobe:w", "open:/sys/kernel/uevent_helper:w",
               "open:/proc/kmsg:r", "open:/dev/kmsg:r", "open:/dev/mem:r", "open:/proc/sys/kernel/hostname:w"]
        r = self.probe("try-syscall", *ops)
        bad = {op: r.kv.get(op) for op in ops if r.kv.get(op) not in DENIED}
        self.assertEqual(bad, {}, r)

    def test_cgroup_release_agent(self):
        # CVE-2022-0492: write release_agent of a cgroup v1 hierarchy, or mount one to get one.
        r = self.cell(["/bin/sh", "-c", "for f in /sys/fs/cgroup/*/release_agent /sys/fs/cgroup/release_agent; do"
                       " [ -e $f ] && (v=$(cat $f); echo \"$v\" > $f) 2>/dev/null && echo WROTE $f; done;"
                       " mkdir -p /tmp/cg; mount -t cgroup -o memory cgroup /tmp/cg 2>/dev/null && echo MOUNTED; true"])
        self.ran(r)
        self.assertNotIn("WROTE", r.out, r)
        self.assertNotIn("MOUNTED", r.out, r)

    def test_proc_sys_and_sys_read_only(self):
        # Each write puts back the value just read, so it changes nothing even where it works.
        r = self.cell(["/bin/sh", "-c", "v=$(cat /proc/sys/kernel/sysrq); echo $v > /proc/sys/kernel/sysrq && echo W1;"
                       " v=$(cat /proc/sys/kernel/domainname); echo $v > /proc/sys/kernel/domainname && echo W2;"
                       " touch /sys/abx 2>/dev/null && echo W3; v=$(cat /sys/kernel/profiling 2>/dev/null) &&"
                       " echo $v > /sys/kernel/profiling 2>/dev/null && echo W4; true"])
        self.ran(r)
        for w in ("W1", "W2", "W3", "W4"):
            self.assertNotIn(w, r.out.split(), r)

    def test_host_processes_invisible(self):
        r = self.cell(["/bin/sh", "-c", "ls /proc | grep -c '^[0-9]'; ls /proc/%d >/dev/null 2>&1 && echo SE''EN;"
                       " cat /proc/1/cmdline | tr '\\0' ' '" % os.getpid()])
        count = int(r.out.split()[0])
        self.assertLess(count, 20, "the cell sees many processes, the host's? %r" % r)
        self.assertNotIn("SEEN", r.out)
        self.assertNotIn("systemd", r.out)

    def test_proc_self_mountinfo_hides_host_paths(self):
        # The cell's mount table is its own; the test's temp dir never appears in it.
        r = self.cell(["/bin/cat", "/proc/self/mountinfo"])
        self.assertNotIn(self.tmp, r.out, r)
        self.assertNotIn("/work/", r.out)


if __name__ == "__main__":
    unittest.main()
