"""Escape suite: file descriptors and the working directory (CVE-2024-21626: runc leaked a
host directory fd, and a cwd outside the container's root let the process walk the host).
The test hands agentbox inheritable fds on a canary file, a host directory and a listening
socket; the cell must see none of them, and its cwd must be inside the cell."""
import os
import socket
import unittest

from cellcheck import CellTest, file_digest


class FdLeaks(CellTest):
    def setUp(self):
        super().setUp()
        self.hostdir = os.path.join(self.tmp, "hostdir")
        os.mkdir(self.hostdir, 0o755)
        self.mark_name = "abx-marker-%s" % os.urandom(4).hex()
        with open(os.path.join(self.hostdir, self.mark_name), "w") as f:
            f.write("marker\n")
        self.canary = os.path.join(self.hostdir, "abx-canary.txt")
        with open(self.canary, "w") as f:
            f.write("unchanged\n")
        os.chmod(self.canary, 0o666)

    def test_inherited_fds_closed(self):
        fd_file = os.open(self.canary, os.O_RDWR)
        fd_dir = os.open(self.hostdir, os.O_RDONLY | os.O_DIRECTORY)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind(("127.0.0.1", 0))
        sock.listen(1)
        fds = (fd_file, fd_dir, sock.fileno())
        for fd in fds:
            os.set_inheritable(fd, True)
        before = file_digest(self.canary)
        try:
            r = self.probe("fdscan", self.mark_name, pass_fds=fds)
        finally:
            os.close(fd_file)
            os.close(fd_dir)
            sock.close()
        self.assertEqual(file_digest(self.canary), before, "the cell wrote to the host file through a leaked fd")
        self.assertEqual(r.kv.get("fd_count"), "0", "fds above 2 are open in the cell: %r" % r)
        self.assertNotIn("fd_marker", r.out, r)

    def test_cwd_outside_root(self):
        # agentbox is started with its cwd in a host directory; the cell must not start there.
        r = self.probe("fdscan", self.mark_name, cwd=self.hostdir)
        self.assertEqual(r.kv.get("cwd_marker"), "0", "the cell reached the host cwd: %r" % r)
        self.assertTrue(r.kv.get("cwd", "").startswith("/"), "cwd outside the cell's root: %r" % r)
        self.assertNotIn("unreachable", r.out)
        self.assertNotEqual(r.kv.get("cwd"), self.hostdir)

    def test_dotdot_from_cwd_stays_inside(self):
        r = self.cell(["/bin/sh", "-c", "cd ../../../../../../..; pwd; ls -a; ls -a %s; true" % self.hostdir],
                      cwd=self.hostdir)
        self.assertNotIn(self.mark_name, r.out, "a host directory is reachable from the cell: %r" % r)

    def test_directory_as_stdin(self):
        # stdio passes through, so a caller who runs `agentbox exec ... < DIR` hands the cell an
        # open host directory: from it, openat() and ".." reach the host file system outside
        # every namespace (the CVE-2024-21626 shape). Host side: the canary's text and the
        # marker file's name must not come out of the cell, and nothing may be created.
        fd = os.open(self.hostdir, os.O_RDONLY | os.O_DIRECTORY)
        try:
            r = self.cell(["/bin/sh", "-c", "cat /proc/self/fd/0/abx-canary.txt; ls -a /proc/self/fd/0/ /proc/self/fd/0/..;"
                           " echo x > /proc/self/fd/0/new.txt; true"], stdin=fd)
        finally:
            os.close(fd)
        self.ran(r)
        self.assertFalse(os.path.exists(os.path.join(self.hostdir, "new.txt")), "the cell wrote into a host directory")
        self.assertNotIn("unchanged", r.out, "the cell read a host file through a directory on stdin")
        self.assertNotIn(self.mark_name, r.out, "the cell listed a host directory through stdin")

    def test_stdio_is_only_what_we_pass(self):
        # stdin is /dev/null here: the cell must not find a tty or any other fd of ours.
        r = self.cell(["/bin/sh", "-c", "ls -l /proc/self/fd/"])
        entries = [ln.split()[-3] for ln in r.out.splitlines() if "->" in ln]
        self.assertLessEqual(set(entries), {"0", "1", "2", "3"}, r)  # 3: ls's own directory fd


if __name__ == "__main__":
    unittest.main()
