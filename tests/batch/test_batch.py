"""`agentbox batch` end to end through the real binary: shards, resume, JUnit, exit codes,
refusal of bad files, concurrency and signals. LLM replies come from a replay file (offline)
or, where an upstream error is the point, from tests/fake_openrouter.py on loopback."""
import json
import os
import re
import signal
import subprocess
import time
import xml.etree.ElementTree as ET

from batchtest_util import (AGENTBOX, RUN_TIMEOUT_S, BatchTestCase, call, derived_id, fake_openrouter, fnv1a64,
                            task)


class Shards(BatchTestCase):
    def test_shards_cover_every_task_exactly_once(self):
        lines = [json.dumps(task(f"t{i:02d}")) for i in range(10)]
        # tasks without an id get one derived from their line; identical lines are numbered
        lines += [json.dumps(task(prompt="anonymous one")), json.dumps(task(prompt="anonymous two")),
                  json.dumps(task(prompt="anonymous two"))]
        path = self.batch_file(lines)
        want = {f"t{i:02d}" for i in range(10)}
        d1, d2 = derived_id(lines[10]), derived_id(lines[11])
        want |= {d1, d2, d2 + "-2"}
        n = 3
        seen = {}
        for i in range(n):
            b = self.run_batch(path, "--shard", f"{i}/{n}", "--jobs", "4", out=f"out{i}.jsonl")
            self.assertEqual(b.rc, 0, b)
            for r in b.results:
                self.assertNotIn(r["id"], seen, f"{r['id']} ran in shards {seen.get(r['id'])} and {i}")
                seen[r["id"]] = i
                self.assertEqual(r["status"], "succeeded", b)
        self.assertEqual(set(seen), want)
        # the shard of an id is FNV-1a 64 of the id modulo N (docs/batch.md), not its line
        for tid, shard in seen.items():
            self.assertEqual(fnv1a64(tid) % n, shard, tid)

    def test_one_shard_of_one_is_everything_and_empty_shards_succeed(self):
        path = self.batch_file([task("only")])
        b = self.run_batch(path, "--shard", "0/1")
        self.assertEqual(list(b.statuses()), ["only"], b)
        empty = [i for i in range(8) if fnv1a64("only") % 8 != i][0]
        b = self.run_batch(path, "--shard", f"{empty}/8", "--junit",
                           os.path.join(self.tmp, "j.xml"), out="empty.jsonl")
        self.assertEqual(b.rc, 0, b)
        self.assertEqual(b.results, [])
        root = ET.parse(os.path.join(self.tmp, "j.xml")).getroot()
        self.assertEqual(root.get("tests"), "0")

    def test_bad_shard_is_a_usage_error(self):
        path = self.batch_file([task("a")])
        for bad in ("3/3", "1", "x/2", "0/0"):
            b = self.run_batch(path, "--shard", bad)
            self.assertEqual(b.rc, 2, (bad, b))
            self.assertIn("--shard", b.stderr)
        self.assertFalse(os.path.exists(self.state))


