"""deploy/ as shipped: the systemd unit passes systemd-analyze, agentbox-serve starts a real
`agentbox serve` with the socket directory opened to its group and the group allowed, the
Slurm script computes the shard from the array variables, and the manifests are well formed
(YAML is only parsed when PyYAML happens to be installed: the suite is stdlib-only)."""
import json
import glob
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
import unittest

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
DEPLOY = os.path.join(ROOT, "deploy")
AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(ROOT, "agentbox")
DATA_DIR = os.environ.get("AGENTBOX_DATA_DIR") or ROOT


class Deploy(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="agentbox-deploy-test-")
        os.chmod(self.tmp, 0o755)

    def tearDown(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    def test_unit_passes_systemd_analyze(self):
        if not shutil.which("systemd-analyze"):
            self.skipTest("systemd-analyze not installed")
        with open(os.path.join(DEPLOY, "agentbox.service")) as f:
            unit = f.read()
        # point ExecStart at the wrapper in this tree so that verify can check it exists
        unit = unit.replace("/usr/local/lib/agentbox/agentbox-serve",
                            os.path.join(DEPLOY, "agentbox-serve"))
        path = os.path.join(self.tmp, "agentbox.service")
        with open(path, "w") as f:
            f.write(unit)
        p = subprocess.run(["systemd-analyze", "verify", path], capture_output=True, text=True,
                           timeout=60)
        problems = [l for l in p.stderr.splitlines() if "agentbox.service" in l]
        self.assertEqual(problems, [], p.stderr)
        for must in ("Delegate=yes", "KillMode=mixed", "NoNewPrivileges=yes",
                     "CapabilityBoundingSet=CAP_SETUID CAP_SETGID CAP_DAC_OVERRIDE CAP_KILL",
                     "LoadCredential=agentbox.conf:"):
            self.assertIn(must, unit)
        for never in ("RestrictNamespaces=", "SystemCallFilter=", "MemoryDenyWriteExecute=yes",
                      "PrivateUsers=yes"):
            self.assertNotIn("\n" + never, unit)

    def unit_settings(self, name):
        """KEY -> [values] of a unit file (comments and sections dropped)."""
        out = {}
        with open(os.path.join(DEPLOY, name)) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith(("#", ";", "[")) and "=" in line:
                    k, v = line.split("=", 1)
                    out.setdefault(k.strip(), []).append(v.strip())
        return out

    def test_service_restart_keeps_the_socket_units_socket(self):
        # systemd deletes a RuntimeDirectory= when the service stops (a restart included)
        # unless RuntimeDirectoryPreserve= says otherwise; agentbox.socket's socket lives in
        # one of them, and deleting it would leave the socket unit listening on nothing
        service = self.unit_settings("agentbox.service")
        sock = self.unit_settings("agentbox.socket")["ListenStream"][0]
        runtime = [os.path.join("/run", d) for v in service.get("RuntimeDirectory", [])
                   for d in v.split()]
        self.assertIn(os.path.dirname(sock), runtime)
        self.assertIn(service.get("RuntimeDirectoryPreserve", ["no"])[-1], ("yes",),
                      "a service stop or restart would remove the socket agentbox.socket owns")
        self.assertEqual(service["Environment"].count(f"AGENTBOX_SOCKET={sock}"), 1)

    def test_wrapper_starts_serve_with_group_access(self):
        if os.geteuid() != 0:
            self.skipTest("the wrapper is for a root service")
        sockdir = os.path.join(self.tmp, "api")
        os.mkdir(sockdir, 0o700)  # as systemd makes RuntimeDirectory= with mode 0700
        sock = os.path.join(sockdir, "agentbox.sock")
        replay = os.path.join(self.tmp, "replay.json")
        with open(replay, "w") as f:
            json.dump({"replies": [{"content": None, "tool_calls": [
                {"id": "c", "type": "function",
                 "function": {"name": "finish", "arguments": "{\"message\": \"ok\"}"}}]}]}, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENHANDS_", "OPENROUTER_"))}
        env.update({"AGENTBOX": AGENTBOX, "AGENTBOX_SOCKET": sock, "AGENTBOX_GROUP": "root",
                    "OPENHANDS_WORKSPACE_ROOT": os.path.join(self.tmp, "state"),
                    "AGENTBOX_DATA_DIR": DATA_DIR, "AGENTBOX_JOBS": "2"})
        p = subprocess.Popen(["sh", os.path.join(DEPLOY, "agentbox-serve"), "--replay", replay],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 20
            reply = b""
            while time.monotonic() < deadline and b'"ok":true' not in reply:
                time.sleep(0.05)
                try:
                    with socket.socket(socket.AF_UNIX) as s:
                        s.settimeout(2)
                        s.connect(sock)
                        s.sendall(b'{"op":"health"}\n')
                        reply = s.recv(65536)
                except OSError:
                    pass
            self.assertIn(b'"jobs":2', reply)
            self.assertEqual(stat.S_IMODE(os.stat(sockdir).st_mode), 0o750)
            self.assertEqual(stat.S_IMODE(os.stat(sock).st_mode), 0o660)
            with open(f"/proc/{p.pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
            self.assertEqual(argv[1], b"serve")  # exec'd: the wrapper is gone, serve is the pid
            self.assertIn(b"--allow-gid", argv)
            self.assertEqual(argv[argv.index(b"--allow-gid") + 1], b"0")
        finally:
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=30)
        self.assertEqual(p.returncode, 0, out)

    def test_wrapper_delegates_its_cgroup_on_v2(self):
        # What systemd's Delegate=yes hands the service on a cgroup v2 host: a cgroup of its
        # own, holding the service's process. agentbox-serve must move itself into a leaf and
        # have the cells made below the service's cgroup, with their limits. Runs where
        # cgroup v2 has the memory and pids controllers (make check's VM), as root.
        root = "/sys/fs/cgroup"
        try:
            with open(root + "/cgroup.controllers") as f:
                ctrls = f.read().split()
        except OSError:
            ctrls = []
        if os.geteuid() != 0 or "memory" not in ctrls or "pids" not in ctrls:
            self.skipTest("needs root on a cgroup v2 host with memory and pids (the VM of make check)")
        with open(root + "/cgroup.subtree_control", "w") as f:
            f.write("+memory +pids")
        svc = os.path.join(root, "agentbox-test-svc-%d" % os.getpid())
        os.mkdir(svc)
        sock = os.path.join(self.tmp, "agentbox.sock")
        replay = os.path.join(self.tmp, "replay.json")

        def call(name, args):
            return {"id": "c" + name, "type": "function",
                    "function": {"name": name, "arguments": json.dumps(args)}}
        with open(replay, "w") as f:
            json.dump({"replies": [{"content": None, "tool_calls": [call("execute_bash", {"command": "sleep 3"})]},
                                   {"content": None, "tool_calls": [call("finish", {"message": "ok"})]}]}, f)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENHANDS_", "OPENROUTER_"))}
        env.update({"AGENTBOX": AGENTBOX, "AGENTBOX_SOCKET": sock, "AGENTBOX_GROUP": "root",
                    "OPENHANDS_WORKSPACE_ROOT": os.path.join(self.tmp, "state"),
                    "AGENTBOX_DATA_DIR": DATA_DIR, "AGENTBOX_JOBS": "1"})
        env.pop("AGENTBOX_CGROUP", None)
        # the service's process starts in the service's cgroup, as systemd starts it
        p = subprocess.Popen(["sh", "-c", 'echo $$ > "$1/cgroup.procs" && shift && exec sh "$@"', "sh",
                              svc, os.path.join(DEPLOY, "agentbox-serve"), "--replay", replay],
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        try:
            def ask(req):
                with socket.socket(socket.AF_UNIX) as s:
                    s.settimeout(60)
                    s.connect(sock)
                    s.sendall(json.dumps(req).encode() + b"\n")
                    buf = b""
                    while not buf.endswith(b"\n"):
                        chunk = s.recv(65536)
                        if not chunk:
                            break
                        buf += chunk
                    return json.loads(buf)
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    if ask({"op": "health"}).get("ok"):
                        break
                except OSError:
                    time.sleep(0.05)
            r = ask({"op": "submit", "task": {"prompt": "x"}})
            self.assertTrue(r.get("ok"), r)
            tid = r["id"]
            cells = []
            while not cells and time.monotonic() < deadline:
                time.sleep(0.05)
                if os.path.isdir(svc + "/agentbox"):
                    cells = [d for d in os.listdir(svc + "/agentbox") if d.startswith("u0-s")]
            self.assertEqual(len(cells), 1, "no cell cgroup below the service's cgroup")
            cell = os.path.join(svc, "agentbox", cells[0])
            with open(cell + "/memory.max") as f:
                self.assertEqual(int(f.read()), 2 << 30)  # the default policy's 2G
            with open(cell + "/pids.max") as f:
                self.assertEqual(int(f.read()), 512)
            with open("/proc/%d/cgroup" % p.pid) as f:
                self.assertIn("0::/%s/supervisor" % os.path.basename(svc), f.read())
            r = ask({"op": "wait", "id": tid, "timeout_s": 60})
            self.assertEqual(r["result"]["status"], "succeeded", r)
            self.assertEqual(r["result"]["sandbox"]["cgroup"], "v2")
            # gone, or (a kernel that can reset memory.peak, 6.12) kept for the slot's next cell
            # with no task left in it
            self.assertTrue(not os.path.exists(cell) or "populated 0" in open(cell + "/cgroup.events").read(),
                            "the cell's cgroup outlived it with tasks")
        finally:
            p.send_signal(signal.SIGTERM)
            out, _ = p.communicate(timeout=30)
            # the supervisor's janitor may still be on its way out (it exits on its own once
            # the supervisor is gone, as systemd would also see)
            end = time.monotonic() + 10
            while os.path.exists(svc) and time.monotonic() < end:
                kept = glob.glob(svc + "/agentbox/u*-s*")  # slots' kept cgroups (empty)
                for d in kept + [svc + "/agentbox", svc + "/supervisor", svc]:
                    try:
                        os.rmdir(d)
                    except OSError:
                        pass
                time.sleep(0.05)
        self.assertEqual(p.returncode, 0, out)
        self.assertFalse(os.path.exists(svc), "the service's cgroup could not be removed")

    def test_slurm_script_shard_from_array_variables(self):
        stub = os.path.join(self.tmp, "bin")
        os.mkdir(stub)
        with open(os.path.join(stub, "agentbox"), "w") as f:
            f.write("#!/bin/sh\nprintf '%s\\n' \"$@\"\n")
        os.chmod(os.path.join(stub, "agentbox"), 0o755)
        env = dict(os.environ, PATH=stub + ":" + os.environ["PATH"], SLURM_ARRAY_TASK_ID="7",
                   SLURM_ARRAY_TASK_MIN="4", SLURM_ARRAY_TASK_COUNT="5",
                   SLURM_SUBMIT_DIR=self.tmp, SLURM_ARRAY_JOB_ID="99", SLURM_CPUS_PER_TASK="3")
        p = subprocess.run(["bash", os.path.join(DEPLOY, "slurm", "agentbox-array.sbatch"),
                            "tasks.jsonl"], env=env, capture_output=True, text=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        args = p.stdout.split("\n")
        self.assertEqual(args[:2], ["batch", "tasks.jsonl"])
        self.assertEqual(args[args.index("--shard") + 1], "3/5")
        self.assertEqual(args[args.index("--jobs") + 1], "3")
        self.assertIn("--resume", args)
        self.assertEqual(args[args.index("--out") + 1],
                         os.path.join(self.tmp, "agentbox-results", "out-3.jsonl"))

    def test_manifests_use_the_shard_variables(self):
        with open(os.path.join(DEPLOY, "k8s", "agentbox-batch-job.yaml")) as f:
            k8s = f.read()
        self.assertIn("completionMode: Indexed", k8s)
        self.assertIn('--shard "${JOB_COMPLETION_INDEX}/${SHARDS}"', k8s)
        with open(os.path.join(DEPLOY, "github", "agentbox-batch.yml")) as f:
            gh = f.read()
        self.assertIn("--shard ${{ strategy.job-index }}/${{ strategy.job-total }}", gh)
        try:
            import yaml  # optional
        except ImportError:
            return
        docs = list(yaml.safe_load_all(k8s))
        job = [d for d in docs if d["kind"] == "Job"][0]
        spec = job["spec"]
        self.assertEqual(spec["completions"], spec["parallelism"])
        env = {e["name"]: e.get("value") for e in spec["template"]["spec"]["containers"][0]["env"]}
        self.assertEqual(int(env["SHARDS"]), spec["completions"])
        self.assertIn("shard", yaml.safe_load(gh)["jobs"])
