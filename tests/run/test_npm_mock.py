"""Whole agent tasks against an OpenAI-compatible mock server agentbox did not write
(openai-mock-api from npm, tests/mock-npm). That server checks what it is sent (every past
tool call needs an id and JSON arguments, every tool message a tool_call_id) and numbers
every reply's call "call_1", so the task succeeds only with a clean, uniquely-id'd history."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mock_npm  # noqa: E402
from runtest_util import RunTestCase  # noqa: E402

SKIP = mock_npm.skip_reason()
if SKIP:  # one line in the suite's output, not one per test
    raise unittest.SkipTest(SKIP)
PROG = "print(sum(range(1, 11)))\n"


class IndependentMock(RunTestCase):
    def start_mock(self, marker, replies):
        self.mock = mock_npm.NpmMock(self.key, mock_npm.flow(marker, replies)).start()
        self.addCleanup(self.mock.stop)

    def env_mock(self, **extra):
        return self.env(**dict({"OPENHANDS_BASE_URL": self.mock.base_url, "OPENROUTER_API_KEY": self.key}, **extra))

    def test_multi_step_task(self):
        marker = "npm-mock-task"
        self.start_mock(marker, [
            mock_npm.tool_reply("str_replace_editor", command="create", path="/workspace/sum.py",
                                file_text=PROG),
            mock_npm.tool_reply("execute_bash", command="python3 sum.py | tee out.txt"),
            mock_npm.tool_reply("finish", message="summed"),
        ])
        run = self.run_agent(f"{marker}: write and run sum.py", env=self.env_mock())
        self.assertStatus(run, "succeeded", 0)
        self.assertEqual(run.result["output"], "summed")
        self.assertEqual(run.result["iterations"], 3)
        self.assertIn("55", run.observations()[1])
        files = {f["path"]: f["status"] for f in run.result["files"]}
        self.assertEqual(files.get("sum.py"), "added")
        self.assertEqual(run.result["models_tried"], ["test/primary"])

    def test_bad_tool_call_then_recovery(self):
        # an unknown tool: an error observation, and the task goes on on the same server
        marker = "npm-mock-bad"
        self.start_mock(marker, [
            mock_npm.tool_reply("no_such_tool", x=1),
            mock_npm.tool_reply("execute_bash", command="echo still-here"),
            mock_npm.tool_reply("finish", message="ok"),
        ])
        run = self.run_agent(f"{marker} go", env=self.env_mock())
        self.assertStatus(run, "succeeded", 0)
        results = run.of("tool_result")
        self.assertTrue(results[0]["is_error"])
        self.assertIn("still-here", results[1]["observation"])

    def test_wrong_key_escalates(self):
        marker = "npm-mock-key"
        self.start_mock(marker, [mock_npm.tool_reply("finish", message="never")])
        run = self.run_agent(f"{marker} go", env=self.env_mock(OPENROUTER_API_KEY=self.key[:-4] + "abcd"))
        self.assertStatus(run, "escalated", 3)
        self.assertEqual(run.result["error"]["type"], "AUTHENTICATION_ERROR")


if __name__ == "__main__":
    unittest.main()
