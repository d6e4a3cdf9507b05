"""Every agentbox process that holds the OpenRouter key (serve, batch, llm, models, run) must be
non-dumpable with core dumps off before it reads the key: another process of the same uid
(a tool the user runs, a compromised editor) must not ptrace it, read its memory or
environment through /proc, or make it dump core with the key inside. And the key must be
gone from its environment (/proc/PID/environ, what a child would inherit): it lives in the
LLM client only. Checked on the live process, run as an unprivileged user, while it waits
on an LLM endpoint that never answers."""
import os
import shutil
import socket
import subprocess
import threading
import time
import unittest

import hostile_util

from hostile_util import AGENTBOX, DATA_DIR, HostileCase


KEY = "sk-or-v1-" + "ab" * 32


class Silent:
    """A loopback HTTP endpoint that accepts and never answers."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        self.stop = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stop:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(c)

    def close(self):
        # the accept thread is woken (shutdown makes a blocked accept fail) and gone before
        # the descriptor is closed: else the next test's listening socket could take the
        # same number and this thread accept (and drop) its connection
        self.stop = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.thread.join(timeout=10)
        self.sock.close()
        for c in self.conns:
            c.close()


class KeyHolders(HostileCase):
    def setUp(self):
        super().setUp()
        # a copy the unprivileged user may execute (the checkout may be below /root)
        self.stage = os.path.join(self.tmp, "stage")
        os.makedirs(self.stage)
        shutil.copy2(AGENTBOX, os.path.join(self.stage, "agentbox"))
        for d in ("catalog", "policies"):
            shutil.copytree(os.path.join(DATA_DIR, d), os.path.join(self.stage, d))
        os.system(f"chmod -R a+rX {self.stage}")
        self.home = self.attacker_dir(os.path.join(self.tmp, "home"))
        self.silent = Silent()
        self.addCleanup(self.silent.close)

    def spawn(self, *args):
        env = {
            "PATH": "/usr/bin:/bin:/usr/sbin:/sbin",
            "HOME": self.home,
            "AGENTBOX_DATA_DIR": self.stage,
            "OPENROUTER_API_KEY": KEY,
            "OPENHANDS_BASE_URL": f"http://127.0.0.1:{self.silent.port}/api/v1",
            "OPENHANDS_WORKSPACE_ROOT": os.path.join(self.home, "ws"),
            "OPENHANDS_MODEL": "test/primary",
            "OPENHANDS_CATALOG_FALLBACK": "false",
            "OPENHANDS_TIMEOUT": "120",
        }
        for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS"):
            if k in os.environ:
                env[k] = os.environ[k]
        p = subprocess.Popen(["setpriv", f"--reuid={self.atk_uid}", f"--regid={self.atk_gid}",
                              "--clear-groups", os.path.join(self.stage, "agentbox")] +
                             list(args), env=env, cwd=self.home, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
        self.procs.append(p)
        return p

    def assert_not_dumpable(self, p, until_connected):
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if p.poll() is not None:
                self.fail(f"exited {p.returncode}: {p.stderr.read().decode(errors='replace')}")
            if not until_connected or self.silent.conns:
                break
            time.sleep(0.1)
        else:
            self.fail("never called the LLM endpoint")
        time.sleep(0.3)
        st = os.stat(f"/proc/{p.pid}/status")
        with open(f"/proc/{p.pid}/status") as f:
            uids = [ln for ln in f if ln.startswith("Uid:")][0].split()
        self.assertEqual(int(uids[1]), self.atk_uid, "not running as the user")
        # a non-dumpable process's /proc files belong to root, not to its uid
        self.assertEqual(st.st_uid, 0, "the key holder is dumpable (ptrace-able by its uid)")
        with open(f"/proc/{p.pid}/limits") as f:
            core = [ln for ln in f if ln.startswith("Max core file size")][0].split()
        self.assertEqual(core[4:6], ["0", "0"], "core dumps are on")
        # and the same uid really cannot read its memory map
        r = subprocess.run(["setpriv", f"--reuid={self.atk_uid}", f"--regid={self.atk_gid}",
                            "--clear-groups", "cat", f"/proc/{p.pid}/environ"],
                           capture_output=True)
        self.assertNotEqual(r.returncode, 0, "the same uid read /proc/PID/environ")
        # root can: the key's bytes are wiped from the environment block the kernel shows
        with open(f"/proc/{p.pid}/environ", "rb") as f:
            environ = f.read()
        self.assertIn(b"AGENTBOX_DATA_DIR=", environ, "not the process's environment")
        self.assertNotIn(KEY.encode(), environ, "the key is still in /proc/PID/environ")
        self.assertNotIn(KEY[:16].encode(), environ, "part of the key is in /proc/PID/environ")

    def test_serve(self):
        p = self.spawn("serve", "--socket", os.path.join(self.home, "s.sock"), "--state-dir",
                       os.path.join(self.home, "state"))
        self.assert_not_dumpable(p, until_connected=False)

    def test_llm(self):
        p = self.spawn("llm", "--timeout", "60", "hello")
        self.assert_not_dumpable(p, until_connected=True)

    def test_batch(self):
        batch = os.path.join(self.home, "b.jsonl")
        with open(batch, "w") as f:
            f.write('{"id": "k1", "prompt": "hi"}\n')
        os.chmod(batch, 0o644)
        p = self.spawn("batch", batch, "--quiet")
        self.assert_not_dumpable(p, until_connected=True)

    def test_models_refresh(self):
        p = self.spawn("models", "--refresh")
        self.assert_not_dumpable(p, until_connected=True)

    def test_run(self):
        p = self.spawn("run", "--quiet", "hi")
        self.assert_not_dumpable(p, until_connected=True)


load_tests = hostile_util.load_tests

if __name__ == "__main__":
    unittest.main()
