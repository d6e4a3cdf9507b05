"""Nothing acknowledged is lost: serve is SIGKILLed at each write of a task's end (mid
result.json, after it, after the terminal event, after the journal record) and during
start-up recovery, on purpose through the AGENTBOX_TEST_CRASH_AT hook (the binary kills
itself exactly there), with and without --requeue-interrupted. After any number of
restarts every acknowledged task has exactly one terminal event in events.jsonl, a readable
result.json, and the status a live subscriber saw; a task announced done never runs again."""
import json
import os
import signal
import time

from servetest_util import Conn, ServeTestCase, bash_reply, finish_reply

TERMINAL = {"task_completed", "task_failed", "task_timeout", "task_cancelled",
            "task_escalated"}


class DurabilityTest(ServeTestCase):
    def fresh(self):
        """A new state dir for the next subtest (the old server stopped first)."""
        self.kill_server()
        self.setUp()

    def start_crashing(self, point, *args, replay=None):
        """A server armed to SIGKILL itself at point; returns a live all-events subscriber."""
        self.start_server(*args, replay=replay, env={"AGENTBOX_TEST_CRASH_AT": point})
        sub = Conn(self.sock, timeout=60)
        self.addCleanup(sub.close)
        sub.send({"op": "events", "id": "all", "follow": True})
        self.assertEqual(sub.line(), {"ok": True, "stream": True})
        return sub

    def seen_until_death(self, sub):
        """Every event the subscriber got before the server died (SIGKILL asserted)."""
        self.assertEqual(self.proc.wait(60), -signal.SIGKILL, self.server_log())
        seen = []
        while True:
            try:
                seen.append(sub.line())
            except (EOFError, OSError):
                return seen

    def events_file(self, tid):
        with open(os.path.join(self.state, tid, "events.jsonl")) as f:
            text = f.read()
        self.assertTrue(text == "" or text.endswith("\n"), "torn events.jsonl")
        return [json.loads(x) for x in text.splitlines()]

    def check_task(self, c, tid, seen, expect=None):
        """One terminal event on disk, a readable result.json, agreeing with the subscriber."""
        res = self.wait_result(c, tid)
        with open(os.path.join(self.state, tid, "result.json")) as f:
            on_disk = json.load(f)
        self.assertEqual(on_disk["status"], res["status"])
        evs = self.events_file(tid)
        terms = [e for e in evs if e["type"] in TERMINAL]
        self.assertEqual(len(terms), 1, [e["type"] for e in evs])
        self.assertEqual(terms[0]["status"], res["status"])
        self.assertEqual([e["seq"] for e in evs], list(range(1, len(evs) + 1)))
        live = [e for e in seen if e.get("task") == tid and e.get("type") in TERMINAL]
        self.assertLessEqual(len(live), 1)
        if live:
            # what was announced stays: same status, and the task never ran again
            self.assertEqual(live[0]["status"], res["status"])
            self.assertEqual(len([e for e in evs if e["type"] == "task_started"]), 1)
        if expect:
            self.assertEqual(res["status"], expect, res)
        return res

    def crash_at_end(self, point, requeue, expect):
        fast = self.write_replay([finish_reply("kept")], "fast.json")
        args = ["--requeue-interrupted"] if requeue else []
        sub = self.start_crashing(point, *args, replay=fast)
        c = Conn(self.sock, timeout=60)
        self.addCleanup(c.close)
        tid = self.submit(c, {"prompt": "x", "id": "t1"})
        seen = self.seen_until_death(sub)
        c.close()
        for _ in range(2):  # and a second restart sees the same
            self.start_server(*args, replay=fast)
            c = self.conn()
            res = self.check_task(c, tid, seen, expect)
            self.assertEqual(c.ask({"op": "list"})["tasks"][0]["status"], res["status"])
            c.close()
            self.proc.send_signal(signal.SIGTERM)
            self.assertEqual(self.proc.wait(30), 0)
        return res, seen

    def test_crash_mid_result(self):
        for requeue in (False, True):
            with self.subTest(requeue=requeue):
                try:
                    res, seen = self.crash_at_end("result-half", requeue,
                                                  "succeeded" if requeue else "failed")
                    self.assertFalse([e for e in seen if e.get("type") in TERMINAL])
                    if not requeue:
                        self.assertEqual(res["error"]["message"], "interrupted by a supervisor restart")
                finally:
                    self.fresh()

    def test_crash_after_result_before_event(self):
        for requeue in (False, True):
            with self.subTest(requeue=requeue):
                try:
                    res, _ = self.crash_at_end("after-result", requeue, "succeeded")
                    self.assertEqual(res["output"], "kept")
                finally:
                    self.fresh()

    def test_crash_after_event_before_journal(self):
        for requeue in (False, True):
            with self.subTest(requeue=requeue):
                try:
                    res, seen = self.crash_at_end("after-event", requeue, "succeeded")
                    self.assertEqual([e["type"] for e in seen if e.get("type") in TERMINAL],
                                     ["task_completed"])
                    self.assertEqual(res["output"], "kept")
                finally:
                    self.fresh()

    def test_crash_after_journal(self):
        for requeue in (False, True):
            with self.subTest(requeue=requeue):
                try:
                    res, _ = self.crash_at_end("after-journal", requeue, "succeeded")
                    self.assertEqual(res["output"], "kept")
                finally:
                    self.fresh()

    def test_torn_result_is_rebuilt_from_the_terminal_event(self):
        fast = self.write_replay([finish_reply("kept")], "fast.json")
        self.start_server(replay=fast)
        c = self.conn()
        tid = self.submit(c, {"prompt": "x", "id": "torn"})
        self.assertEqual(self.wait_result(c, tid)["status"], "succeeded")
        c.close()
        self.kill_server()
        # a result torn by an older binary (or a disk): empty, then half of one
        for content in ("", '{"id": "torn", "sta'):
            with open(os.path.join(self.state, tid, "result.json"), "w") as f:
                f.write(content)
            self.start_server(replay=fast)
            c = self.conn()
            res = self.check_task(c, tid, [], "succeeded")
            self.assertIn("result_rebuilt", res["metadata"])
            c.close()
            self.kill_server()

    def test_planted_links_in_a_task_dir_are_not_followed(self):
        """A task's result.json swapped for a symlink to a forged result: serve does not read
        through the link; it rebuilds the result from the task's own terminal event and
        writes it in place of the link, never through it into the file it points at."""
        fast = self.write_replay([finish_reply("kept")], "fast.json")
        self.start_server(replay=fast)
        c = self.conn()
        tid = self.submit(c, {"prompt": "x", "id": "linked"})
        self.assertEqual(self.wait_result(c, tid)["output"], "kept")
        c.close()
        self.kill_server()
        forged = os.path.join(self.tmp, "forged-result.json")
        forged_text = json.dumps({"id": tid, "status": "succeeded", "success": True,
                                  "output": "FORGED"})
        with open(forged, "w") as f:
            f.write(forged_text)
        path = os.path.join(self.state, tid, "result.json")
        os.unlink(path)
        os.symlink(forged, path)
        self.start_server(replay=fast)
        c = self.conn()
        res = self.wait_result(c, tid)
        c.close()
        self.kill_server()
        self.assertNotEqual(res["output"], "FORGED", res)
        self.assertEqual(res["status"], "succeeded")
        self.assertIn("result_rebuilt", res["metadata"])
        self.assertFalse(os.path.islink(path))
        with open(forged) as f:
            self.assertEqual(f.read(), forged_text)

    def interrupted_then_crash_in_recovery(self, point, requeue):
        slow = self.write_replay([bash_reply("sleep 120"), finish_reply()], "slow.json")
        fast = self.write_replay([finish_reply("again")], "fast.json")
        self.start_server(replay=slow)
        c = self.conn()
        tid = self.submit(c, {"prompt": "x", "id": "rec"})
        deadline = time.monotonic() + 30
        while c.ask({"op": "status", "id": tid})["task"]["status"] != "running":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        c.close()
        self.kill_server()
        args = ["--requeue-interrupted"] if requeue else []
        # the restart recovers the interrupted task and is killed in the middle of it
        self.start_server(*args, replay=fast, env={"AGENTBOX_TEST_CRASH_AT": point},
                          wait=False)
        self.assertEqual(self.proc.wait(60), -signal.SIGKILL, self.server_log())
        for _ in range(2):
            self.start_server(*args, replay=fast)
            c = self.conn()
            res = self.check_task(c, tid, [])
            c.close()
            self.kill_server()
        return res

    def test_crash_during_recovery(self):
        for point in ("synth-result-half", "synth-after-result", "synth-after-event",
                      "after-journal"):
            with self.subTest(point=point):
                try:
                    res = self.interrupted_then_crash_in_recovery(point, False)
                    self.assertEqual(res["status"], "failed")
                    self.assertEqual(res["error"]["message"], "interrupted by a supervisor restart")
                finally:
                    self.fresh()

    def test_crash_during_recovery_of_an_ended_task(self):
        # the task's result was durable but its event not out; the restart that emits it
        # is killed right after: the next one must not emit a second
        for requeue in (False, True):
            with self.subTest(requeue=requeue):
                try:
                    fast = self.write_replay([finish_reply("kept")], "fast.json")
                    args = ["--requeue-interrupted"] if requeue else []
                    sub = self.start_crashing("after-result", *args, replay=fast)
                    c = Conn(self.sock, timeout=60)
                    self.addCleanup(c.close)
                    tid = self.submit(c, {"prompt": "x", "id": "e1"})
                    self.seen_until_death(sub)
                    c.close()
                    self.start_server(*args, replay=fast,
                                      env={"AGENTBOX_TEST_CRASH_AT": "recovery-after-event"},
                                      wait=False)
                    self.assertEqual(self.proc.wait(60), -signal.SIGKILL, self.server_log())
                    self.start_server(*args, replay=fast)
                    c = self.conn()
                    self.assertEqual(self.check_task(c, tid, [], "succeeded")["output"], "kept")
                    c.close()
                    self.kill_server()
                finally:
                    self.fresh()
