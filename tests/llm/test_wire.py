"""The client against servers that bend the wire: an event stream under a wrong
Content-Type is read as one (decided by the body), tool calls without an id (or with "")
come out with a fresh id, never their position in the reply."""
from llmtest_util import LLMTestCase


class WrongContentType(LLMTestCase):
    def test_stream_as_text_plain(self):
        for ctype in ("text/plain; charset=utf-8", "application/json", "application/octet-stream"):
            with self.subTest(ctype=ctype):
                self.serve({"default": {"kind": "stream", "content": "hello there", "content_type": ctype}})
                run = self.llm("hi", "--stream")
                self.assertResult(run, "succeeded", 0)
                self.assertEqual(run.json["message"]["content"], "hello there")
                self.assertEqual(len(self.reqs()), 1, "no retry: the body decided")

    def test_stream_answer_to_a_non_stream_request(self):
        # a server that streams although stream was false
        self.serve({"default": {"kind": "stream", "content": "streamed anyway", "content_type": "text/plain"}})
        run = self.llm("hi")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.json["message"]["content"], "streamed anyway")

    def test_json_body_still_json(self):
        self.serve({"default": {"content": "plain json"}})
        run = self.llm("hi", "--stream")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.json["message"]["content"], "plain json")


class MissingIds(LLMTestCase):
    def ids(self, run):
        return [tc["id"] for tc in run.json["message"]["tool_calls"]]

    def test_missing_and_empty_ids(self):
        calls = [{"id": None, "name": "think", "arguments": {"thought": "a"}},
                 {"id": "", "name": "think", "arguments": {"thought": "b"}}]
        for stream in (False, True):
            with self.subTest(stream=stream):
                self.serve({"default": {"tool_calls": calls}})
                run = self.llm("hi", *(["--stream"] if stream else []))
                self.assertResult(run, "succeeded", 0)
                ids = self.ids(run)
                self.assertEqual(len(ids), 2)
                self.assertTrue(all(i.startswith("call_") and len(i) > 8 for i in ids), ids)
                self.assertNotEqual(ids[0], ids[1])
                self.assertNotIn("call_0", ids)
