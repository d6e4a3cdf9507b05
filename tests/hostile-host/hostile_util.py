"""Shared harness of the hostile-host suite: a local unprivileged attacker (a user this
module creates with useradd and removes with userdel, even when a test fails) against a
root agentbox (serve, exec, run, batch) on the same host. Each test asserts host-side
state: a canary file the attacker aims at is neither changed nor read, nothing is written
outside the state dir, the server still answers. Needs root; without it the suite skips.
Kills only the processes it started; stdlib only."""
import atexit
import json
import os
import pwd
import secrets
import shutil
import socket
import stat
import subprocess
import sys
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))

AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(HERE, "..", "..", "agentbox")
DATA_DIR = os.environ.get("AGENTBOX_DATA_DIR") or os.path.join(HERE, "..", "..")

IS_ROOT = os.geteuid() == 0
# the attacker's interpreter: the system one (the test's may live below /root)
ATTACKER_PYTHON = "/usr/bin/python3" if os.access("/usr/bin/python3", os.X_OK) else sys.executable
SKIP_REASON = "hostile-host: needs root (it attacks a root agentbox as a user it creates)"

FINISH = {"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
    "name": "finish", "arguments": json.dumps({"message": "done"})}}]}


class Attacker:
    """A throw-away local account; created on first use, removed at exit."""
    _made = None

    @classmethod
    def get(cls):
        if cls._made is None:
            name = "abxatk" + secrets.token_hex(3)
            subprocess.run(["useradd", "--no-create-home", "--home-dir", "/nonexistent",
                            "--shell", "/usr/sbin/nologin", "--user-group", name],
                           check=True, capture_output=True)
            atexit.register(cls._remove, name)
            pw = pwd.getpwnam(name)
            cls._made = (name, pw.pw_uid, pw.pw_gid)
        return cls._made

    @staticmethod
    def _remove(name):
        subprocess.run(["userdel", "--force", name], capture_output=True)


def as_attacker(argv, **kw):
    """Runs argv as the attacker (no root left: runuser drops all of it)."""
    name, _, _ = Attacker.get()
    return subprocess.run(["runuser", "-u", name, "--"] + list(argv), capture_output=True,
                          timeout=kw.pop("timeout", 60), **kw)


class Canary:
    """A root-owned file an attack aims at: its bytes and times must not move."""

    def __init__(self, dirpath, name="canary"):
        self.path = os.path.join(dirpath, name)
        self.text = b"canary " + secrets.token_hex(16).encode() + b"\n"
        with open(self.path, "wb") as f:
            f.write(self.text)
        os.chmod(self.path, 0o600)
        past = time.time() - 3600
        os.utime(self.path, (past, past))
        st = os.stat(self.path)
        self.atime, self.mtime = st.st_atime, st.st_mtime

    def assert_untouched(self, tc, read_too=True):
        st = os.stat(self.path)
        with open(self.path, "rb") as f:
            now = f.read()
        tc.assertEqual(now, self.text, f"{self.path} was written")
        tc.assertEqual(st.st_mtime, self.mtime, f"{self.path} was modified")
        if read_too:
            tc.assertEqual(st.st_atime, self.atime, f"{self.path} was read")
        os.utime(self.path, (self.atime, self.mtime))


def base_env(tmp, extra=None):
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": tmp,
        "AGENTBOX_DATA_DIR": DATA_DIR,
        "OPENHANDS_WORKSPACE_ROOT": os.path.join(tmp, "ws"),
        "OPENHANDS_TIMEOUT": "60",
        "OPENHANDS_CATALOG_FALLBACK": "false",
        "OPENHANDS_MODEL": "test/primary",
    }
    for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
        if k in os.environ:
            env[k] = os.environ[k]
    env.update(extra or {})
    return env


class Conn:
    """One socket client connection: JSON lines both ways."""

    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def ask(self, obj):
        self.sock.sendall((json.dumps(obj) + "\n").encode())
        return self.line()

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError("server closed the connection")
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def close(self):
        self.sock.close()


# A client that runs as the attacker: reads requests (one JSON per argv item) and prints
# each answer as one JSON line; an "events"/"wait" answer is read to its end marker.
CLIENT_SCRIPT = r'''
import json, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(float(sys.argv[2]))
s.connect(sys.argv[1])
buf = b""
def line():
    global buf
    while b"\n" not in buf:
        c = s.recv(1 << 20)
        if not c:
            raise SystemExit("closed")
        buf += c
    l, buf = buf.split(b"\n", 1)
    return json.loads(l)
for req in sys.argv[3:]:
    s.sendall(req.encode() + b"\n")
    a = line()
    out = [a]
    if a.get("stream") is True:
        try:
            while True:
                e = line()
                out.append(e)
                if e.get("end") is True:
                    break
        except socket.timeout:
            out.append({"client_timeout": True})  # a followed stream: what came so far
    print(json.dumps(out), flush=True)
'''