class Resume(BatchTestCase):
    def snapshot(self, ids):
        snap = {}
        for tid in ids:
            d = os.path.join(self.state, tid)
            st = os.stat(d)
            with open(os.path.join(d, "events.jsonl"), "rb") as f:
                snap[tid] = (st.st_ino, st.st_mtime_ns, f.read())
        return snap

    def test_resume_reruns_nothing_finished(self):
        ids = [f"r{i}" for i in range(4)]
        path = self.batch_file([task(i) for i in ids])
        first = self.run_batch(path, "--jobs", "2")
        self.assertEqual(first.rc, 0, first)
        before = self.snapshot(ids)
        time.sleep(0.05)
        again = self.run_batch(path, "--resume", "--jobs", "2")
        self.assertEqual(again.rc, 0, again)
        self.assertEqual(sorted(r["id"] for r in again.results), ids)  # one line per task
        self.assertEqual(self.snapshot(ids), before)  # no state dir was touched
        self.assertIn("4 finished earlier", again.stderr)
        self.assertIn("(4 resumed)", again.stderr)
        self.assertEqual(again.by_id(), first.by_id())

    def test_without_resume_a_second_run_is_refused_before_anything(self):
        path = self.batch_file([task("x1"), task("x2")])
        self.assertEqual(self.run_batch(path).rc, 0)
        out = os.path.join(self.tmp, "out.jsonl")
        with open(out) as f:
            kept = f.read()
        b = self.run_batch(path)
        self.assertEqual(b.rc, 2, b)
        self.assertIn("--resume", b.stderr)
        self.assertIn("line 1", b.stderr)
        with open(out) as f:
            self.assertEqual(f.read(), kept)  # --out not truncated by a refused run

    def test_resume_runs_only_what_is_missing(self):
        ids = ["m0", "m1", "m2"]
        path = self.batch_file([task(i) for i in ids])
        self.assertEqual(self.run_batch(path).rc, 0)
        out = os.path.join(self.tmp, "out.jsonl")
        with open(out) as f:
            lines = {json.loads(line)["id"]: line for line in f}
        # m1: never ran (its line and its state are gone); m2: finished, but its line was lost
        # (e.g. --out on a machine that died): taken from STATE/m2/result.json, not re-run
        with open(out, "w") as f:
            f.write(lines["m0"] + '{"id": "half-writ')
        import shutil
        shutil.rmtree(os.path.join(self.state, "m1"))
        before = self.snapshot(["m0", "m2"])
        b = self.run_batch(path, "--resume")
        self.assertEqual(b.rc, 0, b)
        self.assertEqual(sorted(b.statuses()), ids)
        self.assertEqual(len(b.results), 3, b)
        self.assertEqual(self.snapshot(["m0", "m2"]), before)
        self.assertTrue(os.path.exists(os.path.join(self.state, "m1", "result.json")))
        self.assertIn("dropped 1 line", b.stderr)


class Junit(BatchTestCase):
    def test_junit_is_valid_xml_with_the_right_counts(self):
        tasks = [task("ok1"), task("ok2", name="<b>&\"x\""),
                 task("fail1", max_iterations=1),           # ends before finish: failed
                 task("slow1", sleep=30, timeout_s=2)]      # wall clock: timeout
        path = self.batch_file(tasks)
        junit = os.path.join(self.tmp, "report.xml")
        b = self.run_batch(path, "--jobs", "4", "--junit", junit)
        self.assertEqual(b.rc, 1, b)
        self.assertEqual(b.statuses(), {"ok1": "succeeded", "ok2": "succeeded",
                                        "fail1": "failed", "slow1": "timeout"})
        root = ET.parse(junit).getroot()
        self.assertEqual(root.tag, "testsuites")
        suite = root.find("testsuite")
        self.assertEqual((suite.get("tests"), suite.get("failures"), suite.get("skipped")),
                         ("4", "2", "0"))
        cases = {c.get("name"): c for c in suite.findall("testcase")}
        self.assertEqual(set(cases), {"ok1", "ok2", "fail1", "slow1"})
        self.assertIsNone(cases["ok1"].find("failure"))
        self.assertEqual(cases["slow1"].find("failure").get("type"), "TIMEOUT_ERROR")
        self.assertIn("timeout", cases["slow1"].find("failure").get("message"))
        self.assertIsNotNone(cases["fail1"].find("failure"))
        self.assertEqual(cases["ok1"].find("system-out").text, "finished")
        # resumed tasks are skipped, with their earlier status named
        b = self.run_batch(path, "--resume", "--junit", junit)
        self.assertEqual(b.rc, 1, b)  # the batch's results still include a failure
        suite = ET.parse(junit).getroot().find("testsuite")
        self.assertEqual((suite.get("tests"), suite.get("failures"), suite.get("skipped")),
                         ("4", "0", "4"))
        msgs = {c.get("name"): c.find("skipped").get("message") for c in suite.findall("testcase")}
        self.assertIn("timeout", msgs["slow1"])


    def test_unwritable_outputs_are_refused_before_any_task(self):
        path = self.batch_file([task("a"), task("b")])
        cases = (("--junit", "/nonexistent/j.xml"), ("--junit", self.tmp),
                 ("--events-dir", "/proc/agentbox-none"), ("--out", "/nonexistent/out.jsonl"),
                 ("--state-dir", "/proc/self"))
        for opt, where in cases:
            argv = [AGENTBOX, "batch", path, "--replay", self.replay, opt, where]
            proc = subprocess.run(argv, env=self.env(), capture_output=True, text=True,
                                  timeout=RUN_TIMEOUT_S)
            self.assertEqual(proc.returncode, 2, (opt, where, proc.stderr))
            # the option and the path are named ("--out PATH: why" or "--events-dir: PATH: why")
            # (/proc/self is named as what it resolves to, /proc/PID)
            named = re.escape(where).replace("self", r"(self|\d+)")
            self.assertRegex(proc.stderr, re.escape(opt) + ":? " + named)
            self.assertFalse(os.path.exists(os.path.join(self.state, "a")),
                             f"a task ran before {opt} was checked")
            self.assertFalse(os.path.exists("/proc/self/a"))

    def test_summary_names_the_exit_code_the_process_returns(self):
        # --junit into a directory that disappears while the batch runs: the tasks succeed,
        # the report cannot be written, the process exits 1 and the summary says so
        path = self.batch_file([task("a", sleep=2)])
        d = os.path.join(self.tmp, "gone")
        os.mkdir(d)
        p = self.start_batch(path, "--junit", os.path.join(d, "j.xml"))
        deadline = time.monotonic() + 30
        while not os.path.exists(os.path.join(self.state, "a")) and time.monotonic() < deadline:
            time.sleep(0.05)
        os.rmdir(d)
        out, err = p.communicate(timeout=RUN_TIMEOUT_S)
        self.assertEqual(p.returncode, 1, err)
        self.assertIn("1 succeeded", err)
        self.assertRegex(err.strip().splitlines()[-1], r"; exit 1$")


