"""`agentbox exec` for scripts: --env/--env-file (nothing of the caller's environment passes
unless named), --workdir, --ro-bind (read-only: the host never changes), --output/--output-dir
(new files only, links never followed), --git REPO@REV and -t (a pty with job control, TIOCSTI
still refused). Runs as root and as an unprivileged user (.unprivileged)."""
import os
import pty
import select
import shutil
import subprocess
import tempfile
import time
import unittest

AGENTBOX = os.environ.get("AGENTBOX", "./agentbox")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x.invalid", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@x.invalid", "GIT_CONFIG_NOSYSTEM": "1",
           "GIT_CONFIG_GLOBAL": "/dev/null", "HOME": "/nonexistent", "PATH": "/usr/bin:/bin"}


def run(*args, env=None, timeout=60):
    return subprocess.run([AGENTBOX, "exec", *args], capture_output=True, text=True,
                          timeout=timeout, env=env)


class ExecScripts(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="agentbox-exec-scripts-")
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_env_only_what_is_named(self):
        env = dict(os.environ, SECRET_HOST_VAR="s3cret", NAMED="from-host",
                   OPENROUTER_API_KEY="sk-or-v1-" + "0" * 64)
        ef = os.path.join(self.tmp, "vars.env")
        with open(ef, "w") as f:
            f.write("# comment\nexport FROM_FILE=yes\nOVER=file\n\n")
        p = run("--env", "A=1", "--env", "NAMED", "--env-file", ef, "--env", "OVER=cli", "--",
                "env", env=env)
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = set(p.stdout.splitlines())
        for want in ("A=1", "NAMED=from-host", "FROM_FILE=yes", "OVER=cli", "HOME=/workspace"):
            self.assertIn(want, lines)
        self.assertNotIn("SECRET_HOST_VAR", p.stdout)
        self.assertNotIn("sk-or-v1", p.stdout)
        for bad in (["--env", "OPENROUTER_API_KEY"], ["--env", "OPENROUTER_API_KEY=x"],
                    ["--env", "1BAD=x"], ["--env", "UNSET_VAR_XYZ"],
                    ["--env-file", os.path.join(self.tmp, "missing")]):
            p = run(*bad, "--", "true", env=env)
            self.assertEqual(p.returncode, 2, (bad, p.stderr))
            self.assertTrue(p.stderr.startswith("agentbox exec: --env"), p.stderr)

    def test_workdir(self):
        p = run("--workdir", "/tmp", "--", "pwd")
        self.assertEqual((p.returncode, p.stdout.strip()), (0, "/tmp"), p.stderr)
        p = run("--workdir", "missing", "--", "pwd")
        self.assertEqual(p.returncode, 125, p)

    def test_ro_bind_refuses_writes_and_leaves_the_host_alone(self):
        # the cell's root is built on /tmp: sources there are refused, with a clear message
        p = run("--ro-bind", self.tmp, "--", "true")
        self.assertEqual(p.returncode, 2, p)
        self.assertIn("below /tmp", p.stderr)
        # a source outside /tmp (in the cgroup v2 VM / is the host's, read-only: skipped)
        try:
            base = tempfile.mkdtemp(prefix="agentbox-exec-scripts-", dir="/var/tmp")
        except OSError as e:
            self.skipTest(f"no writable /var/tmp for a bind source: {e.strerror}")
        self.addCleanup(shutil.rmtree, base, True)
        os.chmod(base, 0o755)
        src = os.path.join(base, "data")
        os.makedirs(src)
        with open(os.path.join(src, "f"), "w") as f:
            f.write("orig\n")
        os.chmod(src, 0o777)
        os.chmod(os.path.join(src, "f"), 0o666)
        p = run("--ro-bind", f"{src}:/opt/data", "--ro-bind", f"{src}:/srv/again", "--", "sh",
                "-c", "cat /opt/data/f /srv/again/f; echo x > /opt/data/f; echo rc=$?; "
                "echo y > /srv/again/f; touch /opt/data/new; rm -f /srv/again/f; exit 0")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(p.stdout.count("orig"), 2, p.stdout)
        self.assertIn("rc=2", p.stdout)
        self.assertIn("Read-only file system", p.stderr)
        self.assertEqual(os.listdir(src), ["f"])
        with open(os.path.join(src, "f")) as f:
            self.assertEqual(f.read(), "orig\n")
        for dst in ("/proc/x", "/workspace/x", "/run/agentbox/x", "/tmp/x", "relative"):
            p = run("--ro-bind", f"{src}:{dst}", "--", "true")
            self.assertEqual(p.returncode, 2, (dst, p.stderr))
        p = run("--ro-bind", os.path.join(self.tmp, "nope"), "--", "true")
        self.assertEqual(p.returncode, 2, p.stderr)

    def test_outputs_new_files_only_and_links_never_followed(self):
        out = os.path.join(self.tmp, "out")
        os.makedirs(out)
        victim = os.path.join(self.tmp, "victim")
        with open(victim, "w") as f:
            f.write("keep\n")
        p = run("--output", "res/**", "--output", "top.txt", "--output", "link*",
                "--output-dir", out, "--", "sh", "-c",
                f"mkdir -p res/sub && echo 1 > res/sub/a.txt && echo 2 > top.txt && "
                f"ln -s {victim} link_to_host && ln -s /etc/shadow res/shadow && "
                f"ln -s {self.tmp} res/dirlink && mkfifo res/fifo")
        self.assertEqual(p.returncode, 0, p.stderr)
        got = sorted(os.path.relpath(os.path.join(r, n), out)
                     for r, ds, fs in os.walk(out) for n in fs)
        self.assertEqual(got, ["res/sub/a.txt", "top.txt"])
        for r, ds, fs in os.walk(out):
            for n in ds + fs:
                self.assertFalse(os.path.islink(os.path.join(r, n)))
        # a symlink planted in the output dir is not followed, an existing file not replaced
        os.symlink(victim, os.path.join(out, "new.txt"))
        p = run("--output", "new.txt", "--output-dir", out, "--", "sh", "-c", "echo evil > new.txt")
        self.assertNotEqual(p.returncode, 0)
        self.assertIn("new.txt", p.stderr)
        with open(victim) as f:
            self.assertEqual(f.read(), "keep\n")
        p = run("--output", "x", "--", "true")
        self.assertEqual(p.returncode, 2)
        p = run("--output", "../x", "--output-dir", out, "--", "true")
        self.assertEqual(p.returncode, 2)

    def test_git_workspace(self):
        repo = os.path.join(self.tmp, "repo")
        os.makedirs(repo)
        subprocess.run(["git", "init", "-q", "-b", "main"], cwd=repo, env=GIT_ENV, check=True)
        with open(os.path.join(repo, "f"), "w") as f:
            f.write("one\n")
        subprocess.run(["git", "add", "f"], cwd=repo, env=GIT_ENV, check=True)
        subprocess.run(["git", "commit", "-qm", "first"], cwd=repo, env=GIT_ENV, check=True)
        first = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, env=GIT_ENV,
                               capture_output=True, text=True).stdout.strip()
        with open(os.path.join(repo, "f"), "w") as f:
            f.write("two\n")
        subprocess.run(["git", "commit", "-qam", "second"], cwd=repo, env=GIT_ENV, check=True)
        for root, ds, fs in os.walk(repo):
            for n in ds:
                os.chmod(os.path.join(root, n), 0o755)
        p = run("--git", f"{repo}@{first}", "--", "sh", "-c",
                "cat f; git log --format=%s; echo three > f; git diff --stat; git status --short")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertTrue(p.stdout.startswith("one\nfirst\n"), p.stdout)
        self.assertIn(" M f", p.stdout)
        p = run("--git", repo, "--", "cat", "f")
        self.assertEqual(p.stdout, "two\n", p.stderr)
        with open(os.path.join(repo, "f")) as f:
            self.assertEqual(f.read(), "two\n")
        for bad, needle in ((f"{repo}@nope", "no such commit"), (self.tmp + "@HEAD", "not a git"),
                            ("https://example.com/r.git", "network egress")):
            p = run("--git", bad, "--", "true")
            self.assertEqual(p.returncode, 2, p)
            self.assertIn(needle, p.stderr)

    def test_pty_job_control_and_no_tiocsti(self):
        pid, fd = pty.fork()
        if pid == 0:
            os.execv(AGENTBOX, [AGENTBOX, "exec", "-t", "--", "bash", "--norc", "-i"])
        out = b""

        def pump(seconds):
            nonlocal out
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                r, _, _ = select.select([fd], [], [], 0.1)
                if r:
                    try:
                        out += os.read(fd, 4096)
                    except OSError:
                        return

        def say(line, seconds=2.0):
            os.write(fd, line)
            pump(seconds)

        say(b"test -t 0 && echo STDIN_IS_TTY; sleep 30 &\n")
        say(b"jobs; kill %1; wait; echo JOBS_DONE\n")
        say(b"python3 -c \"import fcntl,termios; fcntl.ioctl(0, termios.TIOCSTI, b'x')\" 2>/dev/null; echo STI_RC=$?\n")
        say(b"exit 3\n")
        _, st = os.waitpid(pid, 0)
        text = out.decode(errors="replace")
        self.assertIn("STDIN_IS_TTY", text)
        self.assertIn("Running", text)
        self.assertIn("JOBS_DONE", text)
        self.assertIn("STI_RC=1", text)
        self.assertEqual(os.waitstatus_to_exitcode(st), 3, text)


if __name__ == "__main__":
    unittest.main()
