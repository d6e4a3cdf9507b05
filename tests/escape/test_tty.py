"""Escape suite: terminal injection. The test opens its own pty and hands the slave to the cell
as stdin/stdout/stderr (never the real terminal). The probe makes it its controlling tty
(setsid + TIOCSCTTY, after the sandbox's own setsid) and pushes a marker into the input queue
with TIOCSTI (CVE-2017-5226), TIOCSTI with high bits (CVE-2019-10063) and TIOCLINUX. Host
side: nothing must arrive in the pty's input queue."""
import os
import select
import unittest

from cellcheck import CellTest


def drain(fd, wait_s=0.3):
    data = b""
    while True:
        r, _, _ = select.select([fd], [], [], wait_s)
        if not r:
            return data
        try:
            chunk = os.read(fd, 65536)
        except OSError:
            return data
        if not chunk:
            return data
        data += chunk
        wait_s = 0.05


class TtyInjection(CellTest):
    def inject(self, mode):
        master, slave = os.openpty()
        try:
            r = self.probe("tiocsti", mode, stdin=slave, stdout=slave, stderr=slave)
            os.set_blocking(slave, False)
            queued = drain(slave)  # what was injected waits in the slave's input queue
            echoed = drain(master)
        finally:
            os.close(slave)
            os.close(master)
        self.assertNotEqual(r.rc, 125, "set-up failed: %r %r" % (r, echoed))
        self.assertNotIn(b"ABX_TIOCSTI_INJECTED", queued, "injected input reached the host pty")
        return echoed.decode(errors="replace")

    def test_tiocsti(self):
        out = self.inject("plain")
        self.assertRegex(out, r"tiocsti=(EPERM|EACCES|EIO|ENOTTY)", out)

    def test_tiocsti_high_bits(self):
        out = self.inject("high")
        self.assertIn("tiocsti=", out, "the probe did not run")
        self.assertNotRegex(out, r"injected=[1-9]", out)

    def test_tioclinux(self):
        out = self.inject("linux")
        self.assertIn("tioclinux=", out, "the probe did not run")
        # on a pty the kernel itself says EINVAL; the filter must answer first
        self.assertNotRegex(out, r"tioclinux=(0|EINVAL)", out)

    def test_line_disciplines(self):
        # This kernel has neither n_hdlc nor n_gsm (EINVAL unfiltered); where they exist the
        # filter's EPERM is all that stands before them.
        out = self.inject("setd")
        self.assertIn("tiocsetd_13=", out, "the probe did not run")
        self.assertNotRegex(out, r"tiocsetd_\d+=0", out)

    def test_new_session(self):
        # The cell runs in its own session (setsid), so it has no controlling terminal of ours.
        master, slave = os.openpty()
        try:
            r = self.cell(["/bin/sh", "-c", "cat /proc/self/stat"], stdin=slave, stdout=subprocess_pipe())
        finally:
            os.close(slave)
            os.close(master)
        fields = r.out[r.out.rfind(")") + 2:].split()
        self.assertNotEqual(int(fields[3]), os.getsid(0), "the cell shares the test's session: %r" % r)
        self.assertEqual(fields[4], "0", "the cell has a controlling tty: %r" % r)


def subprocess_pipe():
    import subprocess
    return subprocess.PIPE


if __name__ == "__main__":
    unittest.main()
