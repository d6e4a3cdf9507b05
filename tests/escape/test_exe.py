"""Escape suite: overwriting binaries from inside a cell (CVE-2019-5736, runc's /proc/self/exe).
The agentbox under test here is the test's own copy in its temp dir, so a successful write
would damage nothing else; the host side checks the copy's and the system binaries' hashes."""
import os
import shutil
import unittest

from cellcheck import AGENTBOX, CellTest, file_digest, marker


class ExeOverwrite(CellTest):
    def test_proc_self_exe_and_pid1_exe(self):
        mark = marker("exe")
        r = self.probe("exewrite", mark, "self", "1", "2", "3")
        for target in ("self", "1"):
            line = [ln for ln in r.out.splitlines() if ln.startswith(target + " ")]
            self.assertTrue(line, "no answer for %s: %r" % (target, r))
            self.assertNotIn("WROTE", line[0], "wrote to /proc/%s/exe: %r" % (target, r))
            self.assertNotIn("opened", line[0], r)
        self.assertNotIn("WROTE", r.out, r)

    def test_agentbox_binary_through_proc_exe(self):
        # Every process the cell can see, including its pid 1 (which may be agentbox itself,
        # forked without exec): none may open the host binary for writing.
        bindir = os.path.join(self.tmp, "bin")
        os.mkdir(bindir, 0o755)
        copy = os.path.join(bindir, "agentbox")
        shutil.copy2(AGENTBOX, copy)
        before = file_digest(copy)
        mark = marker("exe")
        r = self.probe("exewrite", mark, "1", "2", "3", "4", "self", binary=copy)
        self.assertEqual(file_digest(copy), before, "the cell modified the agentbox binary: %r" % r)
        self.assertNotIn("WROTE", r.out, r)

    def test_host_binary_reopened_after_exit(self):
        # The runc exploit: hold /proc/PID/exe of a host binary O_PATH, re-open it for writing
        # once the process has ended. The system directories are read-only binds.
        target = os.path.realpath("/bin/sleep")
        before = file_digest(target)
        r = self.probe("exewrite", "", "spawn", "/bin/sleep")
        self.assertEqual(file_digest(target), before)
        line = [ln for ln in r.out.splitlines() if ln.startswith("/bin/sleep ")]
        self.assertTrue(line, repr(r))
        self.assertRegex(line[0], r"direct=(ETXTBSY|EROFS|EACCES|EPERM|ENOENT) reopen=(EROFS|EACCES|EPERM|ETXTBSY|ENOENT)", r)


if __name__ == "__main__":
    unittest.main()
