"""Hostile or odd upstream answers and settings: oversized and deeply nested bodies, NULs and
bad UTF-8, Retry-After as an HTTP date, configured chains and attempt caps, the rate limiter,
and hundreds of calls in flight on one thread. Nothing may crash, hang or leak the key."""
import email.utils
import json
import subprocess
import threading
import time
import unittest

from llmtest_util import AGENTBOX, LLMTestCase

OK = {"content": "recovered"}


class HostileBodies(LLMTestCase):
    def test_deeply_nested_json(self):
        deep = "[" * 200000 + "]" * 200000
        self.serve({"conversations": {"d": [{"kind": "malformed", "body": deep}, OK]}})
        run = self.llm("[conv:d] hi")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.chosen()[0][0], "SDK_ERROR")

    def test_huge_body_bounded(self):
        # 64 MiB of content, past the 16 MiB a response body may have: refused as SDK_ERROR
        # with the cap named, never a crash and never a 64 MiB buffer
        self.serve({"default": {"content": "A" * (64 << 20)}})
        run = self.llm("hi", timeout=120)
        self.assertIsNotNone(run.json, run)
        self.assertEqual(run.rc, 1, run)
        self.assertErrorType(run, "SDK_ERROR")
        self.assertIn("larger than", json.dumps(run.json["error"]), run)

    def test_nul_and_control_chars_in_content(self):
        text = "a\u0000b\u001b[31mred\u0007 ü"
        self.serve({"default": {"content": text}})
        run = self.llm("hi")
        self.assertResult(run, "succeeded", 0)
        self.assertIn(run.json["message"]["content"], (text, text.replace("\u0000", "")))

    def test_invalid_utf8_body(self):
        raw = (b'{"id":"g","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant",'
               b'"content":"bad \xff\xfe bytes"}}],"usage":{"prompt_tokens":1,"completion_tokens":1,'
               b'"total_tokens":2}}').decode("latin-1")
        self.serve({"default": {"kind": "malformed", "body": raw}})
        proc = subprocess.run([AGENTBOX, "llm", "hi"], env=self.env(), capture_output=True, timeout=60,
                              cwd=self.tmp)
        self.assertIn(proc.returncode, (0, 1), proc)
        out = json.loads(proc.stdout)  # whatever it decides, its own output stays valid JSON
        self.assertIn(out["status"], ("succeeded", "failed"))

    def test_arguments_not_a_string(self):
        body = json.dumps({"id": "g", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                "name": "execute_bash", "arguments": {"command": "ls"}}}]}}],
            "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2}})
        self.serve({"default": {"kind": "malformed", "body": body}})
        run = self.llm("hi")
        self.assertIsNotNone(run.json, run)
        self.assertIn(run.rc, (0, 1), run)

    def test_usage_missing_or_junk(self):
        body = json.dumps({"id": "g", "choices": [{"index": 0, "finish_reason": "stop", "message": {
            "role": "assistant", "content": "hi"}}], "usage": {"prompt_tokens": "many", "cost": -5}})
        self.serve({"default": {"kind": "malformed", "body": body}})
        run = self.llm("hi")
        self.assertIsNotNone(run.json, run)
        self.assertIn(run.rc, (0, 1), run)
        if run.rc == 0:
            self.assertGreaterEqual(run.json["usage"].get("cost_usd", 0), 0)


