"""Live check against the real OpenRouter: runs only when OPENROUTER_API_KEY is set (skipped
otherwise, so CI without a key stays green). Uses a free model and a tiny max_tokens."""
import json
import os
import subprocess
import tempfile
import unittest

from llmtest_util import AGENTBOX

KEY = os.environ.get("OPENROUTER_API_KEY")
MODEL = os.environ.get("AGENTBOX_LIVE_MODEL", "openrouter/free")


@unittest.skipUnless(KEY, "OPENROUTER_API_KEY not set: live OpenRouter test skipped")
class Live(unittest.TestCase):
    def run_llm(self, *args, env=None):
        with tempfile.TemporaryDirectory() as tmp:
            e = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tmp,
                 "OPENROUTER_API_KEY": KEY, "OPENHANDS_MODEL": MODEL,
                 "OPENHANDS_WORKSPACE_ROOT": os.path.join(tmp, "ws"), "OPENHANDS_TIMEOUT": "120"}
            for k in ("AGENTBOX_DATA_DIR", "OPENHANDS_BASE_URL", "ASAN_OPTIONS"):
                if k in os.environ:
                    e[k] = os.environ[k]
            e.update(env or {})
            ev = os.path.join(tmp, "events.jsonl")
            p = subprocess.run([AGENTBOX, "llm", "--events", ev, "--max-tokens", "32", *args],
                               env=e, capture_output=True, text=True, timeout=180,
                               stdin=subprocess.DEVNULL)
            events = open(ev).read() if os.path.exists(ev) else ""
        for where in (p.stdout, p.stderr, events):
            self.assertNotIn(KEY, where, "API key leaked")
        return p, json.loads(p.stdout)

    def test_live_completion(self):
        p, j = self.run_llm("Reply with the single word: pong")
        # free models are rate limited: a 429 after every retry is an honest outcome, not a bug
        if j["status"] != "succeeded" and (j.get("error") or {}).get("type") == "RATE_LIMIT_ERROR":
            self.skipTest(f"free model rate limited: {j['error']['message']}")
        self.assertEqual(j["status"], "succeeded", p.stdout + p.stderr)
        self.assertEqual(p.returncode, 0)
        self.assertIsInstance(j["message"].get("content"), (str, type(None)))
        self.assertGreater(j["usage"]["total_tokens"], 0)

    def test_live_bad_key_escalates(self):
        p, j = self.run_llm("hi", env={"OPENROUTER_API_KEY": "sk-or-v1-" + "0" * 64})
        self.assertEqual(j["status"], "escalated", p.stdout)
        self.assertEqual(j["error"]["type"], "AUTHENTICATION_ERROR")
        self.assertEqual(p.returncode, 3)


if __name__ == "__main__":
    unittest.main()
