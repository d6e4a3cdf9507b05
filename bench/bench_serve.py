#!/usr/bin/env python3
"""Benchmarks of `agentbox serve`, stdlib only, loopback only:
  1. throughput: N tasks (default 1000) with an instant LLM (a --replay of one `finish`
     call): tasks/s and submit-to-result latency p50/p99 (submit sent -> terminal event seen
     on an `events all` stream);
  2. memory: M tasks (default 500) held at once on a slow fake OpenRouter (every call
     delayed ~20 s), --jobs M: the summed PSS (/proc/PID/smaps_rollup) of the supervisor and
     every process below it, per task;
  3. broker overhead per LLM call: a task of K `think` steps through serve against an instant
     fake vs the same fake called directly by `agentbox llm --count`.
Writes its section of docs/benchmarks.md with --write-doc.

usage: bench_serve.py [--tasks 1000] [--jobs 16] [--hold 500] [--delay 20] [--steps 100]
                      [--write-doc] [--skip-memory]
"""
import argparse
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

import bench_exec  # beside this script: its timed posix_spawn

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "tests"))
import fake_openrouter  # noqa: E402

AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(ROOT, "agentbox")
KEY = "sk-or-v1-" + "0" * 64  # a throw-away key for the loopback fake
TERMINAL = {"task_completed", "task_failed", "task_timeout", "task_cancelled", "task_escalated"}


class Conn:
    def __init__(self, path, timeout=600):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.sock.connect(path)
        self.buf = b""

    def send(self, obj):
        self.sock.sendall((json.dumps(obj) + "\n").encode())

    def line(self):
        while b"\n" not in self.buf:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise EOFError
            self.buf += chunk
        line, self.buf = self.buf.split(b"\n", 1)
        return json.loads(line)

    def ask(self, obj):
        self.send(obj)
        return self.line()