class ExitCodes(BatchTestCase):
    DEAD = {"status": 503, "message": "Service Unavailable", "error_type": "provider_overloaded"}
    AUTH = {"status": 401, "message": "User not found."}
    OK = {"tool_calls": [call("finish", message="fine")]}

    def live(self, tasks, **extra):
        path = self.batch_file(tasks)
        env = self.env(live=True, OPENHANDS_ENABLE_CIRCUIT_BREAKER="false", **extra)
        return self.run_batch(path, "--jobs", "3", replay=False, env=env)

    def test_all_succeeded_is_0(self):
        b = self.run_batch(self.batch_file([task("a"), task("b")]))
        self.assertEqual(b.rc, 0, b)

    def test_escalated_is_3(self):
        self.serve({"ok": [self.OK], "auth": [self.AUTH]})
        b = self.live([task("good", prompt="[conv:ok] go"), task("bad", prompt="[conv:auth] go")])
        self.assertEqual(b.statuses(), {"good": "succeeded", "bad": "escalated"}, b)
        self.assertEqual(b.rc, 3, b)

    def test_mock_is_4_and_never_success(self):
        self.serve({"ok": [self.OK], "dead": [self.DEAD]})
        b = self.live([task("good", prompt="[conv:ok] go"), task("m", prompt="[conv:dead] go")],
                      OPENHANDS_FALLBACK_TO_MOCK="true")
        self.assertEqual(b.statuses(), {"good": "succeeded", "m": "mock"}, b)
        self.assertFalse(b.by_id()["m"]["success"])
        self.assertTrue(b.by_id()["m"]["metadata"]["mock"])
        self.assertEqual(b.rc, 4, b)

    def test_precedence_failed_over_escalated_over_mock(self):
        self.serve({"auth": [self.AUTH], "dead": [self.DEAD]})
        b = self.live([task("e", prompt="[conv:auth] go"), task("m", prompt="[conv:dead] go")],
                      OPENHANDS_FALLBACK_TO_MOCK="true")
        self.assertEqual(b.statuses(), {"e": "escalated", "m": "mock"}, b)
        self.assertEqual(b.rc, 3, b)
        self.fake.stop()
        self.serve({"auth": [self.AUTH], "dead": [self.DEAD]})
        b = self.live([task("e2", prompt="[conv:auth] go"), task("f", prompt="[conv:dead] go")])
        self.assertEqual(b.statuses(), {"e2": "escalated", "f": "failed"}, b)
        self.assertEqual(b.rc, 1, b)

    def test_rate_limit_waits_are_shown(self):
        # one request, then one every 2 s: the second call of the task waits about 2 s
        self.serve({"two": [{"tool_calls": [call("execute_bash", command="true")]}, self.OK]})
        b = self.live([task("slow", prompt="[conv:two] go")], OPENHANDS_RATE_LIMIT_RPM="30",
                      OPENHANDS_RATE_LIMIT_BURST="1")
        self.assertEqual(b.statuses(), {"slow": "succeeded"}, b)
        self.assertRegex(b.stderr, r"slow: waiting for the rate limit of test/primary: [12] seconds?\n")
        self.assertIn("1 task: 1 succeeded", b.stderr)
        ev = [e for e in self.events("slow") if e["type"] == "rate_limit_wait"]
        self.assertEqual(len(ev), 1, ev)
        self.assertEqual(ev[0]["model"], "test/primary")

    def test_no_key_and_no_replay_is_2(self):
        b = self.run_batch(self.batch_file([task("a")]), replay=False)
        self.assertEqual(b.rc, 2, b)
        self.assertIn("OPENROUTER_API_KEY", b.stderr)
        self.assertEqual(b.results, [])


