"""What a hostile cell can put in its own result: 10,000 file names of 1 KiB, names that are
not UTF-8 or hold newlines, a multi-MB diff with Latin-1 bytes. The result must stay bounded
and say what was cut (`truncated`), and every JSON agentbox writes (result.json, the run's
stdout, events.jsonl, serve's replies) must parse as strict UTF-8 JSON, with escaped names
marked (`path_escaped`) and a lossy diff marked (`diff_lossy`), never dropped silently."""
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import unittest

from hostile_seed_util import AGENTBOX, Server, base_env, replay_file

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..",
                                "clients", "python"))
from agentbox_client.client import AgentboxClient  # noqa: E402

MANY_NAMES = r'''python3 - <<'EOF'
import os
d = "/workspace/" + "/".join(c * 250 for c in "abc")
os.makedirs(d)
for i in range(10000):
    open(os.path.join(d, ("%05d" % i) + "f" * 240), "w").close()
with open("/workspace/big.txt", "w") as f:
    for i in range(120000):
        f.write("line %08d of a diff that is longer than any result should carry\n" % i)
print("made", len(os.listdir(d)))
EOF'''

ONE_LONG_LINE = r'''python3 - <<'EOF'
with open("/workspace/line.txt", "w") as f:
    f.write("\u00e9" * (3 << 20))
print("one line made")
EOF'''

ODD_NAMES = r'''python3 - <<'EOF'
import os
os.chdir("/workspace")
open(b"bad-\xff\xfe.txt", "wb").write(b"x\n")
open("nl\nname.txt", "w").write("y\n")
os.mkdir(b"dir-\xc3(")
open(b"dir-\xc3(/inner.txt", "wb").write(b"z\n")
open("back\\slash.txt", "w").write("w\n")
open("caf\u00e9.txt", "w").write("fine\n")
open("latin.txt", "wb").write(b"na\xefve\n")
print("odd names made")
EOF'''


def strict_json(path):
    with open(path, encoding="utf-8", errors="strict") as f:
        return json.load(f)


class ResultCase(unittest.TestCase):
    maxDiff = None

    def setUp(self):
        if not os.access(AGENTBOX, os.X_OK):
            self.fail(f"agentbox binary not found at {AGENTBOX}")
        self.tmp = tempfile.mkdtemp(prefix="abx-result-")
        os.chmod(self.tmp, 0o755)
        self.addCleanup(shutil.rmtree, self.tmp, True)

    def run_task(self, task, commands, timeout=300):
        rp = replay_file(self.tmp, commands)
        tf = os.path.join(self.tmp, "task.json")
        with open(tf, "w") as f:
            json.dump(task, f)
        p = subprocess.run([AGENTBOX, "run", "--quiet", "--replay", rp, "--task-file", tf],
                           capture_output=True, timeout=timeout, env=base_env(self.tmp))
        # stdout is the result: it must decode as UTF-8 and parse
        res = json.loads(p.stdout.decode("utf-8", errors="strict"))
        return p, res

    def seed(self):
        d = os.path.join(self.tmp, "seed")
        os.mkdir(d)
        with open(os.path.join(d, "latin.txt"), "wb") as f:
            f.write(b"caf\xe9\n")
        with open(os.path.join(d, "keep.txt"), "w") as f:
            f.write("keep\n")
        for root, dirs, files in os.walk(d):
            os.chmod(root, 0o755)
            for n in files:
                os.chmod(os.path.join(root, n), 0o644)
        return d


