"""OpenHandsAgentProxy (the OpenHands orchestrator's agent interface) end to end against a real `agentbox
serve`: the returned dict, the published events, the context mapping, failures as results,
cancellation of the caller, the sync wrapper, and a mock result that is never a success."""
import asyncio
import os
import threading

from pyclient_util import ServerTestCase, eventually

from agentbox_client import (AGENT_END_REASONS, AgentboxClient, OpenHandsAgentProxy,
                             SyncAgentboxAgentProxy)

SEED_KEYS = {"success", "output", "error", "execution_time", "metadata"}


class Recorder:
    def __init__(self):
        self.events = []

    def __call__(self, event_type, payload):
        self.events.append((event_type, payload))

    def types(self):
        return [t for t, _ in self.events]


class Proxy(ServerTestCase):
    async def test_success_shape_and_events(self):
        rec = Recorder()
        proxy = OpenHandsAgentProxy(self.server.socket, event_callback=rec)
        tid = self.new_id("ok")
        out = await proxy.execute_development_task(
            "write result.txt", {"task_id": tid, "files": {"notes.md": "seed\n"},
                                 "metadata": {"ticket": "T-1"}})
        self.assertEqual(set(out), SEED_KEYS)
        self.assertTrue(out["success"], out)
        self.assertIsNone(out["error"])
        self.assertEqual(out["output"], "finished")
        self.assertGreater(out["execution_time"], 0)
        md = out["metadata"]
        self.assertEqual((md["task_id"], md["status"], md["mock"]), (tid, "succeeded", False))
        self.assertEqual(md["task_metadata"]["ticket"], "T-1")
        self.assertIn("result.txt", [f["path"] for f in md["files"]])
        self.assertNotIn("notes.md", [f["path"] for f in md["files"]])  # seed, unchanged
        self.assertIn("enforced", md["sandbox"])
        self.assertEqual(md["agentbox_result"]["id"], tid)
        types = rec.types()
        self.assertIn("task_started", types)
        self.assertIn("tool_call", types)
        self.assertEqual(types.count("task_completed"), 1)
        self.assertNotIn("task_failed", types)
        self.assertEqual(types[-1], "task_completed")
        self.assertLess(types.index("task_started"), types.index("tool_call"))
        for _, payload in rec.events:
            self.assertEqual(payload["task_id"], tid)

    async def test_async_callback_and_a_broken_one(self):
        seen = []

        async def cb(event_type, payload):
            await asyncio.sleep(0)
            seen.append(event_type)

        out = await OpenHandsAgentProxy(self.server.socket, event_callback=cb) \
            .execute_development_task("x", {"task_id": self.new_id()})
        self.assertTrue(out["success"])
        self.assertEqual(seen[-1], "task_completed")

        def broken(event_type, payload):
            raise RuntimeError("subscriber bug")
        with self.assertLogs("agentbox_client", "ERROR"):
            out = await OpenHandsAgentProxy(self.server.socket, event_callback=broken) \
                .execute_development_task("x", {"task_id": self.new_id()})
        self.assertTrue(out["success"])

    async def test_failed_task_is_a_result_not_an_exception(self):
        rec = Recorder()
        proxy = OpenHandsAgentProxy(self.server.socket, event_callback=rec)
        out = await proxy.execute_development_task("x", {"task_id": self.new_id("f"),
                                                         "max_iterations": 1})
        self.assertFalse(out["success"])
        self.assertEqual(out["metadata"]["status"], "failed")
        self.assertTrue(out["error"])
        # the agent's own ending is named, apart from the error type
        self.assertEqual(out["metadata"]["error_reason"], "max_iterations", out)
        self.assertIn(out["metadata"]["error_reason"], AGENT_END_REASONS)
        self.assertTrue(out["error"].startswith("SDK_ERROR (max_iterations): "), out["error"])
        self.assertEqual(rec.types().count("task_failed"), 1)
        self.assertNotIn("task_completed", rec.types())

    async def test_timeout_from_context(self):
        rec = Recorder()
        out = await OpenHandsAgentProxy(self.server.socket, event_callback=rec) \
            .execute_development_task("x", {"task_id": self.new_id("to"), "timeout": 1.5,
                                            "files": {"sleep": "60"}})
        self.assertFalse(out["success"])
        self.assertEqual(out["metadata"]["status"], "timeout")
        self.assertTrue(out["error"].startswith("TIMEOUT_ERROR"), out["error"])
        self.assertIn("task_timeout", rec.types())
        self.assertEqual(rec.types()[-1], "task_failed")

    async def test_refused_task_and_no_server(self):
        rec = Recorder()
        out = await OpenHandsAgentProxy(self.server.socket, event_callback=rec) \
            .execute_development_task("x", {"limits": {"disk": "huge"}})
        self.assertFalse(out["success"])
        self.assertEqual(out["metadata"]["error"]["type"], "VALIDATION_ERROR")
        self.assertEqual(out["metadata"]["server_error_code"], "invalid_task")
        self.assertIn("task.limits.disk", out["error"])
        self.assertEqual(rec.types(), ["task_failed"])
        out = await OpenHandsAgentProxy(client=AgentboxClient(
            os.path.join(self.tmp, "none.sock"), reconnect_timeout=0)).execute_development_task("x")
        self.assertFalse(out["success"])
        self.assertEqual(out["metadata"]["error"]["type"], "CONNECTION_ERROR")
        out = await OpenHandsAgentProxy(self.server.socket).execute_development_task("   ")
        self.assertEqual(out["metadata"]["error"]["type"], "VALIDATION_ERROR")

    async def test_cancelling_the_caller_cancels_the_task(self):
        tid = self.new_id("cc")
        proxy = OpenHandsAgentProxy(self.server.socket)
        job = asyncio.ensure_future(proxy.execute_development_task(
            "x", {"task_id": tid, "files": {"sleep": "60"}}))
        c = AgentboxClient(self.server.socket)

        async def calling():
            try:
                return "tool_call" in [e["type"] async for e in c.events(tid, follow=False)]
            except Exception:
                return False
        self.assertTrue(await eventually(calling))
        job.cancel()
        with self.assertRaises(asyncio.CancelledError):
            await job
        result = await c.wait(tid, timeout=60)
        self.assertEqual(result["status"], "cancelled")

    async def test_proxy_side_wait_timeout(self):
        tid = self.new_id("wt")
        out = await OpenHandsAgentProxy(self.server.socket, wait_timeout=0.5) \
            .execute_development_task("x", {"task_id": tid, "files": {"sleep": "60"}})
        self.assertFalse(out["success"])
        self.assertEqual(out["metadata"]["error"]["type"], "TIMEOUT_ERROR")
        result = await AgentboxClient(self.server.socket).wait(tid, timeout=60)
        self.assertEqual(result["status"], "cancelled")

    async def test_sync_wrapper_from_a_thread(self):
        box = {}

        def work():
            box["out"] = SyncAgentboxAgentProxy(self.server.socket).execute_development_task(
                "x", {"task_id": "sync-" + self.new_id()})
        th = threading.Thread(target=work)
        th.start()
        await asyncio.get_running_loop().run_in_executor(None, th.join)
        self.assertTrue(box["out"]["success"], box)
        self.assertEqual(set(box["out"]), SEED_KEYS)
        with self.assertRaises(RuntimeError):  # inside a running loop: use the async proxy
            SyncAgentboxAgentProxy(self.server.socket).execute_development_task("x")


class MockFallback(ServerTestCase):
    """A live server against the fake OpenRouter whose upstream is dead, with the mock
    fallback enabled: the proxy must say success False and metadata.mock True."""
    replay = False
    conversations = {"dead": [{"status": 503, "message": "Service Unavailable"}]}
    server_env = {"OPENHANDS_FALLBACK_TO_MOCK": "true"}

    async def test_mock_is_never_success(self):
        rec = Recorder()
        out = await OpenHandsAgentProxy(self.server.socket, event_callback=rec) \
            .execute_development_task("[conv:dead] do it", {"task_id": self.new_id("mock")})
        self.assertFalse(out["success"], out)
        self.assertTrue(out["metadata"]["mock"], out)
        self.assertEqual(out["metadata"]["status"], "mock")
        self.assertIn("mock", out["error"])
        self.assertIn("llm_error", rec.types())
        self.assertEqual(rec.types()[-1], "task_failed")