class Refusal(BatchTestCase):
    def test_bad_lines_refuse_the_batch_with_line_numbers(self):
        lines = [json.dumps(task("good")), "", "# a comment", "{not json",
                 json.dumps({"id": "p", "prompt": ""}), json.dumps(task("good")),
                 json.dumps({"id": "q", "prompt": "x", "limits": {"disk": "huge"}}),
                 json.dumps({"id": "r", "prompt": "x", "policy": "no-such-policy"}),
                 json.dumps({"id": "s", "prompt": "x", "promt": "typo"})]
        path = self.batch_file(lines)
        b = self.run_batch(path, "--junit", os.path.join(self.tmp, "j.xml"))
        self.assertEqual(b.rc, 2, b)
        for n, what in ((4, "JSON"), (5, "task.prompt"), (6, "already the id of line 1"),
                        (7, "task.limits.disk"), (8, "task.policy"), (9, "task.promt")):
            self.assertRegex(b.stderr, rf"line {n}: .*{what}", b.stderr)
        self.assertIn("6 bad lines; nothing was run", b.stderr)
        self.assertNotIn("line 1:", b.stderr)
        # nothing ran: no state, no results, no report
        self.assertFalse(os.path.exists(self.state))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "out.jsonl")))
        self.assertFalse(os.path.exists(os.path.join(self.tmp, "j.xml")))

    def test_missing_file_and_bad_options_are_usage_errors(self):
        b = self.run_batch(os.path.join(self.tmp, "nope.jsonl"))
        self.assertEqual(b.rc, 2, b)
        b = self.run_batch(self.batch_file([task("a")]), "--jobs", "0")
        self.assertEqual(b.rc, 2, b)
        b = self.run_batch(self.batch_file([task("a")]), "--bogus")
        self.assertEqual(b.rc, 2, b)


class Output(BatchTestCase):
    def test_results_on_stdout_by_default_and_events_dir(self):
        path = self.batch_file([task("s1"), task("s2")])
        evdir = os.path.join(self.tmp, "ev")
        b = self.run_batch(path, "--events-dir", evdir, out=None)
        self.assertEqual(b.rc, 0, b)
        self.assertEqual(sorted(b.statuses()), ["s1", "s2"])
        for tid in ("s1", "s2"):
            r = b.by_id()[tid]
            self.assertEqual(r["output"], "finished")
            self.assertIn("result.txt", [f["path"] for f in r["files"]])
            self.assertTrue(r["metadata"]["offline_replay"])
            with open(os.path.join(evdir, tid + ".jsonl")) as f:
                types = [json.loads(line)["type"] for line in f]
            self.assertEqual(types[0], "task_queued")
            self.assertEqual(types[-1], "task_completed")
            self.assertEqual(types, [e["type"] for e in self.events(tid)])

    def test_derived_ids_are_the_same_on_every_run(self):
        line = json.dumps(task(prompt="no id here"))
        b1 = self.run_batch(self.batch_file([line]))
        self.assertEqual(list(b1.statuses()), [derived_id(line)], b1)
        self.state = os.path.join(self.tmp, "state2")
        b2 = self.run_batch(self.batch_file([line]), out="out2.jsonl")
        self.assertEqual(list(b2.statuses()), [derived_id(line)], b2)


