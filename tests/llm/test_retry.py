"""Transient faults are retried (required outcomes, docs/errors.md): 429 after Retry-After from each of its
three places, 5xx/reset/refused with backoff, bad bodies and mid-stream errors as SDK_ERROR, a hung
call cut by the per-call timeout, and the task's wall clock winning over everything."""
import socket
import unittest

from llmtest_util import FAST_ENV, LLMTestCase

BASE_S = float(FAST_ENV["OPENHANDS_RETRY_BASE_DELAY"])
MAX_S = float(FAST_ENV["OPENHANDS_RETRY_MAX_DELAY"])
OK = {"content": "recovered"}


class RateLimit(LLMTestCase):
    def check_retry_after(self, step, wait_s=2.0):
        self.serve({"conversations": {"rl": [step, OK]}})
        run = self.llm("[conv:rl] hi")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(len(self.reqs()), 2, run)
        self.assertEqual(run.json["requests"], 2)
        gap = self.gaps()[0]
        self.assertGreaterEqual(gap, wait_s - 0.05, "Retry-After not honoured")
        self.assertLess(gap, wait_s + 1.5, "waited far longer than Retry-After")
        self.assertEqual(run.chosen(), [("RATE_LIMIT_ERROR", "RETRY_WITH_BACKOFF")])
        self.assertEqual(run.json["message"]["content"], "recovered")

    def test_retry_after_header(self):
        self.check_retry_after({"status": 429, "message": "Rate limit exceeded: free-models-per-min",
                                "retry_after_header": "2"})

    def test_retry_after_availability(self):
        self.check_retry_after({"status": 429, "message": "Provider is rate limited",
                                "error_type": "rate_limit_exceeded",
                                "availability": {"retryable": True, "retry_after": 2}})

    def test_retry_after_metadata_seconds(self):
        self.check_retry_after({"status": 429, "message": "Rate limited upstream",
                                "error_type": "rate_limit_exceeded", "retry_after_seconds": 2,
                                "raw": "{\"error\":\"429 from provider\"}", "provider_name": "Chutes"})

    def test_retry_after_capped(self):
        # an absurd Retry-After is capped (OPENHANDS_RETRY_AFTER_MAX), not obeyed for an hour
        self.serve({"conversations": {"rl": [{"status": 429, "retry_after_header": "3600"}, OK]}})
        run = self.llm("[conv:rl] hi", env={"OPENHANDS_RETRY_AFTER_MAX": "1"})
        self.assertResult(run, "succeeded", 0)
        self.assertLess(self.gaps()[0], 2.5)
        self.assertGreaterEqual(self.gaps()[0], 0.95)

    def test_429_persistent_then_next_model(self):
        self.serve({"models": {"test/primary": {"status": 429, "message": "Rate limit exceeded",
                                                "retry_after_header": "0"},
                               "test/fallback": {"content": "fb"}}})
        run = self.llm("hi", "--fallback", "test/fallback")
        self.assertResult(run, "succeeded", 0)
        models = [r["model"] for r in self.reqs()]
        self.assertEqual(models[-1], "test/fallback")
        self.assertGreaterEqual(models.count("test/primary"), 2, "429 is retried before falling back")
        self.assertLessEqual(models.count("test/primary"), 6)
        kinds = [s for _, s in run.chosen()]
        self.assertEqual(kinds[0], "RETRY_WITH_BACKOFF")
        self.assertIn("FALLBACK_MODEL", kinds)
        self.assertTrue(all(t == "RATE_LIMIT_ERROR" for t, _ in run.chosen()))
        self.assertEqual(run.json["models_tried"], ["test/primary", "test/fallback"])


class Connection(LLMTestCase):
    def check_transient(self, bad, typ, strategies=("RETRY_WITH_BACKOFF",), n_bad=2, stream=False):
        self.serve({"conversations": {"t": [bad] * n_bad + [OK]}})
        run = self.llm("[conv:t] hi", *(["--stream"] if stream else []))
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(len(self.reqs()), n_bad + 1, run)
        self.assertEqual(run.json["requests"], n_bad + 1)
        got = run.chosen()
        self.assertEqual(len(got), n_bad, run.events)
        for t, s in got:
            self.assertEqual(t, typ, run.events)
            self.assertIn(s, strategies, run.events)
        return run

    def test_5xx_each(self):
        for st in (500, 502, 503, 524, 529):
            with self.subTest(status=st):
                self.check_transient({"status": st, "message": f"upstream {st}",
                                      "error_type": "provider_unavailable"}, "CONNECTION_ERROR")

    def test_backoff_bounds(self):
        # exponential backoff with jitter that only lengthens: the n-th wait lies in
        # [min(max, base*2^n), min(max, base*2^n)*1.25] plus the time of one local request
        self.check_transient({"status": 502, "message": "Bad gateway"}, "CONNECTION_ERROR", n_bad=3)
        g = self.gaps()
        for n, gap in enumerate(g):
            nominal = min(MAX_S, BASE_S * 2 ** n)
            self.assertGreaterEqual(gap, nominal - 0.005, f"wait {n} too short: {g}")
            self.assertLess(gap, nominal * 1.25 + 0.15, f"wait {n} too long: {g}")

    def test_connection_reset(self):
        self.check_transient({"kind": "reset"}, "CONNECTION_ERROR")

    def test_reset_mid_body(self):
        self.check_transient({"kind": "reset", "after_bytes": 90}, "CONNECTION_ERROR",
                             strategies=("RETRY_WITH_BACKOFF", "RETRY"))

    def test_html_502_from_cdn(self):
        self.check_transient({"kind": "html", "status": 502}, "CONNECTION_ERROR")

    def test_refused_is_connection_error(self):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nobody listens there now
        run = self.llm("hi", base_url=f"http://127.0.0.1:{port}/api/v1")
        self.assertResult(run, "failed", 1)
        self.assertErrorType(run, "CONNECTION_ERROR")
        self.assertEqual(run.strategies[:3], ["RETRY_WITH_BACKOFF"] * 3, run)
        self.assertNotIn("FALLBACK_MOCK", run.strategies)

    def test_persistent_503_gives_up(self):
        self.serve({"default": {"status": 503, "message": "Service Unavailable",
                                "error_type": "provider_overloaded"}})
        run = self.llm("hi")
        self.assertResult(run, "failed", 1)
        self.assertErrorType(run, "CONNECTION_ERROR")
        # seed chain: RETRY_WITH_BACKOFF x3, CIRCUIT_BREAK (FALLBACK_MOCK only when enabled)
        self.assertEqual(run.strategies, ["RETRY_WITH_BACKOFF"] * 3 + ["CIRCUIT_BREAK"], run)
        self.assertEqual(len(self.reqs()), 4)
        self.assertEqual(run.json["requests"], 4)


