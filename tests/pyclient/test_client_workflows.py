"""The Python client's workflow features against a real `agentbox serve` (offline replay):
a wait that survives a supervisor restart (reconnect with backoff), events since a sequence
number, a workspace uploaded from a local directory and outputs and patch fetched through the
artifact op, unknown context keys refused, and the package's type information."""
import asyncio
import os
import shutil
import signal
import subprocess
import tempfile

from pyclient_util import ROOT, Server, ServerTestCase

from agentbox_client import AgentboxClient, OpenHandsAgentProxy


class Workflows(ServerTestCase):
    async def test_wait_survives_a_supervisor_restart(self):
        c = AgentboxClient(self.server.socket, reconnect_timeout=60)
        tid = await c.submit({"id": "restart-1", "prompt": "x",
                              "workspace": {"files": {"sleep": "30"}}})
        waiting = asyncio.ensure_future(c.wait(tid))
        await asyncio.sleep(1.0)
        self.assertFalse(waiting.done())
        # the supervisor dies (SIGKILL: its cells go with it) and comes back on the same state
        self.server.proc.send_signal(signal.SIGKILL)
        self.server.proc.wait()
        self.server.log.close()
        await asyncio.sleep(0.5)
        self.assertFalse(waiting.done())
        type(self).server = await asyncio.get_running_loop().run_in_executor(
            None, lambda: Server(self.tmp, replay=os.path.join(self.tmp, "replay.json")))
        result = await asyncio.wait_for(waiting, 60)
        self.assertEqual(result["id"], tid)
        self.assertEqual(result["status"], "failed")
        self.assertIn("restart", result["error"]["message"])

    async def test_upload_outputs_patch_and_events_since(self):
        c = AgentboxClient(self.server.socket)
        src = tempfile.mkdtemp(dir=self.tmp)
        with open(os.path.join(src, "input.txt"), "w") as f:
            f.write("data\n")
        result = await c.run({"id": "files-1", "prompt": "x", "outputs": ["result.txt"]},
                             workspace_dir=src)
        self.assertEqual(result["status"], "succeeded", result)
        dest = tempfile.mkdtemp(dir=self.tmp)
        saved = await c.download_outputs("files-1", dest)
        self.assertEqual(saved, [os.path.join(os.path.realpath(dest), "result.txt")])
        with open(saved[0]) as f:
            self.assertEqual(f.read(), "hello\n")
        with self.assertRaises(FileExistsError):  # never overwrites
            await c.download_outputs("files-1", dest)
        self.assertEqual(await c.patch("files-1"), b"")  # no git workspace: no patch
        events = await c.artifact("files-1", "events.jsonl")
        self.assertIn(b"task_completed", events)
        all_ev = [e async for e in c.events("files-1", follow=False)]
        later = [e async for e in c.events("files-1", follow=False, since_seq=2)]
        self.assertEqual([e["seq"] for e in later], [e["seq"] for e in all_ev if e["seq"] > 2])
        self.assertTrue(later)

    async def test_big_archive_goes_as_a_descriptor(self):
        c = AgentboxClient(self.server.socket)
        src = tempfile.mkdtemp(dir=self.tmp)
        with open(os.path.join(src, "big.bin"), "wb") as f:
            f.write(os.urandom(4 * 1024 * 1024))  # past the inline limit
        result = await c.run({"id": "bigfd-1", "prompt": "x", "outputs": ["big.bin"]},
                             workspace_dir=src)
        self.assertEqual(result["status"], "succeeded", result)
        self.assertEqual(await c.outputs("bigfd-1"),
                         [{"path": "outputs/big.bin", "size": 4 * 1024 * 1024}])

    async def test_git_patch_through_the_proxy(self):
        repo = os.path.join(self.tmp, "repo")
        env = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@x", "GIT_COMMITTER_NAME": "t",
               "GIT_COMMITTER_EMAIL": "t@x", "HOME": self.tmp, "PATH": "/usr/bin:/bin"}
        os.makedirs(repo)
        subprocess.run(["git", "init", "-q"], cwd=repo, env=env, check=True)
        with open(os.path.join(repo, "a.txt"), "w") as f:
            f.write("a\n")
        subprocess.run(["git", "add", "a.txt"], cwd=repo, env=env, check=True)
        subprocess.run(["git", "commit", "-qm", "a"], cwd=repo, env=env, check=True)
        out = await OpenHandsAgentProxy(self.server.socket).execute_development_task(
            "x", {"task_id": "git-1", "git": repo + "@HEAD",
                  "verify": {"command": "test -f result.txt"}})
        self.assertTrue(out["success"], out)
        self.assertIn("+hello", out["metadata"]["patch"])
        self.assertEqual(out["metadata"]["verify"]["status"], "passed")
        patch = await AgentboxClient(self.server.socket).patch("git-1")
        self.assertEqual(patch.decode(), out["metadata"]["patch"])

    async def test_unknown_context_keys_are_refused(self):
        out = await OpenHandsAgentProxy(self.server.socket).execute_development_task(
            "x", {"task_id": "typo-1", "timeuot": 5, "modle": "x"})
        self.assertFalse(out["success"])
        self.assertEqual(out["metadata"]["error"]["type"], "VALIDATION_ERROR")
        self.assertIn("'modle', 'timeuot'", out["error"])
        with self.assertRaises(Exception):
            await AgentboxClient(self.server.socket, reconnect_timeout=0).status("typo-1")

    def test_offline_install_in_a_venv(self):
        py = "/usr/bin/python3"
        if subprocess.run([py, "-c", "import setuptools, wheel, venv, pip"],
                          capture_output=True).returncode != 0:
            self.skipTest("the system python has no setuptools/wheel/pip/venv")
        venv = os.path.join(self.tmp, "venv")
        subprocess.run([py, "-m", "venv", "--system-site-packages", venv], check=True)
        src = os.path.join(self.tmp, "pysrc")
        shutil.copytree(os.path.join(ROOT, "clients", "python"), src)
        p = subprocess.run([os.path.join(venv, "bin", "pip"), "install", "--no-index",
                            "--no-build-isolation", src], capture_output=True, text=True,
                           timeout=300, cwd=self.tmp)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        p = subprocess.run([os.path.join(venv, "bin", "python"), "-c",
                            "import agentbox_client, os; d = os.path.dirname(agentbox_client.__file__); "
                            "print(d); assert os.path.exists(os.path.join(d, 'py.typed'))"],
                           capture_output=True, text=True, cwd="/")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn(venv, p.stdout)

    def test_typed_package(self):
        self.assertTrue(os.path.exists(os.path.join(ROOT, "clients", "python", "agentbox_client",
                                                    "py.typed")))
        with open(os.path.join(ROOT, "clients", "python", "pyproject.toml")) as f:
            self.assertIn("py.typed", f.read())
