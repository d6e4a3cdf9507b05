"""Usability suite: what a new user meets in the first hour, through the real binary: the
README's commands as written, output that other tools can read (JSON on stdout, JSON Lines
with --events -), `make demo`'s stdout. Runs offline (--replay); leaves nothing behind."""
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(ROOT, "agentbox")
DATA_DIR = os.environ.get("AGENTBOX_DATA_DIR") or ROOT
DEMO = os.path.join(ROOT, "examples", "demo")


class FirstHour(unittest.TestCase):
    """The harness: a temp dir, the environment, the binary and the demo task."""
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="agentbox-first-hour-")
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def env(self, **extra):
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENHANDS_", "OPENROUTER_"))}
        env.update({"OPENHANDS_WORKSPACE_ROOT": os.path.join(self.tmp, "state"),
                    "AGENTBOX_DATA_DIR": DATA_DIR})
        env.update(extra)
        return env

    def agentbox(self, *args, input=None, timeout=120, **envx):
        return subprocess.run([AGENTBOX, *args], env=self.env(**envx), capture_output=True,
                              text=True, input=input, timeout=timeout, cwd=self.tmp)

    def demo_run(self, *args, **kw):
        return self.agentbox("run", "--quiet", "--task-file", os.path.join(DEMO, "task.json"),
                             "--replay", os.path.join(DEMO, "replay.json"), *args, **kw)


class Output(FirstHour):
    """What the README's commands write, for people and for jq."""

    def test_result_json_is_indented_with_two_spaces(self):
        r = self.demo_run()
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertNotIn("\t", r.stdout)
        result = json.loads(r.stdout)
        self.assertEqual(result["status"], "succeeded")
        lines = r.stdout.splitlines()
        self.assertEqual(lines[0], "{")
        self.assertTrue(lines[1].startswith('  "id": "'), lines[1])
        for line in lines:  # nesting in steps of two spaces, "key": value
            indent = len(line) - len(line.lstrip(" "))
            self.assertEqual(indent % 2, 0, line)
        self.assertIn('  "status": "succeeded",', lines)
        # stable: the same task gives the same keys in the same order
        again = json.loads(self.demo_run().stdout)
        self.assertEqual(list(again), list(result))

    def test_events_dash_makes_stdout_json_lines_ending_with_the_result(self):
        r = self.demo_run("--events", "-")
        self.assertEqual(r.returncode, 0, r.stderr)
        records = [json.loads(line) for line in r.stdout.splitlines()]  # every line parses
        self.assertGreater(len(records), 3)
        self.assertTrue(all("type" in e for e in records[:-1]))
        self.assertEqual(records[-1]["status"], "succeeded")
        self.assertEqual(records[0]["type"], "task_queued")

    def test_readme_run_example_writes_valid_json(self):
        with open(os.path.join(ROOT, "README.md")) as f:
            readme = f.read()
        self.assertNotIn("--events - > result.json", readme)
        self.assertIn("--events events.jsonl > result.json", readme)
        r = self.demo_run("--events", os.path.join(self.tmp, "events.jsonl"))
        self.assertEqual(json.loads(r.stdout)["status"], "succeeded")
        with open(os.path.join(self.tmp, "events.jsonl")) as f:
            self.assertTrue(all(json.loads(line) for line in f))

    @unittest.skipUnless(shutil.which("make") and os.access(ROOT, os.W_OK),
                         "needs make and a writable checkout")
    def test_make_demo_stdout_is_the_result_alone(self):
        env = self.env()
        env["OPENHANDS_WORKSPACE_ROOT"] = os.path.join(self.tmp, "demo-state")
        for k in ("OPENROUTER_API_KEY", "MAKEFLAGS", "MFLAGS", "MAKELEVEL"):  # not the outer make's
            env.pop(k, None)
        r = subprocess.run(["make", "-s", "--no-print-directory", "-C", ROOT, "demo"], env=env,
                           capture_output=True, text=True, timeout=300)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["status"], "succeeded", r.stdout[:500])