class BadBodies(LLMTestCase):
    def check_sdk(self, bad, stream=False):
        self.serve({"conversations": {"b": [bad, OK]}})
        run = self.llm("[conv:b] hi", *(["--stream"] if stream else []))
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(len(self.reqs()), 2, run)
        self.assertEqual(len(run.chosen()), 1, run.events)
        self.assertEqual(run.chosen()[0][0], "SDK_ERROR", run.events)
        self.assertIn(run.chosen()[0][1], ("RETRY", "RETRY_WITH_BACKOFF"))
        self.assertEqual(run.json["message"]["content"], "recovered")

    def test_malformed_json(self):
        self.check_sdk({"kind": "malformed"})

    def test_truncated_body(self):
        self.check_sdk({"kind": "truncate"})

    def test_empty_body(self):
        self.check_sdk({"kind": "empty"})

    def test_200_without_choices(self):
        self.check_sdk({"kind": "malformed", "body": "{\"id\":\"gen-1\",\"object\":\"chat.completion\"}"})

    def test_error_inside_200(self):
        self.check_sdk({"kind": "error_in_200", "error": {"code": 502, "message": "Provider returned error"}})

    def test_midstream_error(self):
        self.check_sdk({"kind": "stream", "content": "partial answer that dies", "error_after": 3,
                        "error": {"code": "server_error", "message": "Provider disconnected"}}, stream=True)

    def test_stream_without_done(self):
        # the connection closes cleanly after a few chunks: no finish_reason, no [DONE]
        self.check_sdk({"kind": "stream", "content": "cut short", "cut_after": 2}, stream=True)


class Timeouts(LLMTestCase):
    def test_hang_is_cut_and_retried(self):
        self.serve({"conversations": {"h": [{"kind": "hang"}, OK]}})
        run = self.llm("[conv:h] hi", env={"OPENHANDS_LLM_TIMEOUT": "1"})
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(len(self.reqs()), 2)
        self.assertGreaterEqual(self.gaps()[0], 0.95, "per-call timeout fired too early")
        self.assertLess(self.gaps()[0], 3.0, "per-call timeout not applied")
        self.assertEqual(run.chosen()[0][0], "TIMEOUT_ERROR")
        self.assertIn(run.chosen()[0][1], ("RETRY", "RETRY_WITH_BACKOFF"))

    def test_408_is_timeout_error(self):
        self.serve({"conversations": {"h": [{"status": 408, "message": "Request timed out"}, OK]}})
        run = self.llm("[conv:h] hi")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(len(self.reqs()), 2)
        self.assertEqual(run.chosen()[0][0], "TIMEOUT_ERROR")

    def test_task_deadline_wins(self):
        # every call hangs; per-call timeout 20 s, task wall clock 2 s: the task ends at ~2 s
        self.serve({"default": {"kind": "hang"}})
        run = self.llm("hi", env={"OPENHANDS_LLM_TIMEOUT": "20", "OPENHANDS_TIMEOUT": "2"})
        self.assertResult(run, "timeout", 1)
        self.assertLess(run.elapsed, 4.0)
        self.assertGreaterEqual(run.elapsed, 1.9)
        self.assertErrorType(run, "TIMEOUT_ERROR")

    def test_deadline_beats_retry_after(self):
        # a 429 asking for 30 s when the task has 2 s left: no sleeping past the deadline
        self.serve({"default": {"status": 429, "retry_after_header": "30"}})
        run = self.llm("hi", env={"OPENHANDS_TIMEOUT": "2", "OPENHANDS_RETRY_AFTER_MAX": "60"})
        self.assertIn(run.json["status"], ("timeout", "failed"), run)
        self.assertEqual(run.rc, 1)
        self.assertLess(run.elapsed, 4.0)


if __name__ == "__main__":
    unittest.main()
