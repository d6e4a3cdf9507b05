#!/usr/bin/env python3
"""Egress proxy cost, on loopback only:

1. throughput: curl downloads SIZE MB from a local server (sendfile) on the host, and the same
   download from inside a cell through the proxy (CONNECT tunnel, and a plain absolute-URI GET);
   curl's own speed_download, median of RUNS each, interleaved; beside them two references
   that show where the difference comes from: the host download through relay_floor.c (a bare
   splice relay: the least any relay in the path costs here), and the download from a cell
   with --network host (the cell's own cost, no relay);
2. added latency per connection: N sequential request/response exchanges from a Python client,
   directly on the host and through the proxy from inside a cell (CONNECT + GET + answer +
   close); median difference;
3. memory per open proxied connection: the proxy helper's VmRSS with C tunnels held open,
   minus with none, divided by C.

usage: bench_egress.py [--size-mb 200] [--runs 5] [--conns 300] [--open 200]
env AGENTBOX: the binary (default ./agentbox). Prints a Markdown table row set.
"""
import argparse
import glob
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time

AGENTBOX = os.environ.get("AGENTBOX", "./agentbox")


class FileServer:
    """HTTP/1.0: any GET answers with the whole file via sendfile; Connection: close."""

    def __init__(self, path):
        self.path = path
        self.size = os.path.getsize(path)
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(512)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.loop, daemon=True).start()

    def loop(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    PACE_MBPS = 100  # a link of about 800 Mbit/s: the network, not this CPU, is the limit

    def paced(self, c):
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size)
        chunk = 1 << 20
        start = time.monotonic()
        with open(self.path, "rb") as f:
            for i in range(self.size // chunk):
                c.sendfile(f, offset=i * chunk, count=chunk)
                ahead = start + (i + 1) / self.PACE_MBPS - time.monotonic()
                if ahead > 0:
                    time.sleep(ahead)

    def serve(self, c):
        try:
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    return
                data += chunk
            small = b" /small " in data.split(b"\r\n", 1)[0]
            if small:
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
            elif b" /hold " in data.split(b"\r\n", 1)[0]:
                c.recv(1)  # until the client goes
            elif b" /paced " in data.split(b"\r\n", 1)[0]:
                self.paced(c)
            else:
                c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n" % self.size)
                with open(self.path, "rb") as f:
                    c.sendfile(f)
        except OSError:
            pass
        finally:
            c.close()


def egress_args(port):
    return [f"--allow-host=reg.test:{port}", "--resolve=reg.test:127.0.0.1"]


def curl_speed(argv):
    out = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    if out.returncode != 0:
        sys.exit(f"curl failed: {out.stderr}")
    return float(out.stdout.split()[-1])


def throughput(port, runs, path="big", relay_port=None):
    """Medians in MB/s: host, tunnel, plain; then relay floor and cell without relay when
    relay_port is given."""
    url = f"http://reg.test:{port}/{path}"
    fmt = ["-w", "%{speed_download}", "-o", "/dev/null", "-sS"]
    pin = ["--resolve", f"reg.test:{port}:127.0.0.1"]
    host, tunnel, plain, relay, cell = [], [], [], [], []
    for _ in range(runs):  # interleaved
        host.append(curl_speed(["curl", *fmt, *pin, url]))
        tunnel.append(curl_speed([AGENTBOX, "exec", *egress_args(port), "--", "curl", *fmt,
                                  "--proxytunnel", url]))
        plain.append(curl_speed([AGENTBOX, "exec", *egress_args(port), "--", "curl", *fmt, url]))
        if relay_port:
            relay.append(curl_speed(["curl", *fmt, f"http://127.0.0.1:{relay_port}/{path}"]))
            cell.append(curl_speed([AGENTBOX, "exec", "--policy", "permissive", "--network",
                                    "host", "--", "curl", *fmt, *pin, url]))
    return [statistics.median(x) / 1e6 if x else 0.0 for x in (host, tunnel, plain, relay, cell)]


def start_relay_floor(port, outdir):
    """Builds and starts bench/relay_floor.c towards the server; returns (process, its port)."""
    src = os.path.join(os.path.dirname(os.path.abspath(__file__)), "relay_floor.c")
    exe = os.path.join(outdir, "relay_floor")
    subprocess.run([os.environ.get("CC", "cc"), "-O2", "-D_GNU_SOURCE", "-pthread", "-o", exe,
                    src], check=True)
    p = subprocess.Popen([exe, str(port)], stdout=subprocess.PIPE, text=True)
    return p, int(p.stdout.readline())


LATENCY_CLIENT = r"""
import socket, statistics, sys, time
port, n, proxied = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
req = b"GET /small HTTP/1.0\r\nHost: reg.test\r\n\r\n"
def read_head(s):
    d = b""
    while b"\r\n\r\n" not in d:
        c = s.recv(4096)
        if not c:
            break
        d += c
    return d
times = []
for _ in range(n):
    t = time.perf_counter()
    if proxied:
        s = socket.create_connection(("127.0.0.1", 3128))
        s.sendall(b"CONNECT reg.test:%d HTTP/1.1\r\n\r\n" % port)
        assert read_head(s).startswith(b"HTTP/1.1 200")
    else:
        s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    while s.recv(4096):
        pass
    s.close()
    times.append(time.perf_counter() - t)
print(statistics.median(times) * 1000)
"""


def latency(port, n):
    direct = float(subprocess.run([sys.executable, "-c", LATENCY_CLIENT, str(port), str(n), "0"],
                                  capture_output=True, text=True, timeout=600).stdout)
    out = subprocess.run([AGENTBOX, "exec", *egress_args(port), "--", "python3", "-c",
                          LATENCY_CLIENT, str(port), str(n), "1"], capture_output=True, text=True,
                         timeout=600)
    if out.returncode != 0:
        sys.exit(f"latency client failed: {out.stderr}")
    return direct, float(out.stdout)


HOLD_CLIENT = r"""
import socket, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
print("zero", flush=True)
sys.stdin.readline()
socks = []
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(b"CONNECT reg.test:%d HTTP/1.1\r\n\r\n" % port)
    d = b""
    while b"\r\n\r\n" not in d:
        d += s.recv(4096)
    assert d.startswith(b"HTTP/1.1 200"), d
    s.sendall(b"GET /hold HTTP/1.0\r\n\r\n")
    socks.append(s)
print("open", flush=True)
sys.stdin.readline()
"""


def helper_pid():
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] == [b"agentbox", b"__egress"]:
                    return int(d[6:])
        except OSError:
            pass
    sys.exit("no proxy helper found (run as root to read another uid's /proc)")


