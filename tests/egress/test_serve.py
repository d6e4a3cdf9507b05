"""Egress through `agentbox serve` and `agentbox run` (offline, --replay): an agent's bash
command reaches a pinned local registry through the proxy, the task's events carry
net_connect/net_denied and its result the network summary; the operator's ceiling
(--egress-allow) refuses any task that would widen it, and refuses network "host"."""
import json
import os
import subprocess
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "serve"))
from servetest_util import AGENTBOX, ServeTestCase, bash_reply, finish_reply  # noqa: E402

from egress_util import Recorder  # noqa: E402


class ServeEgressTest(ServeTestCase):
    def recorder(self):
        r = Recorder().start()
        self.addCleanup(r.stop)
        return r

    def test_agent_task_through_the_proxy(self):
        rec = self.recorder()
        cmd = (f"curl -sS http://reg.test:{rec.port}/ok; "
               f"curl -sS http://evil.test:{rec.port}/no")
        replay = self.write_replay([bash_reply(cmd), finish_reply("fetched")])
        self.start_server(f"--egress-allow=reg.test:{rec.port}",
                          "--egress-resolve=reg.test:127.0.0.1", replay=replay)
        c = self.conn()
        tid = self.submit(c, {"prompt": "fetch", "id": "eg-1", "network": {
            "allow": [f"reg.test:{rec.port}"], "resolve": {"reg.test": "127.0.0.1"}}})
        res = self.wait_result(c, tid)
        self.assertEqual(res["status"], "succeeded", res)
        net = res["network"]
        self.assertEqual(net["connections"], 1)
        self.assertGreater(net["bytes_in"], 0)
        self.assertEqual([d["host"] for d in net["denied"]], ["evil.test"])
        self.assertEqual(len(rec.received), 1)
        c.send({"op": "events", "id": tid})
        evs = c.stream()
        conn = [e for e in evs if e["type"] == "net_connect"]
        denied = [e for e in evs if e["type"] == "net_denied"]
        self.assertEqual(len(conn), 1)
        self.assertEqual((conn[0]["host"], conn[0]["address"], conn[0]["allowed"]),
                         ("reg.test", "127.0.0.1", True))
        self.assertEqual(denied[0]["why"], "host not on the allow-list")
        # the tool saw the proxy's reason
        results = [e for e in evs if e["type"] == "tool_result"]
        self.assertIn("host not on the allow-list", json.dumps(results))
        metrics = self.client("metrics").stdout
        self.assertIn('agentbox_egress_connects_total{allowed="true"} 1', metrics)
        self.assertIn("agentbox_egress_denied_total 1", metrics)

    def test_the_model_is_told_which_hosts_it_can_reach(self):
        self.start_fake({"queue": [{"tool_calls": [{"name": "finish",
                                                     "arguments": {"message": "done"}}]}]})
        self.start_server("--egress-allow=pypi.org", "--egress-allow=*.npmjs.org:443")
        c = self.conn()
        tid = self.submit(c, {"prompt": "p", "network": {"allow": ["pypi.org",
                                                                   "*.npmjs.org:443"]}})
        self.assertEqual(self.wait_result(c, tid)["status"], "succeeded")
        tid = self.submit(c, {"prompt": "q"})
        self.wait_result(c, tid)
        reqs = self.fake.requests()
        system = [r["body"]["messages"][0]["content"] for r in reqs]
        self.assertIn("Network access is limited to these hosts", system[0])
        self.assertIn("pypi.org, *.npmjs.org:443; anything else is refused.", system[0])
        self.assertNotIn("no network access", system[0])
        self.assertIn("There is no network access.", system[-1])

    @unittest.skipUnless(os.geteuid() == 0, "reading another process's memory needs root")
    def test_the_proxy_helper_never_holds_the_key(self):
        import glob
        import time
        self.start_fake({"queue": [
            {"tool_calls": [{"name": "execute_bash", "arguments": {"command": "sleep 4"}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"message": "done"}}]}]})
        self.start_server("--egress-allow=pypi.org")
        c = self.conn()
        tid = self.submit(c, {"prompt": "p", "network": {"allow": ["pypi.org"]}})
        helper = None
        deadline = time.monotonic() + 20
        while helper is None and time.monotonic() < deadline:
            for d in glob.glob("/proc/[0-9]*"):
                try:
                    with open(d + "/cmdline", "rb") as f:
                        argv = f.read()
                    if argv.split(b"\0")[:2] == [b"agentbox", b"__egress"]:
                        helper = int(d[6:])
                except OSError:
                    pass
            time.sleep(0.05)
        self.assertIsNotNone(helper, "no proxy helper seen while the task ran")
        key = self.key.encode()
        with open(f"/proc/{helper}/environ", "rb") as f:
            self.assertNotIn(key, f.read())
        with open(f"/proc/{helper}/status") as f:
            uid_line = [line for line in f if line.startswith("Uid:")][0]
        self.assertEqual(uid_line.split()[1:], ["65534"] * 4)  # nobody, as root
        seen = 0
        with open(f"/proc/{helper}/maps") as maps, open(f"/proc/{helper}/mem", "rb") as mem:
            for line in maps:
                addr, perms = line.split()[:2]
                if "r" not in perms:
                    continue
                lo, hi = (int(x, 16) for x in addr.split("-"))
                if hi - lo > 1 << 30:
                    continue  # a sanitizer's shadow reservation, not data
                prev = b""
                for at in range(lo, hi, 1 << 20):  # overlapping by the key's length
                    try:
                        mem.seek(at)
                        chunk = mem.read(min(1 << 20, hi - at))
                    except (OSError, ValueError, OverflowError):
                        break
                    seen += len(chunk)
                    self.assertFalse(key in prev + chunk,
                                     f"the key is in the helper's memory in {addr}")
                    prev = chunk[-len(key):]
        self.assertGreater(seen, 1 << 20)
        self.assertEqual(self.wait_result(c, tid)["status"], "succeeded")

    def test_ceiling_refuses_wider_tasks(self):
        replay = self.write_replay([finish_reply("x")])
        # one entry from the option, one from the configuration
        self.start_server("--egress-allow=*.npmjs.org:443", replay=replay,
                          env={"OPENHANDS_EGRESS_ALLOW": "pypi.org"})
        c = self.conn()
        for net, why in [
            ({"allow": ["evil.org"]}, "not within the supervisor's egress allow-list"),
            ({"allow": ["npmjs.org:443"]}, "not within"),
            ({"allow": ["registry.npmjs.org:80"]}, "not within"),
            ({"allow": ["pypi.org"], "resolve": {"pypi.org": "10.0.0.1"}}, "pin"),
            ("host", "refused by this supervisor"),
        ]:
            with self.subTest(net=net):
                r = c.ask({"op": "submit", "task": {"prompt": "p", "network": net}})
                self.assertFalse(r.get("ok"), r)
                self.assertIn(why, json.dumps(r))
        tid = self.submit(c, {"prompt": "p", "network": {"allow": ["registry.npmjs.org:443"]}})
        self.assertEqual(self.wait_result(c, tid)["status"], "succeeded")

    def test_bad_ceiling_is_a_usage_error(self):
        p = subprocess.run([AGENTBOX, "serve", "--socket", self.sock, "--egress-allow=*.com"],
                           capture_output=True, text=True, timeout=30, env=self.env())
        self.assertEqual(p.returncode, 2)
        self.assertIn("--egress-allow", p.stderr)
        p = subprocess.run([AGENTBOX, "serve", "--socket", self.sock], capture_output=True,
                           text=True, timeout=30,
                           env=self.env({"OPENHANDS_EGRESS_RESOLVE": "a.test:nope"}))
        self.assertEqual(p.returncode, 2)
        self.assertIn("OPENHANDS_EGRESS_RESOLVE", p.stderr)

    def test_no_ceiling_no_egress(self):
        self.start_server(replay=self.write_replay([finish_reply("x")]))
        c = self.conn()
        r = c.ask({"op": "submit", "task": {"prompt": "p", "network": {"allow": ["pypi.org"]}}})
        self.assertFalse(r.get("ok"), r)
        self.assertIn("allows no egress", json.dumps(r))

    def test_run_with_allow_host(self):
        rec = self.recorder()
        replay = self.write_replay([bash_reply(f"curl -sS http://reg.test:{rec.port}/"),
                                    finish_reply("ok")])
        p = subprocess.run([AGENTBOX, "run", "--replay", replay, "--quiet",
                            f"--allow-host=reg.test:{rec.port}", "--resolve=reg.test:127.0.0.1",
                            "fetch"], capture_output=True, text=True, timeout=120,
                           env=self.env())
        self.assertEqual(p.returncode, 0, p.stderr)
        res = json.loads(p.stdout)
        self.assertEqual(res["network"]["connections"], 1)
        self.assertEqual(len(rec.received), 1)
        # a strict policy (no loopback in the cell) cannot have egress
        p = subprocess.run([AGENTBOX, "run", "--replay", replay, "--quiet", "--policy", "strict",
                            "--allow-host=reg.test", "fetch"], capture_output=True, text=True,
                           timeout=120, env=self.env())
        self.assertEqual(p.returncode, 2, p.stdout + p.stderr)
        self.assertIn("egress needs the cell's loopback", p.stderr + p.stdout)


if __name__ == "__main__":
    unittest.main()
