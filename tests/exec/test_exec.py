"""Smoke suite for `agentbox exec`: options, exit codes, the --meta record, quotas,
seeding, and that nothing of a cell is left on the host afterwards. Runs as root and again as
an unprivileged user (.unprivileged). Every check that matters looks at host-side state.

env: AGENTBOX (binary under test), AGENTBOX_DATA_DIR (repo root), AGENTBOX_TEST_UNPRIVILEGED.
"""
import glob
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import unittest

AGENTBOX = os.environ.get("AGENTBOX", "./agentbox")
ROOT = os.geteuid() == 0


def run(*args, timeout=60, input=None, env=None):
    return subprocess.run([AGENTBOX, "exec", *args], capture_output=True, text=True,
                          timeout=timeout, input=input, env=env)


def procs_with(marker):
    """Host pids whose command line contains marker."""
    found = []
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                if marker.encode() in f.read():
                    found.append(int(d[6:]))
        except OSError:
            pass
    return found


def wait_gone(marker, seconds=5.0):
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not procs_with(marker):
            return True
        time.sleep(0.02)
    return not procs_with(marker)


def mountinfo():
    with open("/proc/self/mountinfo") as f:
        return sorted(line.split(" ", 4)[4] for line in f)


class ExecTest(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="agentbox-exec-test-")
        self.meta = os.path.join(self.tmp, "meta.json")

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def record(self):
        with open(self.meta) as f:
            return json.load(f)

    # ---- stdio, exit codes ----
    def test_stdio_passes_through(self):
        r = run("--", "sh", "-c", "cat; echo out; echo err >&2", input="in\n")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout, "in\nout\n")
        self.assertIn("err", r.stderr)

    def test_exit_code_is_the_commands(self):
        self.assertEqual(run("--", "sh", "-c", "exit 7").returncode, 7)
        self.assertEqual(run("--", "true").returncode, 0)

    def test_signal_gives_128_plus_n(self):
        r = run("--meta", self.meta, "--", "sh", "-c", "kill -SEGV $$")
        self.assertEqual(r.returncode, 128 + signal.SIGSEGV)
        rec = self.record()
        self.assertEqual(rec["status"], "signaled")
        self.assertEqual(rec["signal"], signal.SIGSEGV)
        self.assertIsNone(rec["exit_code"])

    def test_not_found_127_not_executable_126(self):
        r = run("--", "no-such-command-xyz")
        self.assertEqual(r.returncode, 127)
        self.assertIn("no-such-command-xyz", r.stderr)
        self.assertEqual(run("--", "/etc/passwd").returncode, 126)

    def test_timeout_124_and_everything_killed(self):
        marker = "4242.%d" % os.getpid()
        t0 = time.monotonic()
        r = run("--timeout", "0.5", "--meta", self.meta, "--", "sh", "-c",
                "sleep %s & sleep %s; wait" % (marker, marker))
        self.assertEqual(r.returncode, 124, r.stderr)
        self.assertLess(time.monotonic() - t0, 5)
        self.assertEqual(self.record()["status"], "timeout")
        self.assertTrue(wait_gone(marker), "cell processes survived the timeout")

    def test_daemons_die_with_the_command(self):
        marker = "4343.%d" % os.getpid()
        r = run("--", "sh", "-c", "setsid sleep %s >/dev/null 2>&1 & exit 0" % marker)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(wait_gone(marker), "a setsid daemon outlived its cell")

    # ---- usage errors: exit 2, nothing runs ----
    def test_usage_errors_exit_2_and_nothing_runs(self):
        cases = [
            (["--bogus", "--", "echo", "RAN"], "--bogus"),
            (["--disk", "12Q", "--", "echo", "RAN"], "--disk"),
            (["--memory", "lots", "--", "echo", "RAN"], "--memory"),
            (["--pids", "-4", "--", "echo", "RAN"], "--pids"),
            (["--timeout", "x", "--", "echo", "RAN"], "--timeout"),
            (["--network", "bridge", "--", "echo", "RAN"], "--network"),
            ([], "missing command"),
            (["--workspace-from", os.path.join(self.tmp, "nope"), "--", "echo", "RAN"],
             "No such file"),
            (["--policy", "no-such-policy", "--", "echo", "RAN"], "no-such-policy"),
            (["--network", "host", "--", "echo", "RAN"], "network host"),
        ]
        for args, needle in cases:
            with self.subTest(args=args):
                r = run(*args)
                self.assertEqual(r.returncode, 2, r.stderr)
                self.assertNotIn("RAN", r.stdout)
                self.assertIn(needle, r.stderr)

    def test_unreadable_seed_dir_is_a_usage_error(self):
        d = os.path.join(self.tmp, "locked")
        os.mkdir(d, 0o000)
        try:
            if os.access(d, os.R_OK):
                self.skipTest("root reads everything")
            r = run("--workspace-from", d, "--", "echo", "RAN")
            self.assertEqual(r.returncode, 2)
            self.assertNotIn("RAN", r.stdout)
        finally:
            os.chmod(d, 0o700)

    def test_policy_with_unknown_syscall_is_a_usage_error(self):
        pol = os.path.join(self.tmp, "bad.json")
        with open(pol, "w") as f:
            json.dump({"name": "bad", "seccomp": {"rules": [
                {"syscalls": ["no_such_syscall_abc"], "action": "errno"}]}}, f)
        r = run("--policy", pol, "--", "echo", "RAN")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("no_such_syscall_abc", r.stderr)
        self.assertNotIn("RAN", r.stdout)

    def test_help(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        for opt in ("--policy", "--timeout", "--disk", "--inodes", "--memory", "--pids", "--cpu",
                    "--workspace-from", "--network", "--meta"):
            self.assertIn(opt, r.stdout)

    # ---- the record ----
    def test_meta_record_shape(self):
        r = run("--meta", self.meta, "--", "sh", "-c", "head -c 100000 /dev/zero > f; exit 3")
        self.assertEqual(r.returncode, 3, r.stderr)
        rec = self.record()
        self.assertEqual(rec["status"], "exited")
        self.assertEqual(rec["exit_code"], 3)
        self.assertIsNone(rec["signal"])
        for k in ("wall_s", "cpu_s"):
            self.assertIsInstance(rec[k], (int, float))
            self.assertGreaterEqual(rec[k], 0)
        self.assertGreater(rec["max_rss_kb"], 0)
        self.assertGreaterEqual(rec["disk_bytes"], 100000)
        for name in ("userns", "pidns", "mountns", "netns", "ipcns", "utsns", "cgroupns",
                     "seccomp", "caps", "no_new_privs", "disk_quota", "timeout"):
            self.assertIn(name, rec["enforced"])
        self.assertIsInstance(rec["unavailable"], list)
        self.assertFalse(set(rec["enforced"]) & set(rec["unavailable"]) - {"memory", "pids"})
        # every limit is held one way or another
        self.assertTrue({"memory", "memory_rlimit"} & set(rec["enforced"]))
        self.assertTrue({"pids", "pids_rlimit"} & set(rec["enforced"]))

    def test_setup_failure_exits_125_with_record(self):
        pol = os.path.join(self.tmp, "badbind.json")
        with open(pol, "w") as f:
            json.dump({"name": "badbind",
                       "mounts": {"ro_binds": [{"path": "/usr"}, {"path": "/nonexistent-abc"}]}}, f)
        r = run("--policy", pol, "--meta", self.meta, "--", "echo", "RAN")
        if r.returncode == 2:
            self.skipTest("policy loader refuses missing binds itself: " + r.stderr.strip())
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertIn("set-up failed at", r.stderr)
        self.assertNotIn("RAN", r.stdout)
        self.assertEqual(self.record()["status"], "setup_error")

    # ---- quotas ----
    def test_disk_quota_is_enforced_by_the_kernel(self):
        r = run("--disk", "1M", "--meta", self.meta, "--", "sh", "-c",
                "head -c 3000000 /dev/zero > /workspace/big; echo rc=$?")
        self.assertIn("rc=1", r.stdout)
        self.assertIn("No space left", r.stderr)
        self.assertLessEqual(self.record()["disk_bytes"], 1 << 20)

    def test_inode_quota(self):
        r = run("--inodes", "20", "--", "sh", "-c",
                "i=0; while [ $i -lt 40 ]; do touch f$i || exit 9; i=$((i+1)); done")
        self.assertEqual(r.returncode, 9)
        self.assertIn("No space left", r.stderr)

    def test_pids_limit(self):
        script = ("import os, time\n"
                  "n = 0\n"
                  "for i in range(30):\n"
                  "    try:\n"
                  "        pid = os.fork()\n"
                  "    except OSError:\n"
                  "        break\n"
                  "    if pid == 0:\n"
                  "        time.sleep(2)\n"
                  "        os._exit(0)\n"
                  "    n += 1\n"
                  "print('started', n)\n")
        r = run("--pids", "10", "--", "python3", "-c", script)
        self.assertEqual(r.returncode, 0, r.stderr)
        started = int(r.stdout.split()[-1])
        self.assertLess(started, 10)
        self.assertGreater(started, 0)

    # ---- isolation basics ----
    def test_identity_network_and_root(self):
        r = run("--", "sh", "-c", "id -u; hostname; cat /proc/net/dev | tail -n +3 | "
                "cut -d: -f1 | tr -d ' '; touch /usr/x 2>&1; pwd")
        lines = r.stdout.split("\n")
        self.assertEqual(lines[0], "1000")
        self.assertEqual(lines[1], "agentbox")
        self.assertEqual(lines[2], "lo")
        self.assertIn("Read-only", r.stdout)
        self.assertIn("/workspace", r.stdout)

    def test_environment_is_not_the_callers(self):
        env = dict(os.environ, OPENROUTER_API_KEY="sk-or-v1-canary-should-not-pass")
        r = run("--", "sh", "-c", "cat /proc/self/environ | tr '\\0' '\\n'; env", env=env)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("canary", r.stdout)
        self.assertIn("HOME=/workspace", r.stdout)

    def test_only_stdio_fds_inherited(self):
        fd = os.open("/etc/hostname", os.O_RDONLY)  # inheritable on purpose
        os.set_inheritable(fd, True)
        try:
            r = subprocess.run([AGENTBOX, "exec", "--", "ls", "/proc/self/fd"], capture_output=True,
                               text=True, pass_fds=(fd,), timeout=30)
        finally:
            os.close(fd)
        self.assertEqual(sorted(r.stdout.split()), ["0", "1", "2", "3"])  # 3: ls's own dir fd

    def test_directory_or_closed_stdin_becomes_dev_null(self):
        with open(os.path.join(self.tmp, "secret.txt"), "w") as f:
            f.write("host-secret\n")
        os.chmod(self.tmp, 0o755)
        fd = os.open(self.tmp, os.O_RDONLY | os.O_DIRECTORY)
        try:
            r = subprocess.run([AGENTBOX, "exec", "--", "sh", "-c",
                                "readlink /proc/self/fd/0; cat /proc/self/fd/0/secret.txt; true"],
                               stdin=fd, capture_output=True, text=True, timeout=30)
        finally:
            os.close(fd)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("host-secret", r.stdout)
        self.assertEqual(r.stdout.split("\n")[0], "/dev/null")
        # a closed stdin must not be taken by some other file of agentbox's
        r = subprocess.run(["/bin/sh", "-c", 'exec "$0" exec -- readlink /proc/self/fd/0 <&-',
                            AGENTBOX], capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "/dev/null")

    # ---- seeding ----
    def make_seed(self):
        seed = os.path.join(self.tmp, "seed")
        os.makedirs(seed + "/sub")
        with open(seed + "/a.txt", "w") as f:
            f.write("original\n")
        with open(seed + "/sub/b.txt", "w") as f:
            f.write("b\n")
        canary = os.path.join(self.tmp, "canary")
        with open(canary, "w") as f:
            f.write("canary\n")
        os.symlink(canary, seed + "/link")
        os.chmod(self.tmp, 0o755)
        return seed, canary

    def test_seed_is_copied_never_modified(self):
        seed, canary = self.make_seed()
        before = {p: open(os.path.join(seed, p)).read() for p in ("a.txt", "sub/b.txt")}
        script = ("cat a.txt; echo changed > a.txt; rm sub/b.txt; echo new > n.txt; "
                  "echo evil > link 2>/dev/null; ls /run/agentbox/seed; "
                  "touch /run/agentbox/seed/x 2>/dev/null || echo seed-ro")
        r = run("--workspace-from", seed, "--meta", self.meta, "--", "sh", "-c", script)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("original", r.stdout)
        self.assertIn("seed-ro", r.stdout)
        for p, text in before.items():
            with open(os.path.join(seed, p)) as f:
                self.assertEqual(f.read(), text)
        self.assertFalse(os.path.exists(os.path.join(seed, "n.txt")))
        with open(canary) as f:
            self.assertEqual(f.read(), "canary\n")
        self.assertEqual(os.readlink(seed + "/link"), canary)
        self.assertIn(self.record()["workspace_seed"], ("overlay", "copy"))

    def test_seed_file_the_cell_cannot_read_is_named(self):
        # As root the cell runs as a slot uid that owns nothing on the host; unprivileged, files
        # of other owners may be unreadable too. The copy stops, the error names the file, and
        # nothing runs.
        seed, _ = self.make_seed()
        os.chmod(seed + "/sub/b.txt", 0o600)
        if not ROOT:
            self.skipTest("an unprivileged caller owns its seed: the cell (its uid) reads it")
        r = run("--workspace-from", seed, "--", "echo", "RAN")
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertNotIn("RAN", r.stdout)
        self.assertIn("copy seed into /workspace: sub/b.txt: Permission denied", r.stderr)

    def test_squatted_lock_directory_is_refused_and_named(self):
        # Another user pre-creates the caller's lock directory (in /tmp, anyone can): agentbox
        # must not use it (its owner could hold or read our slot locks) and must say why.
        if not ROOT or not shutil.which("runuser"):
            self.skipTest("needs root to act as two users")
        xdg = os.path.join(self.tmp, "xdg")
        os.mkdir(xdg, 0o700)
        os.chown(xdg, 65534, 65534)
        os.chmod(self.tmp, 0o755)
        squat = os.path.join(xdg, "agentbox")
        os.mkdir(squat, 0o777)  # root's, not nobody's
        os.chmod(squat, 0o777)
        # a copy nobody can run (the checkout may be below a private directory), with the
        # policies beside it
        stage = os.path.join(self.tmp, "bin")
        os.mkdir(stage, 0o755)
        shutil.copy2(AGENTBOX, os.path.join(stage, "agentbox"))
        data = os.environ.get("AGENTBOX_DATA_DIR", os.path.dirname(os.path.abspath(AGENTBOX)))
        shutil.copytree(os.path.join(data, "policies"), os.path.join(stage, "policies"))
        for d, _, files in os.walk(stage):
            os.chmod(d, 0o755)
            for f in files:
                os.chmod(os.path.join(d, f), 0o755 if f == "agentbox" else 0o644)
        r = subprocess.run(["runuser", "-u", "nobody", "--", "env", "-u", "AGENTBOX_DATA_DIR",
                            "XDG_RUNTIME_DIR=" + xdg, os.path.join(stage, "agentbox"), "exec",
                            "--", "echo", "RAN"],
                           capture_output=True, text=True, timeout=60)
        self.assertEqual(r.returncode, 125, r.stderr)
        self.assertNotIn("RAN", r.stdout)
        self.assertIn("slot lock directory " + squat, r.stderr)
        self.assertIn("uid 0, mode 777", r.stderr)
        self.assertEqual(os.listdir(squat), [])  # nothing created in it
        self.assertEqual(os.stat(squat).st_mode & 0o777, 0o777)  # nor "repaired"

    # ---- nothing left behind ----
    def test_no_mounts_left_on_host(self):
        before = mountinfo()
        seed, _ = self.make_seed()
        run("--workspace-from", seed, "--", "true")
        run("--timeout", "0.2", "--", "sleep", "5")
        self.assertEqual(mountinfo(), before)

    def test_sigterm_kills_cell_and_writes_record(self):
        # the shell builds the marker, so only the cell's process carries it (not agentbox's
        # own command line): seeing it means the cell is running
        marker = "4444.%d" % os.getpid()
        p = subprocess.Popen([AGENTBOX, "exec", "--meta", self.meta, "--", "sh", "-c",
                              "m=44; sleep ${m}44.%d" % os.getpid()],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self.assertTrue(self._wait_for(marker), "the command never started")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=10), 143)
        p.stdout.close()
        p.stderr.close()
        self.assertTrue(wait_gone(marker))
        self.assertEqual(self.record()["status"], "signaled")

    def _wait_for(self, marker, seconds=10.0):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if procs_with(marker):
                return True
            time.sleep(0.02)
        return False

    def test_sigkilled_parent_takes_the_cell_along(self):
        marker = "4545.%d" % os.getpid()
        p = subprocess.Popen([AGENTBOX, "exec", "--", "sh", "-c",
                              "m=45; sleep ${m}45.%d & sleep ${m}45.%d" % (os.getpid(),
                                                                          os.getpid())],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.assertTrue(self._wait_for(marker), "the command never started")
        cgroups = self._cgroups_of(procs_with(marker)[0])
        run("--meta", self.meta, "--", "true")
        if self.record()["cgroup"]:
            self.assertTrue(cgroups, "the cell's cgroups were not found")
        p.kill()
        p.wait(timeout=10)
        self.assertTrue(wait_gone(marker), "cell outlived its SIGKILLed parent")
        # its cgroups are removed without it (the janitor; the next run's sweep as backstop)
        end = time.monotonic() + 5
        while any(os.path.exists(d) for d in cgroups) and time.monotonic() < end:
            time.sleep(0.05)
        for d in cgroups:
            self.assertFalse(os.path.exists(d), "cgroup left behind: " + d)

    @staticmethod
    def _cgroups_of(pid):
        """The host paths of the agentbox cell cgroups pid is in (other agentbox runs on this
        host have their own; only ours are checked)."""
        found = []
        try:
            with open("/proc/%d/cgroup" % pid) as f:
                lines = f.read().splitlines()
        except OSError:
            return found
        for line in lines:
            _, ctrls, path = line.split(":", 2)
            if "/agentbox/u" not in path:
                continue
            if ctrls == "":
                roots = ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
            else:
                roots = ["/sys/fs/cgroup/" + c for c in ctrls.split(",")]
            found += [r + path for r in roots if os.path.isdir(r + path)]
        return found

    def test_concurrent_cells_get_distinct_slots(self):
        procs = [subprocess.Popen([AGENTBOX, "exec", "--", "sh", "-c", "sleep 0.3; id -u"],
                                  stdout=subprocess.PIPE, text=True) for _ in range(4)]
        outs = [p.communicate(timeout=30)[0] for p in procs]
        self.assertEqual([o.strip() for o in outs], ["1000"] * 4)
        self.assertEqual([p.returncode for p in procs], [0] * 4)


if __name__ == "__main__":
    unittest.main()
