"""Real tools through the egress proxy, against local registries on 127.0.0.1 pinned with
--resolve: pip from a PEP 503 index, git clone over dumb HTTP, curl over HTTPS (CONNECT) with a
test CA; and the same without the allow entry fail with the proxy's 403 reason."""
import os
import shutil
import subprocess
import unittest

from egress_util import EgressTestCase, make_ca, make_git_repo, make_npm_registry, make_wheel


def have_pip():
    return subprocess.run(["python3", "-m", "pip", "--version"], capture_output=True).returncode == 0


class ToolsTest(EgressTestCase):
    @unittest.skipUnless(have_pip(), "no pip for python3")
    def test_pip_install_from_an_allowed_index(self):
        reg = os.path.join(self.tmp, "reg")
        os.makedirs(reg)
        make_wheel(reg)
        srv = self.serve_dir(reg)
        url = f"http://reg.test:{srv.port}/simple"
        pip = ["python3", "-m", "pip", "install", "--no-cache-dir", "--disable-pip-version-check",
               "--trusted-host", "reg.test", "--index-url", url, "--target", "/workspace/site", "egpkg"]
        check = "import sys; sys.path.insert(0, '/workspace/site'); import egpkg; print(egpkg.MAGIC)"
        p = self.exec([f"--allow-host=reg.test:{srv.port}", "--resolve", "reg.test:127.0.0.1"],
                      ["sh", "-c", " ".join(pip) + f' && python3 -c "{check}"'])
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
        self.assertIn("egress-ok", p.stdout)
        self.assertTrue(any(r.startswith("/files/egpkg-1.0") for r in srv.requests), srv.requests)
        net = self.network()
        self.assertGreaterEqual(net["connections"], 2)
        self.assertGreater(net["bytes_in"], 1000)
        self.assertEqual(net["denied"], [])

    @unittest.skipUnless(have_pip(), "no pip for python3")
    def test_pip_without_the_allow_entry_says_why(self):
        reg = os.path.join(self.tmp, "reg")
        os.makedirs(reg)
        make_wheel(reg)
        srv = self.serve_dir(reg)
        p = self.exec(["--allow-host", "pypi.org", "--resolve", "reg.test:127.0.0.1"],
                      ["python3", "-m", "pip", "install", "-vvv", "--no-cache-dir", "--retries", "0",
                       "--disable-pip-version-check", "--trusted-host", "reg.test", "--index-url",
                       f"http://reg.test:{srv.port}/simple", "--target", "/workspace/s", "egpkg"])
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(srv.requests, [])  # never reached
        # pip shows the status line (with the rule) when verbose; exec says why either way
        self.assertIn("403 Client Error: Forbidden (agentbox egress: reg.test port",
                      p.stdout + p.stderr)
        self.assertRegex(p.stderr, r"agentbox: egress denied: reg\.test port \d+: host not on "
                                   r"the allow-list")
        net = self.network()
        self.assertEqual(net["connections"], 0)
        self.assertTrue(all(d["host"] == "reg.test" for d in net["denied"]), net)

    def test_npm_install_from_an_allowed_registry(self):
        if not shutil.which("npm"):
            self.skipTest("no npm")
        reg = os.path.join(self.tmp, "npmreg")
        os.makedirs(reg)
        srv = self.serve_dir(reg)
        make_npm_registry(reg, srv.port)
        cmd = (f"cd /workspace && npm install --no-audit --no-fund --no-update-notifier "
               f"--registry http://npm.test:{srv.port}/ egpkg >/dev/null && "
               "node -e \"console.log(require('egpkg'))\"")
        p = self.exec([f"--allow-host=npm.test:{srv.port}", "--resolve=npm.test:127.0.0.1"],
                      ["sh", "-c", cmd], timeout=180)
        self.assertEqual(p.returncode, 0, p.stderr + p.stdout)
        self.assertIn("npm-egress-ok", p.stdout)
        self.assertIn("/tarballs/egpkg-1.0.0.tgz", srv.requests)
        # not allowed: npm says the proxy refused, with the reason
        p = self.exec(["--allow-host=registry.npmjs.org", "--resolve=npm.test:127.0.0.1"],
                      ["sh", "-c", cmd.replace("npm install", "npm install --fetch-retries=0")],
                      timeout=180)
        self.assertNotEqual(p.returncode, 0)
        # npm prints the status line, which names the rule
        self.assertRegex(p.stdout + p.stderr, r"npm error 403 403 Forbidden \(agentbox egress: "
                                              r"npm\.test port \d+ denied: host not on the "
                                              r"allow-list")

    @unittest.skipUnless(shutil.which("curl"), "no curl")
    def test_bytes_arrive_intact_both_ways(self):
        import hashlib
        www = os.path.join(self.tmp, "www")
        os.makedirs(www)
        data = os.urandom(24 << 20)
        with open(os.path.join(www, "big.bin"), "wb") as f:
            f.write(data)
        want = hashlib.sha256(data).hexdigest()
        srv = self.serve_dir(www)
        url = f"http://big.test:{srv.port}/big.bin"
        cmd = (f"curl -sS {url} | sha256sum; curl -sS --proxytunnel {url} | sha256sum; "
               f"head -c 8000000 /dev/zero | curl -sS --data-binary @- {url}; echo; "
               f"head -c 8000000 /dev/zero | curl -sS --proxytunnel --data-binary @- {url}")
        p = self.exec([f"--allow-host=big.test:{srv.port}", "--resolve=big.test:127.0.0.1"],
                      ["sh", "-c", cmd])
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.split()
        zeros = hashlib.sha256(bytes(8000000)).hexdigest()
        self.assertEqual([lines[0], lines[2], lines[4], lines[5]], [want, want, zeros, zeros])
        net = self.network()
        self.assertGreaterEqual(net["bytes_in"], 2 * len(data))
        self.assertGreaterEqual(net["bytes_out"], 2 * 8000000)

    @unittest.skipUnless(shutil.which("curl"), "no curl")
    def test_contradictory_requests_are_usage_errors(self):
        for extra, why in [
            (["--network", "none"], "make no sense with network none"),
            (["--network", "host", "--policy", "permissive"], "make no sense with network host"),
            (["--policy", "strict"], "egress needs the cell's loopback"),
            (["--allow-host=*.com"], "a wildcard must be below a domain"),
            (["--resolve=pypi.org:not-an-ip"], "is not an IP address"),
        ]:
            with self.subTest(extra=extra):
                p = self.exec(["--allow-host=pypi.org", *extra], ["true"])
                self.assertEqual(p.returncode, 2, p.stderr)
                self.assertIn(why, p.stderr)
        # without egress the cell still has no way out, and no proxy variables
        p = self.exec([], ["sh", "-c", "echo ${HTTPS_PROXY:-none}; curl -sS -m 5 "
                           "http://127.0.0.1:3128/ || true"])
        self.assertIn("none", p.stdout)
        self.assertIn("Failed to connect", p.stderr)

    def test_git_clone_over_dumb_http(self):
        if not shutil.which("git"):
            self.skipTest("no git")
        make_git_repo(self.tmp)
        srv = self.serve_dir(self.tmp)
        p = self.exec([f"--allow-host=git.test:{srv.port}", "--resolve=git.test:127.0.0.1"],
                      ["sh", "-c", f"git clone -q http://git.test:{srv.port}/repo.git /workspace/r"
                       " && cat /workspace/r/README"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("cloned through the egress proxy", p.stdout)
        self.assertGreaterEqual(self.network()["connections"], 1)

    def test_https_through_connect_with_a_test_ca(self):
        if not shutil.which("openssl") or not shutil.which("curl"):
            self.skipTest("no openssl or curl")
        certs = os.path.join(self.tmp, "certs")
        os.makedirs(certs)
        ca, cert, key = make_ca(certs, "tls.test")
        www = os.path.join(self.tmp, "www")
        os.makedirs(www)
        with open(os.path.join(www, "hello.txt"), "w") as f:
            f.write("hello over tls\n")
        srv = self.serve_dir(www, tls=(cert, key))
        ws = os.path.join(self.tmp, "ws")
        os.makedirs(ws)
        shutil.copy(ca, os.path.join(ws, "ca.pem"))
        url = f"https://tls.test:{srv.port}/hello.txt"
        p = self.exec([f"--allow-host=tls.test:{srv.port}", "--resolve=tls.test:127.0.0.1"],
                      ["curl", "-sS", "--cacert", "/workspace/ca.pem", url], workspace=ws)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout, "hello over tls\n")
        # the same host on another port: refused at CONNECT, curl says the proxy refused
        p = self.exec(["--allow-host=tls.test:1", "--resolve=tls.test:127.0.0.1"],
                      ["curl", "-sS", "--cacert", "/workspace/ca.pem", url], workspace=ws)
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("403", p.stderr)
        self.assertIn("port not allowed", p.stderr)


if __name__ == "__main__":
    unittest.main()
