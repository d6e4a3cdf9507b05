"""Attacks on the egress proxy from inside a cell, all on loopback: names that resolve to
loopback, IP literals (loopback, private, metadata), CONNECT to the proxy itself, a second
CONNECT inside a tunnel, a relay process in the cell, an allowed host on another port, a huge
header, a slow preamble, and 1000 connections at once. Where a destination is refused, the
local server must have seen no connection and the record no upstream connection: the proxy
refuses before it connects."""
import time
import unittest

from egress_util import EgressTestCase


def connect_req(target):
    return f"CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n\r\n".encode()


def get_req(url, host):
    return f"GET {url} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: t\r\n\r\n".encode()


class AttackTest(EgressTestCase):
    def assert_denied(self, reply, status, reason):
        self.assertTrue(reply.startswith(f"HTTP/1.1 {status} "), reply[:200])
        self.assertIn(reason, reply)

    def test_allowed_name_resolving_to_loopback_is_refused(self):
        rec = self.recorder()
        # "localhost" comes from /etc/hosts: 127.0.0.1 (and ::1)
        p, reply = self.raw([f"--allow-host=localhost:{rec.port}"],
                            get_req(f"http://localhost:{rec.port}/", "localhost"))
        self.assert_denied(reply, 403, "a loopback address")
        self.assertEqual(rec.received, [])
        self.assertEqual(self.network()["connections"], 0)
        # pinned by the caller, the same address is allowed
        p, reply = self.raw([f"--allow-host=localhost:{rec.port}", "--resolve=localhost:127.0.0.1"],
                            get_req(f"http://localhost:{rec.port}/x", "localhost"))
        self.assertTrue(reply.startswith("HTTP/1.0 200"), reply)
        self.assertEqual(len(rec.received), 1)
        # the request went upstream in origin form, without hop-by-hop headers
        self.assertTrue(rec.received[0].startswith(b"GET /x HTTP/1.1\r\n"), rec.received[0])
        self.assertIn(b"Connection: close", rec.received[0])

    def test_ip_literals_are_refused_unless_listed_literally(self):
        rec = self.recorder()
        for target in (f"127.0.0.1:{rec.port}", "10.1.2.3:443", "169.254.169.254:80",
                       "[fd00:ec2::254]:80", "100.64.0.1:443", "[::1]:443", "[::ffff:127.0.0.1]:443"):
            with self.subTest(target=target):
                p, reply = self.raw(["--allow-host=example.org"], connect_req(target))
                self.assert_denied(reply, 403, "IP address not on the allow-list")
                self.assertEqual(self.network()["connections"], 0)
        # metadata as an absolute URL too
        p, reply = self.raw(["--allow-host=example.org"],
                            get_req("http://169.254.169.254/latest/meta-data/", "169.254.169.254"))
        self.assert_denied(reply, 403, "IP address not on the allow-list")
        self.assertEqual(rec.received, [])
        # listed literally, it is the caller's choice
        p, reply = self.raw([f"--allow-host=127.0.0.1:{rec.port}"],
                            get_req(f"http://127.0.0.1:{rec.port}/", f"127.0.0.1:{rec.port}"))
        self.assertTrue(reply.startswith("HTTP/1.0 200"), reply)
        self.assertEqual(len(rec.received), 1)

    def test_names_and_ports_not_on_the_list(self):
        rec = self.recorder()
        pins = ["--resolve=reg.test:127.0.0.1", "--resolve=evil.test:127.0.0.1"]
        allow = [f"--allow-host=reg.test:{rec.port}", "--allow-host=*.npm.test"]
        cases = [
            (connect_req(f"evil.test:{rec.port}"), "host not on the allow-list"),
            (connect_req("reg.test:22"), "port not allowed for this host"),
            (connect_req("npm.test:443"), "host not on the allow-list"),  # *. is below only
            (connect_req(f"reg.test.evil.test:{rec.port}"), "host not on the allow-list"),
            (get_req(f"http://user@reg.test:{rec.port}/", "reg.test"), "bad host in the URL"),
            (get_req(f"https://reg.test:{rec.port}/", "reg.test"), "go through CONNECT"),
            (b"GET / HTTP/1.1\r\nHost: reg.test\r\n\r\n", "absolute http:// URL"),
            (b"CONNECT reg.test HTTP/1.1\r\n\r\n", "CONNECT needs HOST:PORT"),
            (b"CONNECT  reg.test:443 HTTP/1.1\r\n\r\n", "METHOD TARGET VERSION"),
        ]
        for req, why in cases:
            with self.subTest(req=req):
                p, reply = self.raw(allow + pins, req)
                self.assertIn(why, reply)
                self.assertRegex(reply, r"^HTTP/1.1 (403|400) ")
        self.assertEqual(rec.received, [])

    def test_connect_to_the_proxy_itself(self):
        p, reply = self.raw(["--allow-host=example.org"], connect_req("127.0.0.1:3128"))
        self.assert_denied(reply, 403, "IP address not on the allow-list")
        p, reply = self.raw(["--allow-host=self.test:3128", "--resolve=self.test:127.0.0.1"],
                            connect_req("self.test:3128"))
        self.assert_denied(reply, 403, "the proxy itself")
        self.assertEqual(self.network()["connections"], 0)

    def test_a_second_connect_inside_a_tunnel_goes_to_the_origin(self):
        rec = self.recorder()
        inner = connect_req("evil.test:443")
        p, reply = self.raw([f"--allow-host=reg.test:{rec.port}", "--resolve=reg.test:127.0.0.1"],
                            connect_req(f"reg.test:{rec.port}"), after=inner)
        self.assertTrue(reply.startswith("HTTP/1.1 200 Connection established"), reply)
        # the proxy relayed the bytes to the allowed origin; it did not act on them
        self.assertEqual(len(rec.received), 1)
        self.assertEqual(rec.received[0], inner)
        self.assertEqual(self.network()["connections"], 1)

    def test_a_relay_in_the_cell_gains_nothing(self):
        rec = self.recorder()
        # a relay listening in the cell that forwards to the proxy: same rules apply
        script = r"""
import socket, sys, threading
l = socket.socket(); l.bind(("127.0.0.1", 9000)); l.listen(4)
def relay():
    c, _ = l.accept(); u = socket.create_connection(("127.0.0.1", 3128))
    u.sendall(c.recv(65536)); c.sendall(u.recv(65536)); c.close(); u.close()
threading.Thread(target=relay, daemon=True).start()
s = socket.create_connection(("127.0.0.1", 9000))
s.sendall(sys.argv[1].encode())
print(s.recv(65536).decode())
# and the relay's own port, asked of the proxy, is a loopback literal
u = socket.create_connection(("127.0.0.1", 3128))
u.sendall(b"CONNECT 127.0.0.1:9000 HTTP/1.1\r\n\r\n")
print(u.recv(65536).decode())
"""
        p = self.exec([f"--allow-host=reg.test:{rec.port}"],
                      ["python3", "-c", script, "CONNECT evil.test:443 HTTP/1.1\r\n\r\n"])
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("host not on the allow-list", p.stdout)
        self.assertIn("IP address not on the allow-list", p.stdout)
        self.assertEqual(rec.received, [])

    def test_caps_from_the_policy(self):
        import json
        import os
        big = self.recorder(reply=b"HTTP/1.0 200 OK\r\n\r\n" + b"x" * 300000)
        small = self.recorder()
        pol = os.path.join(self.tmp, "capped.json")
        with open(pol, "w") as f:
            json.dump({"name": "capped", "extends": "default", "network": {"egress": {
                "allow": [f"reg.test:{small.port}", f"big.test:{big.port}"],
                "resolve": {"reg.test": "127.0.0.1", "big.test": "127.0.0.1"},
                "max_connections": 3, "max_bytes": 100000}}}, f)
        script = r"""
import socket, sys
port, bigport = sys.argv[1], sys.argv[2]
def get(host, p):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(f"GET http://{host}:{p}/ HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    data = b""
    while True:
        try:
            c = s.recv(65536)
        except ConnectionResetError:  # a connection cut at a cap
            break
        if not c:
            break
        data += c
    return data
for i in range(2):
    print(get("reg.test", port).split(b"\r\n")[0].decode(), flush=True)
print(len(get("big.test", bigport)))
print(get("reg.test", port).split(b"\r\n")[0].decode(), flush=True)
"""
        # the policy's own list: no --allow-host needed
        p = self.exec([], ["python3", "-c", script, str(small.port), str(big.port)],
                      extra=["--policy", pol])
        self.assertEqual(p.returncode, 0, p.stderr)
        lines = p.stdout.split("\n")
        self.assertEqual(lines[:2], ["HTTP/1.0 200 OK"] * 2)
        self.assertLess(int(lines[2]), 300000)  # cut at the byte cap
        self.assertTrue(lines[3].startswith("HTTP/1.1 403 Forbidden (agentbox egress: "
                                            "connection limit reached"), lines[3])  # a 4th
        whys = [d["why"] for d in self.network()["denied"]]
        self.assertIn("cut: the task's byte limit was reached", whys)
        self.assertIn("connection limit reached (3 per task)", whys)

    def test_a_connection_is_cut_at_its_time_limit(self):
        import json
        import os
        hold = self.recorder(reply=b"")  # reads, never answers, closes after 5 s of silence
        pol = os.path.join(self.tmp, "short.json")
        with open(pol, "w") as f:
            json.dump({"name": "short", "extends": "default", "network": {"egress": {
                "max_connection_s": 1}}}, f)
        t0 = time.monotonic()
        p, reply = self.raw(["--policy", pol, f"--allow-host=reg.test:{hold.port}",
                             "--resolve=reg.test:127.0.0.1"], connect_req(f"reg.test:{hold.port}"))
        self.assertTrue(reply.startswith("HTTP/1.1 200"), reply)
        self.assertLess(time.monotonic() - t0, 30)
        whys = [d["why"] for d in self.network()["denied"]]
        self.assertIn("cut: the connection's time limit was reached", whys)

    def test_huge_header_is_refused(self):
        req = b"CONNECT reg.test:443 HTTP/1.1\r\nX-Big: " + b"a" * 20000 + b"\r\n\r\n"
        p, reply = self.raw(["--allow-host=reg.test"], req)
        self.assert_denied(reply, 431, "too large")
        many = b"CONNECT reg.test:443 HTTP/1.1\r\n" + b"X: y\r\n" * 200 + b"\r\n"
        p, reply = self.raw(["--allow-host=reg.test"], many)
        self.assert_denied(reply, 431, "too many request headers")

    def test_slow_preamble_times_out(self):
        t0 = time.monotonic()
        p, reply = self.raw(["--allow-host=reg.test"], b"CONNECT reg.test:4")
        took = time.monotonic() - t0
        self.assert_denied(reply, 408, "did not arrive in time")
        self.assertGreater(took, 5)
        self.assertLess(took, 60)

    def test_a_thousand_connections_from_one_cell(self):
        rec = self.recorder()
        script = r"""
import socket, sys
socks, refused = [], 0
for i in range(1000):
    s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
    socks.append(s)
for s in socks:
    s.settimeout(0.2)
    try:
        if s.recv(64).startswith(b"HTTP/1.1 403"):
            refused += 1
    except OSError:
        pass
for s in socks:
    s.close()
print("refused", refused)
# the proxy still serves once they are gone
s = socket.create_connection(("127.0.0.1", 3128))
s.sendall(sys.argv[1].encode())
print(s.recv(65536).decode())
"""
        p = self.exec([f"--allow-host=reg.test:{rec.port}", "--resolve=reg.test:127.0.0.1"],
                      ["python3", "-c", script,
                       f"GET http://reg.test:{rec.port}/ HTTP/1.1\r\nHost: reg.test\r\n\r\n"],
                      timeout=180)
        self.assertEqual(p.returncode, 0, p.stderr)
        refused = int(p.stdout.split("refused ")[1].split()[0])
        # at most 64 are let in at a time (the default cap); the rest are told why at once
        self.assertGreaterEqual(refused, 1000 - 64)
        self.assertIn("HTTP/1.0 200", p.stdout)
        self.assertIn("too many open connections", p.stderr)


if __name__ == "__main__":
    unittest.main()
