"""Escape suite: lifetime and sharing. Orphans, double forks and setsid daemons die with the
cell; a SIGKILLed agentbox takes its cell along (PR_SET_PDEATHSIG); two cells running at once
share neither /dev/shm, /tmp nor System V IPC, and the host sees none of it."""
import os
import signal
import subprocess
import time
import unittest

import cellcheck
from cellcheck import AGENTBOX, UNPRIVILEGED, CellTest, enforced, marker, processes_with, unavailable


def sysv_msg_count():
    try:
        with open("/proc/sysvipc/msg") as f:
            return len(f.readlines())
    except OSError:
        return -1


class Lifecycle(CellTest):
    def test_orphans_daemons_do_not_outlive_the_task(self):
        mark = marker("orph")
        r = self.probe("orphan", mark)
        self.assertIn("spawned", r.out, r)
        self.assertEqual(r.rc, 0, r)
        self.assertLess(r.wall_s, 10, "exec waited for the daemons instead of ending the cell")
        self.assertEqual(processes_with(mark), [], "daemons of the cell survive it")

    def test_sigkill_of_agentbox_takes_the_cell(self):
        mark = marker("pdeath")
        seed = self.seed("forkbomb")
        p = subprocess.Popen([AGENTBOX, "exec", "--workspace-from", seed, "--", "/workspace/forkbomb", mark, "4",
                              "300"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while len(processes_with(mark)) < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertGreaterEqual(len(processes_with(mark)), 5, "the cell never started")
        p.send_signal(signal.SIGKILL)
        p.wait()
        deadline = time.monotonic() + 3
        while processes_with(mark) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(processes_with(mark), [], "the cell outlived its agentbox")

    def test_concurrent_cells_share_no_shm_tmp_or_ipc(self):
        mark = marker("shm")
        before_ipc = sysv_msg_count()
        a = subprocess.Popen([AGENTBOX, "exec", "--timeout", "20", "--", "/bin/sh", "-c",
                              "echo s > /dev/shm/%s && echo s > /tmp/%s && ipcmk -Q >/dev/null && echo written"
                              " && sleep 2" % (mark, mark)], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            line = a.stdout.readline()
            self.assertIn(b"written", line, a.stderr.read(2000) if not line else line)
            r = self.cell(["/bin/sh", "-c", "ls -A /dev/shm /tmp; cat /proc/sysvipc/msg | wc -l"])
            self.assertNotIn(mark, r.out, "a second cell sees the first one's files")
            self.assertFalse(os.path.exists("/dev/shm/" + mark), "the cell's /dev/shm is the host's")
            self.assertFalse(os.path.exists("/tmp/" + mark), "the cell's /tmp is the host's")
            self.assertEqual(sysv_msg_count(), before_ipc, "the cell's message queue is on the host")
        finally:
            try:
                a.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                a.kill()
                a.communicate()


class SlotReuse(CellTest):
    def test_cleanup_of_one_cell_never_hits_the_next(self):
        # Slots are reused as soon as a cell ends. Whatever cleans up after a cell (in line or a
        # janitor process) must not touch the cgroups of the next cell in the same slot: it
        # would SIGKILL that cell's processes or remove its cgroup under it. Two slots, four
        # callers back to back; each run must either work or be refused for want of a slot.
        import collections
        import threading
        seen = collections.Counter()
        lock = threading.Lock()
        env = dict(os.environ, AGENTBOX_SLOTS="2", TMPDIR=self.tmpdir)

        def loop():
            for _ in range(40):
                p = subprocess.run([AGENTBOX, "exec", "--", "/bin/sh", "-c", "sleep 0.01; echo ok"], env=env,
                                   capture_output=True, text=True, timeout=60)
                busy = p.returncode == 125 and "slots are in use" in p.stderr
                with lock:
                    seen["ok" if p.returncode == 0 and p.stdout.strip() == "ok" else "busy" if busy else
                         "rc=%d %s" % (p.returncode, p.stderr.strip()[:80])] += 1

        threads = [threading.Thread(target=loop) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        bad = {k: v for k, v in seen.items() if k not in ("ok", "busy")}
        self.assertEqual(bad, {}, "runs broken by another cell's cleanup: %r" % dict(seen))
        self.assertGreater(seen["ok"], 0, dict(seen))


class SlotCgroups(CellTest):
    """A slot keeps its cgroups between cells (cgroup.c): limits, peak and OOM count must be the
    cell's own, and a task found in a kept cgroup is killed, never shared. Every cell here is pinned
    to slot 0."""

    @staticmethod
    def slot_cgroups():
        """Where agentbox puts our slot-0 cgroups (only those it made exist: v1 memory and pids,
        or the v2 one)."""
        return [os.path.join(p, "u%d-s0" % os.geteuid()) for p in cellcheck._PARENTS]

    def test_the_next_cell_on_a_slot_inherits_no_limit_peak_or_oom(self):
        big = self.cell_on_slot0(["python3", "-c", "x = bytearray(48 << 20); x[::4096] = b'1' * len(x[::4096])"],
                                 opts=["--pids", "8"])
        if not big.meta or not big.meta.get("cgroup"):
            self.skipTest("no cgroups here (unprivileged or none usable)")
        self.assertEqual(big.meta["status"], "exited", big)
        self.assertGreater(big.meta["max_rss_kb"], 40 << 10, big)
        oom = self.cell_on_slot0(["python3", "-c", "x = bytearray(200 << 20); x[::4096] = b'1' * len(x[::4096])"],
                                 opts=["--memory", "32M"])
        self.assertEqual(oom.meta["status"], "memory", oom)
        # twelve processes at once (the first cell's --pids 8 is gone), a small peak (not the
        # first cell's 48 MiB), no OOM (not the second cell's)
        r = self.ran(self.cell_on_slot0(["/bin/sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do sleep 0.2 & done;"
                                         " wait; true"]))
        self.assertEqual(r.meta["status"], "exited", r)
        self.assertLess(r.meta["max_rss_kb"], 16 << 10, "the peak of an earlier cell on the slot: %r" % r)

    def test_a_task_found_in_a_kept_cgroup_is_killed_not_shared(self):
        first = self.ran(self.cell_on_slot0(["/bin/true"]))
        if not first.meta.get("cgroup"):
            self.skipTest("no cgroups here (unprivileged or none usable)")
        kept = [d for d in self.slot_cgroups() if os.path.isdir(d)]
        if not kept:
            self.skipTest("no kept cgroup on the slot (none are kept on cgroup v2 without a resettable "
                          "memory.peak, before Linux 6.12; or another agentbox removed them)")
        # a host process in the slot's kept cgroups, as if left there
        squatter = subprocess.Popen(["sleep", "60"])
        try:
            for d in kept:
                with open(os.path.join(d, "cgroup.procs"), "w") as f:
                    f.write(str(squatter.pid))
            r = self.ran(self.cell_on_slot0(["/bin/sh", "-c", "cat /proc/self/cgroup >/dev/null; true"]))
            self.assertEqual(r.meta["status"], "exited", r)
            try:
                rc = squatter.wait(timeout=10)
            except subprocess.TimeoutExpired:
                rc = None
            self.assertEqual(rc, -signal.SIGKILL, "a task in the slot's cgroup survived the next cell's set-up")
        finally:
            if squatter.poll() is None:
                squatter.kill()
            squatter.wait()


class Record(CellTest):
    def test_record_says_what_was_enforced(self):
        # Root gets memory and pids cgroups; an unprivileged caller cannot, and the record must
        # then list them as unavailable (the rlimit fallbacks stand in) instead of pretending.
        r = self.cell(["/bin/true"])
        enf, unav = enforced(r.meta), unavailable(r.meta)
        for ns in ("userns", "pidns", "netns", "seccomp", "caps", "disk_quota"):
            self.assertIn(ns, enf, r)
        for limit in ("memory", "pids"):
            self.assertNotEqual(limit in enf, limit in unav, "%s must be either enforced or unavailable: %r" % (limit, r))
        if UNPRIVILEGED:
            self.assertIn("memory", unav, r)
            self.assertIn("pids", unav, r)


    def test_exit_status_is_reported_honestly(self):
        r = self.cell(["/bin/sh", "-c", "exit 7"])
        self.assertEqual(r.rc, 7)
        self.assertEqual((r.meta or {}).get("status"), "exited", r)
        self.assertEqual(r.meta.get("exit_code"), 7, r)
        r = self.cell(["/bin/sh", "-c", "kill -9 $$"])
        self.assertEqual(r.rc, 128 + 9, r)
        self.assertEqual(r.meta.get("status"), "signaled", r)
        self.assertEqual(r.meta.get("signal"), 9, r)


if __name__ == "__main__":
    unittest.main()
