"""Files over the socket: a client running as another user (nobody), with no access to the
state dir, uploads a workspace as a tar archive with `submit` and downloads the task's
outputs, patch and events with the `artifact` op; bad archives are refused before anything
runs; a git workspace is read with the client's rights, not the server's."""
import base64
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import tarfile
import tempfile
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "serve"))
from servetest_util import ServeTestCase, bash_reply, finish_reply  # noqa: E402

NOBODY = 65534

CLIENT = r'''
import base64, json, os, socket, sys
sock_path, req_file = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.connect(sock_path); f = s.makefile("rwb")
def ask(o):
    f.write(json.dumps(o).encode() + b"\n"); f.flush(); return json.loads(f.readline())
out = {"uid": os.getuid(), "state_readable": os.access(sys.argv[3], os.R_OK)}
req = json.load(open(req_file))
r = ask(req); out["submit"] = r
if r.get("ok"):
    tid = r["id"]
    out["result"] = ask({"op": "wait", "id": tid, "timeout_s": 120}).get("result")
    out["listing"] = ask({"op": "artifact", "id": tid, "name": "outputs/"})
    files = {}
    for e in out["listing"].get("files", []):
        data, off = b"", 0
        while True:  # bounded chunks
            a = ask({"op": "artifact", "id": tid, "name": e["path"], "offset": off, "length": 7})
            data += base64.b64decode(a["data"]); off += len(base64.b64decode(a["data"]))
            if a["eof"]: break
        files[e["path"]] = data.decode()
    out["files"] = files
    ev = ask({"op": "artifact", "id": tid, "name": "events.jsonl"})
    out["events_ok"] = ev.get("ok") and b"task_completed" in base64.b64decode(ev["data"])
    out["escape"] = ask({"op": "artifact", "id": tid, "name": "outputs/../result.json"})
print(json.dumps(out))
'''


def tar_of(members):
    """members: (name, kind, data_or_target)"""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, kind, data in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "sym": tarfile.SYMTYPE, "hard": tarfile.LNKTYPE,
                       "chr": tarfile.CHRTYPE, "fifo": tarfile.FIFOTYPE}[kind]
            if kind in ("sym", "hard"):
                ti.linkname = data
            t.addfile(ti)
    return base64.b64encode(buf.getvalue()).decode()


