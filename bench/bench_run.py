#!/usr/bin/env python3
"""Benchmarks of the agent loop, through the real `agentbox run` with --replay
(an instant LLM, no network), so that what is measured is agentbox itself:
  1. loop overhead per step with a 200-event, ~2 MB history: the time from one tool result
     to the next tool call (history, condensation check, channel, supervisor, replay, events);
  2. a tool round trip: `true` through execute_bash (the tool_result's duration_s);
  3. the broker's own cost per LLM call on the live path (fake OpenRouter on loopback);
  4. throughput of 3-step tasks next to the same commands run by plain bash in the same run.
Prints medians and ratios. usage: bench_run.py [--tasks N]   (env AGENTBOX)"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(HERE, "..", "agentbox")


def reply(i, name, **args):
    return {"content": None, "tool_calls": [{"id": f"c{i}", "type": "function",
            "function": {"name": name, "arguments": json.dumps(args)}}]}


def write_replay(path, replies):
    with open(path, "w") as f:
        json.dump({"description": "benchmark", "replies": replies}, f)


def run_task(tmp, replay, prompt="bench", extra=()):
    state = os.path.join(tmp, "state")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "OPENHANDS_"))}
    env["OPENHANDS_WORKSPACE_ROOT"] = state
    t0 = time.perf_counter()
    p = subprocess.run([AGENTBOX, "run", "--quiet", "--replay", replay, *extra, prompt],
                       env=env, capture_output=True, text=True, timeout=600)
    wall = time.perf_counter() - t0
    if p.returncode != 0:
        sys.exit(f"agentbox run failed ({p.returncode}): {p.stderr[-2000:]}")
    res = json.loads(p.stdout)
    with open(res["events_file"]) as f:
        events = [json.loads(line) for line in f]
    return wall, res, events


def loop_overhead(tmp):
    # 200 steps whose observations are ~10 KB each: the history passes 2 MB by the end
    steps = 200
    replies = [reply(i, "execute_bash", command=f"head -c 10000 /dev/zero | tr '\\0' 'a'; echo {i}")
               for i in range(steps)] + [reply(steps, "finish", message="done")]
    path = os.path.join(tmp, "loop.json")
    write_replay(path, replies)
    # a large-context model so that the history is never condensed away
    _, res, events = run_task(tmp, path, extra=("--max-iterations", str(steps + 1),
                                                "--model", "gemini-flash"))
    calls = [e for e in events if e["type"] == "tool_call"]
    results = [e for e in events if e["type"] == "tool_result"]
    gaps = [calls[i + 1]["ts"] - results[i]["ts"] for i in range(len(results) - 1)]
    hist_bytes = steps * 10_100
    return gaps, hist_bytes, res


def tool_round_trip(tmp):
    n = 200
    replies = [reply(i, "execute_bash", command=f"true {i}") for i in range(n)] + \
              [reply(n, "finish", message="done")]
    path = os.path.join(tmp, "rt.json")
    write_replay(path, replies)
    _, _, events = run_task(tmp, path, extra=("--max-iterations", str(n + 1)))
    return [e["duration_s"] for e in events if e["type"] == "tool_result" and e["tool"] == "execute_bash"]


def throughput(tmp, tasks):
    path = os.path.join(tmp, "three.json")
    write_replay(path, [reply(0, "execute_bash", command="echo hello > a.txt"),
                        reply(1, "execute_bash", command="cat a.txt | wc -c"),
                        reply(2, "finish", message="done")])
    ab, sh = [], []
    for _ in range(tasks):  # interleaved: both see the same machine state
        wall, res, _ = run_task(tmp, path)
        assert res["status"] == "succeeded", res
        ab.append(wall)
        d = tempfile.mkdtemp(dir=tmp)
        t0 = time.perf_counter()
        subprocess.run(["bash", "-c", "cd \"$1\" && echo hello > a.txt && cat a.txt | wc -c", "bash", d],
                       capture_output=True, check=True)
        sh.append(time.perf_counter() - t0)
    return ab, sh


def broker_overhead(tmp, steps, out_bytes):
    """The live path (fake OpenRouter on loopback): the supervisor's own time per LLM call
    (validation, serialization, channel), from the terminal event's broker_overhead_ms."""
    sys.path.insert(0, os.path.join(HERE, "..", "tests"))
    import fake_openrouter
    key = "sk-or-v1-bench" + "0" * 50
    conv = [{"tool_calls": [{"name": "execute_bash",
                             "arguments": {"command": f"head -c {out_bytes} /dev/zero | tr '\\0' 'a'; echo {i}"}}]}
            for i in range(steps)] + [{"tool_calls": [{"name": "finish", "arguments": {"message": "done"}}]}]
    fake = fake_openrouter.FakeOpenRouter(script={"key": key, "conversations": {"b": conv}}, key=key)
    fake.start()
    try:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "OPENHANDS_"))}
        env.update({"OPENHANDS_WORKSPACE_ROOT": os.path.join(tmp, "state"), "OPENROUTER_API_KEY": key,
                    "OPENHANDS_BASE_URL": fake.base_url, "OPENHANDS_CATALOG_FALLBACK": "false",
                    "OPENHANDS_RATE_LIMIT_FREE_RPM": "0"})
        p = subprocess.run([AGENTBOX, "run", "--quiet", "--model", "gemini-flash", "--max-iterations",
                            str(steps + 1), "[conv:b] bench"], env=env, capture_output=True, text=True,
                           timeout=600)
        res = json.loads(p.stdout)
        assert res["status"] == "succeeded", (res.get("error"), p.stderr[-500:])
        with open(res["events_file"]) as f:
            last = [json.loads(line) for line in f][-1]
        return last["broker_overhead_ms"], last["broker_overhead_mean_ms"], last["llm_calls"]
    finally:
        fake.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tasks", type=int, default=50)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="agentbox-bench-run-")
    try:
        gaps, hist_bytes, res = loop_overhead(tmp)
        tail = gaps[-50:]
        print(f"loop overhead per step (200 steps, history ~{hist_bytes / 1e6:.1f} MB at the end):")
        print(f"  median {statistics.median(gaps) * 1e3:.2f} ms, last 50 steps median "
              f"{statistics.median(tail) * 1e3:.2f} ms, p90 {sorted(tail)[int(len(tail) * 0.9)] * 1e3:.2f} ms"
              f"  (target <= 5 ms)")
        rt = tool_round_trip(tmp)
        print(f"tool round trip (`true` via execute_bash, {len(rt)} calls): median "
              f"{statistics.median(rt) * 1e3:.2f} ms, p90 {sorted(rt)[int(len(rt) * 0.9)] * 1e3:.2f} ms"
              f"  (target <= 1.5 ms)")
        for steps, size in ((20, 100), (200, 10_000)):
            med, mean, calls = broker_overhead(tmp, steps, size)
            print(f"broker overhead per LLM call, live path ({calls} calls, history up to "
                  f"~{steps * (size + 100) / 1e6:.2f} MB): median {med:.3f} ms, mean {mean:.3f} ms"
                  f"  (target <= 0.3 ms)")
        ab, sh = throughput(tmp, args.tasks)
        m_ab, m_sh = statistics.median(ab), statistics.median(sh)
        print(f"3-step tasks ({args.tasks}, sequential, instant replay LLM): median {m_ab * 1e3:.1f} ms "
              f"per task = {1 / m_ab:.1f} tasks/s; plain bash running the same commands: "
              f"{m_sh * 1e3:.2f} ms; ratio {m_ab / m_sh:.1f}x")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
