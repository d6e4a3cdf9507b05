"""serve under exhaustion: out of fds (RLIMIT_NOFILE 64, 100 clients) it neither spins nor
floods its log; clients that stop in the middle of a huge line cost no memory once the line
is refused; finished results live on disk, so many large ones leave the RSS flat."""
import json
import os
import resource
import socket
import time

from servetest_util import AGENTBOX, ServeTestCase, bash_reply, finish_reply


def sanitized():
    """An ASan build keeps freed memory in its quarantine: its RSS says nothing of ours."""
    with open(AGENTBOX, "rb") as f:
        return b"__asan_init" in f.read()


SANITIZED = sanitized()


def cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        rest = f.read().rsplit(")", 1)[1].split()
    return (int(rest[11]) + int(rest[12])) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class LimitsTest(ServeTestCase):
    def test_out_of_fds_neither_spins_nor_floods_the_log(self):
        fast = self.write_replay([finish_reply()], "fast.json")

        def low_fds():
            resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))

        self.start_server(replay=fast, preexec_fn=low_fds)
        socks = []
        self.addCleanup(lambda: [s.close() for s in socks])
        for _ in range(100):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(self.sock)
            socks.append(s)
        time.sleep(1.0)
        log0 = os.path.getsize(os.path.join(self.tmp, "serve.log"))
        cpu0 = cpu_s(self.proc.pid)
        time.sleep(3.0)
        burnt = cpu_s(self.proc.pid) - cpu0
        logged = os.path.getsize(os.path.join(self.tmp, "serve.log")) - log0
        self.assertLess(burnt, 0.5, "CPU seconds in 3 s with the fd table full")
        self.assertLess(logged, 2000, self.server_log())
        # the ones beyond the limit were told why
        refused = 0
        for s in socks:
            s.settimeout(0.01)
            try:
                data = s.recv(4096)
            except OSError:
                continue
            if data:
                self.assertIn(b"out of file descriptors", data)
                refused += 1
        self.assertGreater(refused, 0)
        # fds back: the server serves again
        for s in socks:
            s.close()
        socks.clear()
        deadline = time.monotonic() + 10
        while True:
            try:
                c = self.conn(timeout=5)
                r = c.ask({"op": "health"})
                if r.get("ok"):
                    break
            except (OSError, EOFError, ValueError):
                pass
            self.assertLess(time.monotonic(), deadline)
            time.sleep(0.1)
        self.assertEqual(self.wait_result(c, self.submit(c, {"prompt": "x"}))["status"],
                         "succeeded")

    def test_stalled_partial_lines_cost_no_memory(self):
        fast = self.write_replay([finish_reply()], "fast.json")
        self.start_server(replay=fast)
        base = rss_kib(self.proc.pid)
        conns = []
        for _ in range(20):
            c = self.conn(timeout=60)
            c.send_raw(b'{"op":"submit","task":{"prompt":"' + b"x" * (5 << 20))
            conns.append(c)
        for c in conns:  # each was told, and its 4 MiB are gone
            self.assertEqual(c.line()["error"]["code"], "too_large")
        time.sleep(0.5)
        grown = rss_kib(self.proc.pid) - base
        if not SANITIZED:  # (the paths still run under ASan, for its checks)
            self.assertLess(grown, 24 * 1024, f"RSS grew {grown} KiB for 20 stalled clients")
        # and a client that goes on after the refused line is served
        conns[0].send_raw(b'x"}}\n{"op":"health"}\n')
        self.assertTrue(conns[0].line()["ok"])

    def test_large_finished_results_stay_on_disk(self):
        big = self.write_replay([
            bash_reply("head -c 3000000 /dev/urandom | base64 > big.txt"), finish_reply()],
            "big.json")
        self.start_server("--jobs", "2", replay=big)
        c = self.conn()
        self.assertEqual(self.wait_result(c, self.submit(c, {"prompt": "x", "id": "w"}))
                         ["status"], "succeeded")
        base = rss_kib(self.proc.pid)
        ids = [self.submit(c, {"prompt": "x", "id": f"big{i}"}) for i in range(16)]
        for tid in ids:
            r = c.ask({"op": "wait", "id": tid, "timeout_s": 120})
            # the diff is cut at the result's 2 MiB cap (docs/agent.md)
            self.assertGreater(len(r["result"]["diff"]), 3 << 19)
        time.sleep(0.5)
        grown = rss_kib(self.proc.pid) - base
        # 16 results of 2 MiB each: 32 MiB if they were kept in memory
        if not SANITIZED:
            self.assertLess(grown, 24 * 1024, f"RSS grew {grown} KiB")
        with open(os.path.join(self.state, "big3", "result.json")) as f:
            self.assertEqual(json.load(f)["status"], "succeeded")