@unittest.skipUnless(os.geteuid() == 0, "switches to another user: root only")
class SocketFiles(ServeTestCase):
    def run_as_nobody(self, request):
        rf = os.path.join(self.tmp, "req.json")
        with open(rf, "w") as f:
            json.dump(request, f)
        os.chmod(rf, 0o644)
        script = os.path.join(self.tmp, "client.py")
        with open(script, "w") as f:
            f.write(CLIENT)
        os.chmod(script, 0o644)
        p = subprocess.run(["/usr/bin/python3", script, self.sock, rf, self.state],
                           capture_output=True, text=True, timeout=180,
                           preexec_fn=lambda: (os.setgroups([]), os.setgid(NOBODY), os.setuid(NOBODY)))
        self.assertEqual(p.returncode, 0, p.stderr)
        return json.loads(p.stdout)

    def start(self, replies):
        self.start_server("--allow-uid", str(NOBODY), replay=self.write_replay(replies))
        os.chmod(self.sock, 0o777)
        os.chmod(self.state, 0o700)

    def test_upload_workspace_and_download_outputs_as_another_user(self):
        self.start([bash_reply("cat in/data.txt | tr a-z A-Z > out/up.txt; ls -la in; cat link.txt"),
                    finish_reply("done")])
        tar = tar_of([("in/", "dir", None), ("in/data.txt", "file", b"hello world\n"),
                      ("out/", "dir", None), ("link.txt", "sym", "in/data.txt")])
        out = self.run_as_nobody({"op": "submit", "workspace_tar": tar, "task": {
            "id": "up1", "prompt": "shout", "outputs": ["out/*"]}})
        self.assertEqual(out["uid"], NOBODY)
        self.assertFalse(out["state_readable"])
        self.assertTrue(out["submit"]["ok"], out)
        self.assertEqual(out["result"]["status"], "succeeded", out["result"])
        self.assertEqual(out["files"], {"outputs/out/up.txt": "HELLO WORLD\n"})
        self.assertTrue(out["events_ok"])
        self.assertFalse(out["escape"]["ok"])
        # the upload is gone with the task
        self.assertFalse(os.path.exists(os.path.join(self.state, ".uploads", "up1")))

    def test_bad_archives_are_refused_and_nothing_runs(self):
        self.start([finish_reply("done")])
        c = self.conn()
        big = base64.b64encode(b"\0" * 3000003).decode()
        cases = [
            (tar_of([("../evil", "file", b"x")]), "outside the workspace"),
            (tar_of([("a/../../evil", "file", b"x")]), "outside the workspace"),
            (tar_of([("/etc/evil", "file", b"x")]), "absolute"),
            (tar_of([("dev", "chr", None)]), "device node"),
            (tar_of([("p", "fifo", None)]), "FIFO"),
            (tar_of([("l", "sym", "../../etc")]), "outside the workspace"),
            (tar_of([("l", "sym", "/etc/passwd")]), "outside the workspace"),
            (tar_of([("f", "file", b"x"), ("h", "hard", "f")]), "hard link"),
            (tar_of([("d", "sym", "."), ("d/x", "file", b"x")]), "below a link"),
            ("not base64!", "base64"),
            (big, "larger than"),
        ]
        for i, (tar, needle) in enumerate(cases):
            r = c.ask({"op": "submit", "workspace_tar": tar,
                       "task": {"id": f"bad{i}", "prompt": "x"}})
            self.assertFalse(r.get("ok"), (i, r))
            self.assertEqual(r["error"]["code"], "invalid_task", r)
            self.assertIn(needle, r["error"]["message"], (i, r))
            self.assertFalse(os.path.exists(os.path.join(self.state, f"bad{i}")))
            self.assertFalse(os.path.exists(os.path.join(self.state, ".uploads", f"bad{i}")))
        self.assertFalse(os.path.exists("/etc/evil"))
        r = c.ask({"op": "list"})
        self.assertEqual(r["tasks"], [], r)

    def test_archive_passed_as_a_descriptor(self):
        self.start([bash_reply("wc -c < big.bin > out.txt; cat out.txt"), finish_reply("done")])
        raw = base64.b64decode(tar_of([("big.bin", "file", os.urandom(5 * 1024 * 1024))]))
        self.assertGreater(len(raw), 3_000_000)  # more than the inline limit

        def ask_with_fd(req, fd):
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(self.sock)
                data = json.dumps(req).encode() + b"\n"
                if fd is None:
                    s.sendall(data)
                else:
                    socket.send_fds(s, [data], [fd])
                f = s.makefile("rb")
                r = json.loads(f.readline())
                if r.get("ok") and req["op"] == "submit":
                    s.sendall(json.dumps({"op": "wait", "id": r["id"], "timeout_s": 120}).encode() + b"\n")
                    r["result"] = json.loads(f.readline())["result"]
                return r

        mfd = os.memfd_create("ws.tar")
        os.write(mfd, raw)
        r = ask_with_fd({"op": "submit", "workspace_tar_fd": True,
                         "task": {"id": "fd1", "prompt": "x", "outputs": ["out.txt"]}}, mfd)
        os.close(mfd)
        self.assertTrue(r["ok"], r)
        self.assertEqual(r["result"]["status"], "succeeded", r["result"])
        with open(os.path.join(self.state, "fd1", "outputs", "out.txt")) as f:
            self.assertEqual(f.read().strip(), str(5 * 1024 * 1024))
        r = ask_with_fd({"op": "submit", "workspace_tar_fd": True, "task": {"id": "fd2", "prompt": "x"}}, None)
        self.assertFalse(r["ok"])
        self.assertIn("no descriptor", r["error"]["message"])
        rp, wp = os.pipe()
        r = ask_with_fd({"op": "submit", "workspace_tar_fd": True, "task": {"id": "fd3", "prompt": "x"}}, rp)
        os.close(rp)
        os.close(wp)
        self.assertFalse(r["ok"])
        self.assertIn("not a regular file", r["error"]["message"])

    def test_git_workspace_is_read_with_the_clients_rights(self):
        self.start([bash_reply("cat f"), finish_reply("done")])
        repo = os.path.join(self.tmp, "private-repo")
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@x", "HOME": self.tmp, "PATH": "/usr/bin:/bin"}
        os.makedirs(repo)
        subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
        with open(os.path.join(repo, "f"), "w") as f:
            f.write("secret\n")
        subprocess.run(["git", "add", "f"], cwd=repo, env=env, check=True)
        subprocess.run(["git", "commit", "-qm", "s"], cwd=repo, env=env, check=True)
        os.chmod(repo, 0o700)  # root's: nobody cannot read it, the server (root) could
        out = self.run_as_nobody({"op": "submit", "task": {
            "id": "g1", "prompt": "x", "workspace": {"git": {"repo": repo}}}})
        self.assertTrue(out["submit"]["ok"], out)
        self.assertEqual(out["result"]["status"], "failed", out["result"])
        self.assertIn("not a git repository the requester can read",
                      out["result"]["error"]["message"])
        # root may
        c = self.conn()
        self.submit(c, {"id": "g2", "prompt": "x", "workspace": {"git": {"repo": repo}}})
        res = self.wait_result(c, "g2")
        self.assertEqual(res["status"], "succeeded", res)


if __name__ == "__main__":
    unittest.main()
