"""Harness of the run suite: drives the real `agentbox run` against tests/fake_openrouter.py
(scripted conversations) or a --replay file. Owns each test's temp dirs, the fake server's
lifetime and the child's environment (a throw-away key, loopback base URL)."""
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fake_openrouter  # noqa: E402

AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "agentbox")
UNPRIVILEGED = os.environ.get("AGENTBOX_TEST_UNPRIVILEGED") == "1"


def call(name, **args):
    return {"name": name, "arguments": args}


def bash(command, **extra):
    return call("execute_bash", command=command, **extra)


def finish(message="done"):
    return call("finish", message=message)


class Run:
    def __init__(self, proc, state_root, elapsed):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed
        try:
            self.result = json.loads(proc.stdout)
        except ValueError:
            self.result = None
        self.events = []
        ef = (self.result or {}).get("events_file")
        if ef and os.path.exists(ef):
            with open(ef) as f:
                self.events = [json.loads(line) for line in f if line.strip()]

    def of(self, typ):
        return [e for e in self.events if e.get("type") == typ]

    def observations(self):
        return [e.get("observation", "") for e in self.of("tool_result")]

    def __repr__(self):
        return (f"<rc={self.rc} result={json.dumps(self.result)[:3000] if self.result else None} "
                f"stderr={self.stderr[-3000:]!r}>")


class RunTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if not os.access(AGENTBOX, os.X_OK):
            self.fail(f"agentbox binary not found at {AGENTBOX}")
        self.tmp = tempfile.mkdtemp(prefix="agentbox-run-test-")
        os.chmod(self.tmp, 0o755)
        self.state = os.path.join(self.tmp, "state")
        self.key = "sk-or-v1-" + secrets.token_hex(32)
        self.fake = None

    def tearDown(self):
        if self.fake:
            self.fake.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def serve(self, steps, conv="t"):
        """Starts the fake with one scripted conversation; returns the prompt marker."""
        self.fake = fake_openrouter.FakeOpenRouter(
            script={"key": self.key, "conversations": {conv: steps}}, key=self.key)
        self.fake.start()
        return f"[conv:{conv}]"

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENHANDS_", "OPENROUTER_"))}
        env.update({
            "OPENHANDS_WORKSPACE_ROOT": self.state,
            "OPENHANDS_MODEL": "test/primary",
            "OPENHANDS_CATALOG_FALLBACK": "false",
            "OPENHANDS_RETRY_BASE_DELAY": "0.05",
            "OPENHANDS_RETRY_MAX_DELAY": "0.2",
        })
        if self.fake:
            env["OPENHANDS_BASE_URL"] = self.fake.base_url
            env["OPENROUTER_API_KEY"] = self.key
        env.update(extra)
        return env

    def run_agent(self, *args, env=None, timeout=120, task=None, input_signal=None):
        argv = [AGENTBOX, "run", "--quiet"]
        if task is not None:
            path = os.path.join(self.tmp, "task.json")
            with open(path, "w") as f:
                json.dump(task, f)
            argv += ["--task-file", path]
        argv += list(args)
        t0 = time.monotonic()
        proc = subprocess.run(argv, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout)
        return Run(proc, self.state, time.monotonic() - t0)

    def assertStatus(self, run, status, rc):
        self.assertIsNotNone(run.result, run)
        self.assertEqual(run.result["status"], status, run)
        self.assertEqual(run.rc, rc, run)
