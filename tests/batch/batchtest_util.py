"""Harness of the batch suite: writes JSONL batches and replay files, runs the real
`agentbox batch` (offline --replay, or against tests/fake_openrouter.py on loopback), reads
--out, --junit and the state dir back. Owns each test's temp dir; never leaves a process."""
import hashlib
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
DATA_DIR = os.environ.get("AGENTBOX_DATA_DIR") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..")
RUN_TIMEOUT_S = 120


def call(name, **args):
    return {"name": name, "arguments": args}


def replay_reply(name, **args):
    return {"content": None, "tool_calls": [{"id": f"c_{name}", "type": "function",
                                             "function": {"name": name,
                                                          "arguments": json.dumps(args)}}]}


# Every task of a replayed batch gets these replies from the first on. What a task does is
# steered by files in its own workspace: `sleep` (seconds to sleep), so one replay serves
# tasks that succeed, run long or time out.
STEER = ("sleep \"$(cat sleep 2>/dev/null || echo 0)\"; echo done-$(cat name 2>/dev/null) "
         "> result.txt; cat result.txt")
REPLAY = {"description": "batch suite: one bash step steered by workspace files, then finish",
          "replies": [replay_reply("execute_bash", command=STEER),
                      replay_reply("finish", message="finished")]}


def fnv1a64(text):
    h = 0xcbf29ce484222325
    for b in text.encode():
        h ^= b
        h = (h * 0x100000001b3) % (1 << 64)
    return h


def derived_id(line):
    return "task-" + hashlib.sha256(line.strip().encode()).hexdigest()[:16]


def task(tid=None, prompt="do it", sleep=None, name=None, **fields):
    t = {"prompt": prompt}
    if tid is not None:
        t["id"] = tid
    files = {}
    if sleep is not None:
        files["sleep"] = str(sleep)
    if name is not None:
        files["name"] = name
    if files:
        t["workspace"] = {"files": files}
    t.update(fields)
    return t


class Batch:
    """One finished `agentbox batch`."""

    def __init__(self, proc, out_path, elapsed):
        self.rc = proc.returncode
        self.stdout = proc.stdout
        self.stderr = proc.stderr
        self.elapsed = elapsed
        self.results = []
        text = proc.stdout
        if out_path and os.path.exists(out_path):
            with open(out_path) as f:
                text = f.read()
        for line in (text or "").splitlines():
            if line.strip():
                self.results.append(json.loads(line))

    def by_id(self):
        return {r["id"]: r for r in self.results}

    def statuses(self):
        return {r["id"]: r["status"] for r in self.results}

    def __repr__(self):
        return f"<rc={self.rc} results={self.statuses()} stderr={self.stderr[-3000:]!r}>"


class BatchTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if not os.access(AGENTBOX, os.X_OK):
            self.fail(f"agentbox binary not found at {AGENTBOX}")
        self.tmp = tempfile.mkdtemp(prefix="agentbox-batch-test-")
        os.chmod(self.tmp, 0o755)
        self.state = os.path.join(self.tmp, "state")
        self.replay = self.write("replay.json", json.dumps(REPLAY))
        self.fake = None
        self.key = "sk-or-v1-" + secrets.token_hex(32)
        self.procs = []

    def tearDown(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        if self.fake:
            self.fake.stop()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def batch_file(self, tasks, name="batch.jsonl"):
        lines = [t if isinstance(t, str) else json.dumps(t) for t in tasks]
        return self.write(name, "\n".join(lines) + "\n")

    def env(self, live=False, **extra):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENHANDS_", "OPENROUTER_"))}
        env.update({"OPENHANDS_WORKSPACE_ROOT": self.state, "AGENTBOX_DATA_DIR": DATA_DIR,
                    "OPENHANDS_CATALOG_FALLBACK": "false", "OPENHANDS_MODEL": "test/primary"})
        if live:
            env.update({"OPENHANDS_BASE_URL": self.fake.base_url,
                        "OPENROUTER_API_KEY": self.key,
                        "OPENHANDS_RETRY_BASE_DELAY": "0.02",
                        "OPENHANDS_RETRY_MAX_DELAY": "0.1"})
        env.update(extra)
        return env

    def argv(self, path, *args, replay=True, out="out.jsonl"):
        argv = [AGENTBOX, "batch", path]
        if out:
            argv += ["--out", os.path.join(self.tmp, out)]
        if replay:
            argv += ["--replay", self.replay]
        return argv + list(args)

    def run_batch(self, path, *args, replay=True, out="out.jsonl", env=None, timeout=RUN_TIMEOUT_S):
        argv = self.argv(path, *args, replay=replay, out=out)
        t0 = time.monotonic()
        proc = subprocess.run(argv, env=env or self.env(), capture_output=True, text=True,
                              timeout=timeout)
        return Batch(proc, os.path.join(self.tmp, out) if out else None, time.monotonic() - t0)

    def start_batch(self, path, *args, env=None):
        p = subprocess.Popen(self.argv(path, *args), env=env or self.env(),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def serve(self, conversations):
        self.fake = fake_openrouter.FakeOpenRouter(
            script={"key": self.key, "conversations": conversations}, key=self.key)
        self.fake.start()

    def events(self, tid):
        path = os.path.join(self.state, tid, "events.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]

    def processes_with(self, needle):
        """pids whose command line contains needle (bytes)."""
        found = []
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/cmdline", "rb") as f:
                    if needle in f.read():
                        found.append(int(d))
            except OSError:
                pass
        return found
