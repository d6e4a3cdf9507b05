"""Shared harness of the serve suite: starts the real `agentbox serve` on a socket in a temp
dir (offline with --replay files, or against tests/fake_openrouter.py on loopback with a
throw-away key) and talks the socket protocol. Kills only the processes it started."""
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fake_openrouter  # noqa: E402

AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "agentbox")
DATA_DIR = os.environ.get("AGENTBOX_DATA_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")


def finish_reply(message="done"):
    return {"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
        "name": "finish", "arguments": json.dumps({"message": message})}}]}


def bash_reply(command, i=1):
    return {"content": None, "tool_calls": [{"id": f"b{i}", "type": "function", "function": {
        "name": "execute_bash", "arguments": json.dumps({"command": command})}}]}


FAKE_FINISH = {"tool_calls": [{"name": "finish", "arguments": {"message": "done"}}]}


class Conn:
    """One client connection: JSON lines both ways."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        try:
            self.sock.connect(path)
        except OSError:
            self.sock.close()
            raise
        self.buf = b""

    def send(self, obj):
        self.sock.sendall((json.dumps(obj) + "\n").encode())

    def send_raw(self, data):
        self.sock.sendall(data)

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, obj):
        self.send(obj)
        return self.line()

    def stream(self):
        """After an events request: the event lines up to the end marker."""
        head = self.line()
        assert head == {"ok": True, "stream": True}, head
        out = []
        while True:
            ev = self.line()
            if ev.get("end") is True and ev.get("ok") is True:
                return out
            out.append(ev)

    def close(self):
        self.sock.close()


class ServeTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if not os.access(AGENTBOX, os.X_OK):
            self.fail(f"agentbox binary not found at {AGENTBOX} (set AGENTBOX)")
        self.tmp = tempfile.mkdtemp(prefix="agentbox-servetest-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.sock = os.path.join(self.tmp, "s.sock")
        self.state = os.path.join(self.tmp, "state")
        self.proc = None
        self.fake = None
        self.key = "sk-or-v1-" + secrets.token_hex(32)

    # ---- helpers
    def write_replay(self, replies, name="replay.json"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump({"description": "serve test", "replies": replies}, f)
        return path

    def start_fake(self, script):
        self.fake = fake_openrouter.FakeOpenRouter(script, key=self.key).start()
        self.addCleanup(self.fake.stop)
        return self.fake

    def env(self, extra=None):
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": self.tmp,
            "AGENTBOX_DATA_DIR": DATA_DIR,
            "OPENHANDS_WORKSPACE_ROOT": os.path.join(self.tmp, "ws"),
            "OPENHANDS_TIMEOUT": "60",
            "OPENHANDS_RETRY_BASE_DELAY": "0.05",
            "OPENHANDS_RETRY_MAX_DELAY": "0.2",
            "OPENHANDS_CATALOG_FALLBACK": "false",
            "OPENHANDS_MODEL": "test/primary",
        }
        if self.fake:
            env["OPENROUTER_API_KEY"] = self.key
            env["OPENHANDS_BASE_URL"] = self.fake.base_url
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        env.update(extra or {})
        return env

    def start_server(self, *args, replay=None, env=None, wait=True, preexec_fn=None):
        cmd = [AGENTBOX, "serve", "--socket", self.sock, "--state-dir", self.state]
        if replay:
            cmd += ["--replay", replay]
        cmd += list(args)
        self.log = open(os.path.join(self.tmp, "serve.log"), "ab")
        self.addCleanup(self.log.close)
        self.proc = subprocess.Popen(cmd, env=self.env(env), stdout=self.log,
                                     stderr=subprocess.STDOUT, preexec_fn=preexec_fn)
        self.addCleanup(self.kill_server)
        if wait:
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    self.fail(f"serve exited {self.proc.returncode}: {self.server_log()}")
                try:
                    c = Conn(self.sock, timeout=5)
                    c.close()
                    return self.proc
                except OSError:
                    time.sleep(0.02)
            self.fail("serve did not come up")
        return self.proc

    def server_log(self):
        try:
            with open(os.path.join(self.tmp, "serve.log"), "rb") as f:
                return f.read().decode(errors="replace")[-4000:]
        except OSError:
            return ""

    def kill_server(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def conn(self, timeout=60):
        c = Conn(self.sock, timeout=timeout)
        self.addCleanup(c.close)
        return c

    def submit(self, c, task):
        r = c.ask({"op": "submit", "task": task})
        self.assertTrue(r.get("ok"), r)
        return r["id"]

    def wait_result(self, c, tid, timeout_s=60):
        r = c.ask({"op": "wait", "id": tid, "timeout_s": timeout_s})
        self.assertTrue(r.get("ok"), r)
        return r["result"]

    def client(self, *args, timeout=60):
        return subprocess.run([AGENTBOX, *args, "--socket", self.sock], capture_output=True,
                              text=True, timeout=timeout, env=self.env())


def pid_alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
        return state != "Z"
    except OSError:
        return False


def signal_pid(proc, sig):
    if proc.poll() is None:
        os.kill(proc.pid, sig)
