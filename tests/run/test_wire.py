"""What agentbox sends upstream, checked against the strict OpenAI chat-completions rules
(tests/wire_check.py) by a fake that refuses what a strict server refuses: tool-call ids
missing, empty or repeated by the server, invalid arguments, condensation and text tool
calling in one long conversation; a model found unavailable asked once per task; an event
stream under a wrong Content-Type; the agent's own endings named in error.reason."""
import json
import re

from runtest_util import RunTestCase, bash, call, finish  # (puts tests/ on sys.path)
import fake_openrouter  # noqa: E402

NO_TOOL_ENDPOINTS = {"status": 404, "message": "No endpoints found that support tool use."}
GONE = {"status": 404, "message": "No endpoints found for test/primary."}


class Wire(RunTestCase):
    def serve_script(self, script):
        script = dict(script, key=self.key)
        self.fake = fake_openrouter.FakeOpenRouter(script=script, key=self.key)
        self.fake.start()

    def assertWireClean(self):
        reqs = self.fake.requests()
        self.assertTrue(reqs)
        for r in reqs:
            self.assertNotEqual(r["kind"], "strict_failed", r.get("wire"))
            self.assertEqual(r.get("wire"), [], f"request {r['seq']}: {r.get('wire')}")

    def test_long_conversation_is_always_valid(self):
        big = "python3 -c \"print('y' * 29000)\""
        steps = [
            {"tool_calls": [dict(bash("echo one"), id=None)]},                       # no id
            {"tool_calls": [dict(bash("echo two"), id="")]},                         # empty id
            {"tool_calls": [dict(call("think", thought="hm"), id="call_0"),
                            dict(bash("echo three"), id="call_0")]},                 # repeated in a reply
            {"tool_calls": [{"id": "call_0", "name": "execute_bash", "arguments": "{not json"}]},
            {"tool_calls": [dict(call("no_such_tool", x=1), id=None)]},
            {"tool_calls": [{"id": "call_0", "name": "execute_bash", "arguments": {"command": "echo obj"}}]},
        ]
        # big observations force condensation (an unknown model gets 32768 tokens), every
        # reply numbering its call call_0 again
        steps += [{"tool_calls": [dict(bash(big + f" # {i}"), id="call_0")]} for i in range(6)]
        steps += [
            {"content": "Let me think about it."},                                   # no call: a nudge
            {"content": None},                                                        # an empty reply
            NO_TOOL_ENDPOINTS,                                                        # text mode from here
            {"content": "<function=execute_bash>\n<parameter=command>echo text-mode</parameter>\n</function>"},
            {"content": "<function=finish>\n<parameter=message>all done</parameter>\n</function>"},
        ]
        self.serve_script({"strict": True, "conversations": {"w": steps}})
        run = self.run_agent("[conv:w] go")
        self.assertStatus(run, "succeeded", 0)
        self.assertEqual(run.result["output"], "all done")
        self.assertTrue(run.of("condensed"), [e["type"] for e in run.events])
        self.assertEqual([e["mode"] for e in run.of("tool_mode")], ["text"])
        self.assertIn("text-mode", "".join(run.observations()))
        self.assertWireClean()
        self.assertEqual(len(self.fake.requests()), len(steps))

    def test_invalid_arguments_do_not_end_the_task(self):
        self.serve_script({"strict": True, "conversations": {"a": [
            {"tool_calls": [{"name": "execute_bash", "arguments": "{not json"}]},
            {"tool_calls": [bash("echo recovered")]},
            {"tool_calls": [finish("ok")]},
        ]}})
        run = self.run_agent("[conv:a] go")
        self.assertStatus(run, "succeeded", 0)
        results = run.of("tool_result")
        self.assertTrue(results[0]["is_error"], results)
        self.assertIn("recovered", results[1]["observation"])
        self.assertWireClean()
        # the past call goes back as valid JSON that keeps what the model wrote
        msgs = self.fake.requests()[1]["body"]["messages"]
        past = [m for m in msgs if m["role"] == "assistant"][0]["tool_calls"][0]
        self.assertEqual(json.loads(past["function"]["arguments"]), {"invalid_json": "{not json"})
        answer = [m for m in msgs if m["role"] == "tool"][0]
        self.assertEqual(answer["tool_call_id"], past["id"])

    def test_ids_missing_or_repeated_are_made_unique(self):
        steps = [{"tool_calls": [dict(bash(f"echo {i}"), id=None), dict(bash(f"echo {i}b"), id="")]}
                 for i in range(3)] + [{"tool_calls": [dict(finish(), id=None)]}]
        self.serve_script({"strict": True, "conversations": {"i": steps}})
        run = self.run_agent("[conv:i] go")
        self.assertStatus(run, "succeeded", 0)
        self.assertWireClean()
        last = self.fake.requests()[-1]["body"]["messages"]
        ids = [tc["id"] for m in last if m["role"] == "assistant" for tc in m.get("tool_calls") or []]
        self.assertEqual(len(ids), 6)
        self.assertEqual(len(set(ids)), 6, ids)
        self.assertFalse([i for i in ids if re.fullmatch(r"call_\d+", i) or not i], ids)
        answered = [m["tool_call_id"] for m in last if m["role"] == "tool"]
        self.assertEqual(answered, ids, "each result answers its own call, in order")

    def test_event_stream_sent_as_text_plain(self):
        self.serve_script({"conversations": {"s": [
            {"kind": "stream", "content_type": "text/plain; charset=utf-8", "tool_calls": [bash("echo streamed")]},
            {"kind": "stream", "content_type": "application/json", "tool_calls": [finish("ok")]},
        ]}})
        run = self.run_agent("[conv:s] go")
        self.assertStatus(run, "succeeded", 0)
        self.assertIn("streamed", run.observations()[0])
        self.assertEqual(len(self.fake.requests()), 2, "no retry: the body decided")


