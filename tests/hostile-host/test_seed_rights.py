"""A seed is read with the rights of whoever asked for it: a local user who controls a name
on the way (a symlink, a directory they own) cannot redirect a root `exec`/`run` into a
root-only directory, and a `serve` client cannot name a path below one. Every case checks the
host side: the canary (a 0644 file protected only by a 0700 root directory above it) is
unchanged, was never opened (inotify), and its content is in no output, result or event."""
import json
import os
import secrets
import shutil
import subprocess
import unittest

from hostile_seed_util import AGENTBOX, HostileHostCase, OpenWatch, Server, base_env, replay_file


class ExecSeedRedirects(HostileHostCase):
    def refused(self, r):
        self.assertEqual(r.returncode, 2, r.stdout + r.stderr)
        self.assertIn("--workspace-from", r.stderr)
        self.assertCanarySafe(r.stdout, r.stderr)

    def test_attacker_symlink_at_the_top_is_not_followed(self):
        atk = self.attacker_dir()
        link = os.path.join(atk, "link")
        os.symlink(self.pub, link)
        os.lchown(link, self.atk_uid, self.atk_gid)
        r = self.exec_cat(link)
        self.refused(r)

    def test_attacker_symlink_in_sticky_tmp_is_not_followed(self):
        link = os.path.join("/tmp", f"abx-link-{os.getpid()}-{secrets.token_hex(3)}")
        self.as_attacker("ln", "-s", self.pub, link, check=True)
        self.addCleanup(lambda: os.path.lexists(link) and os.unlink(link))
        self.assertEqual(os.lstat(link).st_uid, self.atk_uid)
        r = self.exec_cat(link)
        self.refused(r)
        self.assertIn("symlink", r.stderr)

    def test_attacker_symlink_deep_inside_is_not_followed(self):
        atk = self.attacker_dir()
        self.as_attacker("mkdir", "-p", os.path.join(atk, "a", "b"), check=True)
        self.as_attacker("ln", "-s", self.priv, os.path.join(atk, "a", "b", "up"), check=True)
        r = self.exec_cat(os.path.join(atk, "a", "b", "up", "pub"))
        self.refused(r)

    def test_attacker_directory_above_a_root_0700_directory(self):
        # root keeps a private tree and a public one inside a directory the attacker owns;
        # the attacker swaps them by renaming (it may: it owns their parent)
        atk = self.attacker_dir()
        private, public = os.path.join(atk, "private"), os.path.join(atk, "public")
        os.mkdir(private, 0o700)
        os.mkdir(os.path.join(private, "pub"), 0o755)
        canary2 = os.path.join(private, "pub", "canary.txt")
        with open(canary2, "w") as f:
            f.write(self.secret + "\n")
        os.chmod(canary2, 0o644)
        os.makedirs(os.path.join(public, "pub"), 0o755)
        with open(os.path.join(public, "pub", "readme"), "w") as f:
            f.write("public\n")
        watch2 = OpenWatch(canary2)
        self.addCleanup(watch2.close)
        self.as_attacker("mv", public, os.path.join(atk, "old"), check=True)
        self.as_attacker("mv", private, public, check=True)
        r = self.exec_cat(os.path.join(public, "pub"))
        self.refused(r)
        self.assertFalse(watch2.touched(), "the swapped-in canary was opened")
        self.assertIn("another user", r.stderr)

    def test_run_task_through_an_attacker_symlink_is_refused(self):
        atk = self.attacker_dir()
        link = os.path.join(atk, "repo")
        os.symlink(self.pub, link)
        os.lchown(link, self.atk_uid, self.atk_gid)
        p, res, events = self.run_task(
            {"prompt": "read it", "workspace": {"from_dir": link}},
            ["cat /workspace/canary.txt; ls -la /workspace"])
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("from_dir", p.stderr)
        self.assertCanarySafe(p.stdout, p.stderr, events, json.dumps(res))

    def test_batch_line_through_an_attacker_directory_is_refused(self):
        atk = self.attacker_dir()
        self.as_attacker("ln", "-s", self.priv, os.path.join(atk, "up"), check=True)
        rp = replay_file(self.tmp, ["cat /workspace/canary.txt"])
        bf = os.path.join(self.tmp, "batch.jsonl")
        with open(bf, "w") as f:
            f.write(json.dumps({"id": "ok", "prompt": "x"}) + "\n")
            f.write(json.dumps({"id": "bad", "prompt": "x",
                                "workspace": {"from_dir": os.path.join(atk, "up", "pub")}}) + "\n")
        env = base_env(self.tmp)
        p = subprocess.run([AGENTBOX, "batch", bf, "--replay", rp, "--quiet",
                            "--state-dir", os.path.join(self.tmp, "bstate")],
                           capture_output=True, text=True, timeout=120, env=env)
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)  # the whole batch refused
        self.assertIn("from_dir", p.stderr)
        self.assertCanarySafe(p.stdout, p.stderr)

    def test_root_still_seeds_from_its_own_private_tree(self):
        # the rule takes nothing from root that root asked for itself: its own 0700 tree,
        # and a symlink root owns in a directory only root may write
        link = os.path.join(self.tmp, "mine")
        os.symlink(self.pub, link)
        for seed in (self.pub, link):
            r = self.exec_cat(seed)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(self.secret, r.stdout)


