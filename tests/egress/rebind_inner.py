"""Run by test_rebinding.py inside `unshare --net --mount` (root): a private network namespace
with only lo, where 192.88.99.7 (a public-looking address) is put on lo, and /etc/resolv.conf
bind-mounted to point at a DNS server on 127.0.0.1:53 that answers rebind.test with
192.88.99.7 the first time and 127.0.0.1 after. Nothing here can leave the namespace.
Prints one JSON line: what each listener received and how many A queries were answered."""
import json
import os
import shutil
import socket
import struct
import subprocess
import sys
import tempfile
import threading

AGENTBOX = sys.argv[1]
PUBLIC = "192.88.99.7"

subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
subprocess.run(["ip", "addr", "add", f"{PUBLIC}/32", "dev", "lo"], check=True)
tmp = tempfile.mkdtemp(prefix="agentbox-rebind-")
conf = os.path.join(tmp, "resolv.conf")
with open(conf, "w") as f:
    f.write("nameserver 127.0.0.1\noptions attempts:1 timeout:2\n")
subprocess.run(["mount", "--bind", conf, "/etc/resolv.conf"], check=True)

a_queries = []


def dns():
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 53))
    while True:
        q, peer = s.recvfrom(512)
        qid, flags = struct.unpack(">HH", q[:4])
        i, labels = 12, []
        while q[i]:
            labels.append(q[i + 1:i + 1 + q[i]].decode())
            i += 1 + q[i]
        qtype = struct.unpack(">H", q[i + 1:i + 3])[0]
        question = q[12:i + 5]
        name = ".".join(labels).lower()
        answers = b""
        if name == "rebind.test" and qtype == 1:
            a_queries.append(name)
            addr = PUBLIC if len(a_queries) == 1 else "127.0.0.1"
            answers = (b"\xc0\x0c" + struct.pack(">HHIH", 1, 1, 0, 4) + socket.inet_aton(addr))
        rcode = 0 if name == "rebind.test" else 3
        head = struct.pack(">HHHHHH", qid, 0x8180 | rcode, 1, 1 if answers else 0, 0, 0)
        s.sendto(head + question + answers, peer)


threading.Thread(target=dns, daemon=True).start()

got = {PUBLIC: [], "127.0.0.1": []}


def listener(addr, sock):
    while True:
        c, _ = sock.accept()
        got[addr].append(c.recv(4096).decode("latin-1"))
        c.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n")
        c.close()


port = None
for addr in (PUBLIC, "127.0.0.1"):
    ls = socket.socket()
    ls.bind((addr, port or 0))
    port = ls.getsockname()[1]
    ls.listen(8)
    threading.Thread(target=listener, args=(addr, ls), daemon=True).start()

client = r"""
import socket, sys
for i in range(2):
    s = socket.create_connection(("127.0.0.1", 3128))
    s.sendall(f"GET http://rebind.test:{sys.argv[1]}/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
    d = b""
    while True:
        c = s.recv(4096)
        if not c:
            break
        d += c
    print(d.split(b"\r\n")[0].decode())
"""
meta = os.path.join(tmp, "meta.json")
p = subprocess.run([AGENTBOX, "exec", "--meta", meta, f"--allow-host=rebind.test:{port}", "--",
                    "python3", "-c", client, str(port)], capture_output=True, text=True,
                   timeout=120)
with open(meta) as f:
    network = json.load(f).get("network")
subprocess.run(["umount", "/etc/resolv.conf"], check=False)
shutil.rmtree(tmp, ignore_errors=True)
print(json.dumps({"rc": p.returncode, "stdout": p.stdout, "stderr": p.stderr,
                  "a_queries": len(a_queries), "public": got[PUBLIC], "loopback": got["127.0.0.1"],
                  "network": network}))
