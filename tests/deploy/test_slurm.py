"""deploy/slurm on a real Slurm: a one-node cluster (Debian's slurmctld, slurmd and munged,
started here as root on 127.0.0.1 with their configuration, state and sockets in a temporary
directory) runs deploy/slurm/agentbox-array.sbatch as shipped as a four-task job array against
the fake OpenRouter on loopback, then `agentbox batch merge` joins the four shards. Every
daemon is this test's child and is ended by its pid; anything they left (a slurmstepd) is
found by its working directory or open files in the cluster's directory, or a marker in its
environment, and ended by pid too (and fails the suite). Skips with one line when not root or
Slurm/munge are not installed (make deps installs them)."""
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import unittest
import xml.etree.ElementTree as ET

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import fake_openrouter  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
SBATCH_SCRIPT = os.path.join(ROOT, "deploy", "slurm", "agentbox-array.sbatch")
AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(ROOT, "agentbox")
DATA_DIR = os.environ.get("AGENTBOX_DATA_DIR") or ROOT
TOOLS = ("slurmctld", "slurmd", "sbatch", "sinfo", "munged", "mungekey")
SHARDS = 4
MARKER = "AGENTBOX_SLURM_TEST"


def fnv1a64(text):
    h = 0xcbf29ce484222325
    for b in text.encode():
        h = ((h ^ b) * 0x100000001b3) % (1 << 64)
    return h


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def why_not():
    if os.environ.get("AGENTBOX_IN_VM"):
        return "runs on the host only (not in the cgroup v2 VM: time)"
    if os.geteuid() != 0:
        return "needs root (slurmd and munged run as root here)"
    missing = [t for t in TOOLS if not shutil.which(t, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")]
    if missing:
        return "%s not installed (make deps: slurmctld slurmd slurm-client munge)" % " ".join(missing)
    return None


def which(tool):
    return shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")


class SlurmCluster:
    """munged + slurmctld + slurmd in the foreground, children of this process."""

    def __init__(self, tmp):
        self.tmp = tmp
        self.procs = []
        self.host = socket.gethostname().split(".")[0]
        self.conf = os.path.join(tmp, "slurm.conf")
        self.env = dict(os.environ, SLURM_CONF=self.conf, **{MARKER: tmp})
        for d in ("state", "spool", "run", "munge"):
            os.mkdir(os.path.join(tmp, d), 0o755)
        os.chmod(os.path.join(tmp, "munge"), 0o711)  # munged: its socket's dirs must be searchable
        self.sock = os.path.join(tmp, "run", "munge.sock")

    def log(self, name):
        return open(os.path.join(self.tmp, name + ".log"), "ab")

    def spawn(self, name, argv):
        with self.log(name) as log:
            # cwd: slurmstepd inherits slurmd's, which is how stop() knows it for ours
            p = subprocess.Popen(argv, env=self.env, stdin=subprocess.DEVNULL, stdout=log,
                                 stderr=subprocess.STDOUT, cwd=self.tmp)
        self.procs.append((name, p))
        return p

    def start(self):
        key = os.path.join(self.tmp, "munge", "munge.key")
        subprocess.run([which("mungekey"), "-c", "-k", key], check=True, capture_output=True,
                       timeout=30)
        self.spawn("munged", [which("munged"), "-F", "--key-file=" + key, "--socket=" + self.sock,
                              "--pid-file=" + os.path.join(self.tmp, "run", "munged.pid"),
                              "--seed-file=" + os.path.join(self.tmp, "munge", "seed")])
        deadline = time.monotonic() + 30
        while not os.path.exists(self.sock) and time.monotonic() < deadline:
            time.sleep(0.05)
        t = self.tmp
        with open(self.conf, "w") as f:
            f.write(f"""ClusterName=agentboxtest
SlurmctldHost={self.host}(127.0.0.1)
SlurmctldPort={free_port()}
SlurmdPort={free_port()}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
AuthInfo=socket={self.sock}
CredType=cred/munge
StateSaveLocation={t}/state
SlurmdSpoolDir={t}/spool
SlurmctldPidFile={t}/run/slurmctld.pid
SlurmdPidFile={t}/run/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
# the node as declared, not as probed: the script as shipped asks 4 CPUs and 16G a task
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
NodeName={self.host} NodeAddr=127.0.0.1 CPUs=16 RealMemory=65536 State=UNKNOWN
PartitionName=agentbox Nodes={self.host} Default=YES MaxTime=INFINITE State=UP
""")
        self.spawn("slurmctld", [which("slurmctld"), "-D", "-f", self.conf])
        self.spawn("slurmd", [which("slurmd"), "-D", "-f", self.conf, "-N", self.host])
        while time.monotonic() < deadline + 60:
            for name, p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}: {self.tail(name)}")
            s = subprocess.run([which("sinfo"), "-h", "-o", "%T"], env=self.env,
                               capture_output=True, text=True, timeout=30)
            if s.stdout.strip() == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError("the node never became idle: " + self.tail("slurmd"))

    def tail(self, name):
        try:
            with open(os.path.join(self.tmp, name + ".log"), errors="replace") as f:
                return f.read()[-2000:]
        except OSError:
            return ""

    def steps(self):
        found = []
        for pid in our_pids(self.tmp):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    if f.read().strip() == "slurmstepd":
                        found.append(pid)
            except OSError:
                pass
        return found

    def stop(self):
        """Waits (up to 30 s) for the job steps' slurmstepd to finish their clean-up, then
        SIGTERM to each daemon (slurmd and slurmctld first), SIGKILL after 30 s; then whatever
        is still this cluster's (a job's leftovers) is killed. Returns the names of processes
        that had to be killed that way."""
        deadline = time.monotonic() + 30
        while self.steps() and time.monotonic() < deadline:
            time.sleep(0.1)
        for name, p in reversed(self.procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        left = []
        for pid in our_pids(self.tmp):
            try:
                with open(f"/proc/{pid}/comm") as f:
                    left.append(f.read().strip())
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        return left


def our_pids(tmp):
    """Processes of this cluster: the marker in their environment (the daemons and what they
    start with it), or, for slurmstepd, which starts with a clean environment, a working
    directory or an open file below the cluster's directory."""
    want = f"{MARKER}={tmp}".encode()
    pids = []
    for d in os.listdir("/proc"):
        if not d.isdigit() or int(d) == os.getpid():
            continue
        try:
            with open(f"/proc/{d}/environ", "rb") as f:
                mine = want in f.read().split(b"\0")
            if not mine:
                links = [os.readlink(f"/proc/{d}/cwd")]
                for fd in os.listdir(f"/proc/{d}/fd"):
                    try:
                        links.append(os.readlink(f"/proc/{d}/fd/{fd}"))
                    except OSError:
                        pass
                mine = any(link == tmp or link.startswith(tmp + "/") for link in links)
            if mine:
                pids.append(int(d))
        except OSError:
            pass
    return pids


class SlurmJobArray(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        why = why_not()
        if why:
            raise unittest.SkipTest("Slurm job array: skipped: " + why)
        cls.tmp = tempfile.mkdtemp(prefix="agentbox-slurm-test-")
        os.chmod(cls.tmp, 0o755)
        cls.cluster = SlurmCluster(cls.tmp)
        t0 = time.monotonic()
        try:
            cls.cluster.start()
        except Exception:
            cls.cluster.stop()
            shutil.rmtree(cls.tmp, ignore_errors=True)
            raise
        cls.startup_s = time.monotonic() - t0

    @classmethod
    def tearDownClass(cls):
        left = cls.cluster.stop()
        shutil.rmtree(cls.tmp, ignore_errors=True)
        if left:
            raise AssertionError("processes outlived the cluster's daemons: %s" % left)

    def setUp(self):
        self.key = "sk-or-v1-" + secrets.token_hex(32)
        self.fake = fake_openrouter.FakeOpenRouter(script={
            "key": self.key,
            "default": {"tool_calls": [{"name": "finish", "arguments": {"message": "done"}}]}},
            key=self.key)
        self.fake.start()
        self.addCleanup(self.fake.stop)
        self.work = tempfile.mkdtemp(prefix="submit-", dir=self.tmp)
        os.chmod(self.work, 0o755)
        bindir = os.path.join(self.work, "bin")
        os.mkdir(bindir)
        os.symlink(AGENTBOX, os.path.join(bindir, "agentbox"))
        self.env = dict(self.cluster.env)
        for k in list(self.env):
            if k.startswith(("OPENHANDS_", "OPENROUTER_", "SLURM_")) and k != "SLURM_CONF":
                del self.env[k]
        self.env.update({"PATH": bindir + ":" + os.environ.get("PATH", "/usr/bin:/bin"),
                         "TMPDIR": self.work, "AGENTBOX_DATA_DIR": DATA_DIR,
                         "OPENHANDS_BASE_URL": self.fake.base_url, "OPENROUTER_API_KEY": self.key,
                         "OPENHANDS_MODEL": "test/primary", "OPENHANDS_CATALOG_FALLBACK": "false",
                         "OPENHANDS_RETRY_BASE_DELAY": "0.02", "OPENHANDS_RETRY_MAX_DELAY": "0.1"})
        # twelve tasks, at least one in each of the four shards
        self.ids = [f"slurm-{i:02d}" for i in range(12)]
        self.assertEqual({fnv1a64(i) % SHARDS for i in self.ids}, set(range(SHARDS)))
        self.tasks = os.path.join(self.work, "tasks.jsonl")
        with open(self.tasks, "w") as f:
            for tid in self.ids:
                f.write(json.dumps({"id": tid, "prompt": f"task {tid}: finish"}) + "\n")
        self.results = os.path.join(self.work, "agentbox-results")

    def sbatch(self):
        p = subprocess.run([which("sbatch"), "--wait", f"--array=0-{SHARDS - 1}", SBATCH_SCRIPT,
                            self.tasks], env=self.env, cwd=self.work, capture_output=True,
                           text=True, timeout=600)
        logs = {}
        for name in os.listdir(self.work):
            if name.startswith("agentbox-") and name.endswith(".log"):
                with open(os.path.join(self.work, name), errors="replace") as f:
                    logs[name] = f.read()
        return p, logs

    def merge(self, *args):
        return subprocess.run([AGENTBOX, "batch", "merge", *args], capture_output=True, text=True,
                              timeout=60, cwd=self.work)

    def out(self, i):
        with open(os.path.join(self.results, f"out-{i}.jsonl")) as f:
            return [json.loads(line) for line in f if line.strip()]

    def test_array_runs_every_shard_then_merge_joins_them(self):
        t0 = time.monotonic()
        p, logs = self.sbatch()
        elapsed = time.monotonic() - t0
        self.assertEqual(p.returncode, 0, (p.stdout, p.stderr, logs))
        self.assertEqual(len(logs), SHARDS, logs)  # --output=agentbox-%A_%a.log, one a task
        for i in range(SHARDS):
            got = self.out(i)
            # shard i of the array is FNV-1a(id) % 4 == i: the script's arithmetic on the
            # variables a real Slurm sets
            self.assertEqual(sorted(r["id"] for r in got),
                             sorted(t for t in self.ids if fnv1a64(t) % SHARDS == i), i)
            self.assertEqual({r["status"] for r in got}, {"succeeded"}, got)
            self.assertTrue(os.path.exists(os.path.join(self.results, f"junit-{i}.xml")))
        # every task asked the (fake) model once, with its own prompt
        prompts = [json.dumps(r["body"]) for r in self.fake.requests()]
        for tid in self.ids:
            self.assertEqual(sum(f"task {tid}:" in b for b in prompts), 1, tid)
        for name, text in logs.items():
            self.assertIn("agentbox batch:", text, name)
            self.assertNotIn(self.key, text, name)
        outs = [os.path.join(self.results, f"out-{i}.jsonl") for i in range(SHARDS)]
        m = self.merge(*outs, "--tasks", self.tasks, "--out", "merged.jsonl", "--junit",
                       "merged.xml")
        self.assertEqual(m.returncode, 0, m.stderr)
        with open(os.path.join(self.work, "merged.jsonl")) as f:
            merged = [json.loads(line) for line in f]
        self.assertEqual([r["id"] for r in merged], self.ids)
        with open(os.path.join(self.work, "merged.jsonl")) as f:
            self.assertNotIn(self.key, f.read())
        root = ET.parse(os.path.join(self.work, "merged.xml")).getroot()
        self.assertEqual((root.get("tests"), root.get("failures")), ("12", "0"))
        # a shard whose output is lost: its tasks are named
        m = self.merge(*outs[1:], "--tasks", self.tasks, "--out", "partial.jsonl")
        self.assertEqual(m.returncode, 1, m.stderr)
        lost = [t for t in self.ids if fnv1a64(t) % SHARDS == 0]
        self.assertIn(f"no result in any input: {' '.join(lost)}", m.stderr)
        # re-submitting the same array resumes every shard: nothing asks the model again
        before = len(self.fake.requests())
        p, logs = self.sbatch()
        self.assertEqual(p.returncode, 0, (p.stdout, p.stderr, logs))
        self.assertEqual(len(self.fake.requests()), before)
        for i in range(SHARDS):
            self.assertEqual(len(self.out(i)), sum(fnv1a64(t) % SHARDS == i for t in self.ids))
        print(f"\n  slurm: cluster up in {self.startup_s:.1f} s, 4-task array in {elapsed:.1f} s",
              file=sys.stderr)


if __name__ == "__main__":
    unittest.main()
