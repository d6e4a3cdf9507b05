"""End-to-end agent tasks through the real `agentbox run`: the loop in a cell, real tools,
the LLM scripted by the fake OpenRouter (or a replay file), results checked on the host."""
import json
import os
import re
import signal
import subprocess
import time
import unittest

from runtest_util import AGENTBOX, RunTestCase, bash, call, finish

PROG = "#include <stdio.h>\nint main(void){int s=0;for(int i=1;i<=10;i++)s+=i;printf(\"sum=%d\\n\",s);return 0;}\n"



def run_with_tty_stderr(argv, env):
    """Runs argv with stderr on a pseudo-terminal (so agentbox prints its progress lines);
    returns the completed process and everything written to the terminal."""
    import pty
    master, slave = pty.openpty()
    try:
        p = subprocess.run(argv, env=env, stdout=subprocess.PIPE, stderr=slave, timeout=120)
        os.close(slave)
        slave = -1
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        if slave >= 0:
            os.close(slave)
        os.close(master)
    return p, b"".join(chunks).decode(errors="replace")

class AgentTasks(RunTestCase):
    def test_multi_step_task_writes_and_runs_a_program(self):
        marker = self.serve([
            {"tool_calls": [call("str_replace_editor", command="create", path="/workspace/sum.c", file_text=PROG)]},
            {"tool_calls": [bash("gcc -O2 -o sum sum.c && ./sum | tee out.txt")]},
            {"tool_calls": [finish("built and ran sum.c")]},
        ])
        run = self.run_agent(f"{marker} write a program", "--output", "out.txt")
        self.assertStatus(run, "succeeded", 0)
        r = run.result
        self.assertTrue(r["success"])
        self.assertEqual(r["output"], "built and ran sum.c")
        self.assertEqual(r["iterations"], 3)
        self.assertEqual(r["model"], "test/primary")
        self.assertIn("sum=55", "".join(run.observations()))
        paths = {f["path"]: f for f in r["files"]}
        self.assertEqual(paths["sum.c"]["status"], "added")
        self.assertEqual(paths["sum.c"]["size"], len(PROG))
        self.assertIn("out.txt", paths)
        self.assertIn("+int main(void)", r["diff"])
        with open(os.path.join(r["outputs_dir"], "out.txt")) as f:
            self.assertEqual(f.read(), "sum=55\n")
        # the usage is the supervisor's own count of what the fake reported
        self.assertEqual(r["usage"]["total_tokens"], 3 * 19)
        self.assertEqual(len(self.fake.requests()), 3)
        # every request carried the tools and a max_tokens
        for req in self.fake.requests():
            body = req["body"]
            self.assertTrue(body.get("tools"), req)
            self.assertIn("max_tokens", body)
        # one terminal event, and it is the last one
        terminal = [e for e in run.events if e["type"].startswith("task_") and e["type"] not in ("task_queued", "task_started")]
        self.assertEqual([e["type"] for e in terminal], ["task_completed"])
        self.assertEqual(run.events[-1]["type"], "task_completed")
        seqs = [e["seq"] for e in run.events]
        self.assertEqual(seqs, list(range(1, len(seqs) + 1)))
        self.assertEqual(r["sandbox"]["status"], "exited")

    def test_seeded_repository_edit_and_tests(self):
        repo = os.path.join(self.tmp, "repo")
        os.makedirs(repo)
        with open(os.path.join(repo, "calc.py"), "w") as f:
            f.write("def add(a, b):\n    return a - b\n")
        with open(os.path.join(repo, "test_calc.py"), "w") as f:
            f.write("from calc import add\nassert add(2, 3) == 5, 'add is broken'\nprint('tests ok')\n")
        os.chmod(repo, 0o755)
        before = {n: open(os.path.join(repo, n)).read() for n in os.listdir(repo)}
        marker = self.serve([
            {"tool_calls": [bash("python3 -B test_calc.py")]},
            {"tool_calls": [call("str_replace_editor", command="str_replace", path="/workspace/calc.py",
                                 old_str="return a - b", new_str="return a + b")]},
            {"tool_calls": [bash("python3 -B test_calc.py")]},
            {"tool_calls": [finish("fixed add")]},
        ])
        run = self.run_agent(f"{marker} fix the tests", "--workspace-from", repo)
        self.assertStatus(run, "succeeded", 0)
        obs = run.observations()
        self.assertIn("add is broken", obs[0])
        self.assertIn("tests ok", obs[2])
        files = {f["path"]: f["status"] for f in run.result["files"]}
        self.assertEqual(files.get("calc.py"), "modified", run)
        self.assertNotIn("test_calc.py", files)
        diff = run.result["diff"]
        self.assertIn("-    return a - b", diff)
        self.assertIn("+    return a + b", diff)
        after = {n: open(os.path.join(repo, n)).read() for n in os.listdir(repo)}
        self.assertEqual(before, after, "the host seed directory must never change")

    def test_untouched_workspace_has_an_empty_diff(self):
        # nothing changed: no file in the list and an empty diff (computed without diff(1));
        # a new symlink alone is not in the file list, but diff(1) still runs and says so
        repo = os.path.join(self.tmp, "repo")
        os.makedirs(repo)
        with open(os.path.join(repo, "calc.py"), "w") as f:
            f.write("def add(a, b):\n    return a + b\n")
        os.chmod(repo, 0o755)
        marker = self.serve([{"tool_calls": [bash("cat calc.py")]}, {"tool_calls": [finish()]}])
        run = self.run_agent(f"{marker} read it", "--workspace-from", repo)
        self.assertStatus(run, "succeeded", 0)
        self.assertEqual(run.result["files"], [])
        self.assertEqual(run.result["diff"], "")
        marker = self.serve([{"tool_calls": [bash("ln -s calc.py alias.py")]},
                             {"tool_calls": [finish()]}])
        run = self.run_agent(f"{marker} link it", "--workspace-from", repo)
        self.assertStatus(run, "succeeded", 0)
        self.assertIn("symlink", run.result["diff"])

    def test_cwd_and_variables_persist(self):
        marker = self.serve([
            {"tool_calls": [bash("mkdir -p sub/dir && cd sub/dir && export FOO=persisted")]},
            {"tool_calls": [bash("pwd; echo value=$FOO")]},
            {"tool_calls": [finish()]},
        ])
        run = self.run_agent(f"{marker} go")
        self.assertStatus(run, "succeeded", 0)
        self.assertIn("/workspace/sub/dir", run.observations()[1])
        self.assertIn("value=persisted", run.observations()[1])

    def test_bad_tool_calls_become_error_observations(self):
        marker = self.serve([
            {"tool_calls": [call("no_such_tool", x=1)]},
            {"tool_calls": [{"name": "execute_bash", "arguments": "{not json"}]},
            {"tool_calls": [call("execute_bash")]},
            {"tool_calls": [call("str_replace_editor", command="view", path=12)]},
            {"tool_calls": [call("str_replace_editor", command="explode", path="/workspace")]},
            {"tool_calls": [bash("echo still-alive")]},
            {"tool_calls": [finish("survived")]},
        ])
        run = self.run_agent(f"{marker} go")
        self.assertStatus(run, "succeeded", 0)
        results = run.of("tool_result")
        self.assertEqual([r["is_error"] for r in results[:5]], [True] * 5, results)
        self.assertIn("still-alive", results[5]["observation"])
        # each error tells the model what was wrong
        self.assertIn("no_such_tool", results[0]["observation"])
        self.assertIn("command", results[2]["observation"])

    def test_command_timeout_then_working_command(self):
        marker = self.serve([
            {"tool_calls": [bash("sleep 60; echo never", timeout=1)]},
            {"tool_calls": [bash("echo works-after-timeout")]},
            {"tool_calls": [finish()]},
        ])
        t0 = time.monotonic()
        run = self.run_agent(f"{marker} go")
        self.assertStatus(run, "succeeded", 0)
        self.assertLess(time.monotonic() - t0, 30)
        res = run.of("tool_result")
        self.assertTrue(res[0].get("timed_out"), res[0])
        self.assertNotIn("never", res[0]["observation"])
        self.assertIn("works-after-timeout", res[1]["observation"])

    def test_huge_output_is_clipped(self):
        marker = self.serve([
            {"tool_calls": [bash("head -c 50000000 /dev/zero | tr '\\0' 'x'; echo; echo tail-marker")]},
            {"tool_calls": [finish()]},
        ])
        run = self.run_agent(f"{marker} go")
        self.assertStatus(run, "succeeded", 0)
        # what the model got back (second request's last message) is clipped with a note
        body = self.fake.requests()[1]["body"]
        last = body["messages"][-1]["content"]
        self.assertLess(len(last), 40000)
        self.assertIn("tail-marker", last)
        self.assertRegex(last.lower(), r"truncat|clipp|omitted|cut")

    def test_stuck_loop_is_detected(self):
        marker = self.serve([{"tool_calls": [bash("echo same")]}])  # the last step repeats
        run = self.run_agent(f"{marker} go")
        self.assertStatus(run, "failed", 1)
        self.assertEqual(run.result["error"].get("reason"), "stuck", run)
        self.assertTrue(run.of("stuck"), run.events)
        self.assertLessEqual(len(self.fake.requests()), 6)

    def test_max_iterations(self):
        marker = self.serve([{"tool_calls": [bash("echo step $RANDOM$RANDOM")]}])
        run = self.run_agent(f"{marker} go", "--max-iterations", "3")
        self.assertStatus(run, "failed", 1)
        self.assertEqual(run.result["iterations"], 3)
        self.assertEqual(run.result["error"].get("reason"), "max_iterations", run)
        self.assertEqual(len(self.fake.requests()), 3)

    def test_token_budget(self):
        marker = self.serve([{"tool_calls": [bash("echo step $RANDOM$RANDOM")], "usage": {"total_tokens": 100}}])
        run = self.run_agent(task={"prompt": f"{marker} go", "budget": {"max_tokens": 250}})
        self.assertStatus(run, "failed", 1)
        self.assertEqual(run.result["error"].get("reason"), "budget", run)
        self.assertEqual(len(self.fake.requests()), 3)  # 100, 200, 300 >= 250: no 4th call

    def test_condensation_keeps_the_task_going(self):
        big = "python3 -c \"print('y' * 29000)\""
        steps = [{"tool_calls": [bash(big + f" # {i}")]} for i in range(6)] + [{"tool_calls": [finish()]}]
        marker = self.serve(steps)
        # an unknown model gets a 32768-token budget; six 29k-char observations exceed it
        run = self.run_agent(f"{marker} go")
        self.assertStatus(run, "succeeded", 0)
        self.assertTrue(run.of("condensed"), [e["type"] for e in run.events])
        # no request lost a tool call's result: every tool message follows its assistant call
        for req in self.fake.requests():
            msgs = req["body"]["messages"]
            for i, m in enumerate(msgs):
                if m["role"] == "tool":
                    prev = [x for x in msgs[:i] if x["role"] == "assistant"]
                    ids = [tc["id"] for x in prev for tc in (x.get("tool_calls") or [])]
                    self.assertIn(m["tool_call_id"], ids)

    def test_cancel_with_sigint(self):
        # a duration no other process on the host uses, so that the check below sees only
        # this cell's sleep (suites of other checkouts may run `sleep 100` at the same time)
        nap = f"100.{os.getpid()}"
        marker = self.serve([{"tool_calls": [bash(f"sleep {nap}")]}])
        argv = [AGENTBOX, "run", "--quiet", f"{marker} go"]
        p = subprocess.Popen(argv, env=self.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and len(self.fake.requests()) < 1:
            time.sleep(0.05)
        time.sleep(1.0)
        t_sig = time.monotonic()
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=30)
        # the agent is told inside its tool (not only between steps): no 5 s grace wait
        self.assertLess(time.monotonic() - t_sig, 3.0)
        self.assertEqual(p.returncode, 1, err)
        res = json.loads(out)
        self.assertEqual(res["status"], "cancelled")
        self.assertTrue(res["sandbox"]["enforced"])
        # the tool's observation tells when the cancel came (about 1 s into the sleep),
        # not the command's timeout (120 s by default)
        with open(res["events_file"]) as f:
            results = [json.loads(line) for line in f if '"tool_result"' in line]
        self.assertEqual(len(results), 1, results)
        m = re.search(r"was cancelled after ([0-9.]+) seconds", results[0]["observation"])
        self.assertIsNotNone(m, results[0]["observation"])
        self.assertGreater(float(m.group(1)), 0.5)
        self.assertLess(float(m.group(1)), 10)
        # no process of the cell survives: nothing runs that sleep any more
        for d in os.listdir("/proc"):
            if d.isdigit():
                try:
                    with open(f"/proc/{d}/cmdline", "rb") as f:
                        self.assertNotEqual(f.read(), f"sleep\x00{nap}\x00".encode())
                except OSError:
                    pass

    def test_wall_clock_timeout(self):
        marker = self.serve([{"tool_calls": [bash("sleep 100")]}])
        run = self.run_agent(f"{marker} go", "--timeout", "3")
        self.assertStatus(run, "timeout", 1)
        self.assertEqual(run.result["error"]["type"], "TIMEOUT_ERROR")
        self.assertLess(run.elapsed, 15)
        self.assertEqual(run.of("task_timeout")[0]["type"], "task_timeout")


