"""Shared harness of the egress suite: local "registries" on 127.0.0.1 only (a file server
for a PEP 503 index and a dumb-HTTP git repository, a TLS server with a test CA, a TCP
recorder that notes every connection it gets), and `agentbox exec` with egress options.
Nothing here connects to a non-loopback address. Stops only the servers it started."""
import base64
import hashlib
import http.server
import io
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import unittest
import zipfile

AGENTBOX = os.environ.get("AGENTBOX") or os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "agentbox")
PROXY = ("127.0.0.1", 3128)  # inside every cell


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


class FileServer:
    """http.server over a directory, on 127.0.0.1:random, in a thread; counts requests."""

    def __init__(self, root, tls=None):
        self.requests = []
        outer = self

        class Handler(QuietHandler):
            def __init__(self, *a, **kw):
                super().__init__(*a, directory=root, **kw)

            def do_GET(self):
                outer.requests.append(self.path)
                super().do_GET()

            def do_POST(self):  # answers with the sha256 of the body
                n = int(self.headers.get("Content-Length", "0"))
                h = hashlib.sha256()
                while n > 0:
                    chunk = self.rfile.read(min(n, 65536))
                    if not chunk:
                        break
                    h.update(chunk)
                    n -= len(chunk)
                body = h.hexdigest().encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        if tls:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(*tls)
            self.httpd.socket = ctx.wrap_socket(self.httpd.socket, server_side=True)
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class Recorder:
    """A TCP listener on 127.0.0.1 that records each connection's first bytes and answers
    with a fixed HTTP response: proof of whether the proxy connected at all."""

    def __init__(self, reply=b"HTTP/1.0 200 OK\r\nContent-Length: 3\r\n\r\nok\n"):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(128)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        self.received = []
        self.stopped = False
        self.thread = threading.Thread(target=self.loop, daemon=True)

    def start(self):
        self.thread.start()
        return self

    def loop(self):
        while not self.stopped:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(c,), daemon=True).start()

    def serve(self, c):
        c.settimeout(5)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = c.recv(65536)
                if not chunk:
                    break
                data += chunk
            # whatever follows shortly (a second request inside a tunnel)
            c.settimeout(0.5)
            try:
                while True:
                    chunk = c.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                    if len(data) > 1 << 20:
                        break
            except OSError:
                pass
            self.received.append(data)
            c.sendall(self.reply)
        except OSError:
            self.received.append(data)
        finally:
            c.close()

    def stop(self):
        self.stopped = True
        self.sock.close()


def make_wheel(dirpath, name="egpkg", version="1.0"):
    """A minimal pure-Python wheel built by hand (no setuptools); returns its file name."""
    dist = f"{name}-{version}.dist-info"
    files = {
        f"{name}/__init__.py": b"MAGIC = 'egress-ok'\n",
        f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n".encode(),
        f"{dist}/WHEEL": b"Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
                         b"Tag: py3-none-any\n",
    }
    record = []
    for path, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(data)}")
    record.append(f"{dist}/RECORD,,")
    files[f"{dist}/RECORD"] = ("\n".join(record) + "\n").encode()
    fname = f"{name}-{version}-py3-none-any.whl"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for path, data in files.items():
            z.writestr(path, data)
    os.makedirs(os.path.join(dirpath, "files"), exist_ok=True)
    with open(os.path.join(dirpath, "files", fname), "wb") as f:
        f.write(buf.getvalue())
    sha = hashlib.sha256(buf.getvalue()).hexdigest()
    os.makedirs(os.path.join(dirpath, "simple", name), exist_ok=True)
    with open(os.path.join(dirpath, "simple", "index.html"), "w") as f:
        f.write(f'<!DOCTYPE html><html><body><a href="{name}/">{name}</a></body></html>\n')
    with open(os.path.join(dirpath, "simple", name, "index.html"), "w") as f:
        f.write(f'<!DOCTYPE html><html><body><a href="../../files/{fname}#sha256={sha}">'
                f'{fname}</a></body></html>\n')
    return fname


