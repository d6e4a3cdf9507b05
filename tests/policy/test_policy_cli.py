"""`agentbox policy check|show` through the real binary: exit codes, messages that name the
file and field, and the shipped policies found from any working directory, in the build
tree and in an installed layout, by any user (the suite also runs as nobody)."""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

AGENTBOX = os.environ["AGENTBOX"]
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
FIXTURES = os.path.join(ROOT, "tests", "unit", "policies")


def run(*args, cwd="/", env_extra=None, data_dir=True):
    env = {k: v for k, v in os.environ.items() if k != "AGENTBOX_DATA_DIR"}
    if data_dir:
        env["AGENTBOX_DATA_DIR"] = ROOT
    env.update(env_extra or {})
    return subprocess.run([AGENTBOX, "policy", *args], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=30)


class PolicyCheck(unittest.TestCase):
    def test_shipped_policies_are_valid(self):
        r = run("check", "default", "strict", "permissive")
        self.assertEqual(r.returncode, 0, r.stderr)
        lines = r.stdout.splitlines()
        self.assertEqual(len(lines), 3)
        for name, line in zip(("default", "strict", "permissive"), lines):
            self.assertTrue(line.startswith(f'{name}: ok (policy "{name}": '), line)

    def test_found_beside_the_binary_from_any_directory(self):
        # the build tree: ./agentbox sits beside policies/
        if os.path.dirname(os.path.abspath(AGENTBOX)) != ROOT:
            self.skipTest("binary under test is not in the source tree")
        r = run("check", "default", data_dir=False)
        self.assertEqual(r.returncode, 0, r.stderr)

    def test_found_in_an_installed_layout(self):
        with tempfile.TemporaryDirectory() as prefix:
            os.chmod(prefix, 0o755)
            os.makedirs(os.path.join(prefix, "bin"))
            shutil.copy(AGENTBOX, os.path.join(prefix, "bin", "agentbox"))
            shutil.copytree(os.path.join(ROOT, "policies"),
                            os.path.join(prefix, "share", "agentbox", "policies"))
            env = {k: v for k, v in os.environ.items() if k != "AGENTBOX_DATA_DIR"}
            r = subprocess.run([os.path.join(prefix, "bin", "agentbox"), "policy", "check",
                                "strict"], cwd="/", env=env, capture_output=True, text=True,
                               timeout=30)
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn('strict: ok', r.stdout)

    def test_path_relative_to_cwd(self):
        r = run("check", "policies/default.json", cwd=ROOT)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertTrue(r.stdout.startswith("policies/default.json: ok"))

    def test_unknown_syscall_names_file_and_field(self):
        path = os.path.join(FIXTURES, "unknown_syscall.json")
        r = run("check", path)
        self.assertEqual(r.returncode, 2)
        self.assertEqual(r.stdout, "")
        self.assertEqual(r.stderr.strip(),
                         f'{path}: seccomp.rules[1].syscalls[1]: unknown syscall "fooo"')

    def test_syntax_error_names_line_and_column(self):
        path = os.path.join(FIXTURES, "syntax.json")
        r = run("check", path)
        self.assertEqual(r.returncode, 2)
        self.assertTrue(r.stderr.startswith(f"{path}:3:15: JSON syntax error"), r.stderr)

    def test_every_fixture_is_refused(self):
        env = {"AGENTBOX_DATA_DIR": os.path.join(ROOT, "tests", "unit")}
        for name in sorted(os.listdir(FIXTURES)):
            path = os.path.join(FIXTURES, name)
            r = run("check", path, env_extra=env)
            self.assertEqual(r.returncode, 2, name)
            self.assertTrue(r.stderr.startswith(path + ":"), (name, r.stderr))

    def test_one_bad_file_among_good_ones(self):
        bad = os.path.join(FIXTURES, "bad_size.json")
        r = run("check", "default", bad, "strict")
        self.assertEqual(r.returncode, 2)
        self.assertEqual(len(r.stdout.splitlines()), 2)
        self.assertIn("limits.disk", r.stderr)

    def test_bad_names_and_missing_files(self):
        for arg, needle in (("x;y", "a name is"), ("Default", "a name is"),
                            ("nonexistent", "no policies/nonexistent.json"),
                            ("/nonexistent/p.json", "No such file"),
                            ("/etc/passwd", "JSON syntax error")):
            r = run("check", arg)
            self.assertEqual(r.returncode, 2, arg)
            self.assertIn(needle, r.stderr, arg)

    def test_usage(self):
        for args in ((), ("frob",), ("check",), ("show",), ("show", "a", "b")):
            r = run(*args)
            self.assertEqual(r.returncode, 2, args)
            self.assertNotEqual(r.stderr, "", args)
        for args in (("--help",), ("check", "--help")):
            r = run(*args)
            self.assertEqual(r.returncode, 0)
            self.assertIn("usage: agentbox policy check", r.stdout)


class PolicyShow(unittest.TestCase):
    def test_show_resolves_extends(self):
        r = run("show", "strict")
        self.assertEqual(r.returncode, 0, r.stderr)
        p = json.loads(r.stdout)
        self.assertEqual(p["name"], "strict")
        self.assertNotIn("extends", p)
        by_name = {rule["syscalls"][0]: rule for rule in p["seccomp"]["rules"]}
        self.assertEqual(by_name["kcmp"]["action"], "kill_process")      # strict's own
        self.assertEqual(by_name["fanotify_init"]["action"], "errno")    # from default
        self.assertEqual(p["limits"]["memory"], "512M")
        self.assertFalse(p["network"]["loopback"])

    def test_show_output_checks_clean(self):
        r = run("show", "permissive")
        with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
            f.write(r.stdout)
            f.flush()
            c = run("check", f.name)
            self.assertEqual(c.returncode, 0, c.stderr)

    def test_show_bpf(self):
        r = run("show", "--bpf", "default")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("pseudo filter code start", r.stdout)
        self.assertIn('"modify_ldt"', r.stdout)


if __name__ == "__main__":
    unittest.main()
