"""`agentbox llm` on good answers: the request it sends (key, max_tokens, headers), the result it
prints (message, usage with cost), SSE streams with every OpenRouter quirk, `models --refresh`."""
import json
import subprocess
import unittest

from llmtest_util import AGENTBOX, LLMTestCase

TOOL_CALLS = [
    {"id": "call_a", "name": "execute_bash", "arguments": {"command": "ls -la /workspace && echo 'ü ✓'"}},
    {"id": "call_b", "name": "finish", "arguments": {"message": "done: {\"nested\": [1, 2]}"}},
]


class Success(LLMTestCase):
    def test_plain_completion(self):
        self.serve({"conversations": {"ok": [{"content": "hello there", "usage": {
            "prompt_tokens": 21, "completion_tokens": 4, "total_tokens": 25, "cost": 0.000375}}]}})
        run = self.llm("[conv:ok] say hello")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.json["message"]["content"], "hello there")
        self.assertEqual(run.json["model"], "test/primary")
        self.assertEqual(run.json["models_tried"], ["test/primary"])
        self.assertIsNone(run.json["error"])
        self.assertEqual(run.json["requests"], 1)
        u = run.json["usage"]
        self.assertEqual((u["prompt_tokens"], u["completion_tokens"], u["total_tokens"]), (21, 4, 25))
        self.assertAlmostEqual(u.get("cost_usd", u.get("cost")), 0.000375, places=9)
        self.assertEqual(len(self.reqs()), 1)
        self.assertEqual(len(run.events_of("llm_request")), 1)
        self.assertEqual(len(run.events_of("llm_response")), 1)
        self.assertEqual(run.events_of("llm_error"), [])

    def test_request_shape(self):
        self.serve({})
        run = self.llm("[conv:shape] hi", "--model", "vendor/some-model", "--max-tokens", "77")
        self.assertResult(run, "succeeded", 0)
        (r,) = self.reqs()
        self.assertTrue(r["auth_ok"], "Authorization must be 'Bearer <key>'")
        self.assertEqual(r["headers"]["authorization"], "<redacted>")  # the record never keeps it
        self.assertEqual(r["path"], "/api/v1/chat/completions")
        self.assertEqual(r["body"]["model"], "vendor/some-model")
        self.assertEqual(r["body"]["max_tokens"], 77)
        self.assertIn("[conv:shape] hi", json.dumps(r["body"]["messages"]))
        self.assertTrue(r["body"].get("tools"), "tools go on every request")
        self.assertIn("x-title", r["headers"])
        self.assertIn("http-referer", r["headers"])

    def test_body_file(self):
        # --body: the caller's messages and tools go out as given, the prompt is appended,
        # max_tokens is still set
        tools = [{"type": "function", "function": {"name": "finish", "description": "end",
                  "parameters": {"type": "object", "properties": {"message": {"type": "string"}}}}}]
        body = {"messages": [{"role": "system", "content": "be brief"}], "tools": tools, "temperature": 0}
        path = f"{self.tmp}/body.json"
        with open(path, "w") as f:
            json.dump(body, f)
        self.serve({})
        run = self.llm("and now this", "--body", path)
        self.assertResult(run, "succeeded", 0)
        got = self.reqs()[0]["body"]
        self.assertEqual(got["tools"], tools)
        self.assertEqual(got["temperature"], 0)
        self.assertEqual([m["content"] for m in got["messages"]], ["be brief", "and now this"])
        self.assertGreater(got["max_tokens"], 0)

    def test_bad_body_file_is_usage_error(self):
        self.serve({})
        path = f"{self.tmp}/bad.json"
        with open(path, "w") as f:
            f.write("[1, 2")
        run = self.llm("hi", "--body", path)
        self.assertEqual(run.rc, 2, run)
        self.assertEqual(self.reqs(), [])

    def test_max_tokens_always_set(self):
        # without max_tokens OpenRouter budgets the model's whole output and may answer 402
        self.serve({})
        run = self.llm("hi")
        self.assertResult(run, "succeeded", 0)
        mt = self.reqs()[0]["body"].get("max_tokens")
        self.assertIsInstance(mt, int)
        self.assertGreater(mt, 0)

    def test_tool_calls_non_streaming(self):
        self.serve({"default": {"tool_calls": TOOL_CALLS}})
        run = self.llm("use tools")
        self.assertResult(run, "succeeded", 0)
        tcs = run.json["message"]["tool_calls"]
        self.assertEqual([t["function"]["name"] for t in tcs], ["execute_bash", "finish"])
        self.assertEqual([t["id"] for t in tcs], ["call_a", "call_b"])
        self.assertEqual(json.loads(tcs[0]["function"]["arguments"]), TOOL_CALLS[0]["arguments"])

    def test_wrong_key_gets_401_from_fake(self):
        # the fake really checks the key: a client sending another key is refused
        self.serve({}, key="sk-or-v1-something-else")
        run = self.llm("hi")
        self.assertEqual(run.json["status"], "escalated", run)
        self.assertFalse(self.reqs()[0]["auth_ok"])


