"""Escape suite: resource abuse. Fork bombs, memory bombs, disk fill in bytes and inodes, CPU
burn, a command that never ends, and output floods: each is stopped at its limit, the host
stays responsive, agentbox itself stays small, and nothing of the cell survives. Every probe is
bounded by its own cap, so it is harmless even where a limit failed."""
import os
import subprocess
import time
import unittest

from cellcheck import AGENTBOX, CellTest, enforced, marker, processes_with, unavailable


def spawn_latency_s():
    t0 = time.perf_counter()
    subprocess.run(["/bin/true"], check=True)
    return time.perf_counter() - t0


def vm_hwm_kb(pid):
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


class Limits(CellTest):
    def assertLimitKnown(self, meta, name):
        self.assertTrue(meta, "no cell record")
        self.assertIn(name, enforced(meta) | unavailable(meta), "the record says nothing about %s: %r" % (name, meta))

    def test_fork_bomb(self):
        mark = marker("fb")
        seed = self.seed("forkbomb")
        meta = os.path.join(self.metadir, "fb.json")
        p = subprocess.Popen([AGENTBOX, "exec", "--pids", "64", "--timeout", "20", "--meta", meta,
                              "--workspace-from", seed, "--", "/workspace/forkbomb", mark, "2000", "2"],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        worst = 0.0
        while p.poll() is None:
            worst = max(worst, spawn_latency_s())
            time.sleep(0.05)
        out, err = p.communicate()
        self.assertLess(worst, 1.0, "the host stalled during the fork bomb")
        kv = dict(w.split("=", 1) for w in out.decode().split() if "=" in w)
        self.assertIn("forked", kv, (out, err))
        self.assertLess(int(kv["forked"]), 64, "more processes than --pids 64: %r" % kv)
        self.assertEqual(kv.get("errno"), "EAGAIN", kv)
        self.assertEqual(processes_with(mark), [], "fork bomb processes survive")
        import json
        with open(meta) as f:
            self.assertLimitKnown(json.load(f), "pids")

    def test_memory_bomb(self):
        r = self.probe("membomb", "1024", opts=["--memory", "64M", "--timeout", "30"])
        touched = [int(v.split("=")[1]) for v in r.out.split() if v.startswith("touched=")]
        top = max(touched or [0])
        self.assertLessEqual(top, 64 + 8, "touched %d MiB with --memory 64M: %r" % (top, r))
        self.assertNotIn("result=cap", r.out, r)
        stopped = r.rc == 128 + 9 or "result=ENOMEM" in r.out or (r.meta or {}).get("status") == "memory"
        self.assertTrue(stopped, r)
        self.assertLimitKnown(r.meta, "memory")
        if "memory" in enforced(r.meta) and r.rc == 137:
            self.assertEqual(r.meta.get("status"), "memory", "killed by the memory limit, but the record says %r" % r.meta)

    def test_memory_bomb_spread_over_processes(self):
        # Six processes of 40 MiB each against --memory 64M: a per-process limit (RLIMIT_AS)
        # lets 240 MiB through, a cgroup does not. Unprivileged, no cgroup can be had: then the
        # record must say "memory" is unavailable, and each process still stops at the rlimit.
        seed = self.seed("membomb")
        r = self.cell(["/bin/sh", "-c", "for i in 1 2 3 4 5 6; do /workspace/membomb 40 & done; wait"], seed=seed,
                      opts=["--memory", "64M", "--pids", "64", "--timeout", "60"])
        if "memory" in enforced(r.meta):
            # the OOM killer frees memory as it goes, so the processes' own tallies add up to
            # more than was ever held at once; the cgroup's peak is the figure
            self.assertLessEqual(r.meta.get("max_rss_kb", 1 << 30), 64 * 1024, r)
        else:
            self.assertIn("memory", unavailable(r.meta), r)
            for line in r.out.split():
                if line.startswith("touched="):
                    self.assertLessEqual(int(line.split("=")[1]), 64, r)

    def test_disk_fill_bytes(self):
        r = self.probe("fill", "bytes", "/workspace", "256", opts=["--disk", "8M"])
        written = int(r.kv.get("written", -1))
        self.assertGreater(written, 0, r)
        self.assertLessEqual(written, 8 << 20, r)
        self.assertIn(r.kv.get("errno"), ("ENOSPC", "EDQUOT", "EFBIG"), r)

    def test_disk_fill_inodes(self):
        r = self.probe("fill", "inodes", "/workspace", "20000", opts=["--inodes", "200"])
        created = int(r.kv.get("created", -1))
        self.assertGreater(created, 0, r)
        self.assertLessEqual(created, 200, r)
        self.assertIn(r.kv.get("errno"), ("ENOSPC", "EDQUOT"), r)

    def test_tmp_and_shm_are_sized(self):
        for d in ("/tmp", "/dev/shm"):
            r = self.probe("fill", "bytes", d, "2048", opts=["--timeout", "60"])
            written = int(r.kv.get("written", -1))
            self.assertTrue(r.rc == 137 or r.kv.get("errno") in ("ENOSPC", "EDQUOT", "EFBIG"),
                            "%s took 2 GiB without a limit: %r" % (d, r))
            self.assertLess(written, 2048 << 20, r)

    def test_tmp_and_shm_inodes_are_bounded(self):
        # Empty files cost no bytes but each pins kernel memory (inode + dentry, ~1 KiB). With no
        # nr_inodes= a tmpfs allows half the RAM pages worth of inodes (3 million here): without
        # a memory cgroup to charge them to (unprivileged), a cell could pin gigabytes of host
        # kernel memory. With one (root), --memory 64M stops it.
        cap = 150000
        for d in ("/tmp", "/dev/shm"):
            r = self.probe("fill", "inodes", d, str(cap), opts=["--timeout", "60", "--memory", "64M"])
            created = int(r.kv.get("created", -1))
            killed = r.rc == 137 and (r.meta or {}).get("status") == "memory"
            self.assertTrue(killed or (0 < created < cap and r.kv.get("errno") in ("ENOSPC", "EDQUOT")),
                            "%s took %d inodes unhindered: %r" % (d, created, r))

    def test_cpu_limit(self):
        r = self.cell(["/bin/sh", "-c", "while :; do :; done"], opts=["--cpu", "1", "--timeout", "30"])
        self.assertLess(r.wall_s, 15, r)
        self.assertIn(r.rc, (128 + 24, 128 + 9), "a CPU burner was not stopped by --cpu: %r" % r)

    def test_wall_clock_timeout_kills_everything(self):
        mark = marker("to")
        r = self.probe("forkbomb", mark, "5", "1000", opts=["--timeout", "1"])
        self.assertEqual(r.rc, 124, r)
        self.assertLess(r.wall_s, 6, r)
        self.assertEqual((r.meta or {}).get("status"), "timeout", r)
        self.assertEqual(processes_with(mark), [])

    def test_stopped_cell_still_times_out(self):
        # A command that stops itself (SIGSTOP) with a child behind it must still end at the
        # timeout, and the stopped processes must go too.
        mark = marker("stop")
        r = self.cell(["/bin/sh", "-c", "sleep 300 & kill -STOP $$; echo resumed", mark], opts=["--timeout", "1"],
                      timeout=20)
        self.assertEqual(r.rc, 124, r)
        self.assertLess(r.wall_s, 6, r)
        self.assertNotIn("resumed", r.out)

    def test_rlimits(self):
        r = self.cell(["/bin/cat", "/proc/self/limits"])
        core = [ln for ln in r.out.splitlines() if ln.startswith("Max core file size")]
        self.assertTrue(core, r)
        self.assertEqual(core[0].split()[4], "0", "core dumps allowed: %r" % r)
        # hard limits cannot be raised again from inside
        r = self.cell(["/bin/sh", "-c", "h=$(ulimit -Hn); ulimit -Hn $((h + 1)) 2>/dev/null && echo RAISED;"
                       " ulimit -Hc unlimited 2>/dev/null && echo CORE; true"])
        self.assertEqual(r.rc, 0, r)
        self.assertNotIn("RAISED", r.out, r)
        self.assertNotIn("CORE", r.out, r)

    def test_huge_output_read(self):
        # 1 GiB to stdout; agentbox passes stdio through, so its own RSS stays small. (The
        # timeout is only a safety net: under the emulated cgroup v2 VM 1 GiB takes ~20 s.)
        p = subprocess.Popen([AGENTBOX, "exec", "--timeout", "120", "--", "/bin/sh", "-c",
                              "head -c 1073741824 /dev/zero"], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        got, hwm = 0, 0
        while True:
            chunk = p.stdout.read(1 << 20)
            hwm = max(hwm, vm_hwm_kb(p.pid))
            if not chunk:
                break
            got += len(chunk)
        rc = p.wait(timeout=150)
        self.assertEqual(rc, 0)
        self.assertEqual(got, 1 << 30)
        self.assertLess(hwm, 64 * 1024, "agentbox grew to %d kB relaying output" % hwm)

    def test_output_flood_nobody_reads(self):
        # Nobody drains stdout: the cell blocks on a full pipe, and the timeout must still fire.
        t0 = time.perf_counter()
        p = subprocess.Popen([AGENTBOX, "exec", "--timeout", "2", "--", "/bin/sh", "-c", "yes ABX"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            rc = p.wait(timeout=20)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()
            self.fail("agentbox hung on a full stdout pipe past its timeout")
        finally:
            p.stdout.close()
        self.assertEqual(rc, 124)
        self.assertLess(time.perf_counter() - t0, 10)


if __name__ == "__main__":
    unittest.main()