class ServeSeedRights(HostileHostCase):
    def serve(self):
        rp = replay_file(self.tmp, ["cat /workspace/canary.txt; ls -la /workspace"])
        return Server(self, rp, group=self.atk_gid, uid=self.atk_uid)

    def test_client_naming_a_path_below_a_root_0700_directory_is_refused(self):
        srv = self.serve()
        reply, res, events = srv.submit_as(self.atk, {"prompt": "x",
                                                      "workspace": {"from_dir": self.pub}})
        self.assertFalse(reply.get("ok"), reply)
        self.assertIn("Permission denied", json.dumps(reply))
        self.assertCanarySafe(json.dumps(reply), json.dumps(res), events, srv.text_log())
        # the server took the client's identity for that open only: root's next task is
        # served as root (its state written as root, a root-only seed readable)
        seed = os.path.join(self.tmp, "rootseed")
        os.mkdir(seed, 0o700)
        with open(os.path.join(seed, "canary.txt"), "w") as f:
            f.write("root's\n")
        os.chmod(os.path.join(seed, "canary.txt"), 0o644)
        os.chmod(seed, 0o755)
        reply, res, events = srv.submit_as(None, {"prompt": "x", "workspace": {"from_dir": seed}})
        self.assertTrue(reply.get("ok"), reply)
        self.assertEqual(res["status"], "succeeded", res)
        self.assertIn("root's", events)
        st = os.stat(os.path.join(os.path.dirname(res["events_file"]), "result.json"))
        self.assertEqual((st.st_uid, st.st_gid), (0, 0))

    def test_client_symlink_into_a_root_0700_directory_is_refused(self):
        srv = self.serve()
        atk = self.attacker_dir()
        link = os.path.join(atk, "repo")
        self.as_attacker("ln", "-s", self.pub, link, check=True)
        reply, res, events = srv.submit_as(self.atk, {"prompt": "x",
                                                      "workspace": {"from_dir": link}})
        self.assertFalse(reply.get("ok"), reply)
        self.assertCanarySafe(json.dumps(reply), json.dumps(res), events, srv.text_log())

    def test_client_still_seeds_from_its_own_directory(self):
        srv = self.serve()
        own = self.attacker_dir("own")
        self.as_attacker("sh", "-c", f"echo mine > {own}/canary.txt", check=True)
        reply, res, events = srv.submit_as(self.atk, {"prompt": "x",
                                                      "workspace": {"from_dir": own}})
        self.assertTrue(reply.get("ok"), reply)
        self.assertEqual(res["status"], "succeeded", (res, srv.text_log()))
        self.assertIn("mine", events)
        self.assertCanarySafe(json.dumps(res), events)


if __name__ == "__main__":
    unittest.main()