STEER_REPLAY = {"description": "first-hour suite: sleep as the workspace says, then finish",
                "replies": [{"content": None, "tool_calls": [{"id": "c1", "type": "function", "function": {
                    "name": "execute_bash",
                    "arguments": json.dumps({"command": "sleep $(cat sleep 2>/dev/null || echo 0)"})}}]},
                            {"content": None, "tool_calls": [{"id": "c2", "type": "function", "function": {
                                "name": "finish", "arguments": json.dumps({"message": "done"})}}]}]}


class Messages(FirstHour):
    """Refusals a newcomer meets: each says what was wrong, in one wording, exit 2."""

    def test_sizes_below_the_working_minimum_are_usage_errors(self):
        for args, needle in ((["--memory", "1"], "--memory: 1 is below the working minimum of 8M"),
                             (["--memory", "100K"], "below the working minimum of 8M"),
                             (["--pids", "1"], "--pids: expected a whole number from 2 to"),
                             (["--disk", "1"], "--disk: 1 is below the working minimum of 4K")):
            r = self.agentbox("exec", *args, "--", "echo", "RAN")
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(needle, r.stderr)
            self.assertNotIn("RAN", r.stdout)
        r = self.agentbox("run", "--memory", "1", "hi")
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn("--memory: 1 is below the working minimum of 8M", r.stderr)
        # the minimum itself is accepted: an agent cell starts and finishes in 8M (a task that
        # needs no compiler: the demo's gcc would only thrash at that size)
        replay = os.path.join(self.tmp, "steer.json")
        with open(replay, "w") as f:
            json.dump(STEER_REPLAY, f)
        r = self.agentbox("run", "--quiet", "--replay", replay, "--memory", "8M", "say done")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["status"], "succeeded", r.stdout[:500])

    def test_option_limits_and_unknown_options_are_refused(self):
        # run, llm and the socket clients read their options from tables: every limit, an
        # unknown option and a missing argument still say what was wrong, exit 2
        def refused(args, needle):
            r = self.agentbox(*args)
            self.assertEqual(r.returncode, 2, (args, r.stderr))
            self.assertIn(needle, r.stderr, args)

        def many(opt, n, value="x"):
            return [a for i in range(n) for a in (opt, "%s%d" % (value, i))]

        refused(["run", *many("--fallback-model", 9), "hi"], "agentbox run: at most 8 --fallback-model")
        refused(["run", *many("--output", 65), "hi"], "agentbox run: at most 64 --output")
        refused(["run", *many("--allow-host", 65, "h"), "hi"], "agentbox run: too many --allow-host")
        refused(["run", *many("--resolve", 33, "h"), "hi"], "agentbox run: too many --resolve")
        refused(["run", "--bogus", "hi"], "agentbox run: unknown or incomplete option '--bogus'")
        refused(["run", "hi", "--model"], "agentbox run: unknown or incomplete option '--model'")
        refused(["run", "hi", "there"], "agentbox run: one PROMPT only (quote it); unexpected 'there'")
        refused(["run", "--quiet"], "agentbox run: give a PROMPT or --task-file FILE")
        refused(["llm", *many("--fallback", 9), "hi"], "agentbox llm: at most 8 --fallback")
        refused(["llm", "--count", "0", "hi"], "--count")
        refused(["llm", "--max-tokens", "2000000", "hi"], "--max-tokens")
        refused(["llm", "--timeout", "soon", "hi"], "--timeout")
        refused(["status", "--bogus", "x"], "agentbox status: unknown or incomplete option '--bogus'")
        refused(["wait"], "agentbox wait: give a task ID")
        refused(["list", "x"], "agentbox list: takes no argument")
        refused(["submit"], "agentbox submit: give a PROMPT or --task-file FILE")
        refused(["submit", "--wait-timeout", "soon", "hi"], "--wait-timeout")
        refused(["status", "a", "b"], "agentbox status: unexpected argument 'b'")
        for cmd, usage in ((["run"], "usage: agentbox run"), (["llm"], "usage: agentbox llm"),
                           (["status"], "usage: agentbox status")):
            r = self.agentbox(*cmd, "--help")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn(usage, r.stdout)

    def test_number_errors_share_one_wording_without_exponents(self):
        for cmd in (["exec"], ["run"]):
            tail = ["--", "true"] if cmd == ["exec"] else ["hi"]
            r = self.agentbox(*cmd, "--timeout", "1e3", *tail)
            self.assertEqual(r.returncode, 2, r.stderr)
            self.assertIn("--timeout: expected seconds (like 30, 1.5, 5m or 2h), got '1e3'", r.stderr)
            r = self.agentbox(*cmd, "--memory", "lots", *tail)
            self.assertIn("--memory: expected a size (like 512M; K, M, G are powers of 1024), "
                          "got 'lots'", r.stderr)
        r = self.agentbox("run", "--max-iterations", "0", "hi")
        self.assertIn("--max-iterations: expected a whole number from 1 to 100000, got '0'", r.stderr)
        for argv, needle in ((["batch", "x.jsonl", "--jobs", "0"], "--jobs: expected a whole number from 1 to 256, got '0'"),
                             (["serve", "--jobs", "many"], "--jobs: expected a whole number from 1 to 4096, got 'many'"),
                             (["serve", "--grace", "1e2"], "--grace: expected seconds (like 30, 1.5, 5m or 2h), got '1e2'"),
                             (["serve", "--client-queue", "1K"], "--client-queue: 1K is below the working minimum of 4K"),
                             (["llm", "--count", "x", "hi"], "--count: expected a whole number from 1 to"),
                             (["wait", "t1", "--timeout", "soon"], "--timeout: expected seconds (like 30, 1.5, 5m or 2h), got 'soon'"),
                             (["submit", "--timeout", "-1", "hi"], "--timeout: expected seconds (like")):
            r = self.agentbox(*argv)
            self.assertEqual(r.returncode, 2, (argv, r.stderr))
            self.assertIn(needle, r.stderr, argv)
        task = os.path.join(self.tmp, "t.json")
        with open(task, "w") as f:
            json.dump({"prompt": "x", "budget": {"max_cost_usd": -1}}, f)
        r = self.agentbox("run", "--task-file", task)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertNotRegex(r.stderr, r"\de[+-]\d", "a number in scientific notation")

    def test_cpu_zero_means_no_limit(self):
        r = self.agentbox("exec", "--cpu", "0", "--", "sh", "-c", "ulimit -t")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "unlimited")

    def test_bad_task_file_names_line_and_column(self):
        path = os.path.join(self.tmp, "task.json")
        with open(path, "w") as f:
            f.write('{\n  "prompt": "x",\n  "model": oops\n}\n')
        r = self.agentbox("run", "--task-file", path)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(f"--task-file {path}:3:12: JSON syntax error near \"oops\"", r.stderr)
        r = self.agentbox("submit", "--socket", os.path.join(self.tmp, "none.sock"),
                          "--task-file", path)
        self.assertEqual(r.returncode, 2, r.stderr)
        self.assertIn(f"{path}:3:12:", r.stderr)

    def test_run_task_file_dash_reads_stdin(self):
        r = self.agentbox("run", "--quiet", "--task-file", "-", "--replay",
                          os.path.join(DEMO, "replay.json"), input='{"prompt": "from stdin"}')
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(json.loads(r.stdout)["status"], "succeeded")
        r = self.agentbox("run", "--task-file", "-", input='{"prompt": ')
        self.assertEqual(r.returncode, 2)
        self.assertIn("stdin:1:12: JSON syntax error at the end of the input", r.stderr)

    def test_health_on_a_file_that_is_not_a_socket(self):
        r = self.agentbox("health", "--socket", "/etc/passwd")
        self.assertEqual(r.returncode, 2)
        self.assertIn("--socket /etc/passwd: not a socket", r.stderr)

    def test_help_command_and_short_version(self):
        version = self.agentbox("--version").stdout
        self.assertEqual(self.agentbox("-V").stdout, version)
        for cmd in ("exec", "run", "serve", "batch", "models", "policy", "llm", "submit", "wait",
                    "status", "cancel", "events", "list", "health", "metrics"):
            a, b = self.agentbox("help", cmd), self.agentbox(cmd, "--help")
            self.assertEqual(a.returncode, 0, (cmd, a.stderr))
            self.assertEqual(a.stdout, b.stdout, cmd)
            self.assertIn(f"agentbox {cmd}", a.stdout.splitlines()[0])
        self.assertEqual(self.agentbox("help", "nosuch").returncode, 2)

    def test_each_client_command_has_its_own_help(self):
        texts = {}
        for op in ("submit", "wait", "status", "cancel", "events", "list", "health", "metrics"):
            first = self.agentbox(op, "--help").stdout.splitlines()[0]
            self.assertTrue(first.startswith(f"usage: agentbox {op} "), first)
            texts[op] = self.agentbox(op, "--help").stdout
        self.assertEqual(len(set(texts.values())), len(texts))
        self.assertIn("5 --timeout passed first", texts["wait"])

    def test_policy_that_binds_nothing_gets_a_warning(self):
        path = os.path.join(self.tmp, "bare.json")
        with open(path, "w") as f:
            json.dump({"name": "bare", "seccomp": {"default_action": "allow"}}, f)
        r = self.agentbox("policy", "check", path)
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("warning: the policy binds nothing read-only", r.stderr)
        self.assertIn('"extends": "default"', r.stderr)
        r = self.agentbox("policy", "check", "default")
        self.assertNotIn("warning", r.stderr)


