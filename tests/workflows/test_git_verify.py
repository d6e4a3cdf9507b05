"""Git workspaces and the verify step through the real `agentbox run`: the agent works on a
clone of a repository at a revision, its change comes back as a patch that applies to a fresh
clone, and a verify command judges it in a fresh cell the agent cannot tamper with."""
import json
import os
import signal
import subprocess
import time
import unittest

from wftest_util import (AGENTBOX, CALC_FIXED, RunTestCase, bash, call, calc_repo, finish, git,
                         make_repo, tree_state)

FIX = call("str_replace_editor", command="str_replace", path="/workspace/calc.py",
           old_str="return a - b", new_str="return a + b")
VERIFY = {"command": "python3 -B tests/test_calc.py", "timeout_s": 60, "reset": ["tests/**"]}


class GitWorkspace(RunTestCase):
    def task(self, marker, rev="HEAD", verify=None, **extra):
        t = {"prompt": f"{marker} fix the failing test",
             "workspace": {"git": {"repo": self.repo, "rev": rev}}}
        if verify:
            t["verify"] = verify
        t.update(extra)
        return t

    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        self.head = calc_repo(self.repo)

    def test_fix_verify_passes_and_patch_applies_to_a_fresh_clone(self):
        before = tree_state(self.repo)
        marker = self.serve([
            {"tool_calls": [bash("git log --oneline | wc -l && git status --short && python3 -B tests/test_calc.py")]},
            {"tool_calls": [FIX]},
            {"tool_calls": [bash("echo 'NOTES' > notes.txt && git diff --stat && git stash && git stash pop")]},
            {"tool_calls": [finish("fixed add")]},
        ])
        run = self.run_agent(task=self.task(marker, verify=VERIFY))
        self.assertStatus(run, "succeeded", 0)
        r = run.result
        obs = run.observations()
        self.assertIn("add is broken", obs[0])
        self.assertTrue(obs[0].lstrip().startswith("1"), obs[0])  # history is there
        self.assertIn("calc.py", obs[2])
        self.assertEqual(r["workspace_git"]["commit"], self.head)
        patch = r["patch"]
        self.assertIn("+    return a + b", patch)
        self.assertIn("new file mode", patch)  # notes.txt
        self.assertIn("notes.txt", patch)
        # files and diff describe the work tree: .git (changed by git stash) is left out
        self.assertEqual(sorted(f["path"] for f in r["files"]), ["calc.py", "notes.txt"])
        self.assertNotIn(".git/", r["diff"])
        self.assertIn("+    return a + b", r["diff"])
        with open(os.path.join(self.state, r["id"], "patch.diff")) as f:
            self.assertEqual(f.read(), patch)
        self.assertEqual(r["verify"]["status"], "passed", r["verify"])
        self.assertEqual(r["verify"]["exit_code"], 0)
        self.assertIn("tests ok", r["verify"]["output"])
        types = [e["type"] for e in run.events]
        self.assertIn("verify_started", types)
        self.assertIn("verify_finished", types)
        self.assertLess(types.index("verify_finished"), types.index("task_completed"))
        # the patch applies to a fresh clone at the revision; the host repo is untouched
        fresh = os.path.join(self.tmp, "fresh")
        git(self.tmp, "clone", "-q", self.repo, fresh)
        git(fresh, "checkout", "-q", self.head)
        p = subprocess.run(["git", "apply", "--check", "-"], cwd=fresh, input=patch, text=True,
                           capture_output=True)
        self.assertEqual(p.returncode, 0, p.stderr)
        subprocess.run(["git", "apply", "-"], cwd=fresh, input=patch, text=True, check=True)
        with open(os.path.join(fresh, "calc.py")) as f:
            self.assertEqual(f.read(), CALC_FIXED)
        self.assertEqual(tree_state(self.repo), before)
        # the temporary clone is gone
        self.assertFalse([n for n in os.listdir("/tmp") if n.startswith("agentbox-git-") and
                          os.stat(os.path.join("/tmp", n)).st_mtime > os.stat(self.tmp).st_mtime])

    def test_agent_that_edits_the_test_fails_verify_with_reset(self):
        marker = self.serve([
            {"tool_calls": [bash("printf 'print(\"tests ok\")\\n' > tests/test_calc.py && python3 -B tests/test_calc.py")]},
            {"tool_calls": [finish("tests pass now")]},
        ])
        run = self.run_agent(task=self.task(marker, verify=VERIFY))
        self.assertStatus(run, "failed", 1)
        r = run.result
        self.assertEqual(r["error"]["reason"], "verify_failed", r["error"])
        self.assertEqual(r["verify"]["status"], "failed")
        self.assertNotEqual(r["verify"]["exit_code"], 0)
        self.assertIn("add is broken", r["verify"]["output"])
        self.assertIn("tests/test_calc.py", r["patch"])  # the patch still says what it did
        self.assertEqual(run.events[-1]["type"], "task_failed")

    def test_without_reset_the_edited_test_would_pass(self):
        marker = self.serve([
            {"tool_calls": [bash("printf 'print(\"tests ok\")\\n' > tests/test_calc.py")]},
            {"tool_calls": [finish("tests pass now")]},
        ])
        v = dict(VERIFY, reset=[])
        run = self.run_agent(task=self.task(marker, verify=v))
        self.assertStatus(run, "succeeded", 0)
        self.assertEqual(run.result["verify"]["status"], "passed")

    def test_background_process_left_by_the_agent_cannot_touch_verify(self):
        marker = self.serve([
            {"tool_calls": [FIX]},
            {"tool_calls": [bash("(setsid sh -c 'sleep 3; echo \"raise SystemExit(7)\" > calc.py; "
                                 "echo bad > tests/test_calc.py' >/dev/null 2>&1 &) ; echo started")]},
            {"tool_calls": [finish("fixed")]},
        ])
        run = self.run_agent(task=self.task(marker, verify=dict(VERIFY, command="sleep 5; python3 -B tests/test_calc.py")))
        self.assertStatus(run, "succeeded", 0)
        self.assertEqual(run.result["verify"]["status"], "passed", run.result["verify"])
        self.assertIn("tests ok", run.result["verify"]["output"])

    def test_verify_skipped_when_the_agent_does_not_finish(self):
        marker = self.serve([{"tool_calls": [FIX]}] * 3)
        run = self.run_agent(task=self.task(marker, verify=VERIFY, max_iterations=1))
        self.assertStatus(run, "failed", 1)
        self.assertEqual(run.result["verify"]["status"], "skipped")
        self.assertNotIn("verify_started", [e["type"] for e in run.events])

    def test_verify_timeout(self):
        marker = self.serve([{"tool_calls": [finish("done")]}])
        run = self.run_agent(task=self.task(marker, verify={"command": "sleep 60", "timeout_s": 1}))
        self.assertStatus(run, "failed", 1)
        self.assertEqual(run.result["verify"]["status"], "timeout")
        self.assertLess(run.result["verify"]["wall_s"], 30)

    def test_cancel_during_verify(self):
        marker = self.serve([{"tool_calls": [finish("done")]}])
        path = os.path.join(self.tmp, "task.json")
        with open(path, "w") as f:
            json.dump(self.task(marker, verify={"command": "sleep 60", "timeout_s": 120},
                                id="cv1"), f)
        proc = subprocess.Popen([AGENTBOX, "run", "--quiet", "--task-file", path], env=self.env(),
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        events = os.path.join(self.state, "cv1", "events.jsonl")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if os.path.exists(events) and "verify_started" in open(events).read():
                break
            time.sleep(0.05)
        time.sleep(0.5)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        self.assertLess(time.monotonic() - t0, 20)
        r = json.loads(out)
        self.assertEqual((r["status"], proc.returncode), ("cancelled", 1), err)
        self.assertNotEqual(r["verify"]["status"], "passed")

    def test_branch_name_and_older_revision(self):
        second = make_repo(self.repo, {"calc.py": "def add(a, b):\n    return b + a\n"}, "second")
        self.assertNotEqual(second, self.head)
        marker = self.serve([{"tool_calls": [bash("cat calc.py; git log --format=%s")]},
                             {"tool_calls": [finish("looked")]}])
        run = self.run_agent(task=self.task(marker, rev=self.head[:10]))
        self.assertStatus(run, "succeeded", 0)
        self.assertIn("return a - b", run.observations()[0])
        self.assertNotIn("second", run.observations()[0])
        self.assertEqual(run.result["patch"], "")
        marker = self.serve([{"tool_calls": [bash("cat calc.py")]}, {"tool_calls": [finish("x")]}])
        run = self.run_agent("--id", "t2", task=self.task(marker, rev="main"))
        self.assertStatus(run, "succeeded", 0)
        self.assertIn("return b + a", run.observations()[0])


class BadInput(RunTestCase):
    def setUp(self):
        super().setUp()
        self.repo = os.path.join(self.tmp, "repo")
        self.head = calc_repo(self.repo)

    def refused(self, task, *needles):
        task.setdefault("prompt", "[conv:t] x")
        run = self.run_agent(task=task)
        self.assertNotEqual(run.rc, 0, run)
        for n in needles:
            self.assertIn(n, run.stderr + (json.dumps(run.result) if run.result else ""), run)
        # nothing ran: no LLM request, no cell
        self.assertFalse(self.fake and self.fake.requests())
        return run

    def test_bad_inputs_are_refused_before_anything_runs(self):
        self.serve([{"tool_calls": [finish("x")]}])
        ws = lambda **g: {"git": g}  # noqa: E731
        self.refused({"workspace": ws(repo=self.repo, rev="no-such-rev")}, "task.workspace.git.rev",
                     "no such commit")
        notrepo = os.path.join(self.tmp, "plain")
        os.makedirs(notrepo)
        self.refused({"id": "b2", "workspace": ws(repo=notrepo)}, "task.workspace.git.repo",
                     "not a git repository")
        self.refused({"id": "b3", "workspace": ws(repo="https://example.com/x.git")},
                     "network egress")
        self.refused({"id": "b4", "workspace": ws(repo="git@example.com:x.git")}, "network egress")
        self.refused({"id": "b5", "workspace": ws(repo=self.repo, rev="--upload-pack=x")},
                     "task.workspace.git.rev")
        self.refused({"id": "b6", "verify": {"command": "true"}}, "task.verify", "git workspace")
        self.refused({"id": "b7", "workspace": ws(repo=self.repo), "verify": {"cmd": "true"}},
                     "task.verify")
        self.refused({"id": "b8", "workspace": {"git": {"repo": self.repo}, "from_dir": self.tmp}},
                     "exclude each other")

    def test_file_url_and_bare_repository(self):
        bare = os.path.join(self.tmp, "bare.git")
        git(self.tmp, "clone", "-q", "--bare", self.repo, bare)
        for repo in ("file://" + self.repo, bare):
            marker = self.serve([{"tool_calls": [bash("cat calc.py")]}, {"tool_calls": [finish("x")]}])
            run = self.run_agent("--id", "u" + str(len(repo)), task={
                "prompt": f"{marker} x", "workspace": {"git": {"repo": repo, "rev": self.head}}})
            self.assertStatus(run, "succeeded", 0)
            self.assertIn("return a - b", run.observations()[0])


if __name__ == "__main__":
    unittest.main()
