"""The socket protocol against the real `agentbox serve`: every op's shape, every error code a
client can provoke, and hostile clients (malformed, oversized, stalled, never reading) that
must not stop the server from serving everyone else."""
import json
import os
import socket
import subprocess
import time

from servetest_util import AGENTBOX, Conn, ServeTestCase, bash_reply, finish_reply


class ProtocolTest(ServeTestCase):
    def setUp(self):
        super().setUp()
        self.replay = self.write_replay([finish_reply("hi")])

    def test_health_list_metrics_shapes(self):
        self.start_server("--jobs", "2", replay=self.replay)
        c = self.conn()
        h = c.ask({"op": "health"})
        self.assertEqual(h["ok"], True)
        self.assertEqual(h["status"], "ok")
        for k in ("version", "running", "queued", "uptime_s", "breaker"):
            self.assertIn(k, h)
        self.assertEqual(c.ask({"op": "list"}), {"ok": True, "tasks": []})
        tid = self.submit(c, {"prompt": "p", "id": "t-1"})
        self.assertEqual(tid, "t-1")
        res = self.wait_result(c, tid)
        self.assertEqual(res["status"], "succeeded")
        self.assertEqual(res["output"], "hi")
        st = c.ask({"op": "status", "id": tid})["task"]
        self.assertEqual(st["status"], "succeeded")
        self.assertLessEqual(st["submitted"], st["started"])
        self.assertLessEqual(st["started"], st["ended"])
        lst = c.ask({"op": "list"})["tasks"]
        self.assertEqual([t["id"] for t in lst], ["t-1"])
        text = c.ask({"op": "metrics"})["text"]
        self.assertIn('agentbox_tasks{status="succeeded"} 1', text)
        self.assertIn("agentbox_queue_depth 0", text)
        self.assertIn("agentbox_running_cells 0", text)
        self.assertIn("agentbox_task_duration_seconds_count 1", text)
        self.assertIn("agentbox_llm_calls_total{model=", text)
        self.assertIn("# TYPE agentbox_llm_latency_seconds histogram", text)

    def test_errors_and_the_connection_goes_on(self):
        self.start_server(replay=self.replay)
        c = self.conn()
        cases = [
            (b"{not json\n", "bad_request"),
            (b"[1,2]\n", "bad_request"),
            (b'{"op": 5}\n', "bad_request"),
            (b'{"op": "launch"}\n', "unknown_op"),
            (b'{"op": "status"}\n', "bad_request"),
            (b'{"op": "status", "id": "../x"}\n', "bad_request"),
            (b'{"op": "status", "id": "nope"}\n', "not_found"),
            (b'{"op": "wait", "id": "nope"}\n', "not_found"),
            (b'{"op": "cancel", "id": "nope"}\n', "not_found"),
            (b'{"op": "events", "id": "nope"}\n', "not_found"),
            (b'{"op": "events", "id": "all", "folow": true}\n', "bad_request"),
            (b'{"op": "submit", "task": {}}\n', "invalid_task"),
            (b'{"op": "submit"}\n', "bad_request"),
            (b'{"op": "list"} junk\n', "bad_request"),
            (b'{"op": "health", "x\x00": 1}\n', "bad_request"),
        ]
        for raw, code in cases:
            c.send_raw(raw)
            r = c.line()
            self.assertEqual(r["ok"], False, raw)
            self.assertEqual(r["error"]["code"], code, (raw, r))
            self.assertIsInstance(r["error"]["message"], str)
        self.assertEqual(c.ask({"op": "health"})["status"], "ok")

    def test_invalid_task_names_the_field(self):
        self.start_server(replay=self.replay)
        c = self.conn()
        r = c.ask({"op": "submit", "task": {"prompt": "x", "limits": {"disk": "lots"}}})
        self.assertEqual(r["error"]["code"], "invalid_task")
        self.assertIn("limits.disk", r["error"]["message"])
        r = c.ask({"op": "submit", "task": {"prompt": "x", "policy": "no-such-policy"}})
        self.assertEqual(r["error"]["code"], "invalid_task")
        self.assertEqual(c.ask({"op": "list"})["tasks"], [])

    def test_duplicate_id(self):
        self.start_server(replay=self.replay)
        c = self.conn()
        self.submit(c, {"prompt": "x", "id": "dup"})
        r = c.ask({"op": "submit", "task": {"prompt": "y", "id": "dup"}})
        self.assertEqual(r["error"]["code"], "duplicate_id")

    def test_oversized_request(self):
        self.start_server(replay=self.replay)
        c = self.conn()
        big = b'{"op": "submit", "task": {"prompt": "' + b"a" * (5 << 20) + b'"}}\n'
        c.send_raw(big)
        r = c.line()
        self.assertEqual(r["error"]["code"], "too_large")
        # the rest of that line is dropped; the next request is served
        self.assertEqual(c.ask({"op": "health"})["status"], "ok")
        self.assertEqual(self.conn().ask({"op": "list"})["tasks"], [])

    def test_half_line_stall_blocks_nobody(self):
        self.start_server(replay=self.replay)
        staller = self.conn()
        staller.send_raw(b'{"op": "hea')
        other = self.conn(timeout=5)
        t0 = time.monotonic()
        tid = self.submit(other, {"prompt": "x"})
        self.assertEqual(self.wait_result(other, tid)["status"], "succeeded")
        self.assertLess(time.monotonic() - t0, 10)
        staller.send_raw(b'lth"}\n')
        self.assertEqual(staller.line()["status"], "ok")

    def test_client_that_never_reads_is_disconnected(self):
        self.start_server("--client-queue", "64K", replay=self.replay)
        hog = Conn(self.sock)
        hog.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        # thousands of requests whose replies it never reads: its queue passes 64K
        reqs = b'{"op": "health"}\n' * 20000
        try:
            hog.sock.settimeout(10)
            hog.sock.sendall(reqs)
        except OSError:
            pass  # the server hung up while we were still writing: fine
        other = self.conn(timeout=5)
        self.assertEqual(other.ask({"op": "health"})["status"], "ok")
        # the hog's connection is closed by the server: draining it ends in EOF
        hog.sock.settimeout(10)
        got = 0
        try:
            while True:
                chunk = hog.sock.recv(1 << 16)
                if not chunk:
                    break
                got += len(chunk)
        except ConnectionResetError:
            pass
        self.assertLess(got, 20000 * 150, "every reply arrived: the hog was not cut off")
        hog.close()

    def test_events_subscriber_that_never_reads_is_disconnected(self):
        # ~3.5 KB of events per task (observations are clipped in events): 120 tasks make
        # ~400 KB, more than the socket buffer (~210 KB) plus the 64K queue bound
        replay = self.write_replay([bash_reply("head -c 30000 /dev/zero | tr '\\0' a"),
                                    finish_reply()], "big.json")
        self.start_server("--client-queue", "64K", "--jobs", "8", replay=replay)
        hog = self.conn()
        hog.send({"op": "events", "id": "all", "follow": True})
        c = self.conn()
        ids = [self.submit(c, {"prompt": "x"}) for _ in range(120)]
        for tid in ids:
            self.assertEqual(self.wait_result(c, tid)["status"], "succeeded")
        total = 0
        for tid in ids:
            total += os.path.getsize(os.path.join(self.state, tid, "events.jsonl"))
        got = b""
        hog.sock.settimeout(10)
        try:
            while True:
                chunk = hog.sock.recv(1 << 20)
                if not chunk:
                    break
                got += chunk
        except ConnectionResetError:
            pass
        self.assertGreater(total, 350000)
        self.assertLess(len(got), total, "the hog got every event: it was not cut off")
        self.assertEqual(c.ask({"op": "health"})["status"], "ok")

    def test_many_clients_at_once(self):
        self.start_server(replay=self.replay)
        conns = [self.conn(timeout=10) for _ in range(200)]
        for c in conns:
            c.send({"op": "health"})
        for c in conns:
            self.assertEqual(c.line()["status"], "ok")

    def test_socket_mode(self):
        self.start_server(replay=self.replay)
        self.assertEqual(os.stat(self.sock).st_mode & 0o777, 0o660)

    @staticmethod
    def _as_nobody():
        os.setgroups([])
        os.setgid(65534)
        os.setuid(65534)

    def _nobody_health(self):
        code = ("import socket,sys\ns=socket.socket(socket.AF_UNIX);s.connect(sys.argv[1])\n"
                "try:\n s.sendall(b'{\"op\":\"health\"}\\n')\nexcept OSError:\n pass\n"
                "print(s.recv(4096).decode())")
        return subprocess.run(["/usr/bin/python3", "-c", code, self.sock], capture_output=True,
                              text=True, timeout=20, preexec_fn=self._as_nobody)

    def test_peer_credentials_refused_unless_allowed(self):
        if os.geteuid() != 0:
            self.skipTest("needs root to connect as another uid")
        self.start_server(replay=self.replay)
        os.chmod(self.sock, 0o666)  # let the file mode pass so SO_PEERCRED decides
        r = self._nobody_health()
        self.assertIn('"forbidden"', r.stdout, r)
        self.kill_server()
        self.start_server("--allow-uid", "65534", replay=self.replay)
        os.chmod(self.sock, 0o666)
        r = self._nobody_health()
        self.assertIn('"status":"ok"', r.stdout, r)
        self.kill_server()
        self.start_server("--allow-gid", "65534", replay=self.replay)  # nobody's primary gid
        os.chmod(self.sock, 0o666)
        r = self._nobody_health()
        self.assertIn('"status":"ok"', r.stdout, r)
        self.kill_server()
        self.start_server("--allow-uid", "65533", "--allow-gid", "65533", replay=self.replay)
        os.chmod(self.sock, 0o666)
        self.assertIn('"forbidden"', self._nobody_health().stdout)

    def test_client_commands(self):
        self.start_server(replay=self.replay)
        r = self.client("submit", "do it", "--id", "cli-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertEqual(r.stdout.strip(), "cli-1")
        r = self.client("wait", "cli-1", "--timeout", "30")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn('"succeeded"', r.stdout)
        r = self.client("events", "cli-1")
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("task_completed", r.stdout)
        r = self.client("submit", "again", "--wait")
        self.assertEqual(r.returncode, 0, r.stderr)
        r = self.client("status", "nope")
        self.assertEqual(r.returncode, 2)
        self.assertIn("not_found", r.stderr)
        r = self.client("metrics")
        self.assertIn("agentbox_tasks", r.stdout)
        r = subprocess.run([AGENTBOX,
                            "health", "--socket", os.path.join(self.tmp, "missing.sock")],
                           capture_output=True, text=True, timeout=10)
        self.assertEqual(r.returncode, 2)
        self.assertIn("cannot reach the server", r.stderr)

    def test_half_close_still_answered(self):
        # `printf ... | nc -U -q` style: requests, then shutdown(SHUT_WR); every answer arrives
        self.start_server(replay=self.replay)
        c = self.conn()
        c.send_raw(b'{"op":"submit","task":{"prompt":"x","id":"hc"}}\n{"op":"wait","id":"hc"}\n'
                   b'{"op":"status","id":"hc"}\n{"op":"hea')
        c.sock.shutdown(socket.SHUT_WR)
        self.assertEqual(c.line()["id"], "hc")
        self.assertEqual(c.line()["result"]["status"], "succeeded")
        self.assertEqual(c.line()["task"]["status"], "succeeded")
        with self.assertRaises(EOFError):  # the torn last line is dropped, then the close
            c.line()

    def test_client_exit_codes_follow_the_result(self):
        # a reply without a tool call, then the replay runs dry: the task fails
        bad = self.write_replay([{"content": "no tool call"}], "bad.json")
        self.start_server(replay=bad)
        task_file = os.path.join(self.tmp, "task.json")
        with open(task_file, "w") as f:
            json.dump({"prompt": "x", "id": "will-fail", "metadata": {"k": 1}}, f)
        r = self.client("submit", "--task-file", task_file, "--wait")
        self.assertEqual(r.returncode, 1, r.stderr)
        res = json.loads(r.stdout)
        self.assertEqual(res["status"], "failed")
        self.assertEqual(res["metadata"]["k"], 1)
        self.assertIn("will-fail", r.stderr)
        r = self.client("wait", "will-fail")
        self.assertEqual(r.returncode, 1)
        r = self.client("cancel", "will-fail")
        self.assertEqual(r.returncode, 0)
        self.assertEqual(json.loads(r.stdout)["status"], "failed")
        r = self.client("submit", "--task-file", os.path.join(self.tmp, "missing.json"))
        self.assertEqual(r.returncode, 2)
        r = self.client("submit", "x", "--id", "bad id!")
        self.assertEqual(r.returncode, 2)
        self.assertIn("invalid_task", r.stderr)
