"""Usability suite: what a new user meets in the first hour, through the real binary: the
README's commands as written, output that other tools can read (JSON on stdout, JSON Lines
with --events -), `make demo`'s stdout. Runs offline (--replay); leaves nothing behind."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(ROOT, "agentbox")
DATA_DIR = os.environ.get("AGENTBOX_DATA_DIR") or ROOT
DEMO = os.path.join(ROOT, "examples", "demo")


class FirstHour(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="agentbox-first-hour-")
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENHANDS_", "OPENROUTER_"))}
        env.update({"OPENHANDS_WORKSPACE_ROOT": os.path.join(self.tmp, "state"),
                    "AGENTBOX_DATA_DIR": DATA_DIR})
        env.update(extra)
        return env

    def agentbox(self, *args, input=None, timeout=120, **envx):
        return subprocess.run([AGENTBOX, *args], env=self.env(**envx), capture_output=True,
                              text=True, input=input, timeout=timeout, cwd=self.tmp)

    def demo_run(self, *args, **kw):
        return self.agentbox("run", "--quiet", "--task-file", os.path.join(DEMO, "task.json"),
                             "--replay", os.path.join(DEMO, "replay.json"), *args, **kw)

    def test_result_json_is_indented_with_two_spaces(self):
        r = self.demo_run()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\t", r.stdout)
        result = json.loads(r.stdout)
        self.assertEqual(result["status"], "succeeded")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "{")
        self.assertTrue(lines[1].startswith('  "id": "'), lines[1])
        for line in lines:  # nesting in steps of two spaces, "key": value
            indent = len(line) - len(line.lstrip(" "))
            self.assertEqual(indent % 2, 0, line)
        self.assertIn('  "status": "succeeded",', lines)
        # stable: the same task gives the same keys in the same order
        again = json.loads(self.demo_run().stdout)
        self.assertEqual(list(again), list(result))

    def test_events_dash_makes_stdout_json_lines_ending_with_the_result(self):
        r = self.demo_run("--events", "-")
        self.assertEqual(r.returncode, 0, r.stderr)
        records = [json.loads(line) for line in r.stdout.splitlines()]  # every line parses
        self.assertGreater(len(records), 3)
        self.assertTrue(all("type" in e for e in records[:-1]))
        self.assertEqual(records[-1]["status"], "succeeded")
        self.assertEqual(records[0]["type"], "task_queued")

    def test_readme_run_example_writes_valid_json(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        self.assertNotIn("--events - > result.json", readme)
        self.assertIn("--events events.jsonl > result.json", readme)
        r = self.demo_run("--events", os.path.join(self.tmp, "events.jsonl"))
        self.assertEqual(json.loads(r.stdout)["status"], "succeeded")
        with open(os.path.join(self.tmp, "events.jsonl")) as f:
            self.assertTrue(all(json.loads(line) for line in f))

    @unittest.skipUnless(shutil.which("make") and os.access(ROOT, os.W_OK),
                         "needs make and a writable checkout")
    def test_make_demo_stdout_is_the_result_alone(self):
        env = self.env()
        env["OPENHANDS_WORKSPACE_ROOT"] = os.path.join(self.tmp, "demo-state")
        env.pop("OPENROUTER_API_KEY", None)
        r = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, "demo"], env=env,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["status"], "succeeded", r.stdout[:500])


if __name__ == "__main__":
    unittest.main()
