"""The fake OpenRouter itself (no agentbox): what the other tests rely on it to do. Raw sockets
and http.client only, so a fault in the fake is not hidden by a forgiving client."""
import asyncio
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
import unittest

from llmtest_util import fake_openrouter

KEY = "sk-or-v1-fake-self-test"


def post(port, body, key=KEY, path="/api/v1/chat/completions", headers=None):
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    h = {"Content-Type": "application/json", **(headers or {})}
    if key:
        h["Authorization"] = "Bearer " + key
    c.request("POST", path, json.dumps(body), h)
    r = c.getresponse()
    data = r.read()
    c.close()
    return r, data


def chat(conv="", model="m", stream=False):
    return {"model": model, "stream": stream, "messages": [{"role": "user", "content": conv + " hi"}]}


class Fake(unittest.TestCase):
    def setUp(self):
        self.fake = fake_openrouter.FakeOpenRouter({}, key=KEY).start()
        self.addCleanup(self.fake.stop)

    def test_auth_checked_and_never_recorded(self):
        r, _ = post(self.fake.port, chat(), key="wrong")
        self.assertEqual(r.status, 401)
        r, _ = post(self.fake.port, chat())
        self.assertEqual(r.status, 200)
        recs = self.fake.requests()
        self.assertEqual([x["auth_ok"] for x in recs], [False, True])
        self.assertNotIn(KEY, json.dumps(recs))

    def test_conversation_steps_then_last_repeats(self):
        self.fake.set_script({"key": KEY, "conversations": {"c": [
            {"status": 429, "retry_after_header": "2", "error_type": "rate_limit_exceeded"},
            {"content": "a"}]}})
        r, d = post(self.fake.port, chat("[conv:c]"))
        self.assertEqual((r.status, r.getheader("Retry-After")), (429, "2"))
        self.assertEqual(json.loads(d)["error"]["metadata"]["error_type"], "rate_limit_exceeded")
        for _ in range(2):
            r, d = post(self.fake.port, chat("[conv:c]"))
            self.assertEqual(json.loads(d)["choices"][0]["message"]["content"], "a")

    def test_models_mode_and_faults_are_seeded(self):
        def outcomes():
            self.fake.set_script({"key": KEY, "models": {"dead": {"status": 404, "message": "No endpoints found"}},
                                  "faults": {"rate": 0.5, "seed": 3, "kinds": ["502", "503"], "models": ["m"]}})
            got = []
            for _ in range(20):
                r, _ = post(self.fake.port, chat())
                got.append(r.status)
            r, _ = post(self.fake.port, chat(model="dead"))
            self.assertEqual(r.status, 404)
            return got
        a, b = outcomes(), outcomes()
        self.assertEqual(a, b)
        self.assertTrue({200, 502} <= set(a) or {200, 503} <= set(a), a)

    def test_expectations(self):
        self.fake.set_script({"key": KEY, "conversations": {"e": [
            {"expect_last": "tool said 42", "expect_last_role": "tool", "expect_tools": True, "content": "ok"}]}})
        body = chat("[conv:e]")
        r, d = post(self.fake.port, body)
        self.assertEqual(r.status, 400)
        self.assertIn("fake: expected", json.loads(d)["error"]["message"])
        body["messages"].append({"role": "tool", "tool_call_id": "c1", "content": "the tool said 42"})
        body["tools"] = [{"type": "function", "function": {"name": "finish"}}]
        r, d = post(self.fake.port, body)
        self.assertEqual(r.status, 200, d)
        self.assertEqual([x["kind"] for x in self.fake.requests()], ["expect_failed", "completion"])

    def test_sse_reassembles(self):
        tcs = [{"name": "execute_bash", "arguments": {"command": "echo hi"}},
               {"name": "finish", "arguments": {"message": "ok"}}]
        self.fake.set_script({"key": KEY, "default": {"kind": "stream", "content": "hello", "tool_calls": tcs,
                                                      "interleave": True, "write_split": 5}})
        r, d = post(self.fake.port, chat(stream=True))
        self.assertEqual(r.getheader("Content-Type"), "text/event-stream")
        text = d.decode()
        self.assertIn(": OPENROUTER PROCESSING", text)
        self.assertTrue(text.rstrip().endswith("data: [DONE]"))
        content, args, names, usage = "", {}, {}, None
        for line in text.splitlines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            ch = json.loads(line[6:])
            if not ch["choices"]:
                usage = ch["usage"]
                continue
            delta = ch["choices"][0]["delta"]
            content += delta.get("content") or ""
            for tc in delta.get("tool_calls") or []:
                if "id" in tc:
                    names[tc["index"]] = tc["function"]["name"]
                args[tc["index"]] = args.get(tc["index"], "") + tc["function"]["arguments"]
        self.assertEqual(content, "hello")
        self.assertEqual(names, {0: "execute_bash", 1: "finish"})
        self.assertEqual(json.loads(args[0]), {"command": "echo hi"})
        self.assertIn("cost", usage)

    def test_transport_faults(self):
        self.fake.set_script({"key": KEY, "conversations": {
            "r": [{"kind": "reset"}], "t": [{"kind": "truncate"}], "e": [{"kind": "empty"}],
            "m": [{"kind": "malformed"}]}})
        with self.assertRaises((ConnectionResetError, http.client.RemoteDisconnected)):
            post(self.fake.port, chat("[conv:r]"))
        with self.assertRaises(http.client.IncompleteRead):
            post(self.fake.port, chat("[conv:t]"))
        r, d = post(self.fake.port, chat("[conv:e]"))
        self.assertEqual((r.status, d), (200, b""))
        r, d = post(self.fake.port, chat("[conv:m]"))
        with self.assertRaises(ValueError):
            json.loads(d)

    def test_hang_does_not_block_stop(self):
        self.fake.set_script({"key": KEY, "default": {"kind": "hang"}})
        s = socket.create_connection(("127.0.0.1", self.fake.port))
        b = json.dumps(chat()).encode()
        s.sendall(b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                  + KEY.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(b) + b)
        time.sleep(0.2)
        self.assertEqual(self.fake.stats()["in_flight"], 1)
        t = time.monotonic()
        self.fake.stop()
        self.assertLess(time.monotonic() - t, 2)
        s.settimeout(2)
        self.assertEqual(s.recv(100), b"")
        s.close()

    def test_500_in_flight(self):
        self.fake.set_script({"key": KEY, "default": {"content": "x", "delay": 1.0}})
        body = json.dumps(chat()).encode()
        req = (b"POST /api/v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + KEY.encode()
               + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)

        async def one():
            r, w = await asyncio.open_connection("127.0.0.1", self.fake.port)
            w.write(req)
            await w.drain()
            line = await r.readline()
            w.close()
            return line
        t = time.monotonic()

        async def all_():
            return await asyncio.gather(*[one() for _ in range(500)])
        res = asyncio.run(all_())
        self.assertEqual(sum(1 for x in res if b" 200 " in x), 500)
        self.assertLess(time.monotonic() - t, 5)
        self.assertEqual(self.fake.stats()["max_in_flight"], 500)

    def test_control_endpoints_and_models(self):
        post(self.fake.port, chat())
        c = http.client.HTTPConnection("127.0.0.1", self.fake.port, timeout=5)
        c.request("GET", "/_fake/requests")
        self.assertEqual(len(json.loads(c.getresponse().read())["requests"]), 1)
        c.request("GET", "/api/v1/models?supported_parameters=tools")
        ids = [m["id"] for m in json.loads(c.getresponse().read())["data"]]
        self.assertIn("openrouter/free", ids)
        c.request("POST", "/_fake/script", json.dumps({"key": KEY, "default": {"content": "new"}}))
        c.getresponse().read()
        c.request("POST", "/_fake/reset", "")
        c.getresponse().read()
        c.close()
        self.assertEqual(self.fake.requests(), [])
        r, d = post(self.fake.port, chat())
        self.assertEqual(json.loads(d)["choices"][0]["message"]["content"], "new")

    def test_cli_prints_port_and_stops_on_sigterm(self):
        script = os.path.join(os.path.dirname(fake_openrouter.__file__), "fake_openrouter.py")
        p = subprocess.Popen([sys.executable, script, "--port", "0", "--key", KEY],
                             stdout=subprocess.PIPE, text=True)
        try:
            port = int(p.stdout.readline())
            r, _ = post(port, chat())
            self.assertEqual(r.status, 200)
        finally:
            p.send_signal(signal.SIGTERM)
            self.assertEqual(p.wait(10), 0)
            p.stdout.close()


if __name__ == "__main__":
    unittest.main()
