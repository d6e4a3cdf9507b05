"""Batches for evaluations: 20 git tasks with verify steps through the real `agentbox batch`
(offline --replay: every task gets the same two replies, the repository decides whether the
fix works): SWE-bench-style predictions, pass@1 in the summary, and --retry-failed re-running
only the tasks that failed."""
import json
import os
import subprocess
import unittest

from wftest_util import AGENTBOX, RunTestCase, git, make_repo

FIX = "sed -i 's/a - b/a + b/' calc.py && git diff --stat"
TEST = "import sys\nsys.path.insert(0, '.')\nfrom calc import add\nassert add(2, 3) == 5\nprint('ok')\n"


def reply(name, **args):
    return {"content": None, "tool_calls": [{"id": "c_" + name, "type": "function",
                                             "function": {"name": name, "arguments": json.dumps(args)}}]}


class BatchEval(RunTestCase):
    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        make_repo(self.repo, {"calc.py": "def add(a, b):\n    return a - b\n", "test_calc.py": TEST})
        git(self.repo, "branch", "easy")
        git(self.repo, "checkout", "-q", "-b", "hard")
        with open(os.path.join(self.repo, "calc.py"), "w") as f:
            f.write("def add(a, b):\n    return a * b\n")
        git(self.repo, "commit", "-qam", "hard")
        for root, ds, fs in os.walk(self.repo):
            for n in ds:
                os.chmod(os.path.join(root, n), 0o755)
        self.replay = os.path.join(self.tmp, "replay.json")
        with open(self.replay, "w") as f:
            json.dump({"description": "fix by sed", "replies": [
                reply("execute_bash", command=FIX), reply("finish", message="fixed")]}, f)
        self.batch = os.path.join(self.tmp, "tasks.jsonl")
        with open(self.batch, "w") as f:
            for i in range(20):
                rev = "hard" if i % 4 == 3 else "easy"
                f.write(json.dumps({
                    "id": f"t{i:02d}", "prompt": "fix add",
                    "workspace": {"git": {"repo": self.repo, "rev": rev}},
                    "verify": {"command": "python3 -B test_calc.py", "timeout_s": 60,
                               "reset": ["test_calc.py"]},
                    "metadata": {"instance_id": f"calc__{i}"}}) + "\n")
        self.out = os.path.join(self.tmp, "out.jsonl")
        self.pred = os.path.join(self.tmp, "preds.jsonl")

    def batch_run(self, *extra):
        return subprocess.run([AGENTBOX, "batch", self.batch, "--replay", self.replay, "--jobs", "2",
                               "--out", self.out, "--state-dir", self.state, "--quiet", *extra],
                              capture_output=True, text=True, timeout=600, env=self.env())

    def test_predictions_pass_at_1_and_retry_failed(self):
        p = self.batch_run("--predictions", self.pred)
        self.assertEqual(p.returncode, 1, p.stderr)
        self.assertIn("pass@1 15/20 = 0.750", p.stderr)
        with open(self.pred) as f:
            preds = [json.loads(line) for line in f]
        self.assertEqual(len(preds), 20)
        by = {x["instance_id"]: x for x in preds}
        self.assertEqual(sorted(by), sorted(f"calc__{i}" for i in range(20)))
        for x in preds:
            self.assertEqual(set(x), {"instance_id", "model_name_or_path", "model_patch"})
            self.assertTrue(x["model_name_or_path"].startswith("replay:"), x)
            hard = int(x["instance_id"].split("__")[1]) % 4 == 3
            if hard:  # sed found nothing to fix
                self.assertEqual(x["model_patch"], "")
            else:
                self.assertIn("+    return a + b", x["model_patch"])
        with open(self.out) as f:
            first = [json.loads(line) for line in f]
        failed = sorted(r["id"] for r in first if r["status"] != "succeeded")
        self.assertEqual(failed, ["t03", "t07", "t11", "t15", "t19"])
        for r in first:
            if r["id"] in failed:
                self.assertEqual(r["error"]["reason"], "verify_failed")
        kept = os.stat(os.path.join(self.state, "t00", "result.json")).st_mtime_ns
        # the retry runs only the five failed tasks (and they fail again: the repo is the same)
        p = self.batch_run("--retry-failed", "--predictions", self.pred)
        self.assertEqual(p.returncode, 1, p.stderr)
        with open(self.out) as f:
            lines = [json.loads(line) for line in f]
        # --out keeps the 15 that passed and gets the 5 re-run results after them
        self.assertEqual(len(lines), 20, [r["id"] for r in lines])
        self.assertEqual(sorted(r["id"] for r in lines[15:]), failed)
        self.assertNotIn("t03", [r["id"] for r in lines[:15]])
        self.assertEqual(os.stat(os.path.join(self.state, "t00", "result.json")).st_mtime_ns, kept)
        self.assertIn("pass@1 15/20", p.stderr)


if __name__ == "__main__":
    unittest.main()