class Transport(LLMTestCase):
    def test_slow_drip_stream_cut_by_call_timeout(self):
        # a stream that trickles one character every 0.1 s for 20 s is one call that never ends
        drip = {"kind": "stream", "content": "x" * 200, "chunk": 1, "chunk_delay": 0.1}
        self.serve({"conversations": {"s": [drip, OK]}})
        run = self.llm("[conv:s] hi", "--stream", env={"OPENHANDS_LLM_TIMEOUT": "1"})
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(len(self.reqs()), 2)
        self.assertLess(self.gaps()[0], 3.0, "per-call timeout did not cut the dripping stream")
        self.assertEqual(run.chosen()[0][0], "TIMEOUT_ERROR")

    def test_redirect_not_followed(self):
        # a 3xx pointing elsewhere must not carry the key to another host (nor be followed at all)
        self.serve({"default": {"kind": "error", "status": 307, "message": "moved",
                                "headers": {"Location": "http://192.0.2.1:9/api/v1/chat/completions"}}})
        run = self.llm("hi", env={"OPENHANDS_CONNECT_TIMEOUT": "3"})
        self.assertNotEqual(run.rc, 0, run)
        self.assertLess(run.elapsed, 2.5, "followed the redirect to an unroutable host")
        self.assertEqual(len(self.reqs()), 1)

    def test_server_closes_keepalive_between_calls(self):
        # the upstream answers with "Connection: close" semantics by dropping each connection
        # after its answer; the next call must open a new one, not fail
        self.serve({"default": {"content": "x", "close": True}})
        run = self.llm("hi", "--count", "5", "--parallel", "1")
        self.assertEqual(run.json["ok"], 5, run)
        self.assertEqual(run.json["http_requests"], 5, run)
        self.assertEqual(self.fake.stats()["connections"], 5)


class Settings(LLMTestCase):
    def test_retry_after_http_date(self):
        when = email.utils.formatdate(time.time() + 3, usegmt=True)
        self.serve({"conversations": {"r": [{"status": 429, "retry_after_header": when}, OK]}})
        run = self.llm("[conv:r] hi", env={"OPENHANDS_RETRY_AFTER_MAX": "10"})
        self.assertResult(run, "succeeded", 0)
        self.assertGreaterEqual(self.gaps()[0], 1.5)  # the date has 1 s resolution
        self.assertLess(self.gaps()[0], 4.5)

    def test_configured_chain(self):
        self.serve({"default": {"status": 503, "message": "down"}})
        run = self.llm("hi", env={"OPENHANDS_RECOVERY_CONNECTION_ERROR": "RETRY*1"})
        self.assertResult(run, "failed", 1)
        self.assertEqual(len(self.reqs()), 2)
        self.assertEqual(run.strategies, ["RETRY"])

    def test_invalid_chain_refused(self):
        self.serve({})
        for val in ("RETRY*0", "RETRY_SOMETIMES", "ESCALATE*2"):
            with self.subTest(val=val):
                run = self.llm("hi", env={"OPENHANDS_RECOVERY_CONNECTION_ERROR": val})
                self.assertEqual(run.rc, 2, run)
                self.assertIn("OPENHANDS_RECOVERY_CONNECTION_ERROR", run.stderr)
        self.assertEqual(self.reqs(), [])

    def test_max_attempts_caps_everything(self):
        self.serve({"default": {"status": 503, "message": "down"}})
        run = self.llm("hi", "--fallback", "test/b", "--fallback", "test/c",
                       env={"OPENHANDS_MAX_ATTEMPTS": "3"})
        self.assertNotEqual(run.rc, 0)
        self.assertEqual(len(self.reqs()), 3, run)

    def test_rate_limit_per_model(self):
        # 10 requests/s with a burst of 2: 8 calls cannot finish in under ~0.6 s
        self.serve({})
        run = self.llm("hi", "--count", "8", "--parallel", "8",
                       env={"OPENHANDS_RATE_LIMIT_RPM": "600", "OPENHANDS_RATE_LIMIT_BURST": "2"})
        self.assertEqual(run.json["ok"], 8, run)
        t = sorted(r["t"] for r in self.reqs())
        self.assertGreaterEqual(t[-1] - t[0], 0.5, t)


