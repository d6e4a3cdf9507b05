"""DNS rebinding, in a network namespace the test creates (root only): a name that first
resolves to an acceptable address and then to loopback. The proxy must connect to the address
it checked (one lookup per request, no second one at connect time), and the next request's
lookup, now loopback, must be refused. Nothing leaves the private namespace: the "public"
address is put on its lo."""
import json
import os
import shutil
import subprocess
import sys
import unittest

from egress_util import AGENTBOX


@unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare") and shutil.which("ip"),
                     "needs root, unshare and ip")
class RebindingTest(unittest.TestCase):
    def setUp(self):
        probe = subprocess.run(["unshare", "--net", "--mount", "true"], capture_output=True)
        if probe.returncode != 0:
            self.skipTest("cannot make network and mount namespaces here")

    def test_checked_address_is_the_connected_address(self):
        inner = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rebind_inner.py")
        p = subprocess.run(["unshare", "--net", "--mount", "--propagation", "private", "--",
                            sys.executable, inner, os.path.abspath(AGENTBOX)],
                           capture_output=True, text=True, timeout=180)
        self.assertEqual(p.returncode, 0, p.stderr)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        self.assertEqual(r["rc"], 0, r)
        first, second = r["stdout"].splitlines()
        self.assertTrue(first.startswith("HTTP/1.0 200"), r)
        self.assertTrue(second.startswith("HTTP/1.1 403"), r)
        self.assertIn("a loopback address", second)
        # the first request went where its one lookup said; nothing reached loopback
        self.assertEqual(len(r["public"]), 1, r)
        self.assertTrue(r["public"][0].startswith("GET /0 HTTP/1.1"), r)
        self.assertEqual(r["loopback"], [], r)
        # one lookup per request: two requests, two A queries
        self.assertEqual(r["a_queries"], 2, r)
        self.assertEqual(r["network"]["connections"], 1)


if __name__ == "__main__":
    unittest.main()
