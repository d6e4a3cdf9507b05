"""A task belongs to the uid that submitted it. Another allowed client of the same serve
must not cancel it, wait on it, read its result or events, or see it in list or in
"events all": to that client the task does not exist (not_found). Root, the server's uid
and members of an --admin-gid see everything; ownership survives a restart."""
import json
import os
import threading
import time
import unittest

import hostile_util

from hostile_util import Conn, HostileCase


def bash(cmd, i):
    return {"content": None, "tool_calls": [{"id": f"b{i}", "type": "function", "function": {
        "name": "execute_bash", "arguments": json.dumps({"command": cmd})}}]}


FINISH = {"content": None, "tool_calls": [{"id": "f", "type": "function", "function": {
    "name": "finish", "arguments": json.dumps({"message": "SECRET-RESULT-TEXT"})}}]}


class Ownership(HostileCase):
    def setUp(self):
        super().setUp()
        self.state = os.path.join(self.tmp, "state")

    def serve(self, *args, replies=None):
        self.replies = replies or [bash("sleep 4", 1), FINISH]
        p = self.start_serve(self.state, args=("--allow-uid", str(self.atk_uid)) + args)
        self.assertIsNone(p.poll(), self.serve_log())
        os.chown(self.sock, 0, self.atk_gid)
        self.addCleanup(self.stop_serve, p)
        return p

    def write_replay(self, replies=None, name="replay.json"):
        return super().write_replay(replies or self.replies, name)

    def victim_submit(self):
        c = Conn(self.sock)
        a = c.ask({"op": "submit", "task": {"id": "victim-1", "prompt": "private"}})
        c.close()
        self.assertTrue(a.get("ok"), a)
        return a["id"]

    def assert_hidden(self, tid):
        answers = self.attacker_client(
            {"op": "status", "id": tid}, {"op": "wait", "id": tid, "timeout_s": 0},
            {"op": "events", "id": tid}, {"op": "cancel", "id": tid}, {"op": "list"})
        for a in answers[:4]:
            self.assertFalse(a[0].get("ok"), a)
            self.assertEqual(a[0]["error"]["code"], "not_found", a)
        self.assertEqual(answers[4][0]["tasks"], [], answers[4])
        self.assertNotIn("SECRET-RESULT-TEXT", json.dumps(answers))

    def victim_result(self, tid):
        c = Conn(self.sock, timeout=120)
        a = c.ask({"op": "wait", "id": tid, "timeout_s": 100})
        c.close()
        return a

    def test_running_task_cannot_be_cancelled_or_read_by_another_uid(self):
        self.serve()
        tid = self.victim_submit()
        self.assert_hidden(tid)
        a = self.victim_result(tid)
        self.assertEqual(a["result"]["status"], "succeeded", a)
        self.assert_hidden(tid)  # finished: its result stays private too

    def test_events_all_shows_only_own_tasks(self):
        self.serve()
        out = {}

        def follow():
            out["a"] = self.attacker_client({"op": "events", "id": "all", "follow": True},
                                            timeout=12)

        th = threading.Thread(target=follow)
        th.start()
        time.sleep(1.5)
        tid = self.victim_submit()
        own = self.attacker_client({"op": "submit", "task": {"id": "atk-2", "prompt": "p"}})
        self.assertTrue(own[0][0].get("ok"), own)
        th.join(timeout=60)
        # the stream ends by the client's read timeout; what came before it is kept
        seen = json.dumps(out["a"])
        self.assertIn("atk-2", seen)  # its own task's events do arrive
        self.assertNotIn(tid, seen)
        self.victim_result(tid)

    def test_owner_and_admin_group_see_the_task(self):
        self.serve("--admin-gid", str(self.atk_gid))
        tid = self.victim_submit()
        a = self.attacker_client({"op": "status", "id": tid})[0][0]
        self.assertTrue(a.get("ok"), a)

    def test_attackers_own_task_is_visible_to_it_and_survives_restart(self):
        p = self.serve(replies=[FINISH])
        mine = self.attacker_client({"op": "submit", "task": {"id": "atk-1", "prompt": "p"}},
                                    {"op": "wait", "id": "atk-1", "timeout_s": 100})
        self.assertEqual(mine[1][0]["result"]["status"], "succeeded", mine)
        c = Conn(self.sock)
        self.assertTrue(c.ask({"op": "submit", "task": {"id": "victim-1", "prompt": "x"}})
                        .get("ok"))
        c.close()
        self.victim_result("victim-1")
        self.stop_serve(p)
        p2 = self.serve(replies=[FINISH])
        answers = self.attacker_client({"op": "status", "id": "atk-1"},
                                       {"op": "status", "id": "victim-1"}, {"op": "list"})
        self.assertTrue(answers[0][0].get("ok"), answers)
        self.assertEqual(answers[1][0]["error"]["code"], "not_found", answers)
        self.assertEqual([t["id"] for t in answers[2][0]["tasks"]], ["atk-1"], answers)
        del p2


load_tests = hostile_util.load_tests

if __name__ == "__main__":
    unittest.main()