class Streaming(LLMTestCase):
    def check_stream(self, step, want_content, want_tools):
        self.serve({"default": step})
        run = self.llm("stream please", "--stream")
        self.assertResult(run, "succeeded", 0)
        self.assertTrue(self.reqs()[0]["body"].get("stream"), "--stream must ask for SSE")
        self.assertEqual(len(self.reqs()), 1)
        msg = run.json["message"]
        self.assertEqual(msg.get("content") or "", want_content)
        got = [(t["id"], t["function"]["name"], json.loads(t["function"]["arguments"]))
               for t in msg.get("tool_calls") or []]
        self.assertEqual(got, [(t["id"], t["name"], t["arguments"]) for t in want_tools])
        u = run.json["usage"]
        self.assertEqual(u["total_tokens"], 19)  # from the final usage chunk with empty choices
        self.assertAlmostEqual(u.get("cost_usd", u.get("cost")), 0.0000123, places=10)
        return run

    def test_stream_content_with_comments(self):
        self.check_stream({"kind": "stream", "content": "Hello, streamed ✓ world", "comments": 3,
                           "chunk": 2}, "Hello, streamed ✓ world", [])

    def test_stream_tool_calls_split_by_index(self):
        self.check_stream({"kind": "stream", "content": "", "tool_calls": TOOL_CALLS, "arg_chunk": 3},
                          "", TOOL_CALLS)

    def test_stream_tool_calls_interleaved(self):
        self.check_stream({"kind": "stream", "content": "thinking", "tool_calls": TOOL_CALLS,
                           "arg_chunk": 5, "interleave": True}, "thinking", TOOL_CALLS)

    def test_stream_split_at_odd_byte_boundaries(self):
        # every SSE line arrives cut in pieces of 7 bytes (mid-UTF-8, mid-"data:", mid-JSON)
        for split in (1, 7, 13):
            with self.subTest(split=split):
                self.check_stream({"kind": "stream", "content": "ü✓ split", "tool_calls": TOOL_CALLS,
                                   "write_split": split}, "ü✓ split", TOOL_CALLS)


    def test_stream_crlf_and_no_space(self):
        # both are valid SSE (WHATWG): CRLF line ends, "data:" without the space
        for opts in ({"crlf": True}, {"nospace": True}, {"crlf": True, "nospace": True, "write_split": 3}):
            with self.subTest(**opts):
                self.check_stream({"kind": "stream", "content": "line ends", "tool_calls": TOOL_CALLS[:1],
                                   **opts}, "line ends", TOOL_CALLS[:1])

    def test_stream_request_answered_with_json_errors(self):
        # asked for SSE, the upstream answers an error status with a plain JSON body
        self.serve({"conversations": {"a": [{"status": 429, "retry_after_header": "0"}, {"content": "fine"}],
                                      "b": [{"status": 401, "message": "No auth credentials found"}]}})
        run = self.llm("[conv:a] hi", "--stream")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.chosen(), [("RATE_LIMIT_ERROR", "RETRY_WITH_BACKOFF")])
        run = self.llm("[conv:b] hi", "--stream")
        self.assertResult(run, "escalated", 3)
        self.assertEqual(len(self.reqs()), 3)

    def test_stream_finish_without_done(self):
        # finish_reason and usage arrived, only "data: [DONE]" is missing: the answer is whole
        self.serve({"default": {"kind": "stream", "content": "ok", "cut_after": 4}})
        run = self.llm("hi", "--stream")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.json["message"]["content"], "ok")
        self.assertEqual(len(self.reqs()), 1)

    def test_stream_events_to_stdout_keep_result_parseable(self):
        self.serve({"default": {"kind": "stream", "content": "x"}})
        proc = subprocess.run([AGENTBOX, "llm", "--stream", "--events", "-", "hi"], env=self.env(),
                              capture_output=True, text=True, timeout=30, cwd=self.tmp)
        lines = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
        self.assertNotIn(self.key, proc.stdout + proc.stderr)
        self.assertTrue(any(x.get("type") == "llm_request" for x in lines), proc.stdout)
        self.assertEqual([x.get("status") for x in lines if "status" in x and "type" not in x], ["succeeded"])


class ModelsRefresh(LLMTestCase):
    def test_models_refresh_asks_for_tool_models(self):
        self.serve({"models_list": [
            {"id": "deepseek/deepseek-chat-v3-0324", "context_length": 163840,
             "pricing": {"prompt": "0.00000025", "completion": "0.00000085"},
             "supported_parameters": ["tools"]},
            {"id": "openrouter/free", "context_length": 128000,
             "pricing": {"prompt": "0", "completion": "0"}, "supported_parameters": ["tools"]},
        ]})
        proc = subprocess.run([AGENTBOX, "models", "--refresh"], env=self.env(), capture_output=True,
                              text=True, timeout=30, stdin=subprocess.DEVNULL)
        self.assertEqual(proc.returncode, 0, proc.stderr)
        self.assertNotIn(self.key, proc.stdout + proc.stderr)
        got = self.fake.requests("/models")
        self.assertEqual(len(got), 1)
        self.assertIn("supported_parameters=tools", got[0]["query"])
        self.assertIn("openrouter/free", proc.stdout)


if __name__ == "__main__":
    unittest.main()