class Concurrency(BatchTestCase):
    def spans(self, ids):
        out = []
        for tid in ids:
            ev = self.events(tid)
            start = [e["ts"] for e in ev if e["type"] == "task_started"][0]
            end = [e["ts"] for e in ev if e["type"] == "task_completed"][0]
            out.append((start, end))
        return out

    def test_jobs_run_at_once(self):
        ids = [f"c{i}" for i in range(4)]
        path = self.batch_file([task(i, sleep=1.5) for i in ids])
        b = self.run_batch(path, "--jobs", "4")
        self.assertEqual(b.rc, 0, b)
        spans = self.spans(ids)
        # all four were running at one moment
        self.assertLess(max(s for s, _ in spans), min(e for _, e in spans), spans)
        # and the batch took about one task's time, not four (relative, so that a slow host,
        # such as the cgroup v2 VM under emulation, does not make it fail)
        self.assertLess(b.elapsed, 0.6 * sum(e - s for s, e in spans), (b, spans))

    def test_jobs_1_runs_one_at_a_time(self):
        ids = [f"o{i}" for i in range(3)]
        path = self.batch_file([task(i, sleep=0.5) for i in ids])
        b = self.run_batch(path, "--jobs", "1")
        self.assertEqual(b.rc, 0, b)
        spans = sorted(self.spans(ids))
        for (s1, e1), (s2, _) in zip(spans, spans[1:]):
            self.assertLessEqual(e1, s2 + 0.05, spans)


class Signals(BatchTestCase):
    NEEDLE = b"sleep\x0037.25\x00"

    def wait_running(self, ids, timeout=30):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(any(e["type"] == "tool_call" for e in self.events(t)) for t in ids):
                return
            time.sleep(0.05)
        self.fail(f"tasks {ids} did not start their tool call")

    def seeded_tasks(self, n, seconds):
        seed = os.path.join(self.tmp, "seed")
        os.makedirs(seed, exist_ok=True)
        os.chmod(seed, 0o755)
        with open(os.path.join(seed, "sleep"), "w") as f:
            f.write(seconds)
        os.chmod(os.path.join(seed, "sleep"), 0o644)
        return seed, [task(f"g{i}", workspace={"from_dir": seed}) for i in range(n)]

    def assert_nothing_left(self):
        deadline = time.monotonic() + 5
        while self.processes_with(self.NEEDLE) and time.monotonic() < deadline:
            time.sleep(0.05)
        self.assertEqual(self.processes_with(self.NEEDLE), [])
        with open("/proc/self/mountinfo") as f:
            self.assertNotIn(self.tmp, f.read())

    def test_sigint_cancels_running_tasks_and_resume_finishes_the_rest(self):
        seed, tasks = self.seeded_tasks(4, "37.25")
        path = self.batch_file(tasks)
        junit = os.path.join(self.tmp, "j.xml")
        p = self.start_batch(path, "--jobs", "2", "--junit", junit)
        self.wait_running(["g0", "g1"])
        t0 = time.monotonic()
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 1, err)
        self.assertLess(time.monotonic() - t0, 15, err)
        with open(os.path.join(self.tmp, "out.jsonl")) as f:
            results = [json.loads(line) for line in f]
        self.assertEqual({r["id"]: r["status"] for r in results},
                         {"g0": "cancelled", "g1": "cancelled"}, err)
        for r in results:
            self.assertEqual(r["sandbox"]["status"] in ("signaled", "exited"), True, r)
            self.assertEqual(self.events(r["id"])[-1]["type"], "task_cancelled")
        suite = ET.parse(junit).getroot().find("testsuite")
        self.assertEqual((suite.get("tests"), suite.get("failures"), suite.get("skipped")),
                         ("4", "2", "2"))
        self.assertFalse(os.path.exists(os.path.join(self.state, "g2")))  # never started
        self.assert_nothing_left()
        # --resume: the cancelled tasks run again (their old state moved aside), the rest run
        with open(os.path.join(seed, "sleep"), "w") as f:
            f.write("0")
        b = self.run_batch(path, "--resume", "--jobs", "4")
        self.assertEqual(b.rc, 0, b)
        self.assertEqual(b.statuses(), {f"g{i}": "succeeded" for i in range(4)}, b)
        self.assertEqual(len(b.results), 4, b)  # the cancelled lines were replaced
        moved = os.listdir(os.path.join(self.state, ".superseded"))
        self.assertEqual(sorted(m.split(".")[0] for m in moved), ["g0", "g1"])

    def test_second_signal_kills_at_once(self):
        _, tasks = self.seeded_tasks(2, "37.25")
        path = self.batch_file(tasks)
        p = self.start_batch(path, "--jobs", "2")
        self.wait_running(["g0", "g1"])
        p.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        t0 = time.monotonic()
        p.send_signal(signal.SIGTERM)
        _, err = p.communicate(timeout=30)
        self.assertLess(time.monotonic() - t0, 3, err)
        self.assertEqual(p.returncode, 1, err)
        with open(os.path.join(self.tmp, "out.jsonl")) as f:
            statuses = {json.loads(line)["id"]: json.loads(line)["status"] for line in f}
        self.assertEqual(statuses, {"g0": "cancelled", "g1": "cancelled"})
        self.assert_nothing_left()


