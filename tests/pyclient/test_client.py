"""AgentboxClient end to end against a real `agentbox serve` (offline replay): every op, the
event stream (replay, follow, all), cancel, wait timeouts and the server's error codes."""
import asyncio
import json
import os
import subprocess

from pyclient_util import AGENTBOX, ServerTestCase, eventually, sleeping_task

from agentbox_client import (AgentboxClient, AgentboxConnectionError, DuplicateId, InvalidTask,
                             NotFound, WaitTimeout)


class Ops(ServerTestCase):
    def setUp(self):
        self.c = AgentboxClient(self.server.socket)

    async def test_submit_wait_status_list(self):
        tid = await self.c.submit({"id": self.new_id(), "prompt": "say hello"})
        result = await self.c.wait(tid, timeout=60)
        self.assertEqual(result["id"], tid)
        self.assertEqual(result["status"], "succeeded")
        self.assertTrue(result["success"])
        self.assertEqual(result["output"], "finished")
        self.assertIn("result.txt", [f["path"] for f in result["files"]])
        self.assertIn("+hello", result["diff"])
        self.assertTrue(result["metadata"]["offline_replay"])
        st = await self.c.status(tid)
        self.assertEqual((st["id"], st["status"]), (tid, "succeeded"))
        self.assertIn(tid, [t["id"] for t in await self.c.list()])

    async def test_relative_from_dir_is_the_clients(self):
        # the same relative name below the server's working directory holds a decoy: seeding
        # from it would be the silent mistake
        mine = os.path.join(self.tmp, "client-cwd")
        for base, text in ((mine, "client's\n"), (self.server.cwd, "server's\n")):
            os.makedirs(os.path.join(base, "proj"), exist_ok=True)
            with open(os.path.join(base, "proj", "who.txt"), "w") as f:
                f.write(text)
        task = {"prompt": "go", "workspace": {"from_dir": "proj"}, "outputs": ["who.txt"]}
        with open(os.path.join(mine, "task.json"), "w") as f:
            json.dump(task, f)
        old = os.getcwd()
        os.chdir(mine)
        try:
            tid = await self.c.submit({**task, "id": self.new_id("py")})
            proc = subprocess.run([AGENTBOX, "submit", "--socket", self.server.socket,
                                   "--task-file", "task.json", "--id", self.new_id("cli")],
                                  capture_output=True, text=True, timeout=60)
        finally:
            os.chdir(old)
        self.assertEqual(task["workspace"]["from_dir"], "proj", "the caller's dict changed")
        self.assertEqual(proc.returncode, 0, proc.stderr)
        for t in (tid, proc.stdout.strip()):
            result = await self.c.wait(t, timeout=60)
            self.assertEqual(result["status"], "succeeded", result)
            with open(os.path.join(result["outputs_dir"], "who.txt")) as f:
                self.assertEqual(f.read(), "client's\n", t)

    async def test_submit_without_id_gets_one(self):
        tid = await self.c.submit("a bare prompt")
        self.assertTrue(tid.startswith("task-"), tid)
        self.assertEqual((await self.c.wait(tid, timeout=60))["status"], "succeeded")

    async def test_health_and_metrics(self):
        h = await self.c.health()
        self.assertEqual(h["status"], "ok")
        self.assertTrue(h["replay"])
        self.assertIn("jobs", h)
        text = await self.c.metrics()
        self.assertIn("# TYPE", text)

    async def test_events_replay_then_follow(self):
        tid = self.new_id()
        await self.c.submit(sleeping_task(tid, 0.5))
        live = []
        async with self.c.events(tid, follow=True) as stream:
            async for ev in stream:
                live.append(ev)
        types = [e["type"] for e in live]
        self.assertEqual(types[0], "task_queued")
        self.assertIn("task_started", types)
        self.assertIn("tool_call", types)
        self.assertEqual(types[-1], "task_completed")
        self.assertEqual([e["seq"] for e in live], list(range(1, len(live) + 1)))
        self.assertTrue(all(e["task"] == tid for e in live))
        # after the end, the same events come back without follow
        again = [ev async for ev in self.c.events(tid, follow=False)]
        self.assertEqual(again, live)

    async def test_events_of_all_tasks(self):
        got = []
        ids = [self.new_id("all"), self.new_id("all")]

        async def listen():
            async with self.c.events("all", follow=True) as stream:
                async for ev in stream:
                    if ev["task"] in ids:
                        got.append((ev["task"], ev["type"]))
                    done = {t for t, typ in got if typ == "task_completed"}
                    if done == set(ids):
                        return

        listener = asyncio.ensure_future(listen())
        await asyncio.sleep(0.3)  # "all" streams live events only: subscribe first
        for tid in ids:
            await self.c.submit(sleeping_task(tid, 0))
        await asyncio.wait_for(listener, 60)
        for tid in ids:
            self.assertIn((tid, "task_started"), got)

    async def test_cancel_a_running_task(self):
        tid = self.new_id("cancel")
        await self.c.submit(sleeping_task(tid, 60))

        async def calling():
            return "tool_call" in [e["type"] async for e in self.c.events(tid, follow=False)]
        self.assertTrue(await eventually(calling))
        reply = await self.c.cancel(tid)
        self.assertTrue(reply["cancelling"])
        result = await self.c.wait(tid, timeout=60)
        self.assertEqual(result["status"], "cancelled")
        self.assertFalse(result["success"])

    async def test_wait_timeout_leaves_the_task_running(self):
        tid = self.new_id("slow")
        await self.c.submit(sleeping_task(tid, 2))
        with self.assertRaises(WaitTimeout) as cm:
            await self.c.wait(tid, timeout=0.2)
        self.assertEqual(cm.exception.code, "timeout")
        self.assertIsInstance(cm.exception, TimeoutError)
        self.assertEqual((await self.c.wait(tid, timeout=60))["status"], "succeeded")

    async def test_server_errors_keep_their_codes(self):
        with self.assertRaises(NotFound) as cm:
            await self.c.status("no-such-task")
        self.assertEqual(cm.exception.code, "not_found")
        with self.assertRaises(NotFound):
            await self.c.wait("no-such-task")
        with self.assertRaises(NotFound):
            await self.c.cancel("no-such-task")
        with self.assertRaises(InvalidTask) as cm:
            await self.c.submit({"prompt": "x", "limits": {"disk": "huge"}})
        self.assertIn("task.limits.disk", cm.exception.message)
        tid = await self.c.submit({"id": self.new_id("dup"), "prompt": "x"})
        with self.assertRaises(DuplicateId):
            await self.c.submit({"id": tid, "prompt": "again"})
        await self.c.wait(tid, timeout=60)

    async def test_many_concurrent_submissions(self):
        ids = [self.new_id("many") for _ in range(12)]
        await asyncio.gather(*(self.c.submit({"id": i, "prompt": "x"}) for i in ids))
        results = await asyncio.gather(*(self.c.wait(i, timeout=120) for i in ids))
        self.assertEqual([r["status"] for r in results], ["succeeded"] * 12)
        self.assertEqual([r["id"] for r in results], ids)


class NoServer(ServerTestCase):
    async def test_missing_socket_is_a_connection_error(self):
        c = AgentboxClient(os.path.join(self.tmp, "nothing-here.sock"), reconnect_timeout=0)
        with self.assertRaises(AgentboxConnectionError) as cm:
            await c.health()
        self.assertEqual(cm.exception.code, "connection_error")
        self.assertIsInstance(cm.exception, ConnectionError)
