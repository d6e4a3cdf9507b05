"""Cells are made off serve's event loop: while a cell is being made (here a git workspace
whose clone takes a while), the supervisor answers its clients, and a task cancelled in that
time ends cancelled with its cell gone and nothing held."""
import json
import os
import subprocess
import time

from servetest_util import ServeTestCase, bash_reply, finish_reply, pid_alive


def make_repo(path, dirs=20, files=100):
    """A repository whose clone and checkout take a noticeable time (2000 files)."""
    os.makedirs(path)
    for d in range(dirs):
        os.makedirs(os.path.join(path, f"d{d}"))
        for i in range(files):
            with open(os.path.join(path, f"d{d}", f"f{i}.txt"), "w") as f:
                f.write(f"{d} {i}\n" * 20)
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", HOME=path)
    for cmd in (["git", "init", "-q"], ["git", "add", "-A"], ["git", "commit", "-qm", "x"]):
        subprocess.run(cmd, cwd=path, env=env, check=True, capture_output=True)
    os.chmod(path, 0o755)


def is_janitor(pid):
    try:
        with open(f"/proc/{pid}/comm") as f:
            return f.read().startswith("agentbox-janit")  # comm: 15 characters
    except OSError:
        return False


def children_of(pid):
    """The children of every thread of pid (cells are cloned by the spawner threads too)."""
    kids = set()
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/children") as f:
                kids.update(int(x) for x in f.read().split())
        except OSError:
            pass
    return kids


def agent_cells(pid):
    """The processes below serve (pid) that run the agent: its cells' pid 1s."""
    out = []
    for p in children_of(pid):
        try:
            with open(f"/proc/{p}/cmdline", "rb") as f:
                if b"__agent" in f.read():
                    out.append(p)
        except OSError:
            pass
    return out