def helper_cpu_s(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_per_gb(port, size_mb):
    """CPU time the proxy helper spends relaying one download (CONNECT tunnel), per GB."""
    cmd = (f"curl -sS -o /dev/null --proxytunnel http://reg.test:{port}/big && echo done && "
           "read x")
    p = subprocess.Popen([AGENTBOX, "exec", *egress_args(port), "--", "sh", "-c", cmd],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "done"
    cpu = helper_cpu_s(helper_pid())
    p.stdin.write("\n")
    p.stdin.flush()
    p.wait(60)
    return cpu / (size_mb / 1024)


def helper_rss_kb():
    """VmRSS of the one running proxy helper (`agentbox __egress`)."""
    for d in glob.glob("/proc/[0-9]*"):
        try:
            with open(d + "/cmdline", "rb") as f:
                if f.read().split(b"\0")[:2] != [b"agentbox", b"__egress"]:
                    continue
            with open(d + "/status") as f:
                for line in f:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
    sys.exit("no proxy helper found (run as root to read another uid's /proc)")


def memory(port, n):
    p = subprocess.Popen([AGENTBOX, "exec", "--policy", policy_with_caps(n), *egress_args(port),
                          "--", "python3", "-c", HOLD_CLIENT, str(port), str(n)],
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "zero"
    time.sleep(0.3)
    before = helper_rss_kb()
    p.stdin.write("\n")
    p.stdin.flush()
    assert p.stdout.readline().strip() == "open"
    time.sleep(0.3)
    after = helper_rss_kb()
    p.stdin.write("\n")
    p.stdin.flush()
    p.wait(60)
    return before, after


_policy_dir = tempfile.mkdtemp(prefix="agentbox-bench-egress-")


def policy_with_caps(n):
    path = os.path.join(_policy_dir, "bench.json")
    with open(path, "w") as f:
        json.dump({"name": "bench", "extends": "default", "network": {
            "egress": {"max_concurrent": n + 10, "max_connections": n + 10}},
            "limits": {"nofile": 4096}}, f)
    return path


def startup(n=60):
    """Median wall time of `exec -- /bin/true` without and with an allow-list, alternating."""
    plain, egress = [], []
    for _ in range(n):
        for args, out in (([], plain), (["--allow-host=pypi.org"], egress)):
            t = time.perf_counter()
            subprocess.run([AGENTBOX, "exec", *args, "--", "/bin/true"], check=True)
            out.append(time.perf_counter() - t)
    return statistics.median(plain) * 1000, statistics.median(egress) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--size-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--conns", type=int, default=300)
    ap.add_argument("--open", type=int, default=200)
    a = ap.parse_args()
    with tempfile.NamedTemporaryFile(prefix="agentbox-bench-egress-") as big:
        chunk = os.urandom(1 << 20)
        for _ in range(a.size_mb):
            big.write(chunk)
        big.flush()
        srv = FileServer(big.name)
        load = os.getloadavg()
        relay_proc, relay_port = start_relay_floor(srv.port, _policy_dir)
        try:
            host, tunnel, plain, relay, cell = throughput(srv.port, a.runs, "big", relay_port)
        finally:
            relay_proc.kill()
            relay_proc.wait()
        p_host, p_tunnel, *_ = throughput(srv.port, 3, "paced")
        direct, proxied = latency(srv.port, a.conns)
        before, after = memory(srv.port, a.open)
        cpu = statistics.median(cpu_per_gb(srv.port, a.size_mb) for _ in range(3))
    shutil.rmtree(_policy_dir, ignore_errors=True)
    st_plain, st_egress = startup()
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}")
    print("| measure | host | through the proxy | ratio / difference |")
    print("|---|---|---|---|")
    print(f"| {a.size_mb} MB download, CONNECT tunnel (median of {a.runs}) | {host:.0f} MB/s | "
          f"{tunnel:.0f} MB/s | {tunnel / host:.2f}x |")
    print(f"| {a.size_mb} MB download, plain absolute-URI GET | {host:.0f} MB/s | {plain:.0f} MB/s "
          f"| {plain / host:.2f}x |")
    print(f"| reference: {a.size_mb} MB on the host through a bare splice relay "
          f"(relay_floor.c) | {host:.0f} MB/s | {relay:.0f} MB/s | {relay / host:.2f}x |")
    print(f"| reference: {a.size_mb} MB from a cell with --network host (no relay) | "
          f"{host:.0f} MB/s | {cell:.0f} MB/s | {cell / host:.2f}x |")
    print(f"| {a.size_mb} MB at {FileServer.PACE_MBPS} MB/s (a link, not the CPU, is the limit), "
          f"CONNECT tunnel (median of 3) | {p_host:.0f} MB/s | {p_tunnel:.0f} MB/s | "
          f"{p_tunnel / p_host:.2f}x |")
    print(f"| one connection: connect, request, answer, close (median of {a.conns}) | "
          f"{direct:.3f} ms | {proxied:.3f} ms | +{proxied - direct:.3f} ms |")
    print(f"| proxy helper CPU time (user+system) per GB relayed, median of 3 | | {cpu:.2f} s | |")
    print(f"| `exec -- /bin/true` start-up, without / with --allow-host (median of 60) | "
          f"{st_plain:.2f} ms | {st_egress:.2f} ms | +{st_egress - st_plain:.2f} ms |")
    print(f"| proxy helper RSS, 0 and {a.open} open tunnels | {before} kB | {after} kB | "
          f"{(after - before) / a.open:.1f} kB per connection |")


if __name__ == "__main__":
    main()
