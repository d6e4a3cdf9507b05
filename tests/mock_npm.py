"""Drives the independent OpenAI-compatible mock server of tests/mock-npm (the npm package
openai-mock-api, pinned; installed by `make deps`) for the llm and run suites. Owns the node
process (started per test, stopped by PID) and its config file. Listens on 127.0.0.1 only.
skip_reason() says in one line why the tests cannot run (no node, package not installed)."""
import json
import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
MOCK_DIR = os.path.join(HERE, "mock-npm")
PACKAGE = "openai-mock-api"


def skip_reason():
    if os.environ.get("AGENTBOX_IN_VM"):
        # the cgroup v2 VM runs the host's root read-only: the suites' own fake covers it there
        return "independent mock server: runs on the host only (not in the cgroup v2 VM)"
    if not shutil.which("node") or not shutil.which("npm"):
        return "node/npm not installed (make deps installs them): independent mock server tests skipped"
    if not os.path.isfile(os.path.join(MOCK_DIR, "node_modules", PACKAGE, "package.json")):
        return f"{PACKAGE} not installed in tests/mock-npm (make deps runs npm ci there): skipped"
    return None


def flow(marker, replies, tool_id="call_1"):
    """The package's config for one scripted agent conversation: reply k answers a request
    holding the system prompt, the task (containing marker) and k-1 earlier turns (each an
    assistant tool call and its result). Shortest flow first: the package picks the first
    of equally good matches, and a flow matches any request that is a prefix of it."""
    responses = []
    for k in range(1, len(replies) + 1):
        msgs = [{"role": "system", "matcher": "any"},
                {"role": "user", "content": marker, "matcher": "contains"}]
        for reply in replies[:k - 1]:
            msgs.append(reply)
            msgs.append({"role": "tool", "matcher": "any", "tool_call_id": tool_id})
        msgs.append(replies[k - 1])
        responses.append({"id": f"step{k}", "messages": msgs})
    return responses


def tool_reply(name, tool_id="call_1", **args):
    return {"role": "assistant", "tool_calls": [{"id": tool_id, "type": "function",
                                                 "function": {"name": name, "arguments": json.dumps(args)}}]}


class NpmMock:
    """One openai-mock-api process. Use as a context manager or start()/stop()."""

    def __init__(self, api_key, responses):
        self.config = {"apiKey": api_key, "responses": responses}
        self.proc = None
        self.port = None
        self.tmp = None

    @property
    def base_url(self):
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self):
        self.tmp = tempfile.mkdtemp(prefix="agentbox-npm-mock-")
        os.chmod(self.tmp, 0o755)
        cfg = os.path.join(self.tmp, "config.json")
        with open(cfg, "w") as f:
            json.dump(self.config, f)
        os.chmod(cfg, 0o644)
        self.proc = subprocess.Popen(["node", os.path.join(MOCK_DIR, "serve.js"), cfg], cwd=MOCK_DIR,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline()
        if not line.strip().isdigit():
            err = self.proc.stderr.read() if self.proc.poll() is not None else ""
            self.stop()
            raise RuntimeError(f"openai-mock-api did not start: {line!r} {err[-2000:]}")
        self.port = int(line)
        return self

    def stop(self):
        if self.proc:
            if self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(10)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(10)
            for s in (self.proc.stdout, self.proc.stderr):
                if s:
                    s.close()
            self.proc = None
        if self.tmp:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()
