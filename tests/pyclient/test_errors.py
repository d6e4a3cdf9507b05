"""The client's error paths against a tiny in-test server that misbehaves on purpose
(malformed, truncated, silent and unknown-code replies). Only for what a correct server never
does; everything else is tested against the real `agentbox serve` (test_client, test_proxy)."""
import asyncio
import os
import shutil
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))
from agentbox_client import (AgentboxClient, AgentboxConnectionError,  # noqa: E402
                             AgentboxProtocolError, AgentboxServerError, Forbidden, NoSpace,
                             QueueFull, ShuttingDown)


class Misbehaving(unittest.IsolatedAsyncioTestCase):
    async def asyncSetUp(self):
        self.tmp = tempfile.mkdtemp(prefix="agentbox-pyclient-err-")
        self.path = os.path.join(self.tmp, "s.sock")
        self.answer = b""
        self.close_after = True
        self.requests = []
        self.release = asyncio.Event()

        async def handle(reader, writer):
            self.requests.append(await reader.readline())
            writer.write(self.answer)
            await writer.drain()
            if not self.close_after:
                await self.release.wait()
            writer.close()

        self.server = await asyncio.start_unix_server(handle, self.path)
        self.c = AgentboxClient(self.path, connect_timeout=0.5, reconnect_timeout=0)

    async def asyncTearDown(self):
        self.release.set()
        await asyncio.sleep(0)
        self.server.close()
        await self.server.wait_closed()
        shutil.rmtree(self.tmp, ignore_errors=True)

    async def test_request_is_one_json_line(self):
        self.answer = b'{"ok":true,"id":"x"}\n'
        self.assertEqual(await self.c.submit({"prompt": "p"}), "x")
        self.assertEqual(self.requests, [b'{"op":"submit","task":{"prompt":"p"}}\n'])

    async def test_not_json(self):
        self.answer = b"hello\n"
        with self.assertRaises(AgentboxProtocolError):
            await self.c.health()

    async def test_no_ok_field(self):
        self.answer = b'{"status":"ok"}\n'
        with self.assertRaises(AgentboxProtocolError):
            await self.c.health()

    async def test_error_without_error_object(self):
        self.answer = b'{"ok":false}\n'
        with self.assertRaises(AgentboxProtocolError):
            await self.c.health()

    async def test_closed_mid_line(self):
        self.answer = b'{"ok":tr'
        with self.assertRaises(AgentboxConnectionError):
            await self.c.health()

    async def test_closed_without_reply(self):
        self.answer = b""
        with self.assertRaises(AgentboxConnectionError):
            await self.c.health()

    async def test_silent_server_times_out(self):
        self.answer = b""
        self.close_after = False
        with self.assertRaises(AgentboxConnectionError):
            await self.c.health()

    async def test_error_codes_map_to_classes(self):
        for code, cls in (("forbidden", Forbidden), ("queue_full", QueueFull),
                          ("shutting_down", ShuttingDown), ("no_space", NoSpace)):
            self.answer = b'{"ok":false,"error":{"code":"%s","message":"m"}}\n' % code.encode()
            with self.assertRaises(cls) as cm:
                await self.c.submit({"prompt": "p"})
            self.assertEqual((cm.exception.code, cm.exception.message), (code, "m"))
        self.answer = b'{"ok":false,"error":{"code":"brand_new","message":"m"}}\n'
        with self.assertRaises(AgentboxServerError) as cm:
            await self.c.health()
        self.assertEqual(cm.exception.code, "brand_new")

    async def test_event_stream_without_end_marker(self):
        self.answer = b'{"ok":true,"stream":true}\n{"seq":1,"type":"task_queued","task":"a"}\n'
        got = []
        with self.assertRaises(AgentboxConnectionError):
            async for ev in self.c.events("a"):
                got.append(ev["type"])
        self.assertEqual(got, ["task_queued"])

    async def test_oversized_reply(self):
        self.answer = b'{"ok":true,"text":"' + b"x" * 5000 + b'"}\n'
        c = AgentboxClient(self.path, reply_max_bytes=1024, reconnect_timeout=0)
        with self.assertRaises(AgentboxProtocolError):
            await c.metrics()
