"""The supervisor's own life: SIGTERM drains (running tasks finish, the queue is cancelled,
after --grace the rest is cancelled, exit 0); SIGKILL with tasks running leaves no cell and
no mount behind, and the restarted supervisor knows every task (interrupted ones failed, or
queued again with --requeue-interrupted)."""
import json
import os
import signal
import subprocess
import time

from servetest_util import AGENTBOX, ServeTestCase, bash_reply, finish_reply, pid_alive


def mount_lines():
    with open("/proc/self/mountinfo") as f:
        return f.read().splitlines()


def cgroups_of(pid):
    """Host paths of the agentbox cell cgroups pid is in (none without cgroups)."""
    try:
        with open("/proc/%d/cgroup" % pid) as f:
            lines = f.read().splitlines()
    except OSError:
        return []
    found = []
    for line in lines:
        _, ctrls, path = line.split(":", 2)
        if "/agentbox/u" not in path:
            continue
        roots = (["/sys/fs/cgroup", "/sys/fs/cgroup/unified"] if ctrls == "" else
                 ["/sys/fs/cgroup/" + c for c in ctrls.split(",")])
        found += [r + path for r in roots if os.path.isdir(r + path)]
    return found


def proc_stat(pid):
    """(comm, state letter, ppid) from /proc/PID/stat, or None once the pid is gone."""
    try:
        with open("/proc/%s/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    rest = stat[stat.rindex(")") + 2:].split()
    return stat[stat.index("(") + 1:stat.rindex(")")], rest[0], int(rest[1])


def janitors_of(ppid):
    """Pids of the cgroup janitors (comm "agentbox-janitor") whose parent is ppid."""
    found = []
    for d in os.listdir("/proc"):
        st = proc_stat(d) if d.isdigit() else None
        if st and st[0].startswith("agentbox-janit") and st[2] == ppid:
            found.append(int(d))
    return found


