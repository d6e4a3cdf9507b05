#!/usr/bin/env python3
"""Crash-loop benchmark of `agentbox serve`: M tasks (default 200) are submitted while the
supervisor is SIGKILLed N times (default 30) and restarted on the same state dir. Half of
the kills are timed at random (0.05-0.8 s after a start); the other half are armed through
the AGENTBOX_TEST_CRASH_AT hook at a random write of a task's end (mid result.json, after it,
after the terminal event, after the journal record, mid recovery), which random timing
almost never hits. A subscriber on `events all` records every terminal event seen live.
Then a last clean start, and each acknowledged task is checked:
  lost        acknowledged, but unknown after the restarts, or its result unreadable
  duplicated  more than one terminal event in its events.jsonl
  contradicted  its final status differs from a terminal event a subscriber saw
  re-run      it started again after a subscriber saw it end
Run once without and once with --requeue-interrupted. Stdlib only, loopback only.

usage: bench_crashloop.py [--tasks 200] [--kills 30] [--jobs 4] [--seed 1] [--write-doc]
"""
import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(ROOT, "agentbox")
TERMINAL = {"task_completed", "task_failed", "task_timeout", "task_cancelled", "task_escalated"}
END_POINTS = ["result-half", "after-result", "after-event", "after-journal"]
RECOVERY_POINTS = ["synth-result-half", "synth-after-result", "synth-after-event",
                   "recovery-after-event"]


class Conn:
    def __init__(self, path, timeout=30):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, obj):
        self.sock.sendall((json.dumps(obj) + "\n").encode())
        return self.line()

    def close(self):
        self.sock.close()


def reply(name, args, i):
    return {"content": None, "tool_calls": [{"id": f"c{i}", "type": "function", "function": {
        "name": name, "arguments": json.dumps(args)}}]}


