"""The per-cell host uids (AGENTBOX_FIRST_UID + slot) must belong to no account: a user
whose uid is a slot's could signal or ptrace the cells of that slot, and a group whose
gid is a slot's would lend its files to the cells. A root agentbox skips such slots (and
says so), and refuses when none is left."""
import grp
import os
import pwd
import secrets
import subprocess
import unittest

import hostile_util

from hostile_util import AGENTBOX, HostileCase, as_attacker, base_env


class SlotUids(HostileCase):
    def exec_env(self, first, slots):
        return base_env(self.tmp, {"AGENTBOX_FIRST_UID": str(first),
                                   "AGENTBOX_SLOTS": str(slots)})

    def test_only_slot_is_a_users_uid_refused(self):
        r = subprocess.run([AGENTBOX, "exec", "--", "true"],
                           env=self.exec_env(self.atk_uid, 1), capture_output=True, timeout=60)
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn(b"belong to accounts", r.stderr)
        self.assertIn(self.atk_name.encode(), r.stderr)

    def test_user_cannot_kill_a_cell_in_its_uids_slot(self):
        """Slots start at the user's uid: the cell must get another one, so the user's
        kill(-1) does not reach it."""
        p = subprocess.Popen([AGENTBOX, "exec", "--", "sh", "-c",
                              "cat /proc/self/uid_map; sleep 4; echo alive"],
                             env=self.exec_env(self.atk_uid, 2), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE)
        self.procs.append(p)
        first = p.stdout.readline().split()
        self.assertEqual(len(first), 3, first)
        self.assertNotEqual(int(first[1]), self.atk_uid, "the cell got the user's uid")
        as_attacker(["sh", "-c", "kill -9 -1"])
        out, err = p.communicate(timeout=60)
        self.assertEqual(p.returncode, 0, err)
        self.assertIn(b"alive", out)

    def test_slot_gid_of_an_existing_group_is_skipped(self):
        """A group alone (no account of that number) at the slot's id."""
        gid = next(g for g in range(61500, 62500) if not id_taken(g))
        name = "abxgrp" + secrets.token_hex(3)
        subprocess.run(["groupadd", "-g", str(gid), name], check=True, capture_output=True)
        self.addCleanup(subprocess.run, ["groupdel", name], capture_output=True)
        r = subprocess.run([AGENTBOX, "exec", "--", "sh", "-c", "cat /proc/self/gid_map"],
                           env=self.exec_env(gid, 1), capture_output=True, timeout=60)
        if r.returncode == 0:  # the slot's uid/gid was taken for the group's gid
            self.assertNotIn(f" {gid} ".encode(), r.stdout, r.stdout)
        self.assertEqual(r.returncode, 125, r.stdout + r.stderr)
        self.assertIn(name.encode(), r.stderr)


def id_taken(n):
    try:
        pwd.getpwuid(n)
        return True
    except KeyError:
        pass
    try:
        grp.getgrgid(n)
        return True
    except KeyError:
        return False


load_tests = hostile_util.load_tests

if __name__ == "__main__":
    unittest.main()