class Help(BatchTestCase):
    def test_help(self):
        import subprocess
        p = subprocess.run([AGENTBOX, "batch", "--help"], capture_output=True, text=True)
        self.assertEqual(p.returncode, 0)
        for opt in ("--jobs", "--out", "--shard", "--resume", "--junit", "--replay", "--events-dir"):
            self.assertIn(opt, p.stdout)


class Progress(BatchTestCase):
    def test_progress_bar_on_a_terminal_counts_tokens(self):
        import pty
        import subprocess
        def steps(seconds):
            return [{"tool_calls": [call("execute_bash", command=f"sleep {seconds}")]},
                    {"tool_calls": [call("finish", message="fine")]}]
        # one conversation per task (the fake consumes a conversation globally); the tasks
        # end one after the other, so the bar shows partial states
        self.serve({f"ok{i}": steps(0.3 + 0.9 * i) for i in range(3)})
        path = self.batch_file([task(f"p{i}", prompt=f"[conv:ok{i}] go") for i in range(3)])
        master, slave = pty.openpty()
        p = subprocess.Popen(self.argv(path, "--jobs", "3", replay=False), env=self.env(live=True),
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
        self.procs.append(p)
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        self.assertEqual(p.wait(60), 0)
        text = b"".join(chunks).decode(errors="replace")
        self.assertIn("\r\x1b[K[", text)            # redrawn in place
        self.assertIn("running", text)
        self.assertRegex(text, r"1/3 done, 0 failed, 2 running, ETA \d+s, [1-9]\d* tok")
        self.assertRegex(text, r"2/3 done, 0 failed, 1 running, ETA \d+s, [1-9]\d* tok")
        self.assertIn("3 tasks: 3 succeeded", text)
        # the fake reports 19 tokens and $0.0000123 per reply: 2 replies x 3 tasks
        self.assertIn("114 tokens", text)
        self.assertIn("$0.0001", text)
        self.assertNotIn("[1/3]", text)             # per-task lines are for logs, not terminals


class SharedBreaker(BatchTestCase):
    """--jobs cells share one broker: a dead upstream trips one breaker for the whole batch
    instead of every task retrying on its own (the control runs with the breaker off)."""
    TASKS = 12
    ATTEMPTS_PER_CALL = 4  # the first attempt + RETRY_WITH_BACKOFF x3 (the default chain)

    def run_dead(self, **env):
        self.fake = fake_openrouter.FakeOpenRouter(
            script={"key": self.key, "default": {"kind": "error", "status": 503,
                                                 "message": "Service temporarily unavailable",
                                                 "error_type": "provider_overloaded"}},
            key=self.key)
        self.fake.start()
        path = self.batch_file([task(f"d{i}") for i in range(self.TASKS)])
        b = self.run_batch(path, "--jobs", str(self.TASKS), replay=False,
                           env=self.env(live=True, **env))
        self.assertEqual(b.rc, 1, b)
        self.assertEqual(len(b.results), self.TASKS, b)
        for r in b.results:
            self.assertEqual(r["status"], "failed", r)
        return b

    def test_one_breaker_for_the_batch(self):
        b = self.run_dead(OPENHANDS_ENABLE_CIRCUIT_BREAKER="true",
                          OPENHANDS_CB_FAILURE_THRESHOLD="4", OPENHANDS_CB_OPEN_SECONDS="60")
        sent = len(self.fake.requests())
        self.assertLess(sent, self.TASKS * self.ATTEMPTS_PER_CALL / 3, f"{sent} requests")
        tripped = [r for r in b.results
                   if "CIRCUIT_BREAK" in ((r.get("error") or {}).get("strategies") or [])]
        self.assertGreater(len(tripped), self.TASKS // 2, b)

    def test_control_without_breaker(self):
        self.run_dead(OPENHANDS_ENABLE_CIRCUIT_BREAKER="false")
        self.assertGreaterEqual(len(self.fake.requests()), self.TASKS * self.ATTEMPTS_PER_CALL)