class Loop:
    def __init__(self, tmp, args, jobs):
        self.tmp, self.args, self.jobs = tmp, args, jobs
        self.sock = os.path.join(tmp, "s.sock")
        self.state = os.path.join(tmp, "state")
        self.replay = os.path.join(tmp, "replay.json")
        with open(self.replay, "w") as f:
            json.dump({"description": "crash loop", "replies": [
                reply("execute_bash", {"command": "sleep 0.1"}, 1),
                reply("finish", {"message": "done"}, 2)]}, f)
        self.env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "AGENTBOX_DATA_DIR": ROOT,
                    "OPENHANDS_WORKSPACE_ROOT": os.path.join(tmp, "ws"),
                    "OPENHANDS_MODEL": "test/bench", "OPENHANDS_CATALOG_FALLBACK": "false"}
        self.log = open(os.path.join(tmp, "serve.log"), "ab")
        self.proc = None
        self.seen = {}  # id -> [status seen live]
        self.lock = threading.Lock()

    def start(self, point=None):
        env = dict(self.env)
        if point:
            env["AGENTBOX_TEST_CRASH_AT"] = point
        self.proc = subprocess.Popen(
            [AGENTBOX, "serve", "--socket", self.sock, "--state-dir", self.state, "--jobs",
             str(self.jobs), "--retain", "100000", "--replay", self.replay, *self.args],
            env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                if self.proc.returncode != -9:
                    self.log.flush()
                    with open(os.path.join(self.tmp, "serve.log"), "rb") as f:
                        tail = f.read()[-600:].decode(errors="replace")
                    raise RuntimeError(f"serve exited {self.proc.returncode}: {tail}")
                return False  # died in its recovery (an armed point)
            try:
                sub = Conn(self.sock, timeout=None)
                sub.sock.sendall(b'{"op":"events","id":"all","follow":true}\n')
                if sub.line().get("stream"):
                    threading.Thread(target=self.watch, args=(sub,), daemon=True).start()
                    return True
            except (OSError, EOFError, ValueError):
                time.sleep(0.02)
        raise RuntimeError("serve did not start")

    def watch(self, sub):
        try:
            while True:
                ev = sub.line()
                if ev.get("type") in TERMINAL:
                    with self.lock:
                        self.seen.setdefault(ev["task"], []).append(ev.get("status"))
        except (OSError, EOFError, ValueError):
            pass

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
        if self.proc:
            self.proc.wait()


def run(args, tasks, kills, jobs, seed):
    rng = random.Random(seed)
    tmp = tempfile.mkdtemp(prefix="bench-crashloop-")
    loop = Loop(tmp, args, jobs)
    acked, sent, armed_deaths, timed = [], 0, 0, 0
    t0 = time.monotonic()
    try:
        for k in range(kills):
            point = None
            if k % 2:
                pool = END_POINTS if rng.random() < 0.75 else RECOVERY_POINTS
                point = f"{rng.choice(pool)}:{rng.randint(1, 3)}"
            if not loop.start(point):
                armed_deaths += 1
                continue
            deadline = time.monotonic() + (rng.uniform(0.05, 0.8) if not point else 5.0)
            try:
                c = Conn(loop.sock)
                quota = sent + -(-tasks // (kills + 1))  # spread over every life
                while (sent < min(quota, tasks) and time.monotonic() < deadline
                       and loop.proc.poll() is None):
                    tid = f"t{sent}"
                    sent += 1
                    r = c.ask({"op": "submit", "task": {"prompt": "x", "id": tid}})
                    if r.get("ok"):
                        acked.append(tid)
                    time.sleep(0.01)
                c.close()
            except (OSError, EOFError, ValueError):
                pass  # the server died under the request: not acknowledged
            while loop.proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.01)
            if loop.proc.poll() is None:
                timed += 1
            else:
                armed_deaths += 1
            loop.kill()
        # the rest, then a clean end
        loop.start()
        c = Conn(loop.sock, timeout=300)
        while sent < tasks:
            tid = f"t{sent}"
            sent += 1
            if c.ask({"op": "submit", "task": {"prompt": "x", "id": tid}}).get("ok"):
                acked.append(tid)
        results = {}
        for tid in acked:
            r = c.ask({"op": "wait", "id": tid, "timeout_s": 300})
            results[tid] = r.get("result") if r.get("ok") else None
        time.sleep(0.3)
        c.close()
        loop.kill()
        wall = time.monotonic() - t0
        lost = dup = contra = rerun = interrupted = 0
        for tid in acked:
            res = results.get(tid)
            path = os.path.join(loop.state, tid, "result.json")
            try:
                with open(path) as f:
                    on_disk = json.load(f)
            except (OSError, ValueError):
                on_disk = None
            if not res or not on_disk or on_disk.get("status") != res.get("status"):
                lost += 1
                continue
            try:
                with open(os.path.join(loop.state, tid, "events.jsonl")) as f:
                    evs = [json.loads(x) for x in f if x.strip()]
            except (OSError, ValueError):
                evs = []
            terms = [e for e in evs if e.get("type") in TERMINAL]
            dup += len(terms) > 1
            live = loop.seen.get(tid, [])
            contra += any(s != res["status"] for s in live)
            rerun += bool(live) and len([e for e in evs if e["type"] == "task_started"]) > 1
            interrupted += "restart" in ((res.get("error") or {}).get("message") or "")
        return {"acknowledged": len(acked), "sent": sent, "kills": timed + armed_deaths,
                "timed_kills": timed, "crash_point_kills": armed_deaths, "lost": lost,
                "duplicated": dup, "contradicted": contra, "re_run": rerun,
                "failed_interrupted": interrupted, "wall_s": round(wall, 1)}
    finally:
        loop.kill()
        loop.log.close()
        shutil.rmtree(tmp, True)


def write_doc(text):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    doc = open(path).read()
    start, end = "<!-- bench_crashloop:start -->", "<!-- bench_crashloop:end -->"
    block = f"{start}\n{text}\n{end}"
    if start in doc:
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--kills", type=int, default=30)
    ap.add_argument("--jobs", type=int, default=4)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    rows = []
    for label, args in (("default", []), ("--requeue-interrupted", ["--requeue-interrupted"])):
        r = run(args, a.tasks, a.kills, a.jobs, a.seed)
        print(label, json.dumps(r), flush=True)
        rows.append((label, r))
    lines = [
        "### Crash loop (bench/bench_crashloop.py)",
        "",
        f"`python3 bench/bench_crashloop.py --tasks {a.tasks} --kills {a.kills} --jobs {a.jobs} "
        f"--seed {a.seed}`: serve SIGKILLed {a.kills} times while tasks are submitted (every "
        "other life armed at a random crash point of a task's end or of recovery via "
        "AGENTBOX_TEST_CRASH_AT; the other lives, and armed ones that do not reach their point "
        "within 5 s, are killed at a random moment: 'timed'); then a clean restart, and every "
        "acknowledged task is checked: lost = unknown or its result unreadable; duplicated = "
        "more than one terminal event in its events.jsonl; contradicted = its status differs "
        "from a terminal event a subscriber saw; re-run = started again after a subscriber saw "
        "it end. 'failed: interrupted' are tasks the default mode failed as interrupted by a "
        "restart (`--requeue-interrupted` runs them again instead).",
        "",
        "| mode | acknowledged | kills (timed / crash point) | lost | duplicated terminal "
        "events | contradicted | re-run after announced | failed: interrupted | wall s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for label, r in rows:
        lines.append(f"| {label} | {r['acknowledged']} | {r['kills']} ({r['timed_kills']} / "
                     f"{r['crash_point_kills']}) | {r['lost']} | {r['duplicated']} | "
                     f"{r['contradicted']} | {r['re_run']} | {r['failed_interrupted']} | "
                     f"{r['wall_s']} |")
    text = "\n".join(lines)
    print(text)
    if a.write_doc:
        write_doc(text)
    bad = sum(r["lost"] + r["duplicated"] + r["contradicted"] + r["re_run"] for _, r in rows)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
