"""Harness of the seed-rights, kernel-counter and result-bound attacks on the supervisor side:
a throw-away local attacker user (useradd, removed after the test), a root-only canary tree
(a 0644 file in a 0755 directory below a 0700 root directory: protected only by that
directory), an inotify watch that says whether anything opened the canary, and runners for
`exec`, `run --replay` and `serve --replay` whose output is searched for the canary. Kills
only the processes it started."""
import ctypes
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import unittest

from hostile_util import AGENTBOX, ATTACKER_PYTHON, DATA_DIR, Attacker, base_env

IN_ACCESS, IN_OPEN, IN_NONBLOCK = 0x1, 0x20, 0o4000
USER_PYTHON = ATTACKER_PYTHON  # what the attacker runs
_libc = ctypes.CDLL(None, use_errno=True)


class OpenWatch:
    """inotify on one file: did anything open or read it since the watch began?"""

    def __init__(self, path):
        self.fd = _libc.inotify_init1(IN_NONBLOCK)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        if _libc.inotify_add_watch(self.fd, path.encode(), IN_OPEN | IN_ACCESS) < 0:
            os.close(self.fd)
            raise OSError(ctypes.get_errno(), "inotify_add_watch")

    def touched(self):
        try:
            data = os.read(self.fd, 4096)
        except BlockingIOError:
            return False
        return len(data) >= struct.calcsize("iIII")

    def close(self):
        os.close(self.fd)


def replay_file(dirpath, commands, name="replay.json"):
    """A --replay trajectory: one execute_bash per command, then finish."""
    replies = []
    for i, cmd in enumerate(commands):
        replies.append({"content": None, "tool_calls": [{
            "id": f"b{i}", "type": "function", "function": {
                "name": "execute_bash", "arguments": json.dumps({"command": cmd})}}]})
    replies.append({"content": None, "tool_calls": [{
        "id": "f", "type": "function", "function": {
            "name": "finish", "arguments": json.dumps({"message": "done"})}}]})
    path = os.path.join(dirpath, name)
    with open(path, "w") as f:
        json.dump({"description": "hostile-host test", "replies": replies}, f)
    os.chmod(path, 0o644)
    return path


