"""deploy/ under a real systemd (pid 1 of the VM of tests/vm/run-systemd.sh, cgroup v2):
agentbox, agentbox-serve, agentbox.service and agentbox.socket installed as docs/deploy.md
says, the key in /etc/agentbox/agentbox.conf, the fake OpenRouter on loopback. Checks socket
activation, that `systemctl restart` never refuses a client, that Delegate=yes gives cells
their cgroups with limits, that `systemctl stop` lets a running task finish, and that the
hardening options leave the sandbox whole. Skips outside that VM (it changes /etc)."""
import glob
import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
import fake_openrouter  # noqa: E402

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(ROOT, "agentbox")
SOCK = "/run/agentbox-api/agentbox.sock"
UNIT_CG = "/sys/fs/cgroup/system.slice/agentbox.service"
STATE = "/var/lib/agentbox"
# CAP_DAC_OVERRIDE (1), CAP_KILL (5), CAP_SETGID (6), CAP_SETUID (7)
CAPS = (1 << 1) | (1 << 5) | (1 << 6) | (1 << 7)


def sh(*argv, check=True, timeout=120):
    p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: exit {p.returncode}: {p.stdout}{p.stderr}")
    return p.stdout.strip()


def ask(req, timeout=120):
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(timeout)
        s.connect(SOCK)
        s.sendall(json.dumps(req).encode() + b"\n")
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
        return json.loads(buf)


def main_pid():
    return int(sh("systemctl", "show", "-p", "MainPID", "--value", "agentbox.service"))


def bash_then_finish(command):
    return [{"tool_calls": [{"name": "execute_bash", "arguments": {"command": command}}]},
            {"tool_calls": [{"name": "finish", "arguments": {"message": "done"}}]}]