class Identity(FirstHour):
    def test_whoami_agrees_with_user(self):
        for policy in ("default", "strict", "permissive"):
            r = self.agentbox("exec", "--policy", policy, "--", "sh", "-c",
                              'whoami; id -un; id -gn; echo "$USER"; ls -ld /workspace')
            self.assertEqual(r.returncode, 0, r.stderr)
            lines = r.stdout.splitlines()
            self.assertEqual(lines[:4], ["agent"] * 4, (policy, r.stdout))
            self.assertIn(" agent agent ", lines[4])

    def test_the_cells_account_list_is_its_own(self):
        r = self.agentbox("exec", "--", "sh", "-c", "cut -d: -f1,3 /etc/passwd; echo x >> /etc/passwd")
        self.assertNotEqual(r.returncode, 0)  # read-only
        self.assertEqual(r.stdout.split(), ["root:0", "agent:1000", "nobody:65534"])

    @unittest.skipUnless(os.geteuid() == 0 and shutil.which("unshare"),
                         "needs root and unshare(1) for a private /etc")
    def test_identity_survives_the_host_rewriting_passwd(self):
        # useradd and passwd replace /etc/passwd by rename; a cell starting meanwhile must
        # not fail. The renames happen in a private mount namespace on a copy of /etc.
        etc = os.path.join(self.tmp, "etc")
        shutil.copytree("/etc", etc, symlinks=True, ignore_dangling_symlinks=True,
                        ignore=lambda d, names: [n for n in names
                                                 if not os.path.isfile(os.path.join(d, n))
                                                 and not os.path.isdir(os.path.join(d, n))])
        script = """
mount --bind "$1" /etc || exit 3
python3 -c 'import os, shutil
while True:
    shutil.copyfile("/etc/passwd", "/etc/passwd.tmp"); os.rename("/etc/passwd.tmp", "/etc/passwd")' &
loop=$!
trap 'kill $loop' EXIT
fails=0
for i in $(seq 150); do "$2" exec -- true 2>>"$3" || fails=$((fails+1)); done
echo "fails=$fails"
"""
        errs = os.path.join(self.tmp, "errs")
        r = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                            etc, AGENTBOX, errs], env=self.env(), capture_output=True, text=True,
                           timeout=600)
        with open(errs) as f:
            self.assertEqual(r.stdout.strip(), "fails=0", f.read()[-2000:] + r.stderr)

    def test_a_mistyped_model_draws_a_warning(self):
        r = self.demo_run("--model", "gemini-flsh")
        self.assertIn("model 'gemini-flsh' is neither a preset (agentbox models lists them) nor "
                      "an ID like vendor/model", r.stderr)
        for good in ("gemini-flash", "somevendor/some-model:free"):
            r = self.demo_run("--model", good)
            self.assertNotIn("is neither a preset", r.stderr, good)


