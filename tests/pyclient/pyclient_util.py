"""Harness of the Python client suite: a real `agentbox serve` per test class on a temp
socket, offline (--replay) or against tests/fake_openrouter.py, and the client package from
clients/python on sys.path. Owns the server's lifetime (SIGTERM, then SIGKILL) and temp dirs."""
import asyncio
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(ROOT, "clients", "python"))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import fake_openrouter  # noqa: E402

AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(ROOT, "agentbox")
DATA_DIR = os.environ.get("AGENTBOX_DATA_DIR") or ROOT


def reply(name, **args):
    return {"content": None, "tool_calls": [{"id": f"c_{name}", "type": "function",
                                             "function": {"name": name,
                                                          "arguments": json.dumps(args)}}]}


# One replay for every task: a bash step steered by the task's own workspace files (`sleep`
# seconds), then finish. So one offline server runs quick, slow and failing tasks.
STEER = "sleep \"$(cat sleep 2>/dev/null || echo 0)\"; echo hello > result.txt; cat result.txt"
REPLAY = {"description": "pyclient suite", "replies": [reply("execute_bash", command=STEER),
                                                       reply("finish", message="finished")]}


class Server:
    """`agentbox serve` on a temp socket."""

    def __init__(self, tmp, replay=None, env=None, jobs=4):
        self.tmp = tmp
        self.socket = os.path.join(tmp, "agentbox.sock")
        self.state = os.path.join(tmp, "state")
        argv = [AGENTBOX, "serve", "--socket", self.socket, "--state-dir", self.state,
                "--jobs", str(jobs), "--grace", "5"]
        if replay:
            argv += ["--replay", replay]
        e = {k: v for k, v in os.environ.items() if not k.startswith(("OPENHANDS_", "OPENROUTER_"))}
        e.update({"AGENTBOX_DATA_DIR": DATA_DIR, "OPENHANDS_CATALOG_FALLBACK": "false",
                  "OPENHANDS_MODEL": "test/primary"})
        e.update(env or {})
        self.log = open(os.path.join(tmp, "serve.log"), "w")
        # a working directory of its own, as a daemon has: paths relative to the client's
        # must never be read relative to this one
        self.cwd = os.path.join(tmp, "server-cwd")
        os.makedirs(self.cwd, exist_ok=True)
        self.proc = subprocess.Popen(argv, env=e, stdout=self.log, stderr=subprocess.STDOUT,
                                     cwd=self.cwd)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"agentbox serve exited {self.proc.returncode}: {self.read_log()}")
            if os.path.exists(self.socket) and self._health():
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"agentbox serve did not come up: {self.read_log()}")

    def _health(self):
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(2)
                s.connect(self.socket)
                s.sendall(b'{"op":"health"}\n')
                return b'"ok":true' in s.recv(65536)
        except OSError:
            return False

    def read_log(self):
        try:
            with open(os.path.join(self.tmp, "serve.log")) as f:
                return f.read()[-4000:]
        except OSError:
            return ""

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


class ServerTestCase(unittest.IsolatedAsyncioTestCase):
    """One server per test class (offline replay unless live() is used)."""
    maxDiff = None
    replay = True
    server_env = None

    @classmethod
    def setUpClass(cls):
        if not os.access(AGENTBOX, os.X_OK):
            raise unittest.SkipTest(f"agentbox binary not found at {AGENTBOX}")
        cls.tmp = tempfile.mkdtemp(prefix="agentbox-pyclient-")
        os.chmod(cls.tmp, 0o755)
        replay = None
        if cls.replay:
            replay = os.path.join(cls.tmp, "replay.json")
            with open(replay, "w") as f:
                json.dump(REPLAY, f)
        cls.fake = None
        env = dict(cls.server_env or {})
        if not cls.replay:
            cls.key = "sk-or-v1-" + secrets.token_hex(32)
            cls.fake = fake_openrouter.FakeOpenRouter(
                script={"key": cls.key, "conversations": cls.conversations}, key=cls.key)
            cls.fake.start()
            env.update({"OPENHANDS_BASE_URL": cls.fake.base_url, "OPENROUTER_API_KEY": cls.key,
                        "OPENHANDS_RETRY_BASE_DELAY": "0.02", "OPENHANDS_RETRY_MAX_DELAY": "0.1"})
        try:
            cls.server = Server(cls.tmp, replay=replay, env=env)
        except Exception:
            if cls.fake:
                cls.fake.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise

    @classmethod
    def tearDownClass(cls):
        cls.server.stop()
        if cls.fake:
            cls.fake.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)

    def new_id(self, prefix="t"):
        return f"{prefix}-{secrets.token_hex(4)}"


def sleeping_task(tid, seconds, **fields):
    return {"id": tid, "prompt": "go", "workspace": {"files": {"sleep": str(seconds)}}, **fields}


async def eventually(pred, timeout=20.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if await pred():
            return True
        await asyncio.sleep(0.05)
    return False
