"""A local user prepares the directory a root agentbox will write its state into (a state
dir or workspace root under /tmp, pre-created, with symlinks planted in it) and waits for
root to write through them. agentbox must refuse such a directory, naming owner and mode,
and never write or read through a planted link."""
import json
import os
import subprocess
import unittest

import hostile_util

from hostile_util import AGENTBOX, Canary, HostileCase, base_env


class StateDirAttacks(HostileCase):
    def refused(self, p, timeout=10):
        try:
            p.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.fail("serve accepted the state dir (still running)")
        self.assertEqual(p.returncode, 2, self.serve_log())
        return self.serve_log()

    def test_attacker_owned_state_dir_with_compaction_symlink(self):
        canary = Canary(self.tmp)
        state = self.attacker_dir(os.path.join(self.tmp, "state"))
        os.symlink(canary.path, os.path.join(state, ".journal.jsonl.compact"))
        log = self.refused(self.start_serve(state, wait=False))
        self.assertIn(f"uid {self.atk_uid}", log)
        self.assertIn("mode 0755", log)
        canary.assert_untouched(self)

    def test_attacker_owned_state_dir_with_journal_symlink(self):
        canary = Canary(self.tmp)
        state = self.attacker_dir(os.path.join(self.tmp, "state"))
        os.symlink(canary.path, os.path.join(state, "journal.jsonl"))
        self.refused(self.start_serve(state, wait=False))
        canary.assert_untouched(self)

    def test_state_dir_below_an_attacker_directory(self):
        """Root's own state dir, but inside a directory the user owns: the user can swap
        it for a directory full of links whenever they like."""
        canary = Canary(self.tmp)
        top = self.attacker_dir(os.path.join(self.tmp, "home"))
        state = os.path.join(top, "deep", "state")
        os.makedirs(state, mode=0o700)
        self.attacker_dir(os.path.join(top, "deep"))
        log = self.refused(self.start_serve(state, wait=False))
        self.assertIn(f"uid {self.atk_uid}", log)
        canary.assert_untouched(self)
        self.assertEqual(os.listdir(state), [])

    def test_new_state_dir_in_attacker_directory_is_not_created(self):
        top = self.attacker_dir(os.path.join(self.tmp, "home"))
        state = os.path.join(top, "state")
        self.refused(self.start_serve(state, wait=False))
        self.assertFalse(os.path.exists(state), "a root directory was made in the user's")

    def test_world_writable_state_dir(self):
        canary = Canary(self.tmp)
        state = os.path.join(self.tmp, "state")
        os.mkdir(state)
        os.chmod(state, 0o777)
        log = self.refused(self.start_serve(state, wait=False))
        self.assertIn("mode 0777", log)
        canary.assert_untouched(self)

    def test_symlink_at_the_top_to_an_attacker_directory(self):
        canary = Canary(self.tmp)
        real = self.attacker_dir(os.path.join(self.tmp, "atkstate"))
        os.symlink(canary.path, os.path.join(real, ".journal.jsonl.compact"))
        link = os.path.join(self.tmp, "state")
        os.symlink(real, link)
        self.refused(self.start_serve(link, wait=False))
        canary.assert_untouched(self)

    def test_socket_in_an_attacker_directory(self):
        top = self.attacker_dir(os.path.join(self.tmp, "sockdir"))
        state = os.path.join(self.tmp, "state")
        p = self.start_serve(state, sock=os.path.join(top, "s.sock"), wait=False)
        self.refused(p)

    def test_own_state_dir_still_works(self):
        state = os.path.join(self.tmp, "state")
        p = self.start_serve(state)
        self.assertIsNone(p.poll(), self.serve_log())
        self.assert_health_fast()
        self.stop_serve(p)
        self.assertEqual(stat_mode(state), 0o700)


def stat_mode(path):
    return os.stat(path).st_mode & 0o7777


class RunBatchOutputDirs(HostileCase):
    def task_file(self):
        path = os.path.join(self.tmp, "task.json")
        with open(path, "w") as f:
            json.dump({"id": "t1", "prompt": "hi"}, f)
        os.chmod(path, 0o644)
        return path

    def test_run_refuses_attacker_workspace_root(self):
        canary = Canary(self.tmp)
        ws = self.attacker_dir(os.path.join(self.tmp, "ws"))
        os.symlink(canary.path, os.path.join(ws, "result.json"))
        r = subprocess.run([AGENTBOX, "run", "--id", "t1", "--replay", self.write_replay(),
                            "--quiet", "hi"], env=base_env(self.tmp), capture_output=True,
                           timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(f"uid {self.atk_uid}".encode(), r.stderr)
        canary.assert_untouched(self)
        self.assertEqual(sorted(os.listdir(ws)), ["result.json"], "root wrote in the user's dir")

    def test_batch_refuses_attacker_state_dir(self):
        canary = Canary(self.tmp)
        state = self.attacker_dir(os.path.join(self.tmp, "bstate"))
        os.symlink(canary.path, os.path.join(state, "t1"))
        batch = os.path.join(self.tmp, "b.jsonl")
        with open(batch, "w") as f:
            f.write(json.dumps({"id": "t1", "prompt": "hi"}) + "\n")
        r = subprocess.run([AGENTBOX, "batch", batch, "--state-dir", state, "--replay",
                            self.write_replay(), "--quiet"], env=base_env(self.tmp),
                           capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr)
        canary.assert_untouched(self)

    def test_batch_refuses_attacker_events_dir(self):
        canary = Canary(self.tmp)
        events = self.attacker_dir(os.path.join(self.tmp, "ev"))
        os.symlink(canary.path, os.path.join(events, "t1.jsonl"))
        batch = os.path.join(self.tmp, "b.jsonl")
        with open(batch, "w") as f:
            f.write(json.dumps({"id": "t1", "prompt": "hi"}) + "\n")
        r = subprocess.run([AGENTBOX, "batch", batch, "--state-dir",
                            os.path.join(self.tmp, "bstate"), "--events-dir", events,
                            "--replay", self.write_replay(), "--quiet"],
                           env=base_env(self.tmp), capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr)
        canary.assert_untouched(self)

    def test_exec_meta_in_attacker_directory(self):
        canary = Canary(self.tmp)
        d = self.attacker_dir(os.path.join(self.tmp, "metadir"))
        os.symlink(canary.path, os.path.join(d, "meta.json"))
        r = subprocess.run([AGENTBOX, "exec", "--meta", os.path.join(d, "meta.json"), "--",
                            "true"], env=base_env(self.tmp), capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(f"uid {self.atk_uid}".encode(), r.stderr)
        canary.assert_untouched(self)

    def test_run_events_file_in_attacker_directory(self):
        canary = Canary(self.tmp)
        d = self.attacker_dir(os.path.join(self.tmp, "evdir"))
        os.symlink(canary.path, os.path.join(d, "ev.jsonl"))
        r = subprocess.run([AGENTBOX, "run", "--replay", self.write_replay(), "--quiet",
                            "--events", os.path.join(d, "ev.jsonl"), "hi"],
                           env=base_env(self.tmp), capture_output=True, timeout=120)
        self.assertEqual(r.returncode, 2, r.stderr)
        canary.assert_untouched(self)


load_tests = hostile_util.load_tests

if __name__ == "__main__":
    unittest.main()