class HostileCase(unittest.TestCase):
    """A temp dir of root (0755 so the attacker can reach what it is given)."""
    maxDiff = None

    def setUp(self):
        if not IS_ROOT:
            self.skipTest(SKIP_REASON)
        if not os.access(AGENTBOX, os.X_OK):
            self.fail(f"agentbox binary not found at {AGENTBOX} (set AGENTBOX)")
        self.atk_name, self.atk_uid, self.atk_gid = Attacker.get()
        self.tmp = tempfile.mkdtemp(prefix="agentbox-hostile-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.procs = []
        self.addCleanup(self._kill_procs)

    def _kill_procs(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()

    def attacker_dir(self, path):
        """A directory the attacker owns (what a user can pre-create under /tmp)."""
        os.makedirs(path, exist_ok=True)
        os.chown(path, self.atk_uid, self.atk_gid)
        os.chmod(path, 0o755)
        return path

    def write_replay(self, replies=None, name="replay.json"):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            json.dump({"description": "hostile", "replies": replies or [FINISH]}, f)
        os.chmod(path, 0o644)
        return path

    def tree_snapshot(self, root):
        """Every path below root with its kind: to show nothing new appeared there."""
        out = set()
        for dp, dns, fns in os.walk(root):
            for n in dns + fns:
                out.add(os.path.relpath(os.path.join(dp, n), root))
        return out

    # ---- a root serve
    def start_serve(self, state, sock=None, args=(), env=None, wait=True):
        sock = sock or os.path.join(self.tmp, "s.sock")
        cmd = [AGENTBOX, "serve", "--socket", sock, "--state-dir", state,
               "--replay", self.write_replay()] + list(args)
        log = open(os.path.join(self.tmp, "serve.log"), "ab")
        self.addCleanup(log.close)
        p = subprocess.Popen(cmd, env=base_env(self.tmp, env), stdout=log,
                             stderr=subprocess.STDOUT)
        self.procs.append(p)
        self.sock = sock
        if not wait:
            return p
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if p.poll() is not None:
                return p
            try:
                Conn(sock, timeout=5).close()
                return p
            except OSError:
                time.sleep(0.05)
        self.fail("serve did not come up: " + self.serve_log())

    def serve_log(self):
        try:
            with open(os.path.join(self.tmp, "serve.log"), errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def stop_serve(self, p):
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def assert_health_fast(self, limit=0.1, tries=5):
        """health answered within limit seconds (best of a few: the machine is shared)."""
        best = None
        for _ in range(tries):
            c = Conn(self.sock, timeout=10)
            t0 = time.monotonic()
            a = c.ask({"op": "health"})
            dt = time.monotonic() - t0
            c.close()
            self.assertTrue(a.get("ok"), a)
            best = dt if best is None else min(best, dt)
            if best <= limit:
                return
        self.fail(f"health took {best * 1000:.0f} ms (limit {limit * 1000:.0f} ms)")

    def attacker_client(self, *requests, timeout=30):
        """Runs the requests as the attacker over the socket; returns the answers."""
        script = os.path.join(self.tmp, "atk_client.py")
        if not os.path.exists(script):
            with open(script, "w") as f:
                f.write(CLIENT_SCRIPT)
            os.chmod(script, 0o644)
        r = as_attacker([ATTACKER_PYTHON, script, self.sock, str(timeout)] +
                        [json.dumps(q) for q in requests], timeout=timeout + 30)
        self.assertEqual(r.returncode, 0, r.stderr.decode(errors="replace"))
        return [json.loads(line) for line in r.stdout.decode().splitlines()]

    def mode_of(self, path):
        return stat.S_IMODE(os.lstat(path).st_mode)


class _NotRoot(unittest.TestCase):
    def test_hostile_host(self):
        self.skipTest(SKIP_REASON)


_skip_said = False


def load_tests(loader, tests, pattern):
    """Each test module's load_tests: its tests as root; else one skip line for the whole
    suite (the first module says it, the others add nothing)."""
    global _skip_said
    if IS_ROOT:
        return tests
    suite = unittest.TestSuite()
    if not _skip_said:
        _skip_said = True
        suite.addTest(_NotRoot("test_hostile_host"))
    return suite