class Systemd(unittest.TestCase):
    maxDiff = None

    @classmethod
    def setUpClass(cls):
        try:
            with open("/proc/1/comm") as f:
                pid1 = f.read().strip()
        except OSError:
            pid1 = ""
        if not os.environ.get("AGENTBOX_SYSTEMD_VM") or pid1 != "systemd" or os.geteuid() != 0:
            raise unittest.SkipTest("runs only in the VM of tests/vm/run-systemd.sh "
                                    "(systemd as pid 1; it installs into /etc and /usr/local)")
        cls.key = "sk-or-v1-" + secrets.token_hex(32)
        convs = {f"sleep{n}": bash_then_finish(f"sleep {n}; echo slept {n}") for n in (1, 6, 8)}
        convs["probe"] = bash_then_finish(
            "grep -E '^(NoNewPrivs|CapEff|Seccomp):' /proc/self/status; id -u; "
            "touch /usr/x 2>&1; echo x > /etc/agentbox/y 2>&1; cat /etc/agentbox/agentbox.conf 2>&1")
        cls.fake = fake_openrouter.FakeOpenRouter(script={
            "key": cls.key, "conversations": convs,
            "default": {"tool_calls": [{"name": "finish", "arguments": {"message": "ok"}}]}},
            key=cls.key)
        cls.fake.start()
        cls.install()

    @classmethod
    def install(cls):
        """As docs/deploy.md's systemd section: binary and data, wrapper, units, group, key."""
        for d in ("/usr/local/bin", "/usr/local/lib/agentbox", "/usr/local/share/agentbox/policies",
                  "/usr/local/share/agentbox/catalog", "/etc/agentbox",
                  "/etc/systemd/system/agentbox.service.d"):
            os.makedirs(d, exist_ok=True)
        shutil.copy(AGENTBOX, "/usr/local/bin/agentbox")
        os.chmod("/usr/local/bin/agentbox", 0o755)
        for f in glob.glob(os.path.join(ROOT, "policies", "*.json")):
            shutil.copy(f, "/usr/local/share/agentbox/policies/")
        for f in glob.glob(os.path.join(ROOT, "catalog", "*.json")):
            shutil.copy(f, "/usr/local/share/agentbox/catalog/")
        shutil.copy(os.path.join(ROOT, "deploy", "agentbox-serve"), "/usr/local/lib/agentbox/")
        os.chmod("/usr/local/lib/agentbox/agentbox-serve", 0o755)
        for unit in ("agentbox.service", "agentbox.socket"):
            shutil.copy(os.path.join(ROOT, "deploy", unit), "/etc/systemd/system/")
        sh("groupadd", "--system", "agentbox", check=False)
        os.chmod("/etc/agentbox", 0o700)
        fd = os.open("/etc/agentbox/agentbox.conf", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"OPENROUTER_API_KEY={cls.key}\n")
        # the test's upstream: a drop-in, as an operator would point at a proxy
        with open("/etc/systemd/system/agentbox.service.d/test.conf", "w") as f:
            f.write("[Service]\n"
                    f"Environment=OPENHANDS_BASE_URL={cls.fake.base_url}\n"
                    "Environment=OPENHANDS_MODEL=test/primary\n"
                    "Environment=OPENHANDS_CATALOG_FALLBACK=false\n"
                    "Environment=OPENHANDS_RETRY_BASE_DELAY=0.02\n")
        sh("systemctl", "daemon-reload")
        sh("systemctl", "enable", "--now", "agentbox.socket")

    @classmethod
    def tearDownClass(cls):
        cls.fake.stop()

    def setUp(self):
        sh("systemctl", "start", "agentbox.socket")

    def wait_health(self, timeout=120):
        deadline = time.monotonic() + timeout
        while True:
            try:
                r = ask({"op": "health"}, timeout=timeout)
                if r.get("ok"):
                    return r
            except OSError:
                if time.monotonic() > deadline:
                    raise
            time.sleep(0.2)

    def submit(self, conv, tid):
        r = ask({"op": "submit", "task": {"id": tid, "prompt": f"[conv:{conv}] go"}})
        self.assertTrue(r.get("ok"), r)
        return r["id"]

    def wait_running(self, tid, timeout=120):
        deadline = time.monotonic() + timeout
        st = None
        while time.monotonic() < deadline:
            st = ask({"op": "status", "id": tid}).get("task", {}).get("status")
            if st == "running":
                return
            if st not in (None, "queued"):  # it ended without being seen running: say why
                self.fail(f"{tid} never ran: {ask({'op': 'wait', 'id': tid, 'timeout_s': 5})}")
            time.sleep(0.2)
        self.fail(f"{tid} never ran (status {st})")

    def test_1_socket_activation(self):
        sh("systemctl", "stop", "agentbox.service")
        self.assertEqual(sh("systemctl", "is-active", "agentbox.service", check=False), "inactive")
        st = os.stat(SOCK)
        self.assertEqual((oct(st.st_mode & 0o777), sh("stat", "-c", "%G", SOCK)), ("0o660", "agentbox"))
        self.assertEqual(oct(os.stat(os.path.dirname(SOCK)).st_mode & 0o777), "0o750")
        # the first connection starts the service, and is answered by it
        self.assertTrue(self.wait_health().get("ok"))
        self.assertEqual(sh("systemctl", "is-active", "agentbox.service"), "active")
        pid = main_pid()
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            self.assertEqual(f.read().split(b"\0")[1], b"serve")
        # serve took systemd's socket (fd 3), it did not bind one of its own
        self.assertEqual(os.readlink(f"/proc/{pid}/fd/3")[:8], "socket:[")

    def test_2_delegation_and_hardening(self):
        self.wait_health()
        pid = main_pid()
        with open(f"/proc/{pid}/cgroup") as f:
            self.assertEqual(f.read().strip(), "0::/system.slice/agentbox.service/supervisor")
        with open(f"/proc/{pid}/status") as f:
            status = dict(line.split(":\t", 1) for line in f.read().splitlines() if ":\t" in line)
        self.assertEqual(int(status["CapBnd"], 16), CAPS)
        self.assertEqual(status["NoNewPrivs"].strip(), "1")
        with open(f"/proc/{pid}/environ", "rb") as f:
            self.assertNotIn(self.key.encode(), f.read())
        self.assertNotIn(self.key, sh("systemctl", "show", "agentbox.service"))
        tid = self.submit("sleep6", "delegated")
        self.wait_running(tid)
        deadline = time.monotonic() + 60
        cells = []
        while not cells and time.monotonic() < deadline:
            cells = glob.glob(UNIT_CG + "/agentbox/u0-s*")
            time.sleep(0.1)
        self.assertEqual(len(cells), 1, "no cell cgroup below the service's (Delegate=yes)")
        with open(cells[0] + "/memory.max") as f:
            self.assertEqual(int(f.read()), 2 << 30)
        with open(cells[0] + "/pids.max") as f:
            self.assertEqual(int(f.read()), 512)
        r = ask({"op": "wait", "id": tid, "timeout_s": 120}, timeout=150)["result"]
        self.assertEqual(r["status"], "succeeded", r)
        self.assertEqual(r["sandbox"]["cgroup"], "v2")
        for need in ("memory", "pids", "seccomp", "landlock"):
            self.assertIn(need, r["sandbox"]["enforced"], r["sandbox"])
        # gone, or (a kernel that can reset memory.peak, 6.12) kept for the slot's next cell
        # with no task left in it
        self.assertTrue(not os.path.exists(cells[0]) or "populated 0" in open(cells[0] + "/cgroup.events").read(),
                        "the cell's cgroup outlived it with tasks")
        # inside a cell of the hardened service: no_new_privs, seccomp, no capability, a
        # slot uid, the host read-only and the key file out of reach
        tid = self.submit("probe", "probe")
        r = ask({"op": "wait", "id": tid, "timeout_s": 120}, timeout=150)["result"]
        self.assertEqual(r["status"], "succeeded", r)
        with open(os.path.join(STATE, tid, "events.jsonl")) as f:
            text = f.read()
        self.assertIn("NoNewPrivs:\\t1", text)
        self.assertIn("Seccomp:\\t2", text)
        self.assertIn("CapEff:\\t0000000000000000", text)
        self.assertRegex(text, r"touch: cannot touch '/usr/x': (Read-only file system|Permission denied)")
        self.assertRegex(text, r"/etc/agentbox/(y|agentbox.conf): (Permission denied|No such file)")
        self.assertNotIn(self.key, text)
        self.assertNotIn(self.key, json.dumps(r))

    def test_3_restart_keeps_serving_the_socket(self):
        self.wait_health()
        before = main_pid()
        errors, answered, stop = [], [], threading.Event()

        def hammer():
            while not stop.is_set():
                try:
                    if ask({"op": "health"}, timeout=120).get("ok"):
                        answered.append(time.monotonic())
                except (OSError, ValueError) as e:
                    errors.append(repr(e))
                time.sleep(0.02)
        t = threading.Thread(target=hammer)
        t.start()
        try:
            time.sleep(0.5)
            t_restart = time.monotonic()
            sh("systemctl", "restart", "agentbox.service")
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline and not [a for a in answered if a > t_restart]:
                time.sleep(0.1)
            time.sleep(0.5)
        finally:
            stop.set()
            t.join(150)
        self.assertEqual(errors, [], "a client was refused while the service restarted")
        self.assertTrue([a for a in answered if a > t_restart], "nothing answered after the restart")
        self.assertNotEqual(main_pid(), before)
        self.assertTrue(os.path.exists(SOCK))

    def test_4_stop_drains_a_running_task(self):
        self.wait_health()
        tid = self.submit("sleep8", "drained")
        self.wait_running(tid)
        t0 = time.monotonic()
        sh("systemctl", "stop", "agentbox.service", timeout=120)
        took = time.monotonic() - t0
        self.assertEqual(sh("systemctl", "is-active", "agentbox.service", check=False), "inactive")
        with open(os.path.join(STATE, tid, "result.json")) as f:
            r = json.load(f)
        self.assertEqual(r["status"], "succeeded", r)  # finished, not cancelled
        self.assertGreater(took, 1.0)  # stop waited for it
        self.assertFalse(os.path.exists(UNIT_CG), "the service's cgroup outlived the stop")
        # the socket is still systemd's: the next client starts the service again, which
        # answers for the task it drained
        r = ask({"op": "wait", "id": tid, "timeout_s": 60}, timeout=150)
        self.assertEqual(r["result"]["status"], "succeeded", r)


if __name__ == "__main__":
    unittest.main()