def make_npm_registry(dirpath, port, name="egpkg", version="1.0.0"):
    """A static npm registry: the packument at /NAME (as NAME/index.json, served for /NAME/ by
    the file server's directory index? no: npm asks /NAME, so it is a file) and a tarball."""
    import gzip
    import tarfile
    pkg = io.BytesIO()
    with tarfile.open(fileobj=pkg, mode="w") as t:
        for path, data in {"package/package.json": json.dumps(
                {"name": name, "version": version, "main": "index.js"}).encode(),
                "package/index.js": b"module.exports = 'npm-egress-ok';\n"}.items():
            info = tarfile.TarInfo(path)
            info.size = len(data)
            info.mode = 0o644
            t.addfile(info, io.BytesIO(data))
    tgz = gzip.compress(pkg.getvalue())
    os.makedirs(os.path.join(dirpath, "tarballs"), exist_ok=True)
    tname = f"{name}-{version}.tgz"
    with open(os.path.join(dirpath, "tarballs", tname), "wb") as f:
        f.write(tgz)
    integrity = "sha512-" + base64.b64encode(hashlib.sha512(tgz).digest()).decode()
    doc = {"name": name, "dist-tags": {"latest": version}, "versions": {version: {
        "name": name, "version": version, "main": "index.js",
        "dist": {"tarball": f"http://npm.test:{port}/tarballs/{tname}",
                 "shasum": hashlib.sha1(tgz).hexdigest(), "integrity": integrity}}}}
    with open(os.path.join(dirpath, name), "w") as f:
        json.dump(doc, f)


def make_git_repo(dirpath):
    """A bare repository served over dumb HTTP at dirpath/repo.git (update-server-info)."""
    work = os.path.join(dirpath, "work")
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t", HOME=dirpath)
    git = ["git", "-c", "init.defaultBranch=main"]
    subprocess.run(git + ["init", "-q", work], check=True, env=env)
    with open(os.path.join(work, "README"), "w") as f:
        f.write("cloned through the egress proxy\n")
    subprocess.run(["git", "-C", work, "add", "README"], check=True, env=env)
    subprocess.run(["git", "-C", work, "commit", "-qm", "one"], check=True, env=env)
    bare = os.path.join(dirpath, "repo.git")
    subprocess.run(git + ["clone", "-q", "--bare", work, bare], check=True, env=env)
    subprocess.run(["git", "-C", bare, "update-server-info"], check=True, env=env)
    return bare


def make_ca(dirpath, hostname):
    """A test CA and a server certificate for hostname; returns (ca.pem, cert, key)."""
    def ossl(*args):
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=dirpath)
    ossl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
         "-days", "2", "-subj", "/CN=agentbox egress test CA")
    ossl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "srv.key", "-out", "srv.csr",
         "-subj", f"/CN={hostname}")
    with open(os.path.join(dirpath, "ext.cnf"), "w") as f:
        f.write(f"subjectAltName=DNS:{hostname}\n")
    ossl("x509", "-req", "-in", "srv.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "srv.pem", "-days", "2", "-extfile", "ext.cnf")
    return (os.path.join(dirpath, "ca.pem"), os.path.join(dirpath, "srv.pem"),
            os.path.join(dirpath, "srv.key"))


# A raw client run inside the cell: sends the request bytes (base64 in argv[1]) to the
# proxy, optionally more bytes after the proxy's answer (argv[2]), prints what came back.
CELL_RAW = r"""
import base64, socket, sys
s = socket.create_connection(("127.0.0.1", 3128), timeout=30)
s.sendall(base64.b64decode(sys.argv[1]))
data = b""
while b"\r\n\r\n" not in data:
    c = s.recv(65536)
    if not c:
        break
    data += c
if len(sys.argv) > 2 and data.startswith(b"HTTP/1.1 200"):
    s.sendall(base64.b64decode(sys.argv[2]))
s.settimeout(10)
try:
    while True:
        c = s.recv(65536)
        if not c:
            break
        data += c
except OSError:
    pass
sys.stdout.write(data.decode("latin-1"))
"""


class EgressTestCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="agentbox-egress-test-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)
        self.meta = os.path.join(self.tmp, "meta.json")

    def serve_dir(self, root, tls=None):
        s = FileServer(root, tls).start()
        self.addCleanup(s.stop)
        return s

    def recorder(self, **kw):
        r = Recorder(**kw).start()
        self.addCleanup(r.stop)
        return r

    def exec(self, egress_args, cmd, timeout=120, workspace=None, extra=()):
        args = [AGENTBOX, "exec", "--meta", self.meta, *extra]
        if workspace:
            args += ["--workspace-from", workspace]
        args += [*egress_args, "--", *cmd]
        return subprocess.run(args, capture_output=True, text=True, timeout=timeout)

    def raw(self, egress_args, request, after=None, timeout=120):
        """Sends request bytes to the proxy from inside a cell; returns (proc, reply)."""
        argv = ["python3", "-c", CELL_RAW, base64.b64encode(request).decode()]
        if after is not None:
            argv.append(base64.b64encode(after).decode())
        p = self.exec(egress_args, argv, timeout=timeout)
        return p, p.stdout

    def network(self):
        with open(self.meta) as f:
            return json.load(f)["network"]