class ConfigFile(LLMTestCase):
    def write_conf(self, text):
        path = f"{self.tmp}/agentbox.conf"
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_file_then_environment_wins(self):
        self.serve({})
        conf = self.write_conf("# comment\nOPENHANDS_MODEL=file/model\nOPENHANDS_MAX_TOKENS=123\n")
        run = self.llm("hi", env={"AGENTBOX_CONFIG": conf, "OPENHANDS_MODEL": None})
        self.assertResult(run, "succeeded", 0)
        run = self.llm("hi", env={"AGENTBOX_CONFIG": conf, "OPENHANDS_MODEL": "env/model"})
        self.assertResult(run, "succeeded", 0)
        self.assertEqual([(r["model"], r["body"]["max_tokens"]) for r in self.reqs()],
                         [("file/model", 123), ("env/model", 123)])

    def test_key_from_file(self):
        self.serve({})
        conf = self.write_conf(f'OPENROUTER_API_KEY="{self.key}"\n')
        run = self.llm("hi", env={"AGENTBOX_CONFIG": conf, "OPENROUTER_API_KEY": None})
        self.assertResult(run, "succeeded", 0)
        self.assertTrue(self.reqs()[0]["auth_ok"])

    def test_bad_file_refused(self):
        self.serve({})
        for text in ("OPENHANDS_TIMEOUT=soon\n", "NOT_A_SETTING=1\n", "just words\n"):
            with self.subTest(text=text):
                run = self.llm("hi", env={"AGENTBOX_CONFIG": self.write_conf(text)})
                self.assertEqual(run.rc, 2, run)
                self.assertIn("agentbox.conf", run.stderr)
        run = self.llm("hi", env={"AGENTBOX_CONFIG": f"{self.tmp}/missing.conf"})
        self.assertEqual(run.rc, 2, run)
        self.assertEqual(self.reqs(), [])


class FreeModels(LLMTestCase):
    def test_free_model_rate_limit_applies_by_default(self):
        # ':free' models get 20 requests/minute with a
        # burst of 5 unless told otherwise: the 6th call waits ~3 s
        self.serve({})
        run = self.llm("hi", "--model", "vendor/model:free", "--count", "6", "--parallel", "6")
        self.assertEqual(run.json["ok"], 6, run)
        t = sorted(r["t"] for r in self.reqs())
        self.assertGreaterEqual(t[-1] - t[0], 2.5, t)
        self.assertLess(t[4] - t[0], 0.5, "the first five go at once (burst)")


class InFlight(LLMTestCase):
    def test_200_in_flight_on_one_thread(self):
        self.serve({"default": {"content": "x", "delay": 0.5}})
        threads = [0]
        procs = []
        orig = subprocess.run

        def watch():
            while not procs:
                time.sleep(0.01)
            p = procs[0]
            while p.poll() is None:
                try:
                    with open(f"/proc/{p.pid}/status") as f:
                        for line in f:
                            if line.startswith("Threads:"):
                                threads[0] = max(threads[0], int(line.split()[1]))
                except OSError:
                    pass
                time.sleep(0.02)

        def run_and_record(*a, **kw):  # subprocess.run with the child's pid visible to watch()
            p = subprocess.Popen(*a, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 **{k: v for k, v in kw.items() if k not in ("capture_output", "timeout")})
            procs.append(p)
            out, err = p.communicate(timeout=kw.get("timeout"))
            return subprocess.CompletedProcess(p.args, p.returncode, out, err)
        th = threading.Thread(target=watch, daemon=True)
        th.start()
        subprocess.run = run_and_record
        try:
            run = self.llm("hi", "--count", "200", "--parallel", "200")
        finally:
            subprocess.run = orig
            th.join(5)
        j = run.json
        self.assertEqual(j["ok"], 200, j)
        self.assertEqual(self.fake.stats()["max_in_flight"], 200)
        self.assertEqual(j["max_in_flight"], 200)
        self.assertLess(j["elapsed_s"], 2.0, j)
        self.assertEqual(threads[0], 1, "the client runs its requests on one thread")


if __name__ == "__main__":
    unittest.main()
