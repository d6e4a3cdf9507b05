"""The API key never shows (stdout, stderr, events) even when the upstream echoes it back, and
the client refuses to send it in clear text to anything but loopback. Every run in this suite
also checks stdout/stderr/events for the key (llmtest_util.LLMTestCase.llm)."""
import json
import subprocess
import time
import unittest

from llmtest_util import AGENTBOX, LLMTestCase


class Secrets(LLMTestCase):
    def test_echoed_key_in_401_is_redacted(self):
        self.serve({"default": {"status": 401, "message": "Invalid credentials: ${AUTH}",
                                "raw": "{\"detail\": \"bad token ${AUTH}\"}"}})
        run = self.llm("hi", env={"OPENHANDS_LOG_LEVEL": "debug", "AGENTBOX_LOG_LEVEL": "debug"})
        self.assertResult(run, "escalated", 3)
        self.assertErrorType(run, "AUTHENTICATION_ERROR")
        # the message still says what happened, minus the key (checked by llm())
        self.assertIn("Invalid credentials", run.error.get("message", ""), run)

    def test_partial_key_echo_redacted(self):
        # The logging layer redacts "anything that looks like" the key. An upstream that
        # echoes most of it (a prefix, or the key minus its last character) must not leak 40+
        # characters of it either.
        secret = self.key[len("sk-or-v1-"):]
        for echoed in (self.key[:48] + "...", self.key[:-1]):
            with self.subTest(echoed=len(echoed)):
                self.serve({"default": {"status": 401, "message": f"Invalid key {echoed}",
                                        "raw": f"token={echoed}"}})
                run = self.llm("hi", "--events", "-")
                out = run.stdout + run.stderr
                leaked = [i for i in range(len(secret) - 24) if secret[i:i + 24] in out]
                self.assertEqual(leaked, [], f"24+ characters of the key appear in the output: {out[-600:]}")

    def test_echoed_key_in_5xx_and_stream(self):
        self.serve({"conversations": {"e": [
            {"status": 502, "message": "upstream said: key=${AUTH}"},
            {"kind": "stream", "content": "x", "error_after": 2,
             "error": {"code": 500, "message": "stream broke for ${AUTH}"}},
            {"content": "fine"}]}})
        run = self.llm("[conv:e] hi", "--stream", env={"OPENHANDS_LOG_LEVEL": "debug"})
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(len(self.reqs()), 3)

    def test_key_not_in_argv_of_request(self):
        # the key travels only in the Authorization header, never in the URL or body
        self.serve({})
        self.llm("hi")
        (r,) = self.reqs()
        self.assertTrue(r["auth_ok"])
        self.assertNotIn(self.key, r["path"] + r["query"] + str(r["body"]))
        self.assertNotIn(self.key, str({k: v for k, v in r["headers"].items()}))

    def test_key_gone_from_process_environment(self):
        # once read, the key leaves the environment block: /proc/PID/environ (readable by the
        # same user, and inherited by anything the process might start) no longer holds it
        self.serve({"default": {"kind": "hang"}})
        p = subprocess.Popen([AGENTBOX, "llm", "hi"], env=self.env({"OPENHANDS_TIMEOUT": "3"}),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=self.tmp)
        try:
            deadline = time.monotonic() + 2.5
            while not self.reqs() and time.monotonic() < deadline:
                time.sleep(0.02)
            self.assertTrue(self.reqs(), "no request arrived")
            with open(f"/proc/{p.pid}/environ", "rb") as f:
                environ = f.read()
            with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                cmdline = f.read()
        finally:
            out, err = p.communicate(timeout=30)
        self.assertNotIn(self.key.encode(), environ)
        self.assertNotIn(self.key.encode(), cmdline)
        self.assertNotIn(self.key.encode(), out + err)

    def test_plain_http_to_non_loopback_refused(self):
        # TEST-NET-1 (RFC 5737): never routed, so even a broken client sends nothing anywhere
        for url in ("http://192.0.2.1:9/api/v1", "http://example.invalid/api/v1"):
            with self.subTest(url=url):
                run = self.llm("hi", base_url=url, env={"OPENHANDS_LLM_TIMEOUT": "2"}, timeout=30)
                self.assertEqual(run.rc, 2, run)
                self.assertLess(run.elapsed, 2.0, "refused before any connection attempt")
                self.assertIn("http", run.stderr.lower())

    def test_https_and_loopback_http_accepted(self):
        self.serve({})
        for host in ("127.0.0.1", "localhost"):
            with self.subTest(host=host):
                run = self.llm("hi", base_url=f"http://{host}:{self.fake.port}/api/v1")
                self.assertResult(run, "succeeded", 0)

    def test_missing_key_is_config_error(self):
        self.serve({})
        env = self.env()
        del env["OPENROUTER_API_KEY"]
        proc = subprocess.run([AGENTBOX, "llm", "hi"], env=env, capture_output=True, text=True,
                              timeout=30, stdin=subprocess.DEVNULL)
        self.assertIn("OPENROUTER_API_KEY", proc.stderr)
        if proc.returncode == 2:  # refused before any request
            self.assertEqual(self.reqs(), [])
        else:
            # as built: a warning naming the variable, the request goes out without any
            # Authorization header (a local server may need none), a 401 escalates
            self.assertEqual(proc.returncode, 3, proc)
            (r,) = self.reqs()
            self.assertFalse(r["auth_present"])
            self.assertEqual(json.loads(proc.stdout)["error"]["type"], "AUTHENTICATION_ERROR")

    def test_invalid_setting_named(self):
        self.serve({})
        for var, val in (("OPENHANDS_TIMEOUT", "soon"), ("OPENHANDS_ENABLE_CIRCUIT_BREAKER", "maybe"),
                         ("OPENHANDS_FALLBACK_TO_MOCK", "2")):
            with self.subTest(var=var):
                run = self.llm("hi", env={var: val})
                self.assertEqual(run.rc, 2, run)
                self.assertIn(var, run.stderr)
        self.assertEqual(self.reqs(), [])


if __name__ == "__main__":
    unittest.main()
