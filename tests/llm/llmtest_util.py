"""Shared harness of the llm suite: runs the real `agentbox llm` against tests/fake_openrouter.py.
Owns: the fake server's lifetime per test, the child's environment (a throw-away key, loopback
base URL, short delays), parsing of the result and events. Never talks to anything but loopback."""
import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fake_openrouter  # noqa: E402

AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "agentbox")
RUN_TIMEOUT_S = 60  # no single `agentbox llm` run in this suite may take longer

# The settings the suite shortens so that retries take milliseconds, not seconds
# (names from the llm branch's docs/configuration.md).
FAST_ENV = {
    "OPENHANDS_RETRY_BASE_DELAY": "0.05",
    "OPENHANDS_RETRY_MAX_DELAY": "0.4",
    "OPENHANDS_LLM_TIMEOUT": "10",
    "OPENHANDS_TIMEOUT": "30",
    # models_tried must be exactly what a test names, not the catalog's presets after them
    "OPENHANDS_CATALOG_FALLBACK": "false",
}


def new_key():
    # a key shaped like OpenRouter's so that any "looks like a key" redaction also applies
    return "sk-or-v1-" + secrets.token_hex(32)


class Run:
    """One finished `agentbox llm` invocation."""

    def __init__(self, proc, elapsed, events, t_start):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed
        self.events = events
        self.t_start = t_start
        try:
            self.json = json.loads(proc.stdout) if proc.stdout.strip() else None
        except ValueError:
            self.json = None

    @property
    def error(self):
        return (self.json or {}).get("error") or {}

    @property
    def strategies(self):
        return self.error.get("strategies") or []

    def events_of(self, typ):
        return [e for e in self.events if e.get("type") == typ]

    def chosen(self):
        """(error_type, strategy) of every llm_error event, in order."""
        return [(e.get("error_type"), e.get("strategy")) for e in self.events_of("llm_error")]

    def __repr__(self):
        return f"<rc={self.rc} stdout={self.stdout[:2000]!r} stderr={self.stderr[-2000:]!r}>"


class LLMTestCase(unittest.TestCase):
    """Each test: self.fake (started with self.script()), self.key, self.llm(...)."""

    maxDiff = None

    def setUp(self):
        if not os.access(AGENTBOX, os.X_OK):
            self.fail(f"agentbox binary not found at {AGENTBOX} (set AGENTBOX)")
        self.key = new_key()
        self.tmp = tempfile.mkdtemp(prefix="agentbox-llmtest-")
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.fake = None

    def serve(self, script, key=True):
        """Starts the fake with script; key=True: it demands self.key."""
        if self.fake is not None:
            self.fake.stop()
        self.fake = fake_openrouter.FakeOpenRouter(script, key=self.key if key is True else key).start()
        self.addCleanup(self.fake.stop)
        return self.fake

    def env(self, extra=None, base_url=None):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.tmp,
            "XDG_CONFIG_HOME": os.path.join(self.tmp, "config"),
            "OPENHANDS_WORKSPACE_ROOT": os.path.join(self.tmp, "ws"),
            "OPENROUTER_API_KEY": self.key,
            "OPENHANDS_BASE_URL": base_url or (self.fake.base_url if self.fake else "http://127.0.0.1:9/api/v1"),
            "OPENHANDS_MODEL": "test/primary",
            "OPENHANDS_ENABLE_CIRCUIT_BREAKER": "true",
            "OPENHANDS_FALLBACK_TO_MOCK": "false",
        }
        for k in ("AGENTBOX_DATA_DIR", "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        env.update(FAST_ENV)
        env.update(extra or {})
        return {k: v for k, v in env.items() if v is not None}

    def llm(self, prompt, *args, env=None, base_url=None, timeout=RUN_TIMEOUT_S):
        ev_path = os.path.join(self.tmp, f"events-{time.monotonic_ns()}.jsonl")
        argv = [AGENTBOX, "llm", "--events", ev_path, *args, prompt]
        t0 = time.monotonic()
        t_start = t0 - self.fake._t0 if self.fake else 0.0
        proc = subprocess.run(argv, env=self.env(env, base_url), capture_output=True, text=True,
                              timeout=timeout, stdin=subprocess.DEVNULL, cwd=self.tmp)
        elapsed = time.monotonic() - t0
        events = []
        if os.path.exists(ev_path):
            with open(ev_path) as f:
                for line in f:
                    if line.strip():
                        events.append(json.loads(line))
        run = Run(proc, elapsed, events, t_start)
        self.assertNotIn(self.key, run.stdout, "API key leaked to stdout")
        self.assertNotIn(self.key, run.stderr, "API key leaked to stderr")
        if os.path.exists(ev_path):
            with open(ev_path) as f:
                self.assertNotIn(self.key, f.read(), "API key leaked into events")
        self.assertNotIn("AddressSanitizer", run.stderr, run.stderr[-3000:])
        self.assertNotIn("runtime error:", run.stderr, run.stderr[-3000:])
        self.assertNotIn("LeakSanitizer", run.stderr, run.stderr[-3000:])
        return run

    def reqs(self):
        return self.fake.requests("/chat/completions")

    def gaps(self):
        """Seconds between the starts of consecutive chat requests."""
        t = [r["t"] for r in self.reqs()]
        return [b - a for a, b in zip(t, t[1:])]

    def assertResult(self, run, status, rc):
        self.assertIsNotNone(run.json, f"stdout is not one JSON object: {run!r}")
        self.assertEqual(run.json.get("status"), status, run)
        self.assertEqual(run.rc, rc, run)

    def assertErrorType(self, run, typ):
        self.assertEqual(run.error.get("type"), typ, run)