class SpawnerTest(ServeTestCase):
    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        make_repo(self.repo)

    def events(self, tid):
        try:
            with open(os.path.join(self.state, tid, "events.jsonl")) as f:
                return [json.loads(x) for x in f if x.strip()]
        except FileNotFoundError:
            return []

    def git_task(self, tid):
        return {"prompt": "x", "id": tid, "workspace": {"git": {"repo": self.repo}}}

    def test_loop_answers_while_cells_are_made(self):
        replay = self.write_replay([finish_reply()])
        self.start_server("--jobs", "4", replay=replay)
        c = self.conn()
        ids = [self.submit(c, self.git_task(f"g{i}")) for i in range(4)]
        # the loop made no cell itself: it answers at once, before any of the four is there
        h = c.ask({"op": "health"})
        self.assertEqual(h.get("status"), "ok", h)
        started = [t for t in ids if any(e["type"] == "task_started" for e in self.events(t))]
        self.assertEqual(started, [], "health was answered only after cells were made")
        self.assertEqual(c.ask({"op": "status", "id": ids[0]})["task"]["status"], "running")
        for t in ids:
            res = self.wait_result(c, t, 120)
            self.assertEqual(res["status"], "succeeded", res["error"])
            types = [e["type"] for e in self.events(t)]
            self.assertEqual(types[:3], ["task_queued", "workspace_ready", "task_started"])

    def test_cancel_while_the_cell_is_made(self):
        replay = self.write_replay([finish_reply()])
        self.start_server("--jobs", "1", replay=replay)
        c = self.conn()
        tid = self.submit(c, self.git_task("doomed"))
        r = c.ask({"op": "cancel", "id": tid})
        self.assertTrue(r.get("ok"), r)
        self.assertFalse(any(e["type"] == "task_started" for e in self.events(tid)),
                         "the cancel did not arrive while the cell was being made")
        t0 = time.monotonic()
        res = self.wait_result(c, tid, 120)
        self.assertEqual(res["status"], "cancelled")
        # the cell was killed as soon as it existed: no grace period, no agent step
        self.assertLess(time.monotonic() - t0, 30)
        evs = self.events(tid)
        self.assertEqual(evs[-1]["type"], "task_cancelled")
        self.assertNotIn("llm_request", [e["type"] for e in evs])
        pids = [e["cell_pid"] for e in evs if e["type"] == "task_started"]
        self.assertEqual(len(pids), 1)
        self.assertFalse(pid_alive(pids[0]))
        # nothing held: the one job slot takes the next task, and its cell runs
        nxt = self.submit(c, {"prompt": "after", "id": "after"})
        self.assertEqual(self.wait_result(c, nxt, 120)["status"], "succeeded")

    def test_sigkill_while_cells_are_made_leaves_no_cell(self):
        replay = self.write_replay([bash_reply("sleep 60"), finish_reply()])
        self.start_server("--jobs", "3", replay=replay)
        c = self.conn()
        ids = [self.submit(c, self.git_task(f"s{i}")) for i in range(3)]
        self.submit(c, {"prompt": "plain", "id": "plain"})  # queued behind them
        # some cells are there, others being made
        deadline = time.monotonic() + 60
        while not any(e["type"] == "task_started" for t in ids for e in self.events(t)):
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.02)
        cells = self.cells()
        self.proc.kill()  # the cells die with the supervisor (PDEATHSIG), made on any thread
        self.proc.wait(10)
        for t in ids:
            cells += [e["cell_pid"] for e in self.events(t) if e["type"] == "task_started"]
        self.assertTrue(cells)
        deadline = time.monotonic() + 20
        while any(pid_alive(p) for p in cells) and time.monotonic() < deadline:
            time.sleep(0.1)
        self.assertEqual([p for p in cells if pid_alive(p)], [])

    def test_the_verify_cell_is_made_off_the_loop(self):
        # a verify cell starts with a copy of the clone (here 8000 files): made on the loop,
        # that copy held every client; made on a spawner thread, the loop answers meanwhile,
        # and a cancel that comes while it is made kills it as soon as it exists
        big = os.path.join(self.tmp, "big")
        make_repo(big, dirs=40, files=200)
        replay = self.write_replay([finish_reply()])
        self.start_server("--jobs", "2", replay=replay)
        c = self.conn()
        tasks = {}
        for tid in ("judged", "dropped"):
            t = {"prompt": "x", "id": tid, "workspace": {"git": {"repo": big}},
                 "verify": {"command": "sleep 30", "timeout_s": 60}}
            tasks[tid] = self.submit(c, t)
        t0 = time.monotonic()
        c.ask({"op": "health"})
        c.ask({"op": "status", "id": "judged"})
        idle = time.monotonic() - t0
        deadline = time.monotonic() + 120
        while not all(any(e["type"] == "verify_started" for e in self.events(t)) for t in tasks):
            self.assertLess(time.monotonic(), deadline, "no verify step started: %r" % [
                [e["type"] for e in self.events(t)] for t in tasks])
            time.sleep(0.002)
        t0 = time.monotonic()
        self.assertEqual(c.ask({"op": "health"}).get("status"), "ok")
        r = c.ask({"op": "cancel", "id": "dropped"})
        answered = time.monotonic() - t0
        self.assertTrue(r.get("ok"), r)
        # made on the loop, the answers waited for the copy of the clone (0.25-0.3 s here);
        # off the loop they take what two answers take on an idle server (a slow machine, the
        # VM, scales both)
        self.assertLess(answered, max(0.1, 20 * idle), f"idle answers take {idle:.4f} s")
        self.assertEqual(self.wait_result(c, "dropped", 60)["status"], "cancelled")
        c.ask({"op": "cancel", "id": "judged"})
        self.assertEqual(self.wait_result(c, "judged", 60)["status"], "cancelled")
        deadline = time.monotonic() + 20
        while self.cells_and_commands() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = {p: open(f"/proc/{p}/cmdline", "rb").read() for p in self.cells_and_commands()}
        self.assertEqual(left, {}, "a verify cell outlived its task")

    def cells_and_commands(self):
        """Every process below serve other than the cgroup janitor (a cell of any kind)."""
        return [p for p in children_of(self.proc.pid) if pid_alive(p) and not is_janitor(p)]

    def cells(self):
        return agent_cells(self.proc.pid)


