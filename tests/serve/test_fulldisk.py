"""A full state disk is a state, not a crash: serve keeps running, refuses new submits with
`no_space`, answers a task that could not save its result `failed` with an error that says
what was lost, saves what it kept in memory once space returns (by itself), and starts on a
full disk. The state dir is a small tmpfs this test mounts (root only)."""
import json
import os
import signal
import subprocess
import time

from servetest_util import ServeTestCase, bash_reply, finish_reply

TERMINAL = {"task_completed", "task_failed", "task_timeout", "task_cancelled",
            "task_escalated"}


class FullDiskTest(ServeTestCase):
    def setUp(self):
        super().setUp()
        if os.geteuid() != 0:
            self.skipTest("mounting a tmpfs needs root")
        os.makedirs(self.state)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m,mode=0700", "tmpfs",
                            self.state], capture_output=True, text=True)
        if r.returncode != 0:
            self.skipTest(f"cannot mount a tmpfs here: {r.stderr.strip()}")
        self.addCleanup(subprocess.run, ["umount", "-l", self.state], check=False)
        self.filler = os.path.join(self.state, ".filler")

    def fill(self):
        with open(self.filler, "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        # the last pages too
        try:
            with open(self.filler, "ab") as f:
                while True:
                    f.write(b"\0" * 512)
                    f.flush()
        except OSError:
            pass

    def free(self):
        os.unlink(self.filler)

    def health(self, c):
        r = c.ask({"op": "health"})
        self.assertTrue(r["ok"], r)
        return r

    def terminal_events(self, tid):
        with open(os.path.join(self.state, tid, "events.jsonl")) as f:
            text = f.read()
        self.assertTrue(text.endswith("\n"))
        return [json.loads(x) for x in text.splitlines() if json.loads(x)["type"] in TERMINAL]

    def test_full_disk_then_room_again(self):
        slow = self.write_replay([bash_reply("sleep 2"), finish_reply("slow")], "slow.json")
        self.start_server("--jobs", "2", replay=slow)
        c = self.conn()
        self.assertEqual(self.wait_result(c, self.submit(c, {"prompt": "x", "id": "before"}))
                         ["status"], "succeeded")
        during = self.submit(c, {"prompt": "x", "id": "during"})
        deadline = time.monotonic() + 30
        while c.ask({"op": "status", "id": during})["task"]["status"] != "running":
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.05)
        self.fill()
        # a submit is refused with a code of its own, and the server stays up
        r = c.ask({"op": "submit", "task": {"prompt": "y" * 20000, "id": "refused"}})
        self.assertEqual(r["error"]["code"], "no_space", r)
        self.assertIn("full", r["error"]["message"])
        self.assertEqual(c.ask({"op": "status", "id": "refused"})["error"]["code"], "not_found")
        # the task that ends now cannot save its result: failed, saying what was lost
        res = self.wait_result(c, during)
        self.assertEqual(res["status"], "failed", res)
        self.assertEqual(res["error"]["reason"], "not_saved", res)
        self.assertIn("could not be saved", res["error"]["message"])
        self.assertIn("succeeded", res["error"]["message"])
        h = self.health(c)
        self.assertEqual(h["state_disk"], "full")
        self.assertEqual(h["unsaved_results"], 1)
        # room again: what was kept in memory is saved, by the server itself
        self.free()
        deadline = time.monotonic() + 20
        while self.health(c)["unsaved_results"]:
            self.assertLess(time.monotonic(), deadline, self.server_log())
            time.sleep(0.1)
        self.assertEqual(self.health(c)["state_disk"], "ok")
        with open(os.path.join(self.state, during, "result.json")) as f:
            self.assertEqual(json.load(f)["status"], "failed")
        self.assertEqual([e["status"] for e in self.terminal_events(during)], ["failed"])
        after = self.submit(c, {"prompt": "x", "id": "after"})
        self.assertEqual(self.wait_result(c, after)["status"], "succeeded")
        self.assertEqual(self.proc.poll(), None)
        c.close()
        # a crash, then a start on a full disk: it comes up and knows every task
        self.proc.kill()
        self.proc.wait(10)
        self.fill()
        self.start_server("--jobs", "2", replay=slow)
        c = self.conn()
        tasks = {t["id"]: t["status"] for t in c.ask({"op": "list"})["tasks"]}
        self.assertEqual(tasks, {"before": "succeeded", "during": "failed", "after": "succeeded"})
        self.assertEqual(self.wait_result(c, "during")["error"]["reason"], "not_saved")
        r = c.ask({"op": "submit", "task": {"prompt": "y" * 20000, "id": "refused2"}})
        self.assertEqual(r["error"]["code"], "no_space", r)
        self.free()
        self.assertEqual(self.wait_result(c, self.submit(c, {"prompt": "x", "id": "last"}))
                         ["status"], "succeeded")
        c.close()
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(30), 0)
        # and the journal is whole: the next start knows all of them
        self.start_server(replay=slow)
        c = self.conn()
        self.assertEqual(len(c.ask({"op": "list"})["tasks"]), 4)
