"""The client's main cases against an OpenAI-compatible mock server agentbox did not write
(openai-mock-api from npm, tests/mock-npm): an answer, a tool call, streaming (which this
server sends as text/plain), a wrong key, a request it has no answer for, load mode."""
import os
import sys
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import mock_npm  # noqa: E402
from llmtest_util import LLMTestCase  # noqa: E402

SKIP = mock_npm.skip_reason()
if SKIP:  # one line in the suite's output, not one per test
    raise unittest.SkipTest(SKIP)
RESPONSES = [
    {"id": "hello", "messages": [{"role": "user", "content": "hello", "matcher": "contains"},
                                 {"role": "assistant", "content": "Hi from an independent mock"}]},
    {"id": "tool", "messages": [{"role": "user", "content": "weather", "matcher": "contains"},
                                mock_npm.tool_reply("think", thought="look it up")]},
]


class IndependentMock(LLMTestCase):
    def setUp(self):
        super().setUp()
        self.mock = mock_npm.NpmMock(self.key, RESPONSES).start()
        self.addCleanup(self.mock.stop)

    def call(self, prompt, *args, env=None):
        return self.llm(prompt, *args, env=env, base_url=self.mock.base_url)

    def test_answer(self):
        run = self.call("hello there")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.json["message"]["content"], "Hi from an independent mock")
        self.assertEqual(run.json["attempts"], 1)
        self.assertGreater(run.json["usage"]["total_tokens"], 0)

    def test_tool_call(self):
        run = self.call("what is the weather")
        self.assertResult(run, "succeeded", 0)
        tc = run.json["message"]["tool_calls"][0]
        self.assertEqual(tc["function"]["name"], "think")
        self.assertEqual(tc["id"], "call_1")

    def test_stream_sent_as_text_plain(self):
        # this server streams with Content-Type text/plain: the body decides
        run = self.call("hello there", "--stream")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.json["message"]["content"], "Hi from an independent mock")
        self.assertEqual(run.json["attempts"], 1)

    def test_stream_tool_call_without_index(self):
        run = self.call("what is the weather", "--stream")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.json["message"]["tool_calls"][0]["function"]["name"], "think")

    def test_wrong_key_escalates(self):
        run = self.call("hello", env={"OPENROUTER_API_KEY": mock_npm_key_other(self.key)})
        self.assertResult(run, "escalated", 3)
        self.assertEqual(run.error["type"], "AUTHENTICATION_ERROR")
        self.assertEqual(run.json["attempts"], 1)

    def test_no_answer_is_a_validation_error(self):
        run = self.call("something it was never told about")
        self.assertResult(run, "failed", 1)
        self.assertEqual(run.error["type"], "VALIDATION_ERROR")
        self.assertEqual(run.json["attempts"], 1)

    def test_load(self):
        run = self.call("hello", "--count", "12", "--parallel", "4")
        self.assertEqual(run.json["ok"], 12, run)
        self.assertEqual(run.json["http_requests"], 12)


def mock_npm_key_other(key):
    return key[:-4] + ("0000" if not key.endswith("0000") else "1111")


if __name__ == "__main__":
    unittest.main()