class ResultBounds(ResultCase):
    def test_ten_thousand_long_names_and_a_big_diff_stay_bounded(self):
        p, res = self.run_task({"prompt": "x", "timeout_s": 240}, [MANY_NAMES])
        with open(res["events_file"]) as f:
            self.assertIn("made 10000", f.read())
        path = os.path.join(os.path.dirname(res["events_file"]), "result.json")
        size = os.path.getsize(path)
        self.assertLessEqual(size, 4 * 1024 * 1024 + 64 * 1024, f"result.json is {size} bytes")
        self.assertLessEqual(len(p.stdout), 4 * 1024 * 1024 + 64 * 1024)
        disk = strict_json(path)
        cut = disk["truncated"]
        self.assertGreater(cut["files"], 0, cut)
        self.assertLess(len(disk["files"]), 10001)
        # the cell's own walk stops at 10,000 entries (and says so); of those, what the
        # result does not list is counted
        self.assertTrue(cut["cell_files"], cut)
        self.assertEqual(len(disk["files"]) + cut["files"] + cut["files_refused"], 10000, cut)
        self.assertTrue(cut["cell_diff"], cut)
        self.assertIn("[diff truncated", disk["diff"][-200:])
        self.assertLessEqual(len(disk["diff"].encode()), 2 * 1024 * 1024)
        self.assertLessEqual(sum(len(json.dumps(f["path"])) for f in disk["files"]), 1024 * 1024)


    def test_one_multi_mb_line_of_two_byte_characters(self):
        # no line end to cut at: the diff is cut inside the line, never inside a character
        p, res = self.run_task({"prompt": "x"}, [ONE_LONG_LINE])
        path = os.path.join(os.path.dirname(res["events_file"]), "result.json")
        disk = strict_json(path)
        self.assertLessEqual(len(disk["diff"].encode()), 2 * 1024 * 1024)
        self.assertLessEqual(os.path.getsize(path), 4 * 1024 * 1024)
        cut = disk["truncated"]
        self.assertTrue(cut["diff_bytes"] > 0 or cut["cell_diff"], cut)
        self.assertFalse(disk["diff_lossy"])


class ResultEncoding(ResultCase):
    def check_odd(self, res):
        files = {f["path"]: f for f in res["files"]}
        self.assertIn("bad-\\xff\\xfe.txt", files, sorted(files))
        self.assertTrue(files["bad-\\xff\\xfe.txt"].get("path_escaped"))
        self.assertIn("nl\\x0aname.txt", files, sorted(files))
        self.assertTrue(files["nl\\x0aname.txt"].get("path_escaped"))
        self.assertIn("dir-\\xc3(/inner.txt", files)
        # a backslash alone needs no escaping: the name stays as it is, unmarked
        self.assertIn("back\\slash.txt", files)
        self.assertFalse(files["back\\slash.txt"].get("path_escaped", False))
        self.assertIn("caf\u00e9.txt", files)  # valid UTF-8 stays as it is
        self.assertFalse(files["caf\u00e9.txt"].get("path_escaped", False))
        self.assertEqual(files["latin.txt"]["status"], "modified")
        self.assertTrue(res["diff_lossy"])
        self.assertIn("\ufffd", res["diff"])
        self.assertEqual(res["truncated"]["files_refused"], 0)

    def test_non_utf8_and_newline_names_and_latin1_diff(self):
        seed = self.seed()
        p, res = self.run_task({"prompt": "x", "workspace": {"from_dir": seed}}, [ODD_NAMES])
        self.assertEqual(res["status"], "succeeded", res)
        self.check_odd(res)
        state = os.path.dirname(res["events_file"])
        self.assertEqual(strict_json(os.path.join(state, "result.json"))["files"], res["files"])
        with open(res["events_file"], encoding="utf-8", errors="strict") as f:
            for line in f:
                json.loads(line)

    def test_python_client_reads_such_a_result_from_serve(self):
        seed = self.seed()
        srv = Server(self, replay_file(self.tmp, [ODD_NAMES], name="serve-replay.json"))

        async def go():
            c = AgentboxClient(srv.sock)
            tid = await c.submit({"prompt": "x", "workspace": {"from_dir": seed}})
            return await c.wait(tid, timeout=120)

        res = asyncio.run(go())
        res = res.get("result", res)
        self.assertEqual(res["status"], "succeeded", res)
        self.check_odd(res)


if __name__ == "__main__":
    unittest.main()