class Secrets(RunTestCase):
    def test_key_invisible_inside_the_cell(self):
        marker = self.serve([
            {"tool_calls": [bash("env; cat /proc/*/environ 2>/dev/null | tr '\\0' '\\n'; cat /proc/1/cmdline")]},
            {"tool_calls": [bash("grep -rs OPENROUTER /proc/*/environ /run /tmp 2>/dev/null | head; echo scanned")]},
            {"tool_calls": [finish()]},
        ])
        run = self.run_agent(f"{marker} go")
        self.assertStatus(run, "succeeded", 0)
        # the fake saw the key (the broker used it)...
        self.assertTrue(all(r.get("auth_ok") for r in self.fake.requests()), self.fake.requests()[:1])
        # ...but no observation, event, result or log line did
        self.assertIn("scanned", run.observations()[1])
        for text in (run.stdout, run.stderr, json.dumps(run.events)):
            self.assertNotIn(self.key, text)
            self.assertNotIn(self.key[10:40], text)
        self.assertNotIn("OPENROUTER_API_KEY", "".join(run.observations()))
        # and what went back to the model didn't either
        for req in self.fake.requests():
            self.assertNotIn(self.key, json.dumps(req["body"]))

    def test_escape_attempts_through_execute_bash_are_contained(self):
        canary = os.path.join(self.tmp, "canary.txt")
        with open(canary, "w") as f:
            f.write("original")
        os.chmod(canary, 0o666)
        attack = (f"echo pwned > {canary}; ls {self.tmp}; unshare -U true && echo unshared; "
                  "mount -t tmpfs x /mnt && echo mounted; cat /proc/1/environ | head -c 100; "
                  "kill -9 -1; echo after-kill")
        marker = self.serve([
            {"tool_calls": [bash(attack)]},
            {"tool_calls": [finish()]},
        ])
        run = self.run_agent(f"{marker} go")
        self.assertIsNotNone(run.result, run)
        with open(canary) as f:
            self.assertEqual(f.read(), "original")
        obs = "".join(run.observations())
        self.assertNotIn("unshared", obs)
        self.assertNotIn("mounted", obs)


