"""A socket client of a root serve names its task's policy. It must not make the server
open a file of its choosing (disclosure through the parse error, a FIFO that hangs the
loop, a device), fill the policy cache for everyone, or get a policy weaker than the
operator's floor."""
import json
import os
import socket
import stat
import time
import unittest

import hostile_util

from hostile_util import Canary, Conn, HostileCase


def inline(desc, **over):
    pol = {"name": "mine", "description": desc, "extends": "default"}
    pol.update(over)
    return pol


class PolicyAttacks(HostileCase):
    def setUp(self):
        super().setUp()
        self.state = os.path.join(self.tmp, "state")

    def serve(self, *args):
        p = self.start_serve(self.state, args=("--allow-uid", str(self.atk_uid), "--jobs", "2")
                             + args)
        self.assertIsNone(p.poll(), self.serve_log())
        os.chown(self.sock, 0, self.atk_gid)
        self.addCleanup(self.stop_serve, p)
        return p

    def submit_as_attacker(self, policy, **task):
        t = {"prompt": "x", "policy": policy}
        t.update(task)
        t0 = time.monotonic()
        a = self.attacker_client({"op": "submit", "task": t})[0][0]
        return a, time.monotonic() - t0

    def test_root_only_file_is_neither_read_nor_quoted(self):
        canary = Canary(self.tmp)
        self.serve()
        secret = canary.text.decode().split()[1]
        for name in (canary.path, canary.path + "/../" + os.path.basename(canary.path),
                     "../../../../.." + canary.path):
            a, _ = self.submit_as_attacker(name)
            self.assertFalse(a.get("ok"), a)
            self.assertNotIn(secret, json.dumps(a))
        canary.assert_untouched(self)
        self.assert_health_fast()

    def test_fifo_socket_and_device_do_not_block_the_server(self):
        self.serve()
        fifo = os.path.join(self.tmp, "fifo.json")
        os.mkfifo(fifo)
        s = socket.socket(socket.AF_UNIX)
        s.bind(os.path.join(self.tmp, "sock.json"))
        self.addCleanup(s.close)
        for path in (fifo, os.path.join(self.tmp, "sock.json"), "/dev/zero", "/dev/tty"):
            a, dt = self.submit_as_attacker(path)
            self.assertFalse(a.get("ok"), a)
            self.assertLess(dt, 5, f"{path}: the server took {dt:.1f} s")
            self.assert_health_fast()

    def test_fifo_named_by_an_installed_name_cannot_hang_either(self):
        """Even the operator's policies dir holding a FIFO (a mistake, or a user who could
        write there) must not hang the loop: policy files are read without blocking."""
        data = os.path.join(self.tmp, "data")
        os.makedirs(os.path.join(data, "policies"))
        for d in ("catalog",):
            os.symlink(os.path.join(os.environ.get("AGENTBOX_DATA_DIR", "."), d),
                       os.path.join(data, d))
        for f in os.listdir(os.path.join(os.environ.get("AGENTBOX_DATA_DIR", "."), "policies")):
            if f.endswith(".json"):
                with open(os.path.join(os.environ.get("AGENTBOX_DATA_DIR", "."), "policies",
                                       f)) as src, open(os.path.join(data, "policies", f),
                                                        "w") as dst:
                    dst.write(src.read())
        os.mkfifo(os.path.join(data, "policies", "stuck.json"))
        p = self.start_serve(self.state, args=("--allow-uid", str(self.atk_uid)),
                             env={"AGENTBOX_DATA_DIR": data})
        self.addCleanup(self.stop_serve, p)
        os.chown(self.sock, 0, self.atk_gid)
        a, dt = self.submit_as_attacker("stuck")
        self.assertFalse(a.get("ok"), a)
        self.assertLess(dt, 5)
        self.assert_health_fast()

    def test_many_distinct_policies_do_not_lock_others_out(self):
        self.serve()
        for i in range(20):
            a, _ = self.submit_as_attacker(inline(f"variant {i}"))
            self.assertTrue(a.get("ok"), a)
        c = Conn(self.sock)
        a = c.ask({"op": "submit", "task": {"prompt": "x", "policy": "strict"}})
        c.close()
        self.assertTrue(a.get("ok"), a)
        self.assert_health_fast()

    def test_inline_policy_weaker_than_the_floor_is_refused(self):
        self.serve()
        weaker = [
            inline("host net", network={"allow_host": True}),
            inline("no landlock", landlock=False),
            inline("shadow", mounts={"ro_binds": [{"path": "/root"}]}),
            {"name": "bare", "description": "no extends, allow all",
             "seccomp": {"default_action": "allow", "rules": []}, "landlock": True},
        ]
        for pol in weaker:
            a, _ = self.submit_as_attacker(pol)
            self.assertFalse(a.get("ok"), (pol, a))
            self.assertEqual(a.get("error", {}).get("code"), "invalid_task", a)
        a, _ = self.submit_as_attacker("permissive")
        self.assertFalse(a.get("ok"), a)
        a, _ = self.submit_as_attacker(inline("fine"))
        self.assertTrue(a.get("ok"), a)

    def test_operator_may_lift_the_floor(self):
        self.serve("--allow-weaker-policies")
        a, _ = self.submit_as_attacker("permissive", network="host")
        self.assertTrue(a.get("ok"), a)
        a, _ = self.submit_as_attacker(inline("no landlock", landlock=False))
        self.assertTrue(a.get("ok"), a)
        # paths stay refused even then
        a, _ = self.submit_as_attacker("/etc/passwd")
        self.assertFalse(a.get("ok"), a)


load_tests = hostile_util.load_tests

if __name__ == "__main__":
    unittest.main()