class PrewarmTest(ServeTestCase):
    """`serve --prewarm N`: cells made ahead serve the tasks that fit them, once each."""

    PROBE = ("ls -A /workspace | tr '\\n' ' '; echo \"[$(cat /workspace/mark 2>/dev/null)]\"; "
             "echo $$-$RANDOM > /workspace/mark")

    def started(self, tid):
        with open(os.path.join(self.state, tid, "events.jsonl")) as f:
            evs = [json.loads(x) for x in f if x.strip()]
        return [e for e in evs if e["type"] == "task_started"][0], evs

    def run_task(self, c, task):
        tid = self.submit(c, task)
        res = self.wait_result(c, tid, 120)
        self.assertEqual(res["status"], "succeeded", res["error"])
        return self.started(tid)

    def test_prepared_cells_are_used_once_and_start_empty(self):
        replay = self.write_replay([bash_reply(self.PROBE), finish_reply()])
        self.start_server("--jobs", "2", "--prewarm", "2", replay=replay)
        c = self.conn()
        used = []
        deadline = time.monotonic() + 60
        i = 0
        while len(used) < 3:  # more than the pool holds: it is refilled
            self.assertLess(time.monotonic(), deadline, "no task got a prepared cell")
            st, evs = self.run_task(c, {"prompt": "probe", "id": f"p{i}"})
            i += 1
            if st["prewarmed"]:
                used.append(st["cell_pid"])
                # its task frame came to an empty workspace: nothing of an earlier task
                out = [e["observation"] for e in evs
                       if e["type"] == "tool_result" and e["tool"] == "execute_bash"]
                self.assertEqual(len(out), 1, evs)
                self.assertTrue(out[0].startswith("[]"), out[0])  # no file, no mark
            else:
                time.sleep(0.3)  # the pool is being made
        self.assertEqual(len(set(used)), len(used), "a prepared cell served two tasks")

    def test_tasks_that_do_not_fit_get_their_own_cell(self):
        replay = self.write_replay([finish_reply()])
        self.start_server("--jobs", "2", "--prewarm", "1", replay=replay)
        c = self.conn()
        time.sleep(1)
        for task in ({"prompt": "x", "id": "lim", "limits": {"memory": "300M"}},
                     {"prompt": "x", "id": "pol", "policy": "strict"}):
            tid = self.submit(c, task)
            res = self.wait_result(c, tid, 120)
            if res["status"] != "succeeded":  # refused (e.g. the policy forbids it): no cell
                self.assertEqual(res["status"], "failed")
                continue
            st, _ = self.started(tid)
            self.assertFalse(st["prewarmed"], task)
        st, _ = self.run_task(c, {"prompt": "x", "id": "fits"})
        self.assertTrue(st["prewarmed"])

    def test_a_state_dir_that_cannot_be_made_fails_the_task_and_kills_its_cell(self):
        # a prepared cell gets its task frame before the task's state dir is made; when that
        # fails (here: the directory is there already), the task fails as it would without a
        # prepared cell and the cell that got the frame is killed, its agent never heard
        replay = self.write_replay([bash_reply("sleep 2"), finish_reply()])
        self.start_server("--jobs", "1", "--prewarm", "1", replay=replay)
        c = self.conn()
        time.sleep(1)  # the pool is made
        hold = self.submit(c, {"prompt": "hold", "id": "hold"})
        deadline = time.monotonic() + 30
        while True:
            try:
                st, _ = self.started(hold)
                break
            except (FileNotFoundError, IndexError):
                self.assertLess(time.monotonic(), deadline, "hold never started")
                time.sleep(0.02)
        self.assertTrue(st["prewarmed"])
        self.submit(c, {"prompt": "x", "id": "blocked"})  # queued behind hold
        os.mkdir(os.path.join(self.state, "blocked"), 0o700)
        deadline = time.monotonic() + 30
        while True:  # the pool's next cell, made while hold runs
            spare = [p for p in agent_cells(self.proc.pid) if p != st["cell_pid"]]
            if spare:
                break
            self.assertLess(time.monotonic(), deadline, "the pool was not refilled")
            time.sleep(0.05)
        self.assertEqual(self.wait_result(c, hold, 60)["status"], "succeeded")
        res = self.wait_result(c, "blocked", 60)
        self.assertEqual(res["status"], "failed")
        self.assertIn("already exists", res["error"]["message"])
        deadline = time.monotonic() + 10
        while pid_alive(spare[0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertFalse(pid_alive(spare[0]), "the prepared cell that got the task lives on")

    def test_an_unused_prepared_cell_is_replaced_and_reaped(self):
        # a prepared cell unused for 20 s is replaced; the old one is killed and reaped (off
        # the loop, which answers meanwhile), nothing of it left, not even a zombie
        replay = self.write_replay([finish_reply()])
        self.start_server("--jobs", "1", "--prewarm", "1", replay=replay)
        c = self.conn()
        deadline = time.monotonic() + 30
        while not agent_cells(self.proc.pid):
            self.assertLess(time.monotonic(), deadline, "no prepared cell")
            time.sleep(0.1)
        old = agent_cells(self.proc.pid)
        self.assertEqual(len(old), 1, old)
        deadline = time.monotonic() + 40
        while os.path.exists(f"/proc/{old[0]}"):
            self.assertLess(time.monotonic(), deadline, "the old prepared cell was not reaped")
            self.assertEqual(c.ask({"op": "health"}).get("status"), "ok")
            time.sleep(0.5)
        deadline = time.monotonic() + 30
        while not agent_cells(self.proc.pid):
            self.assertLess(time.monotonic(), deadline, "the prepared cell was not replaced")
            time.sleep(0.1)
        st, _ = self.run_task(c, {"prompt": "x", "id": "after"})
        self.assertTrue(st["prewarmed"])
        self.assertNotEqual(st["cell_pid"], old[0])
