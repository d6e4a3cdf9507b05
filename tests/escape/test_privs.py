"""Escape suite: privileges. No capability in any set, no_new_privs, seccomp in filter mode,
for the command and for the processes it starts; setuid binaries (the host's, and one planted
in the workspace) do not elevate; the read-only system binds cannot be written; /dev is
minimal; host secrets readable only by root stay unreadable."""
import os
import shutil
import unittest

from cellcheck import UNPRIVILEGED, CellTest, marker

def read(path):
    with open(path) as f:
        return f.read()


CAPS = ("CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb")


def status_fields(text):
    out = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            out[k.strip()] = v.strip()
    return out


class Privileges(CellTest):
    def check_status(self, f, r):
        for cap in CAPS:
            self.assertEqual(int(f.get(cap, "-1"), 16), 0, "%s not empty: %r" % (cap, r))
        self.assertEqual(f.get("NoNewPrivs"), "1", r)
        self.assertEqual(f.get("Seccomp"), "2", r)

    def test_capabilities_nnp_seccomp(self):
        r = self.probe("ids")
        self.check_status(status_fields(r.out), r)

    def test_grandchild_keeps_the_restrictions(self):
        r = self.cell(["/bin/sh", "-c", "sh -c 'grep -E \"^(Cap|NoNewPrivs|Seccomp:)\" /proc/self/status' | cat"])
        self.check_status(status_fields(r.out), r)

    def test_not_root_in_cell(self):
        r = self.probe("ids")
        self.assertNotEqual(r.kv.get("euid"), "0", "the command runs as uid 0 of its namespace: %r" % r)

    def test_setuid_file_in_workspace(self):
        if UNPRIVILEGED:
            self.skipTest("only root can plant a root-owned setuid file in a seed")
        seed = self.seed("ids")
        shutil.copy2(os.path.join(seed, "ids"), os.path.join(seed, "suid"))
        os.chown(os.path.join(seed, "suid"), 0, 0)
        os.chmod(os.path.join(seed, "suid"), 0o4755)
        r = self.cell(["/workspace/suid"], seed=seed)
        self.assertEqual(r.kv.get("euid"), r.kv.get("ruid"), "a setuid file elevated: %r" % r)
        self.assertEqual(int(status_fields(r.out).get("CapEff", "-1"), 16), 0, r)

    def test_host_setuid_binaries(self):
        # su and mount are setuid root on the host; in a cell they must run without privilege.
        for b in ("/bin/su", "/bin/mount"):
            self.assertTrue(os.stat(b).st_mode & 0o4000, "%s is not setuid here; the test needs it" % b)
        before = read("/proc/self/mountinfo")
        r = self.cell(["/bin/sh", "-c", "su -s /bin/sh -c 'id -u' root </dev/null; echo su=$?;"
                       " mount -t tmpfs none /tmp 2>&1; echo mount=$?; mount -o remount,rw /usr 2>&1; echo rw=$?"])
        self.assertNotIn("su=0", r.out, r)
        self.assertNotRegex(r.out, r"(?m)^0$", r)
        self.assertNotIn("mount=0", r.out, r)
        self.assertNotIn("rw=0", r.out, r)
        self.assertEqual(before, read("/proc/self/mountinfo"))

    def test_read_only_system_binds(self):
        mark = marker("ro")
        paths = ["/usr/%s" % mark, "/etc/%s" % mark, "/bin/%s" % mark, "/usr/lib/%s" % mark]
        try:
            r = self.cell(["/bin/sh", "-c", "for p in %s; do echo x > $p && echo WROTE $p; done;"
                           " : >> /etc/hostname && echo WROTE hostname; true" % " ".join(paths)])
            for p in paths:
                self.assertFalse(os.path.exists(p), "created %s on the host" % p)
            self.assertNotIn("WROTE", r.out, r)
        finally:
            for p in paths:
                if os.path.exists(p) and not UNPRIVILEGED:
                    os.unlink(p)

    def test_dev_minimal(self):
        r = self.cell(["/bin/ls", "-A", "/dev"])
        names = set(r.out.split())
        self.assertIn("null", names, r)
        forbidden = {n for n in names if n.startswith(("sd", "vd", "nvme", "loop", "zram", "tty0", "tty1", "ttyS",
                                                       "kvm", "mem", "kmem", "port", "kmsg", "fuse", "vsock",
                                                       "userfaultfd", "btrfs", "hwrng", "vcs", "cpu", "autofs"))}
        self.assertEqual(forbidden, set(), "device nodes a cell must not have: %r" % r)

    def test_dev_nodes_usable_but_not_creatable(self):
        r = self.cell(["/bin/sh", "-c", "head -c 4 /dev/urandom | wc -c; echo x > /dev/null && echo NULLOK;"
                       " mknod /tmp/sda b 8 0 2>/dev/null && echo MKNOD; true"])
        self.ran(r)
        self.assertIn("NULLOK", r.out, r)
        self.assertNotIn("MKNOD", r.out, r)

    def test_scheduling_and_oom_privileges(self):
        # A cell must not make itself unkillable by the OOM killer, raise its priority or take a
        # real-time class (each would hurt the host's other work). chrt and renice are util-linux.
        r = self.cell(["/bin/sh", "-c", "echo -1000 > /proc/self/oom_score_adj 2>/dev/null && echo OOM;"
                       " renice -n -10 -p $$ >/dev/null 2>&1 && echo NICE; chrt -f 50 /bin/true 2>/dev/null && echo RT;"
                       " chrt -r 1 /bin/true 2>/dev/null && echo RR; true"])
        self.ran(r)
        for word in ("OOM", "NICE", "RT", "RR"):
            self.assertNotIn(word, r.out.split(), r)

    def test_host_shadow_unreadable(self):
        r = self.cell(["/bin/sh", "-c", "cat /etc/shadow 2>/dev/null | head -1; echo rc=$?"])
        with open("/etc/shadow") if not UNPRIVILEGED else open("/dev/null") as f:
            first = f.readline().strip()
        if first:
            self.assertNotIn(first, r.out, "a root-only host file is readable in the cell")
        self.assertNotIn("root:", r.out, r)


if __name__ == "__main__":
    unittest.main()
