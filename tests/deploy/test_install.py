"""`make install DESTDIR=... PREFIX=/usr` installs everything a user needs (binary, data,
man page with PREFIX's paths, docs, systemd units and wrapper, Python client), and the
installed binary finds its data from any directory, as root and as an unprivileged user;
`make uninstall` removes it all again."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(ROOT, "agentbox")
DEMO = os.path.join(ROOT, "examples", "demo")
# not the jobserver or flags of a make that runs this suite
MAKE_ENV = {k: v for k, v in os.environ.items() if k not in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL")}
with open(AGENTBOX, "rb") as _f:
    SANITIZED = b"__asan_init" in _f.read()


class Install(unittest.TestCase):
    PREFIX = "/usr"

    @classmethod
    def setUpClass(cls):
        if not shutil.which("make"):
            raise unittest.SkipTest("make is not installed")
        cls.tmp = tempfile.mkdtemp(prefix="agentbox-install-test-")
        os.chmod(cls.tmp, 0o755)
        cls.dest = os.path.join(cls.tmp, "dest")
        cls.make("install")
        cls.root = cls.dest + cls.PREFIX

    @classmethod
    def tearDownClass(cls):
        shutil.rmtree(cls.tmp, ignore_errors=True)

    @classmethod
    def make(cls, target):
        # BIN: the binary under test, so that nothing is rebuilt in the checkout
        p = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, target,
                            f"DESTDIR={cls.dest}", f"PREFIX={cls.PREFIX}", f"BIN={AGENTBOX}"],
                           capture_output=True, text=True, timeout=120, env=MAKE_ENV)
        if p.returncode != 0:
            raise AssertionError(f"make {target}: {p.stdout}{p.stderr}")

    def env(self):
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OPENHANDS_", "OPENROUTER_", "AGENTBOX_"))}
        env["PATH"] = os.path.join(self.root, "bin") + ":/usr/bin:/bin"
        return env

    def installed(self, *args, user=None, cwd=None, input=None):
        argv = [os.path.join(self.root, "bin", "agentbox"), *args]
        if user:
            argv = ["setpriv", f"--reuid={user}", f"--regid={user}", "--clear-groups", *argv]
        env = self.env()
        env["OPENHANDS_WORKSPACE_ROOT"] = os.path.join(cwd, "state")
        env["HOME"] = cwd
        return subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True,
                              input=input, timeout=120)

    def test_every_part_is_installed(self):
        r = self.root
        pylib = [d for d in ("lib/python3/dist-packages",) if os.path.isdir(os.path.join(r, d))]
        for path in ("bin/agentbox", "share/agentbox/policies/default.json",
                     "share/agentbox/policies/strict.json", "share/agentbox/catalog/models.json",
                     "share/man/man1/agentbox.1", "share/doc/agentbox/README.md",
                     "share/doc/agentbox/configuration.md", "share/doc/agentbox/deploy.md",
                     "share/doc/agentbox/python-client.md", "lib/agentbox/agentbox-serve",
                     "lib/systemd/system/agentbox.service", "lib/systemd/system/agentbox.socket"):
            self.assertTrue(os.path.isfile(os.path.join(r, path)), path)
        self.assertTrue(os.access(os.path.join(r, "lib/agentbox/agentbox-serve"), os.X_OK))
        with open(os.path.join(r, "lib/systemd/system/agentbox.service")) as f:
            unit = f.read()
        self.assertIn(f"ExecStart={self.PREFIX}/lib/agentbox/agentbox-serve", unit)
        self.assertIn(f"Environment=AGENTBOX={self.PREFIX}/bin/agentbox", unit)
        if self.PREFIX != "/usr/local":
            self.assertNotIn("/usr/local/", unit)
        with open(os.path.join(r, "lib/agentbox/agentbox-serve")) as f:
            self.assertIn(f"AGENTBOX=${{AGENTBOX:-{self.PREFIX}/bin/agentbox}}", f.read())
        clients = [os.path.join(dp, "agentbox_client") for dp, dn, _ in os.walk(r)
                   if "agentbox_client" in dn]
        self.assertEqual(len(clients), 1, clients)
        p = subprocess.run(["python3", "-c", "import agentbox_client, sys; "
                            "print(agentbox_client.AgentboxClient.__module__)"],
                           env={**self.env(), "PYTHONPATH": os.path.dirname(clients[0])},
                           capture_output=True, text=True, timeout=60, cwd=self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(pylib or clients)

    def test_man_page_names_this_prefix_and_what_is_installed(self):
        with open(os.path.join(self.root, "share/man/man1/agentbox.1")) as f:
            man = f.read()
        self.assertNotIn("@", man.replace("\\(at", ""))  # every placeholder filled
        if self.PREFIX != "/usr/local":
            self.assertNotIn("/usr/local", man)
        self.assertIn("policy show", man)
        self.assertRegex(man, r"2 usage or configuration error")
        files = man[man.index(".SH FILES"):man.index(".SH SEE ALSO")]
        paths = [l[3:].split(",")[0].replace("\\-", "-").rstrip("/").replace("*.json", "default.json")
                 for l in files.splitlines() if l.startswith(".I ")]
        self.assertGreaterEqual(len(paths), 6, files)
        for p in paths:
            self.assertTrue(p.startswith(self.PREFIX + "/"), p)
            self.assertTrue(os.path.exists(self.dest + p), f"the man page names {p}: not installed")
        if shutil.which("man"):
            p = subprocess.run(["man", "-l", "-P", "cat", os.path.join(self.root, "share/man/man1/agentbox.1")],
                               capture_output=True, text=True, timeout=60,
                               env={**self.env(), "MANWIDTH": "100"})
            self.assertEqual(p.returncode, 0, p.stderr)

    def check_installed_binary(self, user=None):
        cwd = tempfile.mkdtemp(prefix="elsewhere-", dir=self.tmp)
        # open to every user, sticky as /tmp is: agentbox writes its state below it
        os.chmod(cwd, 0o1777)
        r = self.installed("policy", "show", "default", user=user, cwd=cwd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["name"], "default")
        r = self.installed("models", user=user, cwd=cwd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("deepseek-v3", r.stdout)
        if user and SANITIZED:
            return  # ASan's shadow memory does not fit a cell's RLIMIT_AS (no cgroups unprivileged)
        r = self.installed("exec", "--", "sh", "-c", "echo in-cell; whoami", user=user, cwd=cwd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.split(), ["in-cell", "agent"])
        # the demo's files, copied where the user running it can read them (the checkout may
        # sit below a directory only root can enter, or on a share it sees as another owner)
        for name in ("task.json", "replay.json"):
            shutil.copy(os.path.join(DEMO, name), os.path.join(cwd, name))
            os.chmod(os.path.join(cwd, name), 0o644)
        r = self.installed("run", "--quiet", "--task-file", os.path.join(cwd, "task.json"),
                           "--replay", os.path.join(cwd, "replay.json"), user=user, cwd=cwd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["status"], "succeeded")

    def test_installed_binary_works_from_elsewhere(self):
        self.check_installed_binary()

    def test_installed_binary_works_for_an_unprivileged_user(self):
        if os.geteuid() != 0:
            self.check_installed_binary()  # this user is the unprivileged one
            return
        if not shutil.which("setpriv"):
            self.skipTest("setpriv is not installed")
        self.check_installed_binary(user=65534)

    def test_uninstall_removes_every_file(self):
        other = os.path.join(self.tmp, "other")
        p = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, "install",
                            f"DESTDIR={other}", f"PREFIX={self.PREFIX}", f"BIN={AGENTBOX}"],
                           capture_output=True, text=True, timeout=120, env=MAKE_ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        p = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, "uninstall",
                            f"DESTDIR={other}", f"PREFIX={self.PREFIX}"],
                           capture_output=True, text=True, timeout=120, env=MAKE_ENV)
        self.assertEqual(p.returncode, 0, p.stderr)
        left = [os.path.join(dp, f) for dp, _, fs in os.walk(other) for f in fs]
        self.assertEqual(left, [])


class InstallUsrLocal(Install):
    PREFIX = "/usr/local"


if __name__ == "__main__":
    unittest.main()