# Built from pieces so that this file does not match itself.
CITATIONS = re.compile("|".join([r"\b" + "SPEC" + r"\.md", r"\b" + "DESIGN" + r"\.md", r"\b" + "STYLE" + r"\.md",
                                 r"\bthe " + r"seed's (names|defaults|design|summary|orchestrator|interface)",
                                 r"\bthe " + "seed orchestrator",
                                 r"\b[Ii]" + r"ssue #?\d+"]))


class NoInternalReferences(FirstHour):
    """What users read states things in place: no internal reference documents, no issue
    numbers (in the tree, the help texts and `agentbox models`)."""

    def test_tree_cites_nothing_internal(self):
        found = []
        for dp, dn, fn in os.walk(ROOT):
            dn[:] = [d for d in dn if d not in (".git", "build", "node_modules", "corpus")
                     and not d.startswith("openhands_workspace")]
            for f in fn:
                path = os.path.join(dp, f)
                try:
                    with open(path, encoding="utf-8") as fh:
                        for i, line in enumerate(fh, 1):
                            if CITATIONS.search(line):
                                found.append(f"{os.path.relpath(path, ROOT)}:{i}: {line.strip()}")
                except (UnicodeDecodeError, OSError):
                    continue
        self.assertEqual(found, [])

    def test_help_texts_and_models_cite_nothing_internal(self):
        outputs = [self.agentbox("--help").stdout, self.agentbox("models").stdout]
        for cmd in ("exec", "run", "serve", "batch", "models", "policy", "llm", "submit", "wait"):
            outputs.append(self.agentbox(cmd, "--help").stdout)
        for text in outputs:
            self.assertIsNone(CITATIONS.search(text), text)