class Server:
    def __init__(self, tmp, args, env):
        self.tmp = tmp
        self.sock = os.path.join(tmp, "s.sock")
        self.state = os.path.join(tmp, "state")
        self.log = open(os.path.join(tmp, "serve.log"), "ab")
        self.proc = subprocess.Popen([AGENTBOX, "serve", "--socket", self.sock, "--state-dir",
                                      self.state, *args], env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                Conn(self.sock, 5).sock.close()
                return
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("serve did not start")
                time.sleep(0.02)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()


def base_env(tmp, fake=None, extra=None):
    env = {"PATH": "/usr/bin:/bin", "HOME": tmp, "AGENTBOX_DATA_DIR": ROOT,
           "OPENHANDS_WORKSPACE_ROOT": os.path.join(tmp, "ws"), "OPENHANDS_MODEL": "test/bench",
           "OPENHANDS_CATALOG_FALLBACK": "false", "OPENHANDS_TIMEOUT": "300"}
    if fake:
        env.update(OPENROUTER_API_KEY=KEY, OPENHANDS_BASE_URL=fake.base_url)
    env.update(extra or {})
    return env


def pct(values, p):
    v = sorted(values)
    return v[min(len(v) - 1, int(round(p / 100.0 * (len(v) - 1))))]


# ---------------------------------------------------------------- 1. throughput
def finish_replay(tmp):
    replay = os.path.join(tmp, "finish.json")
    with open(replay, "w") as f:
        json.dump({"description": "one finish call", "replies": [{"content": None,
                   "tool_calls": [{"id": "c1", "type": "function", "function": {
                       "name": "finish", "arguments": "{\"message\": \"done\"}"}}]}]}, f)
    return replay


def cpu_jiffies():
    """(busy, total) clock ticks of the whole machine so far, from /proc/stat."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    idle = v[3] + v[4]  # idle, iowait
    return sum(v) - idle, sum(v)


def proc_cpu_s(pid):
    """CPU seconds of pid and of the children it reaped (utime, stime, cutime, cstime)."""
    with open(f"/proc/{pid}/stat") as f:
        v = f.read().rsplit(")", 1)[1].split()
    return sum(int(x) for x in v[11:15]) / os.sysconf("SC_CLK_TCK")


def exec_cell_cpu_ms(n=60):
    """CPU time (user+system, the process and what it reaped) of one `agentbox exec --
    /bin/true`, median of n: what one cell costs on its own, beside serve's figure. From
    wait4's rusage (microseconds), not os.times() (clock ticks: 10 ms steps), and started
    with bench_exec.py's posix_spawn: a fork of this Python process would charge the child
    with copy-on-write faults of Python's memory (9 ms here)."""
    devnull = os.open(os.devnull, os.O_RDWR)
    try:
        cpu = [bench_exec.spawn([AGENTBOX, "exec", "--", "/bin/true"], devnull)[1]
               for _ in range(n)]
    finally:
        os.close(devnull)
    return statistics.median(cpu) * 1000


def bench_throughput(n, jobs, rate=None, extra=()):
    """All n tasks at once (rate None), or paced: open loop, task i is sent at t0 + i/rate
    by one of 4 submitter connections (round robin), whether or not the earlier ones were
    answered, so a slow supervisor cannot slow the arrivals down."""
    tmp = tempfile.mkdtemp(prefix="bench-serve-")
    try:
        replay = finish_replay(tmp)
        srv = Server(tmp, ["--jobs", str(jobs), "--retain", str(n + 10), "--replay", replay,
                           *extra], base_env(tmp))
        ended = {}
        statuses = {}
        watcher = Conn(srv.sock)
        watcher.send({"op": "events", "id": "all", "follow": True})
        assert watcher.line() == {"ok": True, "stream": True}

        def watch():
            while len(ended) < n:
                ev = watcher.line()
                if ev.get("type") in TERMINAL:
                    ended[ev["task"]] = time.monotonic()
                    statuses[ev["task"]] = ev.get("status")
        wt = threading.Thread(target=watch, daemon=True)
        wt.start()
        submitted = {}
        conns = [Conn(srv.sock) for _ in range(4)]
        t0 = time.monotonic() + 0.05

        def submit(ci):
            c = conns[ci]
            for i in range(ci, n, len(conns)):
                tid = f"tp-{i}"
                if rate:
                    wait = t0 + i / rate - time.monotonic()
                    if wait > 0:
                        time.sleep(wait)
                submitted[tid] = time.monotonic()
                r = c.ask({"op": "submit", "task": {"prompt": "go", "id": tid}})
                assert r.get("ok"), r
        ts = [threading.Thread(target=submit, args=(i,)) for i in range(len(conns))]
        busy0, total0 = cpu_jiffies()
        serve0, me0 = proc_cpu_s(srv.proc.pid), time.process_time()
        for t in ts:
            t.start()
        for t in ts:
            t.join()
        wt.join(600)
        busy1, total1 = cpu_jiffies()
        serve1, me1 = proc_cpu_s(srv.proc.pid), time.process_time()
        elapsed = max(ended.values()) - t0
        cpu_ms = (busy1 - busy0) / os.sysconf("SC_CLK_TCK") * 1000 / n
        lat = [ended[k] - submitted[k] for k in submitted]
        ok = sum(1 for s in statuses.values() if s == "succeeded")
        srv.stop()
        return {"tasks": n, "jobs": jobs, "rate": rate, "succeeded": ok, "elapsed_s": elapsed,
                "tasks_per_s": n / elapsed, "p50_ms": pct(lat, 50) * 1000,
                "p99_ms": pct(lat, 99) * 1000,
                "cpu_busy_pct": 100.0 * (busy1 - busy0) / max(1, total1 - total0),
                "cpu_ms_per_task": cpu_ms,
                # serve with the cells it reaped (each agent's whole run), and this client
                "serve_cpu_ms_per_task": (serve1 - serve0) * 1000 / n,
                "client_cpu_ms_per_task": (me1 - me0) * 1000 / n,
                "ceiling_tasks_per_s": os.cpu_count() * 1000 / cpu_ms if cpu_ms else 0}
    finally:
        shutil.rmtree(tmp, True)


def bench_first_request(n, prewarm):
    """Submit to the first LLM request: n tasks one after the other on an idle supervisor
    (each submitted once the previous one ended), from the submit sent (client clock) to
    the `ts` of the task's llm_request event (the supervisor's clock, same host)."""
    tmp = tempfile.mkdtemp(prefix="bench-serve-first-")
    try:
        replay = finish_replay(tmp)
        args = ["--jobs", "4", "--retain", str(n + 10), "--replay", replay]
        if prewarm:
            args += ["--prewarm", str(prewarm)]
        srv = Server(tmp, args, base_env(tmp))
        watcher = Conn(srv.sock)
        watcher.send({"op": "events", "id": "all", "follow": True})
        assert watcher.line() == {"ok": True, "stream": True}
        c = Conn(srv.sock)
        time.sleep(1.0)  # the prepared cells, if any, are ready
        lat = []
        for i in range(n):
            tid = f"fr-{i}"
            sent = time.time()
            r = c.ask({"op": "submit", "task": {"prompt": "go", "id": tid}})
            assert r.get("ok"), r
            first = None
            while True:
                ev = watcher.line()
                if ev.get("task") != tid:
                    continue
                if ev.get("type") == "llm_request" and first is None:
                    first = ev["ts"]
                if ev.get("type") in TERMINAL:
                    break
            lat.append((first - sent) * 1000 if first else float("nan"))
            time.sleep(0.2 if prewarm else 0.02)  # the pool refills
        srv.stop()
        return {"tasks": n, "prewarm": prewarm, "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99)}
    finally:
        shutil.rmtree(tmp, True)


# ---------------------------------------------------------------- 2. memory
def proc_tree(root):
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [root]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def smaps(pid):
    vals = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as f:
            for line in f:
                m = re.match(r"(\w+):\s+(\d+) kB", line)
                if m:
                    vals[m.group(1)] = int(m.group(2))
        with open(f"/proc/{pid}/comm") as f:
            vals["comm"] = f.read().strip()
    except OSError:
        return None
    return vals


def bench_memory(m, delay):
    tmp = tempfile.mkdtemp(prefix="bench-serve-mem-")
    fake = fake_openrouter.FakeOpenRouter({"default": {
        "delay": delay, "tool_calls": [{"name": "finish", "arguments": {"message": "done"}}]}},
        key=KEY).start()
    try:
        srv = Server(tmp, ["--jobs", str(m), "--grace", "1"],
                     base_env(tmp, fake, {"OPENHANDS_LLM_TIMEOUT": str(delay * 3),
                                          "OPENHANDS_MAX_CONNECTIONS": str(m + 50)}))
        c = Conn(srv.sock)
        for i in range(m):
            r = c.ask({"op": "submit", "task": {"prompt": "hold", "id": f"m-{i}"}})
            assert r.get("ok"), r
        deadline = time.monotonic() + delay * 0.8
        while len(fake.requests()) < m and time.monotonic() < deadline:
            time.sleep(0.2)
        in_flight = len(fake.requests())
        running = c.ask({"op": "health"})["running"]
        time.sleep(1)
        pids = proc_tree(srv.proc.pid)
        per = {p: smaps(p) for p in pids}
        per = {p: v for p, v in per.items() if v}
        sup = per.get(srv.proc.pid, {})

        def pidns(p):
            try:
                return os.readlink(f"/proc/{p}/ns/pid")
            except OSError:
                return None
        own_ns = pidns(srv.proc.pid)
        # in a cell's pid namespace: the cell; in the supervisor's: its helpers (the sandbox's
        # cgroup janitor, one per supervisor, forked without exec)
        cells = [v for p, v in per.items() if p != srv.proc.pid and pidns(p) != own_ns]
        helpers = [v for p, v in per.items() if p != srv.proc.pid and pidns(p) == own_ns]
        total_pss = sum(v.get("Pss", 0) for v in per.values())
        cell_pss = sum(v.get("Pss", 0) for v in cells)
        res = {"held": m, "running": running, "llm_calls_in_flight": in_flight,
               "processes": len(per), "cell_processes": len(cells),
               "helper_processes": len(helpers), "supervisor_pss_kb": sup.get("Pss", 0),
               "supervisor_rss_kb": sup.get("Rss", 0), "cells_pss_kb": cell_pss,
               "helpers_pss_kb": sum(v.get("Pss", 0) for v in helpers),
               "total_pss_kb": total_pss, "per_task_kb": total_pss / max(1, running),
               "cell_pss_anon_kb": sum(v.get("Pss_Anon", 0) for v in cells),
               "cell_pss_file_kb": sum(v.get("Pss_File", 0) for v in cells),
               "comms": sorted({v["comm"] for v in cells})}
        srv.stop()
        return res
    finally:
        fake.stop()
        shutil.rmtree(tmp, True)


# ---------------------------------------------------------------- 3. broker overhead
def bench_overhead(steps):
    tmp = tempfile.mkdtemp(prefix="bench-serve-ovh-")
    # distinct thoughts: identical ones would (rightly) trip the agent's stuck detection
    thinks = [{"tool_calls": [{"name": "think", "arguments": {"thought": f"step {i}"}}]}
              for i in range(steps)]
    fin = {"tool_calls": [{"name": "finish", "arguments": {"message": "done"}}]}
    fake = fake_openrouter.FakeOpenRouter({"conversations": {"bench": thinks + [fin]},
                                           "default": {"content": "hi"}}, key=KEY).start()
    try:
        env = base_env(tmp, fake)
        srv = Server(tmp, ["--jobs", "1"], env)
        c = Conn(srv.sock)
        tid = c.ask({"op": "submit", "task": {"prompt": "[conv:bench] go", "id": "ovh",
                                              "max_iterations": steps + 5}})["id"]
        res = c.ask({"op": "wait", "id": tid, "timeout_s": 300})["result"]
        with open(os.path.join(srv.state, tid, "events.jsonl")) as f:
            evs = [json.loads(x) for x in f]
        srv.stop()
        # the direct client gets the body the agent sent halfway through (same size class)
        bodies = [r["body"] for r in fake.requests() if isinstance(r.get("body"), dict)]
        body = dict(bodies[len(bodies) // 2])
        body.pop("model", None)
        body_path = os.path.join(tmp, "body.json")
        with open(body_path, "w") as f:
            json.dump(body, f)
        direct = subprocess.run([AGENTBOX, "llm", "--count", str(steps * 2), "--parallel", "1",
                                 "--body", body_path], capture_output=True, text=True, env=env,
                                timeout=300)
        d = json.loads(direct.stdout)
        reqs = [e["ts"] for e in evs if e["type"] == "llm_request"]
        resps = [e for e in evs if e["type"] == "llm_response"]
        http = [r["latency_ms"] for r in resps]
        # one step = llm_request(k) .. llm_request(k+1): HTTP + broker + channel + agent
        step_ms = [(b - a) * 1000 for a, b in zip(reqs, reqs[1:])]
        # supervisor-side timestamps (the runner stamps the cell's events on receipt):
        # reply handed to the broker's callback -> the cell's tool_call received, and the
        # cell's tool_result received -> the next HTTP attempt started
        back, fwd = [], []
        for i, e in enumerate(evs):
            if e["type"] == "llm_response":
                nxt = next((x for x in evs[i + 1:] if x["type"] == "tool_call"), None)
                if nxt:
                    back.append((nxt["ts"] - e["ts"]) * 1000)
            if e["type"] == "tool_result":
                nxt = next((x for x in evs[i + 1:] if x["type"] == "llm_request"), None)
                if nxt:
                    fwd.append((nxt["ts"] - e["ts"]) * 1000)
        return {"steps": len(reqs), "status": res["status"], "body_bytes": len(json.dumps(body)),
                "direct_median_ms": d["median_ms"], "direct_p99_ms": d["p99_ms"],
                "serve_http_median_ms": pct(http, 50),
                "serve_step_median_ms": pct(step_ms, 50),
                "serve_outside_http_median_ms": pct(step_ms, 50) - pct(http, 50),
                "reply_to_tool_call_median_ms": pct(back, 50),
                "tool_result_to_request_median_ms": pct(fwd, 50)}
    finally:
        fake.stop()
        shutil.rmtree(tmp, True)


def dominant(mem):
    parts = {"the cells' pid 1 processes (private heap, stack, page tables; the binary's text "
             "is shared)": mem["cells_pss_kb"],
             "the cgroup janitor (copy-on-write pages of the supervisor it was forked from, "
             "page tables)": mem["helpers_pss_kb"],
             "the supervisor itself": mem["supervisor_pss_kb"]}
    name = max(parts, key=parts.get)
    return f"{name}, {parts[name] / max(1, mem['running']):.0f} KiB per task"


def write_doc(text):
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    doc = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    start, end = "<!-- bench_serve:start -->", "<!-- bench_serve:end -->"
    block = f"{start}\n{text}\n{end}"
    if start in doc:
        doc = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, doc, flags=re.S)
    else:
        doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    with open(path, "w") as f:
        f.write(doc)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=16)
    ap.add_argument("--hold", type=int, default=500)
    ap.add_argument("--delay", type=float, default=20.0)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--skip-memory", action="store_true")
    ap.add_argument("--paced-rate", type=float, default=0,
                    help="tasks/s of the paced run (default: half the measured throughput)")
    ap.add_argument("--prewarm", type=int, default=4,
                    help="--prewarm of the first-request run (and a run without)")
    ap.add_argument("--first", type=int, default=50, help="tasks of the first-request runs")
    ap.add_argument("--only", default="",
                    help="comma-separated: throughput,paced,first,memory,overhead (no doc)")
    ap.add_argument("--write-doc", action="store_true")
    a = ap.parse_args()
    only = set(filter(None, a.only.split(",")))
    if only:
        res = {}
        if "throughput" in only or ("paced" in only and not a.paced_rate):
            res["throughput"] = bench_throughput(a.tasks, a.jobs)
            print("throughput:", json.dumps(res["throughput"]), flush=True)
            print("exec cell CPU ms:", round(exec_cell_cpu_ms(), 2), flush=True)
        if "paced" in only:
            rate = a.paced_rate or res["throughput"]["tasks_per_s"] / 2
            print("paced:", json.dumps(bench_throughput(a.tasks, a.jobs, rate)), flush=True)
        if "first" in only:
            print("first:", json.dumps(bench_first_request(a.first, 0)), flush=True)
            if a.prewarm:
                print("first:", json.dumps(bench_first_request(a.first, a.prewarm)), flush=True)
        if "memory" in only:
            print("memory:", json.dumps(bench_memory(a.hold, a.delay)), flush=True)
        if "overhead" in only:
            print("overhead:", json.dumps(bench_overhead(a.steps)), flush=True)
        return
    tp = bench_throughput(a.tasks, a.jobs)
    print("throughput:", json.dumps(tp), flush=True)
    cell_ms = exec_cell_cpu_ms()
    print("exec cell CPU ms:", round(cell_ms, 2), flush=True)
    paced = bench_throughput(a.tasks, a.jobs, a.paced_rate or tp["tasks_per_s"] / 2)
    print("paced:", json.dumps(paced), flush=True)
    first0 = bench_first_request(a.first, 0)
    print("first:", json.dumps(first0), flush=True)
    firstw = bench_first_request(a.first, a.prewarm) if a.prewarm else None
    if firstw:
        print("first:", json.dumps(firstw), flush=True)
    mem = None if a.skip_memory else bench_memory(a.hold, a.delay)
    if mem:
        print("memory:", json.dumps(mem), flush=True)
    ovh = bench_overhead(a.steps)
    print("overhead:", json.dumps(ovh), flush=True)
    machine = f"{os.cpu_count()} vCPU, kernel {platform.release()}"
    lines = [
        "## Supervisor (`agentbox serve`)",
        "",
        f"Measured by `python3 bench/bench_serve.py --tasks {a.tasks} --jobs {a.jobs} "
        f"--hold {a.hold} --delay {a.delay:g} --steps {a.steps} --prewarm {a.prewarm} --first {a.first} "
        f"--write-doc` on {machine}, as root.",
        "",
        f"**Throughput** ({tp['tasks']} tasks, `--jobs {tp['jobs']}`, `--replay` of one `finish` "
        f"call, so every task is a real cell with the agent as pid 1 but no LLM wait): "
        f"{tp['succeeded']}/{tp['tasks']} succeeded in {tp['elapsed_s']:.1f} s = "
        f"**{tp['tasks_per_s']:.0f} tasks/s**; submit-to-result latency (submit sent to the "
        f"terminal event seen on an `events all` stream, all {tp['tasks']} submitted at once, so "
        f"it includes queueing behind {tp['jobs']} cells): p50 {tp['p50_ms']:.0f} ms, "
        f"p99 {tp['p99_ms']:.0f} ms. During it the machine was {tp['cpu_busy_pct']:.0f}% busy "
        f"(/proc/stat), {tp['cpu_ms_per_task']:.1f} ms of CPU per task, all processes: at that "
        f"cost {os.cpu_count()} CPUs finish at most {tp['ceiling_tasks_per_s']:.0f} tasks/s. In "
        f"that time serve and the cells it reaped (each agent's whole run and the kernel's work "
        f"for it) took {tp['serve_cpu_ms_per_task']:.1f} ms per task and this benchmark's own "
        f"client {tp['client_cpu_ms_per_task']:.1f} ms; in the same run one `agentbox exec -- "
        f"/bin/true` cell alone costs {cell_ms:.1f} ms of CPU (median of 60, from wait4). 250 "
        f"tasks/s on {os.cpu_count()} CPUs leaves {os.cpu_count() * 1000 / 250:.0f} ms per task for "
        f"all of it. The limit is CPU, not the loop: cells are "
        "made on spawner threads (supervisor/spawner.c) while the loop goes on accepting "
        "submits, so the latency above is queueing; a `perf` profile of the whole machine puts "
        "the time in the kernel (clone with new namespaces, mounts, cgroups, exec of the agent) "
        "and in ext4 allocating inodes for each task's state directory.",
        "",
        f"**Paced** (the same {paced['tasks']} tasks sent open loop at {paced['rate']:.0f} tasks/s, "
        "about half the throughput above: task i is sent at t0 + i/rate by one of 4 submitter "
        "connections, whether or not earlier ones were answered): "
        f"{paced['succeeded']}/{paced['tasks']} succeeded; submit-to-result p50 "
        f"{paced['p50_ms']:.0f} ms, **p99 {paced['p99_ms']:.0f} ms**.",
        "",
        f"**Submit to first LLM request** ({first0['tasks']} tasks one after the other on an idle "
        "`serve --jobs 4 --replay`, from the submit sent to the `ts` of the task's `llm_request` "
        f"event): without prepared cells p50 {first0['p50_ms']:.1f} ms, p99 "
        f"{first0['p99_ms']:.1f} ms"
        + (f"; with `--prewarm {firstw['prewarm']}` **p50 {firstw['p50_ms']:.1f} ms**, p99 "
           f"{firstw['p99_ms']:.1f} ms (the cell and its agent were made ahead; the task frame "
           "is sent at submit)." if firstw else "."),
        "",
    ]
    if mem:
        lines += [
            f"**Memory with {mem['held']} tasks held at once** (`--jobs {mem['held']}`, the fake "
            f"answers each call after {a.delay:g} s; {mem['running']} cells running and "
            f"{mem['llm_calls_in_flight']} LLM calls in flight at the measurement): summed PSS of "
            f"the supervisor and all {mem['processes'] - 1} processes below it = "
            f"{mem['total_pss_kb'] / 1024:.1f} MiB, **{mem['per_task_kb']:.0f} KiB per task** "
            f"(target <= 2048 KiB). Supervisor: PSS {mem['supervisor_pss_kb'] / 1024:.1f} MiB "
            f"(RSS {mem['supervisor_rss_kb'] / 1024:.1f} MiB) for all tasks together; "
            f"{mem['cell_processes']} cell processes (the agent as each cell's pid 1): "
            f"{mem['cells_pss_kb'] / 1024:.1f} MiB, of which anonymous "
            f"{mem['cell_pss_anon_kb'] / 1024:.1f} MiB and file-backed "
            f"{mem['cell_pss_file_kb'] / 1024:.1f} MiB; {mem['helper_processes']} helpers in the "
            f"supervisor's pid namespace (the sandbox's cgroup janitor, one per supervisor, "
            f"forked without exec, sharing the supervisor's pages): "
            f"{mem['helpers_pss_kb'] / 1024:.1f} MiB. Largest share: {dominant(mem)}.",
            "",
        ]
    lines += [
        f"**Broker overhead per LLM call** (instant fake on loopback): `agentbox llm --count "
        f"{a.steps * 2} --parallel 1 --body B` calling the fake directly, B being the request "
        f"the agent sent halfway through the task below ({ovh['body_bytes']} bytes): median "
        f"{ovh['direct_median_ms']:.2f} ms per call. Through serve, a task of {ovh['steps']} steps (`think` then `finish`): the "
        f"HTTP attempt itself (llm_request to llm_response, inside the supervisor) median "
        f"{ovh['serve_http_median_ms']:.2f} ms, a whole step (one llm_request to the next) median "
        f"{ovh['serve_step_median_ms']:.2f} ms. The difference, "
        f"**{ovh['serve_outside_http_median_ms']:.2f} ms per step**, is an upper bound on the "
        "broker's cost: it also holds the cell's side (the agent parsing the reply, running the "
        "tool, serializing its history) and the channel both ways. Split (supervisor-side "
        "timestamps): reply out of the HTTP client to the cell's `tool_call` back in the "
        f"supervisor {ovh['reply_to_tool_call_median_ms']:.2f} ms; the cell's `tool_result` to "
        f"the next HTTP attempt started {ovh['tool_result_to_request_median_ms']:.2f} ms "
        "(the agent rebuilding and sending its ~20 KB history is in there).",
    ]
    text = "\n".join(lines)
    print(text)
    if a.write_doc:
        write_doc(text)


if __name__ == "__main__":
    main()