class TextToolCalling(RunTestCase):
    def test_model_without_native_tools(self):
        marker = self.serve([
            {"content": "I will list the files.\n<function=execute_bash>\n<parameter=command>echo text-mode-works</parameter>\n</function>"},
            {"content": "<function=finish>\n<parameter=message>done in text mode</parameter>\n</function>"},
        ])
        run = self.run_agent(f"{marker} go", "--model", "deepseek-r1-qwen3-8b")
        self.assertStatus(run, "succeeded", 0)
        self.assertEqual(run.result["output"], "done in text mode")
        self.assertIn("text-mode-works", run.observations()[0])
        for req in self.fake.requests():
            self.assertFalse(req["body"].get("tools"), "text mode must not send tools")
        self.assertIn("<function=", json.dumps(self.fake.requests()[0]["body"]["messages"][0]))


    def test_switch_to_text_mode_after_no_tool_endpoints(self):
        marker = self.serve([
            {"status": 404, "message": "No endpoints found that support tool use. To learn more "
             "about provider routing, visit: https://openrouter.ai/docs/provider-routing"},
            {"content": "<function=execute_bash>\n<parameter=command>echo switched</parameter>\n</function>"},
            {"content": "<function=finish>\n<parameter=message>ok</parameter>\n</function>"},
        ])
        run = self.run_agent(f"{marker} go")
        self.assertStatus(run, "succeeded", 0)
        self.assertIn("switched", run.observations()[0])
        reqs = self.fake.requests()
        self.assertTrue(reqs[0]["body"].get("tools"))
        self.assertFalse(reqs[1]["body"].get("tools"))
        self.assertEqual([e["mode"] for e in run.of("tool_mode")], ["text"])