class LifecycleTest(ServeTestCase):
    def wait_running(self, c, ids, n):
        deadline = time.monotonic() + 30
        while True:
            st = [c.ask({"op": "status", "id": t})["task"]["status"] for t in ids]
            # running includes the cell's making (off the loop): wait for the cells too
            if st.count("running") >= n and sum(map(self.has_cell, ids)) >= n:
                return st
            self.assertLess(time.monotonic(), deadline, st)
            time.sleep(0.05)

    def has_cell(self, tid):
        try:
            with open(os.path.join(self.state, tid, "events.jsonl")) as f:
                return any('"task_started"' in x for x in f)
        except FileNotFoundError:
            return False

    def cell_cgroups(self, tid):
        """Host paths of the cgroups of task tid's cell (asserted to exist)."""
        with open(os.path.join(self.state, tid, "events.jsonl")) as f:
            pid = [json.loads(x)["cell_pid"] for x in f if '"task_started"' in x][0]
        found = cgroups_of(pid)
        self.assertTrue(found, tid)
        return found

    def kill_server_expect_removed(self, c, cgroups):
        """SIGKILLs the supervisor; its janitor must remove cgroups within 15 s."""
        c.close()
        self.proc.kill()
        self.proc.wait(10)
        deadline = time.monotonic() + 15
        while any(os.path.exists(d) for d in cgroups) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([d for d in cgroups if os.path.exists(d)], [], "cgroups left behind")

    def test_sigterm_drains(self):
        replay = self.write_replay([bash_reply("sleep 1.5"), finish_reply("ok")])
        self.start_server("--jobs", "2", replay=replay)
        c = self.conn()
        ids = [self.submit(c, {"prompt": "x", "id": f"d{i}"}) for i in range(4)]
        self.wait_running(c, ids, 2)
        waiter = self.conn()
        waiter.send({"op": "wait", "id": "d0"})
        self.proc.send_signal(signal.SIGTERM)
        time.sleep(0.2)
        self.assertEqual(c.ask({"op": "health"})["status"], "draining")
        r = c.ask({"op": "submit", "task": {"prompt": "late"}})
        self.assertEqual(r["error"]["code"], "shutting_down")
        self.assertEqual(c.ask({"op": "status", "id": "d3"})["task"]["status"], "cancelled")
        self.assertEqual(waiter.line()["result"]["status"], "succeeded")
        self.assertEqual(self.proc.wait(30), 0)
        self.assertFalse(os.path.exists(self.sock))
        status = {}
        for tid in ids:
            with open(os.path.join(self.state, tid, "result.json")) as f:
                status[tid] = json.load(f)["status"]
        self.assertEqual(status, {"d0": "succeeded", "d1": "succeeded", "d2": "cancelled",
                                  "d3": "cancelled"})

    def test_sigterm_grace_cancels_the_rest(self):
        replay = self.write_replay([bash_reply("sleep 120"), finish_reply()])
        self.start_server("--grace", "1", replay=replay)
        c = self.conn()
        tid = self.submit(c, {"prompt": "x"})
        self.wait_running(c, [tid], 1)
        t0 = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(30), 0)
        self.assertLess(time.monotonic() - t0, 20)
        with open(os.path.join(self.state, tid, "result.json")) as f:
            self.assertEqual(json.load(f)["status"], "cancelled")

    def test_sigkill_leaves_no_cell_and_restart_knows_every_task(self):
        mounts_before = mount_lines()
        fast = self.write_replay([finish_reply("quick")], "fast.json")
        slow = self.write_replay([bash_reply("sleep 120"), finish_reply()], "slow.json")
        # two tasks finish under a first supervisor
        self.start_server(replay=fast)
        c = self.conn()
        done = [self.submit(c, {"prompt": "x", "id": f"done{i}"}) for i in range(2)]
        for tid in done:
            self.wait_result(c, tid)
        c.close()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(30), 0)
        # a second one is killed with 3 tasks running and 2 queued
        self.start_server("--jobs", "3", replay=slow)
        c = self.conn()
        live = [self.submit(c, {"prompt": "x", "id": f"live{i}"}) for i in range(5)]
        self.wait_running(c, live, 3)
        time.sleep(0.5)
        pids = []
        for tid in live[:3]:
            with open(os.path.join(self.state, tid, "events.jsonl")) as f:
                evs = [json.loads(x) for x in f]
            pids += [e["cell_pid"] for e in evs if e["type"] == "task_started"]
        self.assertEqual(len(pids), 3)
        self.assertTrue(all(pid_alive(p) for p in pids))
        cgroups = [d for p in pids for d in cgroups_of(p)]
        if cgroups:
            # one janitor for the supervisor, not one per cell
            self.assertEqual(len(janitors_of(self.proc.pid)), 1, "janitors: %r" % janitors_of(self.proc.pid))
        c.close()
        self.proc.kill()
        self.proc.wait(10)
        deadline = time.monotonic() + 10
        while any(pid_alive(p) for p in pids) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual([p for p in pids if pid_alive(p)], [], "a cell outlived its supervisor")
        # the janitor removed the three cells' cgroups without the supervisor
        while any(os.path.exists(d) for d in cgroups) and time.monotonic() < deadline + 5:
            time.sleep(0.05)
        self.assertEqual([d for d in cgroups if os.path.exists(d)], [], "cgroups left behind")
        after = mount_lines()
        self.assertEqual([m for m in after if self.tmp in m], [])
        self.assertLessEqual(len(after), len(mounts_before))
        # the restarted supervisor knows all seven
        self.start_server(replay=fast)
        c = self.conn()
        tasks = {t["id"]: t["status"] for t in c.ask({"op": "list"})["tasks"]}
        self.assertEqual(tasks, {"done0": "succeeded", "done1": "succeeded",
                                 **{t: "failed" for t in live}})
        for tid in live:
            r = self.wait_result(c, tid)
            self.assertEqual(r["error"]["message"], "interrupted by a supervisor restart")
        self.assertEqual(self.wait_result(c, "done0")["output"], "quick")
        c.send({"op": "events", "id": "live0"})
        ev = c.stream()
        self.assertEqual(ev[-1]["type"], "task_failed")
        # the journal was compacted: one line per transition, nothing else
        with open(os.path.join(self.state, "journal.jsonl")) as f:
            ops = [json.loads(x)["op"] for x in f]
        self.assertEqual(ops.count("submitted"), 7)

    def test_sigkill_then_requeue_interrupted(self):
        slow = self.write_replay([bash_reply("sleep 120"), finish_reply()], "slow.json")
        fast = self.write_replay([finish_reply("second life")], "fast.json")
        self.start_server("--jobs", "1", replay=slow)
        c = self.conn()
        ids = [self.submit(c, {"prompt": "x", "id": f"q{i}"}) for i in range(2)]
        self.wait_running(c, ids, 1)
        c.close()
        self.proc.kill()
        self.proc.wait(10)
        self.start_server("--requeue-interrupted", replay=fast)
        c = self.conn()
        for tid in ids:
            r = self.wait_result(c, tid)
            self.assertEqual(r["status"], "succeeded")
            self.assertEqual(r["output"], "second life")

    def check_janitor_replaced(self, sig):
        # The janitor is one process for the whole supervisor: killed (or stopped) from
        # outside, the next cell starts a new one, and that one does its job when the
        # supervisor is SIGKILLed.
        slow = self.write_replay([bash_reply("sleep 120"), finish_reply()], "slow.json")
        self.start_server("--jobs", "2", replay=slow)
        c = self.conn()
        first = self.submit(c, {"prompt": "x", "id": "j0"})
        self.wait_running(c, [first], 1)
        old = janitors_of(self.proc.pid)
        if not old:
            self.skipTest("no cgroups here (unprivileged or none usable): no janitor")
        self.assertEqual(len(old), 1)
        os.kill(old[0], sig)
        # Submitted at once: the registration may reach the socket of a janitor that is
        # still dying (or stopped); only its answer may count as coverage.
        second = self.submit(c, {"prompt": "x", "id": "j1"})
        self.wait_running(c, [first, second], 2)
        new = janitors_of(self.proc.pid)
        self.assertEqual(len(new), 1, new)
        self.assertNotEqual(new, old)
        # the new janitor was told of the first cell too
        self.kill_server_expect_removed(c, self.cell_cgroups(first) + self.cell_cgroups(second))

    def test_a_killed_janitor_is_replaced(self):
        self.check_janitor_replaced(signal.SIGKILL)

    def test_a_stopped_janitor_is_replaced(self):
        # It answers nothing for 5 s: agentbox kills it and starts another.
        self.check_janitor_replaced(signal.SIGSTOP)

    def test_a_janitor_found_dead_at_a_cell_end_is_replaced(self):
        # No new cell needed: the end of another cell finds the janitor gone, and the
        # replacement is told of the cell still running.
        slow = self.write_replay([bash_reply("sleep 120"), finish_reply()], "slow.json")
        self.start_server("--jobs", "2", replay=slow)
        c = self.conn()
        ids = [self.submit(c, {"prompt": "x", "id": f"k{i}"}) for i in range(2)]
        self.wait_running(c, ids, 2)
        old = janitors_of(self.proc.pid)
        if not old:
            self.skipTest("no cgroups here (unprivileged or none usable): no janitor")
        cgroups = self.cell_cgroups(ids[0])
        os.kill(old[0], signal.SIGKILL)
        deadline = time.monotonic() + 10
        while (proc_stat(old[0]) or ("", "Z", 0))[1] != "Z":  # gone or a zombie: its
            self.assertLess(time.monotonic(), deadline)      # socket is closed by then
            time.sleep(0.02)
        self.assertTrue(c.ask({"op": "cancel", "id": ids[1]})["cancelling"])
        self.assertEqual(self.wait_result(c, ids[1])["status"], "cancelled")
        new = janitors_of(self.proc.pid)
        self.assertEqual(len(new), 1, new)
        self.assertNotEqual(new, old)
        self.kill_server_expect_removed(c, cgroups)

    def test_one_server_per_state_dir_and_socket(self):
        replay = self.write_replay([finish_reply()])
        self.start_server(replay=replay)
        other = os.path.join(self.tmp, "other.sock")
        r = subprocess.run([AGENTBOX, "serve", "--socket", other, "--state-dir", self.state,
                            "--replay", replay], capture_output=True, text=True, timeout=20,
                           env=self.env())
        self.assertEqual(r.returncode, 2)
        self.assertIn("another agentbox serve is using it", r.stderr)
        r = subprocess.run([AGENTBOX, "serve", "--socket", self.sock, "--state-dir",
                            os.path.join(self.tmp, "state2"), "--replay", replay],
                           capture_output=True, text=True, timeout=20, env=self.env())
        self.assertEqual(r.returncode, 2)
        self.assertIn("another server is listening there", r.stderr)
        self.assertEqual(self.conn().ask({"op": "health"})["status"], "ok")

    def test_running_journal_is_compacted(self):
        replay = self.write_replay([finish_reply()])
        self.start_server("--journal-max", "4K", replay=replay)
        c = self.conn()
        big = "x" * 3000  # each submitted record carries the task: ~3 KB
        ids = [self.submit(c, {"prompt": big, "id": f"j{i}"}) for i in range(30)]
        for tid in ids:
            self.wait_result(c, tid)
        # small tasks after them: their records push the journal past 4K again
        small = [self.submit(c, {"prompt": "y", "id": f"s{i}"}) for i in range(30)]
        for tid in small:
            self.wait_result(c, tid)
        ids += small
        path = os.path.join(self.state, "journal.jsonl")
        # ~90 KB of big tasks were appended; the compacted journal keeps none of their JSON
        self.assertLess(os.path.getsize(path), 30 * 3000 / 2)
        with open(path) as f:
            recs = [json.loads(x) for x in f]
        self.assertFalse([r["id"] for r in recs
                          if r["op"] == "submitted" and len(r["task"].get("prompt", "")) >= 3000])
        # a restart still knows every task and its result
        self.proc.kill()
        self.proc.wait(10)
        self.start_server(replay=replay)
        c = self.conn()
        tasks = {t["id"]: t["status"] for t in c.ask({"op": "list"})["tasks"]}
        self.assertEqual(tasks, {t: "succeeded" for t in ids})
        self.assertEqual(self.wait_result(c, "j0")["status"], "succeeded")
