#!/usr/bin/env python3
"""Benchmarks of git workspaces and verify, through the real `agentbox run` against the fake
OpenRouter on loopback (tests/fake_openrouter.py; it stamps each request on arrival):
  1. submit to the agent's first LLM request for a git workspace of N files / M bytes
     (default 10,000 files, 100 MB of incompressible text), median of --runs, next to the
     same work done by hand on the host: `git worktree add` of the revision + `cp -a` of the
     tree (what a naive harness would do before starting an agent);
  2. the same task with a verify step (`true`): the verify cell's own wall time
     (verify.wall_s: a fresh cell seeded with the clone, the patch applied) and what it adds
     to the task's total.
usage: bench_git.py [--files N] [--mb M] [--runs R]   (env AGENTBOX)"""
import argparse
import base64
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
import fake_openrouter  # noqa: E402

AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(HERE, "..", "agentbox")
GIT_ENV = {"GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@x.invalid", "GIT_COMMITTER_NAME": "b",
           "GIT_COMMITTER_EMAIL": "b@x.invalid", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin",
           "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def make_repo(path, files, total):
    os.makedirs(path)
    subprocess.run(["git", "init", "-q", "-b", "main"], cwd=path, env=GIT_ENV, check=True)
    per = total // files
    for i in range(files):
        d = os.path.join(path, f"d{i // 100:03d}")
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, f"f{i:05d}.txt"), "wb") as f:
            f.write(base64.b64encode(os.urandom(per * 3 // 4))[:per])
    subprocess.run(["git", "add", "-A"], cwd=path, env=GIT_ENV, check=True)
    subprocess.run(["git", "commit", "-qm", "bench"], cwd=path, env=GIT_ENV, check=True)
    for root, ds, _ in os.walk(path):
        for n in ds:
            os.chmod(os.path.join(root, n), 0o755)


def host_reference(tmp, repo):
    wt = os.path.join(tmp, "wt")
    dst = os.path.join(tmp, "copy")
    t0 = time.perf_counter()
    subprocess.run(["git", "-C", repo, "worktree", "add", "-q", "--detach", wt, "HEAD"],
                   env=GIT_ENV, check=True)
    subprocess.run(["cp", "-a", wt, dst], check=True)
    dt = time.perf_counter() - t0
    subprocess.run(["git", "-C", repo, "worktree", "remove", "--force", wt], env=GIT_ENV, check=True)
    shutil.rmtree(dst)
    return dt


def one_task(tmp, repo, i, verify):
    key = "sk-or-v1-" + secrets.token_hex(32)
    steps = [{"tool_calls": [{"name": "finish", "arguments": {"message": "ok"}}]}]
    fake = fake_openrouter.FakeOpenRouter(script={"conversations": {"b": steps}}, key=key).start()
    try:
        state = os.path.join(tmp, "state")
        task = {"id": f"b{i}", "prompt": "[conv:b] go",
                "workspace": {"git": {"repo": repo, "rev": "HEAD"}},
                "limits": {"disk": "2G", "memory": "4G"}}
        if verify:
            task["verify"] = {"command": "true", "timeout_s": 600}
        tf = os.path.join(tmp, f"task{i}.json")
        with open(tf, "w") as f:
            json.dump(task, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENROUTER_", "OPENHANDS_"))}
        env.update({"OPENHANDS_WORKSPACE_ROOT": state, "OPENROUTER_API_KEY": key,
                    "OPENHANDS_BASE_URL": fake.base_url, "OPENHANDS_MODEL": "test/primary",
                    "OPENHANDS_CATALOG_FALLBACK": "false"})
        t0 = time.monotonic()
        p = subprocess.run([AGENTBOX, "run", "--quiet", "--task-file", tf], env=env,
                           capture_output=True, text=True, timeout=1200)
        total = time.monotonic() - t0
        if not p.stdout.strip():
            sys.exit(f"agentbox run gave no result ({p.returncode}): {p.stderr[-3000:]}")
        res = json.loads(p.stdout)
        if res["status"] != "succeeded":
            sys.exit(f"task failed: {p.stdout[-2000:]} {p.stderr[-2000:]}")
        first = fake.requests()[0]["t"] + fake._t0  # monotonic of the first request
        with open(res["events_file"]) as f:
            ev = {e["type"]: e for e in map(json.loads, f)}
        vspan = (ev["verify_finished"]["ts"] - ev["verify_started"]["ts"]) if verify else 0.0
        return first - t0, total, res, vspan
    finally:
        fake.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=10000)
    ap.add_argument("--mb", type=int, default=100)
    ap.add_argument("--runs", type=int, default=5)
    a = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="agentbox-bench-git-", dir="/var/tmp")
    os.chmod(tmp, 0o755)
    try:
        repo = os.path.join(tmp, "repo")
        t0 = time.perf_counter()
        make_repo(repo, a.files, a.mb * 1000 * 1000)
        print(f"repository: {a.files} files, {a.mb} MB (made in {time.perf_counter() - t0:.1f} s)")
        ref, first, total, tot_v, vwall, vstep = [], [], [], [], [], []
        for i in range(a.runs):
            ref.append(host_reference(tmp, repo))
            f, t, _, _ = one_task(tmp, repo, 2 * i, verify=False)
            first.append(f)
            total.append(t)
            _, tv, res, vspan = one_task(tmp, repo, 2 * i + 1, verify=True)
            tot_v.append(tv)
            vwall.append(res["verify"]["wall_s"])
            vstep.append(vspan)
        m = statistics.median
        print(f"host git worktree add + cp -a:            median {m(ref):.2f} s  {['%.2f' % x for x in ref]}")
        print(f"agentbox run: start to first LLM request: median {m(first):.2f} s  {['%.2f' % x for x in first]}"
              f"  ({m(first) / m(ref):.2f}x the host reference)")
        print(f"agentbox run total, no verify:            median {m(total):.2f} s")
        print(f"agentbox run total, verify 'true':        median {m(tot_v):.2f} s  (+{m(tot_v) - m(total):.2f} s)")
        print(f"verify step (verify_started to _finished): median {m(vstep):.2f} s  {['%.2f' % x for x in vstep]}")
        print(f"verify command's cell (verify.wall_s):    median {m(vwall):.2f} s  {['%.2f' % x for x in vwall]}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