class Replay(RunTestCase):
    def test_demo_replay_offline(self):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "demo")
        env = self.env()
        env.pop("OPENROUTER_API_KEY", None)
        env.pop("OPENHANDS_BASE_URL", None)
        run = self.run_agent("--task-file", os.path.join(root, "task.json"),
                             "--replay", os.path.join(root, "replay.json"), env=env)
        self.assertStatus(run, "succeeded", 0)
        md = run.result["metadata"]
        self.assertTrue(md.get("offline_replay"))
        self.assertTrue(run.result["model"].startswith("replay:"))
        with open(os.path.join(run.result["outputs_dir"], "primes.txt")) as f:
            self.assertEqual(f.read().split(), ["2", "3", "5", "7", "11", "13", "17", "19", "23", "29"])
        files = {f["path"]: f["status"] for f in run.result["files"]}
        self.assertEqual(files.get("README.md"), "modified", run.result["files"])
        self.assertEqual(files.get("primes.c"), "added")

    def test_progress_lines_on_a_terminal(self):
        root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples", "demo")
        env = self.env()
        env.pop("OPENROUTER_API_KEY", None)
        p, text = run_with_tty_stderr([AGENTBOX, "run", "--task-file",
                                       os.path.join(root, "task.json"), "--replay",
                                       os.path.join(root, "replay.json")], env)
        self.assertEqual(p.returncode, 0, text)
        self.assertIn("OFFLINE REPLAY", text)
        steps = [l for l in text.splitlines() if "agentbox: step" in l]
        self.assertEqual(len(steps), 8, text)
        self.assertIn("execute_bash", steps[0])
        self.assertRegex(steps[-1], r"finish\s+[0-9.]+s\s+17935 tokens")
        self.assertIn("task_completed (succeeded)", text)

    def test_no_key_no_replay_is_a_usage_error(self):
        env = self.env()
        env.pop("OPENROUTER_API_KEY", None)
        run = self.run_agent("hello", env=env)
        self.assertEqual(run.rc, 2, run)
        self.assertIn("OPENROUTER_API_KEY", run.stderr)
        self.assertFalse(os.path.exists(self.state) and os.listdir(self.state))

    def test_invalid_task_names_the_field(self):
        run = self.run_agent(task={"prompt": "x", "limits": {"disk": "lots"}}, env=self.env())
        self.assertEqual(run.rc, 2, run)
        self.assertIn("task.limits.disk", run.stderr)


class RateLimitShown(RunTestCase):
    def test_a_wait_for_the_rate_limit_is_a_progress_line(self):
        marker = self.serve([{"tool_calls": [bash("true")]}, {"tool_calls": [finish("ok")]}])
        env = self.env(OPENHANDS_RATE_LIMIT_RPM="30", OPENHANDS_RATE_LIMIT_BURST="1")
        p, text = run_with_tty_stderr([AGENTBOX, "run", f"{marker} go"], env)
        self.assertEqual(p.returncode, 0, text)
        self.assertRegex(text, r"agentbox: waiting for the rate limit of test/primary: [12] seconds?")


if __name__ == "__main__":
    unittest.main()
