"""`agentbox batch merge`: the shards' result files joined into one with one JUnit report;
a duplicate id or a line that is not a result refuses the merge (nothing written, exit 2);
with --tasks, a task with no result anywhere is named and fails the merge (exit 1)."""
import json
import os
import subprocess
import xml.etree.ElementTree as ET

from batchtest_util import AGENTBOX, BatchTestCase, derived_id, task


def result(tid, status="succeeded", **extra):
    r = {"id": tid, "status": status, "success": status == "succeeded", "output": "out of " + tid,
         "execution_time": 1.5, "usage": {"total_tokens": 10, "cost_usd": 0.001}}
    r.update(extra)
    return json.dumps(r)


class Merge(BatchTestCase):
    def merge(self, *args):
        return subprocess.run([AGENTBOX, "batch", "merge", *args], capture_output=True, text=True,
                              timeout=60, cwd=self.tmp)

    def path(self, name):
        return os.path.join(self.tmp, name)

    def read_lines(self, name):
        with open(self.path(name)) as f:
            return f.read().splitlines()

    def test_real_shards_join_into_one_file_and_one_report(self):
        ids = [f"t{i:02d}" for i in range(9)]
        tasks = self.batch_file([task(i) for i in ids])
        n = 3
        shard_lines = []
        for i in range(n):
            b = self.run_batch(tasks, "--shard", f"{i}/{n}", "--jobs", "3", out=f"out-{i}.jsonl")
            self.assertEqual(b.rc, 0, b)
            shard_lines += self.read_lines(f"out-{i}.jsonl")
        self.assertEqual(len(shard_lines), len(ids))
        m = self.merge("out-0.jsonl", "out-1.jsonl", "out-2.jsonl", "--out", "all.jsonl",
                       "--junit", "all.xml", "--tasks", tasks)
        self.assertEqual(m.returncode, 0, m.stderr)
        merged = self.read_lines("all.jsonl")
        # the task file's order, each shard's line byte for byte
        self.assertEqual([json.loads(line)["id"] for line in merged], ids)
        self.assertEqual(sorted(merged), sorted(shard_lines))
        self.assertIn("9 tasks from 3 files: 9 succeeded", m.stderr)
        self.assertIn("0 missing", m.stderr)
        root = ET.parse(self.path("all.xml")).getroot()
        self.assertEqual((root.get("tests"), root.get("failures"), root.get("skipped")),
                         ("9", "0", "0"))
        self.assertEqual([c.get("name") for c in root.iter("testcase")], ids)
        self.assertFalse(os.path.exists(self.path("all.jsonl.tmp")))
        # without --tasks: the inputs' order, same lines
        m = self.merge("out-2.jsonl", "out-0.jsonl", "out-1.jsonl", "--out", "-")
        self.assertEqual(m.returncode, 0, m.stderr)
        want = (self.read_lines("out-2.jsonl") + self.read_lines("out-0.jsonl")
                + self.read_lines("out-1.jsonl"))
        self.assertEqual(m.stdout.splitlines(), want)

    def test_duplicate_id_is_refused_naming_both_places_and_writes_nothing(self):
        self.write("a.jsonl", result("x") + "\n" + result("dup") + "\n")
        self.write("b.jsonl", result("y") + "\n\n" + result("dup", "failed") + "\n")
        self.write("all.jsonl", "kept\n")
        m = self.merge("a.jsonl", "b.jsonl", "--out", "all.jsonl", "--junit", "all.xml")
        self.assertEqual(m.returncode, 2, m.stderr)
        self.assertIn("id 'dup' has 2 results: a.jsonl:2 and b.jsonl:3", m.stderr)
        self.assertIn("nothing was written", m.stderr)
        self.assertEqual(self.read_lines("all.jsonl"), ["kept"])
        self.assertFalse(os.path.exists(self.path("all.xml")))
        # the same file given twice is every id twice
        m = self.merge("a.jsonl", "a.jsonl", "--out", "x.jsonl")
        self.assertEqual(m.returncode, 2, m.stderr)
        self.assertIn("id 'x' has 2 results", m.stderr)
        self.assertFalse(os.path.exists(self.path("x.jsonl")))

    def test_missing_tasks_are_named_and_fail_the_merge(self):
        tasks = self.batch_file([task("a"), task("b"), task("c"), task("d")])
        self.write("s0.jsonl", result("a") + "\n" + result("c") + "\n")
        m = self.merge("s0.jsonl", "--tasks", tasks, "--out", "all.jsonl", "--junit", "all.xml")
        self.assertEqual(m.returncode, 1, m.stderr)
        self.assertIn("2 tasks have no result in any input: b d", m.stderr)
        self.assertIn("2 missing; ", m.stderr)
        self.assertEqual([json.loads(line)["id"] for line in self.read_lines("all.jsonl")],
                         ["a", "c"])
        root = ET.parse(self.path("all.xml")).getroot()
        self.assertEqual((root.get("tests"), root.get("failures")), ("4", "2"))
        fails = {c.get("name"): c.find("failure") for c in root.iter("testcase")}
        self.assertIsNone(fails["a"])
        self.assertEqual(fails["b"].get("type"), "missing")
        self.assertEqual(fails["d"].get("type"), "missing")

    def test_tasks_file_needs_only_ids_and_derives_them_as_batch_does(self):
        # merged on another machine: the tasks' workspace directories need not exist here
        anon = json.dumps(task(prompt="no id here"))
        tasks = self.batch_file([task("far", workspace={"from_dir": "/nonexistent/checkout"}),
                                 anon, anon])
        self.write("s0.jsonl", result("far") + "\n")
        m = self.merge("s0.jsonl", "--tasks", tasks, "--out", "all.jsonl")
        self.assertEqual(m.returncode, 1, m.stderr)
        d = derived_id(anon)
        self.assertIn(f"2 tasks have no result in any input: {d} {d}-2", m.stderr)

    def test_a_result_that_is_not_a_task_of_the_file_is_refused(self):
        tasks = self.batch_file([task("a")])
        self.write("s0.jsonl", result("a") + "\n" + result("stranger") + "\n")
        m = self.merge("s0.jsonl", "--tasks", tasks, "--out", "all.jsonl")
        self.assertEqual(m.returncode, 2, m.stderr)
        self.assertIn("s0.jsonl:2: id 'stranger' is not a task of", m.stderr)
        self.assertFalse(os.path.exists(self.path("all.jsonl")))

    def test_bad_lines_refuse_but_a_half_written_last_line_is_dropped(self):
        self.write("bad.jsonl", result("a") + "\nnot json\n" + '{"no": "id"}\n')
        m = self.merge("bad.jsonl", "--out", "all.jsonl")
        self.assertEqual(m.returncode, 2, m.stderr)
        self.assertIn("bad.jsonl:2: not a result line", m.stderr)
        self.assertIn("bad.jsonl:3: not a result line", m.stderr)
        self.assertIn("2 problems; nothing was written", m.stderr)
        self.assertFalse(os.path.exists(self.path("all.jsonl")))
        # a shard killed while writing leaves a last line without its newline
        tasks = self.batch_file([task("a"), task("b")])
        self.write("cut.jsonl", result("a") + "\n" + result("b")[:20])
        m = self.merge("cut.jsonl", "--out", "all.jsonl", "--tasks", tasks)
        self.assertEqual(m.returncode, 1, m.stderr)
        self.assertIn("cut.jsonl:2: dropped a half-written last line", m.stderr)
        self.assertIn("1 task has no result in any input: b", m.stderr)

    def test_exit_code_is_the_batch_rule_over_the_joined_results(self):
        cases = [(["succeeded", "succeeded"], 0), (["succeeded", "mock"], 4),
                 (["mock", "escalated"], 3), (["escalated", "timeout"], 1),
                 (["cancelled", "succeeded"], 1)]
        for statuses, rc in cases:
            for i, st in enumerate(statuses):
                self.write(f"s{i}.jsonl", result(f"t{i}", st) + "\n")
            m = self.merge("s0.jsonl", "s1.jsonl", "--out", "all.jsonl")
            self.assertEqual(m.returncode, rc, (statuses, m.stderr))
            self.assertIn(f"exit {rc}", m.stderr)

    def test_usage_errors(self):
        self.write("a.jsonl", result("a") + "\n")
        for args, says in ((["a.jsonl"], "--out"), (["--out", "x.jsonl"], "result files"),
                           (["nosuch.jsonl", "--out", "x.jsonl"], "nosuch.jsonl"),
                           (["a.jsonl", "--out", "x.jsonl", "--bogus"], "--bogus"),
                           (["a.jsonl", "--out", "x.jsonl", "--tasks", "nosuch"], "nosuch")):
            m = self.merge(*args)
            self.assertEqual(m.returncode, 2, (args, m.stderr))
            self.assertIn(says, m.stderr)
            self.assertFalse(os.path.exists(self.path("x.jsonl")))
        m = self.merge("--help")
        self.assertEqual(m.returncode, 0)
        for opt in ("--out", "--junit", "--tasks"):
            self.assertIn(opt, m.stdout)
        self.assertIn("batch merge", self.merge("--help").stdout)
        # `agentbox batch --help` shows the subcommand too
        p = subprocess.run([AGENTBOX, "batch", "--help"], capture_output=True, text=True, timeout=30)
        self.assertIn("agentbox batch merge OUT.jsonl...", p.stdout)

    def test_a_batch_file_named_merge_runs_as_dot_slash_merge(self):
        self.batch_file([task("m1")], name="merge")
        b = subprocess.run([AGENTBOX, "batch", "./merge", "--replay", self.replay, "--out",
                            "out.jsonl"], capture_output=True, text=True, timeout=120,
                           cwd=self.tmp, env=self.env())
        self.assertEqual(b.returncode, 0, b.stderr)
        self.assertEqual([json.loads(line)["id"] for line in self.read_lines("out.jsonl")], ["m1"])