class HostileHostCase(unittest.TestCase):
    """Root only: makes the attacker user, the canary tree and a scratch dir per test."""
    maxDiff = None

    def setUp(self):
        if os.geteuid() != 0:
            self.skipTest("needs root: attacks a root supervisor as another local user")
        if not os.access(AGENTBOX, os.X_OK):
            self.fail(f"agentbox binary not found at {AGENTBOX}")
        self.tmp = tempfile.mkdtemp(prefix="abx-hostile-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.make_attacker()
        # root's private tree: /tmp/abx-priv-X (0700) / pub (0755) / canary.txt (0644)
        self.priv = tempfile.mkdtemp(prefix="abx-priv-")
        os.chmod(self.priv, 0o700)
        self.addCleanup(shutil.rmtree, self.priv, True)
        self.pub = os.path.join(self.priv, "pub")
        os.mkdir(self.pub, 0o755)
        os.chmod(self.pub, 0o755)
        self.secret = "ABX-CANARY-" + secrets.token_hex(12)
        self.canary = os.path.join(self.pub, "canary.txt")
        with open(self.canary, "w") as f:
            f.write(self.secret + "\n")
        os.chmod(self.canary, 0o644)
        self.watch = OpenWatch(self.canary)
        self.addCleanup(self.watch.close)

    def make_attacker(self):
        self.atk, self.atk_uid, self.atk_gid = Attacker.get()

    def require_attacker_can_run_agentbox(self):
        for path in (AGENTBOX, os.path.join(DATA_DIR, "policies", "default.json")):
            if self.as_attacker("test", "-r", path).returncode != 0:
                self.skipTest(f"{path} is not readable by another user (a private checkout)")

    def attacker_dir(self, name="atk"):
        """A directory the attacker owns (0755), in the scratch dir."""
        d = os.path.join(self.tmp, name)
        os.mkdir(d)
        os.chown(d, self.atk_uid, self.atk_gid)
        return d

    def as_attacker(self, *argv, **kw):
        return subprocess.run(["runuser", "-u", self.atk, "--", *argv], capture_output=True,
                              text=True, **kw)

    def assertCanarySafe(self, *outputs):
        self.assertFalse(self.watch.touched(), "something opened or read the canary")
        with open(self.canary) as f:  # (after the watch: this read is ours)
            self.assertEqual(f.read(), self.secret + "\n", "the canary changed")
        self.watch.touched()
        for out in outputs:
            self.assertNotIn(self.secret, out if isinstance(out, str) else str(out))

    # ---- runners
    def exec_cat(self, seed, *extra):
        return subprocess.run([AGENTBOX, "exec", *extra, "--workspace-from", seed, "--",
                               "sh", "-c", "cat canary.txt */canary.txt 2>/dev/null; ls -R"],
                              capture_output=True, text=True, timeout=60, env=base_env(self.tmp))

    def run_task(self, task, commands):
        """`agentbox run --replay` of a task file; returns (proc, result or None, events text)."""
        rp = replay_file(self.tmp, commands)
        tf = os.path.join(self.tmp, "task.json")
        with open(tf, "w") as f:
            json.dump(task, f)
        p = subprocess.run([AGENTBOX, "run", "--quiet", "--replay", rp, "--task-file", tf],
                           capture_output=True, text=True, timeout=120, env=base_env(self.tmp))
        try:
            res = json.loads(p.stdout)
        except ValueError:
            res = None
        events = ""
        ef = (res or {}).get("events_file")
        if ef and os.path.exists(ef):
            with open(ef, errors="replace") as f:
                events = f.read()
        return p, res, events


class Server:
    """`agentbox serve --replay` as root, its socket open to one extra group."""

    def __init__(self, case, replay, group=None, uid=None):
        self.case = case
        self.sock = os.path.join(case.tmp, "s.sock")
        self.state = os.path.join(case.tmp, "state")
        args = [AGENTBOX, "serve", "--socket", self.sock, "--state-dir", self.state,
                "--replay", replay]
        if uid is not None:
            args += ["--allow-uid", str(uid)]
        self.log = open(os.path.join(case.tmp, "serve.log"), "ab")
        self.proc = subprocess.Popen(args, env=base_env(case.tmp), stdout=self.log,
                                     stderr=subprocess.STDOUT)
        case.addCleanup(self.stop)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                case.fail(f"serve exited {self.proc.returncode}: {self.text_log()}")
            try:
                s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                s.connect(self.sock)
                s.close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            case.fail("serve did not come up")
        if group is not None:
            os.chown(self.sock, 0, group)

    def text_log(self):
        with open(os.path.join(self.case.tmp, "serve.log"), "rb") as f:
            return f.read().decode(errors="replace")[-4000:]

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.log.close()

    def submit_as(self, user, task, timeout_s=60):
        """Submits task as user (runuser) and waits for its result; returns (reply, result,
        events text) as that user saw them."""
        script = (
            "import json,socket,sys\n"
            "s=socket.socket(socket.AF_UNIX,socket.SOCK_STREAM); s.settimeout(%d)\n"
            "s.connect(sys.argv[1]); f=s.makefile('rwb')\n"
            "def ask(o):\n"
            "    f.write((json.dumps(o)+'\\n').encode()); f.flush(); return json.loads(f.readline())\n"
            "r=ask({'op':'submit','task':json.loads(sys.argv[2])})\n"
            "out={'submit':r}\n"
            "if r.get('ok'):\n"
            "    out['wait']=ask({'op':'wait','id':r['id'],'timeout_s':%d})\n"
            "print(json.dumps(out))\n" % (timeout_s + 30, timeout_s))
        argv = [USER_PYTHON, "-c", script, self.sock, json.dumps(task)]
        if user is not None:
            argv = ["runuser", "-u", user, "--"] + argv
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s + 60,
                           cwd="/")
        self.case.assertEqual(p.returncode, 0, p.stderr)
        out = json.loads(p.stdout)
        res = (out.get("wait") or {}).get("result")
        events = ""
        ef = (res or {}).get("events_file")
        if ef and os.path.exists(ef):
            with open(ef, errors="replace") as f:
                events = f.read()
        return out["submit"], res, events