class DeadModel(RunTestCase):
    def run_dead_primary(self, **env):
        self.fake = fake_openrouter.FakeOpenRouter(script={
            "key": self.key, "models_first": {"test/primary": GONE},
            "conversations": {"d": [{"tool_calls": [bash("echo 1")]}, {"tool_calls": [bash("echo 2")]},
                                    {"tool_calls": [finish("ok")]}]}}, key=self.key)
        self.fake.start()
        return self.run_agent("[conv:d] go", env=self.env(OPENHANDS_FALLBACK_MODELS="test/fallback", **env))

    def test_unavailable_model_asked_once_per_task(self):
        run = self.run_dead_primary()
        self.assertStatus(run, "succeeded", 0)
        self.assertEqual([r["model"] for r in self.fake.requests()],
                         ["test/primary", "test/fallback", "test/fallback", "test/fallback"])
        self.assertEqual(run.result["models_tried"], ["test/primary", "test/fallback"])

    def test_task_memory_without_the_shared_ttl(self):
        run = self.run_dead_primary(OPENHANDS_MODEL_UNAVAILABLE_TTL="0")
        self.assertStatus(run, "succeeded", 0)
        self.assertEqual(len(self.fake.requests()), 4)
        self.assertEqual(run.result["models_tried"], ["test/primary", "test/fallback"])


class MockAtTheAttemptCap(RunTestCase):
    def test_every_model_503_ends_mock(self):
        # four models, each 1 + 3 retries: the 12-attempt cap comes first; the chain's
        # FALLBACK_MOCK still applies
        self.fake = fake_openrouter.FakeOpenRouter(script={"key": self.key, "default": {
            "status": 503, "message": "Service Unavailable", "error_type": "provider_overloaded"}},
            key=self.key)
        self.fake.start()
        run = self.run_agent("go", env=self.env(
            OPENHANDS_FALLBACK_MODELS="test/b,test/c,test/d", OPENHANDS_FALLBACK_TO_MOCK="true",
            OPENHANDS_ENABLE_CIRCUIT_BREAKER="false"))
        self.assertStatus(run, "mock", 4)
        self.assertFalse(run.result["success"])
        self.assertEqual(len(self.fake.requests()), 12)
        self.assertEqual(run.result["error"]["strategies"][-1], "FALLBACK_MOCK", run)
        self.assertEqual(run.result["models_tried"], ["test/primary", "test/b", "test/c"])


class EndReasons(RunTestCase):
    """The agent's own endings keep their error type and name themselves in error.reason."""

    def test_no_tool_calls(self):
        marker = self.serve([{"content": "I am still thinking."}])  # repeats
        run = self.run_agent(f"{marker} go")
        self.assertStatus(run, "failed", 1)
        self.assertEqual(run.result["error"]["reason"], "no_tool_calls", run)
        self.assertEqual(run.result["error"]["type"], "SDK_ERROR")

    def test_stuck(self):
        marker = self.serve([{"tool_calls": [bash("echo same")]}])
        run = self.run_agent(f"{marker} go")
        self.assertEqual((run.result["error"]["reason"], run.result["error"]["type"]), ("stuck", "SDK_ERROR"))

    def test_max_iterations(self):
        marker = self.serve([{"tool_calls": [bash("echo step $RANDOM$RANDOM")]}])
        run = self.run_agent(f"{marker} go", "--max-iterations", "2")
        self.assertEqual((run.result["error"]["reason"], run.result["error"]["type"]),
                         ("max_iterations", "SDK_ERROR"))

    def test_budget(self):
        marker = self.serve([{"tool_calls": [bash("echo step $RANDOM$RANDOM")], "usage": {"total_tokens": 100}}])
        run = self.run_agent(task={"prompt": f"{marker} go", "budget": {"max_tokens": 150}})
        self.assertEqual((run.result["error"]["reason"], run.result["error"]["type"]),
                         ("budget", "VALIDATION_ERROR"))