class OneDefaultSocket(FirstHour):
    def test_every_part_names_the_same_default_socket(self):
        default = "/run/agentbox-api/agentbox.sock"
        env = {k: v for k, v in self.env().items() if k != "AGENTBOX_SOCKET"}
        r = subprocess.run([AGENTBOX, "health"], env=env, capture_output=True, text=True, timeout=60)
        if r.returncode != 0:  # no server here: the message names where it looked
            self.assertIn(f"server at {default}", r.stderr)
        self.assertIn(default, self.agentbox("serve", "--help").stdout)
        self.assertIn(default, self.agentbox("wait", "--help").stdout)
        with open(os.path.join(ROOT, "clients", "python", "agentbox_client", "client.py")) as f:
            self.assertIn(f'DEFAULT_SOCKET = "{default}"', f.read())
        with open(os.path.join(ROOT, "deploy", "agentbox.socket")) as f:
            self.assertIn(f"ListenStream={default}", f.read())
        for doc in ("docs/protocol.md", "docs/deploy.md", "docs/configuration.md",
                    "clients/python/README.md"):
            with open(os.path.join(ROOT, doc)) as f:
                socks = set(re.findall(r"/run/[\w./-]+\.sock", f.read()))
            self.assertEqual(socks, {default}, doc)


class WaitTimeout(FirstHour):
    def test_wait_timeout_has_its_own_exit_code(self):
        replay = os.path.join(self.tmp, "replay.json")
        with open(replay, "w") as f:
            json.dump(STEER_REPLAY, f)
        sock = os.path.join(self.tmp, "s.sock")
        log = open(os.path.join(self.tmp, "serve.log"), "w")
        p = subprocess.Popen([AGENTBOX, "serve", "--socket", sock, "--state-dir",
                              os.path.join(self.tmp, "state"), "--replay", replay],
                             env=self.env(), stdout=log, stderr=subprocess.STDOUT, cwd=self.tmp)
        try:
            deadline = time.monotonic() + 20
            while self.agentbox("health", "--socket", sock).returncode != 0:
                self.assertLess(time.monotonic(), deadline, "serve did not come up")
                time.sleep(0.1)
            task = {"id": "slow", "prompt": "x", "workspace": {"files": {"sleep": "3"}}}
            r = self.agentbox("submit", "--socket", sock, "--task-file", "-", input=json.dumps(task))
            self.assertEqual(r.returncode, 0, r.stderr)
            r = self.agentbox("wait", "--socket", sock, "slow", "--timeout", "0.3")
            self.assertEqual(r.returncode, 5, r.stderr)
            r = self.agentbox("wait", "--socket", sock, "slow", "--timeout", "60")
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertEqual(json.loads(r.stdout)["status"], "succeeded")
        finally:
            p.terminate()
            p.wait(30)
            log.close()


if __name__ == "__main__":
    unittest.main()
