"""Per-user kernel counters: inotify instances and queued signals are counted per user up the
user-namespace chain, charged to the user that created the namespace. A cell must not take
host root's share (root `exec`), nor, run by an unprivileged user, the share of that user's
other cells. The probe (tests/helpers/ucount-hog.c) takes all it can and holds it while the
host side checks what is left."""
import ctypes
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

from hostile_seed_util import AGENTBOX, HostileHostCase, base_env

HELPERS = os.environ.get("HELPERS_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "build", "helpers")
IN_CLOEXEC = 0o2000000
_libc = ctypes.CDLL(None, use_errno=True)
LINE = re.compile(r"inotify=(\d+) inotify_errno=(\d+) sigqueue=(\d+) sigqueue_errno=(\d+)")


def sigq():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("SigQ:"):
                used, limit = line.split()[1].split("/")
                return int(used), int(limit)
    raise AssertionError("no SigQ in /proc/self/status")


class Counters(HostileHostCase):
    def setUp(self):
        super().setUp()
        probe = os.path.join(HELPERS, "ucount-hog")
        if not os.access(probe, os.X_OK):
            self.fail(f"{probe} missing: make helpers")
        self.seed = os.path.join(self.tmp, "seed")
        os.mkdir(self.seed, 0o755)
        shutil.copy(probe, os.path.join(self.seed, "ucount-hog"))
        os.chmod(os.path.join(self.seed, "ucount-hog"), 0o755)
        self.procs = []
        self.addCleanup(self.stop_all)

    def stop_all(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(30)
            if p.stdout:
                p.stdout.close()

    def start_hog(self, user=None, hold=60, max_=1000000):
        argv = [AGENTBOX, "exec", "--workspace-from", self.seed, "--timeout", str(hold + 30),
                "--", "./ucount-hog", str(hold), str(max_)]
        env = base_env(self.tmp)
        ids = {}
        if user:
            self.require_attacker_can_run_agentbox()
            # agentbox itself runs as the user (not under runuser): kill() reaches it
            xdg = os.path.join(self.tmp, f"xdg-{user}")
            os.makedirs(xdg, 0o700, exist_ok=True)
            os.chown(xdg, self.atk_uid, self.atk_gid)
            env["XDG_RUNTIME_DIR"] = xdg
            ids = {"user": self.atk_uid, "group": self.atk_gid, "extra_groups": []}
        p = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                             env=env, cwd="/", **ids)
        self.procs.append(p)
        r, _, _ = select.select([p.stdout], [], [], 60)
        self.assertTrue(r, "the probe said nothing within 60 s")
        line = p.stdout.readline()
        m = LINE.search(line)
        if m is None:
            p.wait(30)
            self.fail(f"the probe said {line!r}; agentbox exited {p.returncode}: "
                      f"{p.stderr.read()[-2000:]}")
        return p, {"inotify": int(m.group(1)), "sigqueue": int(m.group(3))}

    def test_root_cell_leaves_host_root_its_inotify_and_signals(self):
        used_before, limit = sigq()
        p, got = self.start_hog()
        self.assertGreater(got["inotify"], 0, got)
        # host root can still make inotify instances ...
        fds = []
        try:
            for _ in range(8):
                fd = _libc.inotify_init1(IN_CLOEXEC)
                self.assertGreaterEqual(fd, 0, f"host root: inotify_init1 failed, errno "
                                               f"{ctypes.get_errno()} while the cell holds {got}")
                fds.append(fd)
        finally:
            for fd in fds:
                os.close(fd)
        # ... and the cell's queued signals are not charged to root
        used, limit = sigq()
        self.assertLess(used, used_before + got["sigqueue"] // 2 + 1,
                        f"host root's SigQ {used}/{limit} while the cell holds {got}")
        # and the cell's own caps hold
        self.assertLessEqual(got["inotify"], 32, got)
        self.assertLessEqual(got["sigqueue"], 1024, got)

    def test_record_says_ucounts(self):
        meta = os.path.join(self.tmp, "meta.json")
        r = subprocess.run([AGENTBOX, "exec", "--meta", meta, "--", "true"],
                           capture_output=True, text=True, timeout=60, env=base_env(self.tmp))
        self.assertEqual(r.returncode, 0, r.stderr)
        with open(meta) as f:
            self.assertIn("ucounts", json.load(f)["enforced"])

    def test_one_cell_leaves_the_same_users_other_cells_their_share(self):
        first, got = self.start_hog(user=self.atk)
        self.assertGreater(got["inotify"], 0, got)
        _, second = self.start_hog(user=self.atk, hold=0, max_=4)
        self.assertEqual(second, {"inotify": 4, "sigqueue": 4},
                         f"a second cell of the same user, while the first holds {got}")
        self.procs[-1].wait(30)


if __name__ == "__main__":
    unittest.main()
