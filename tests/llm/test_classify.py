"""Errors that must never be retried (required outcomes, docs/errors.md): 401/402/403 escalate, 400/422
fail, context_length_exceeded asks to condense, 404 "no endpoints" falls back at once."""
import unittest

from llmtest_util import LLMTestCase

NO_ENDPOINTS = {"status": 404, "message": "No endpoints found that support tool use. "
                "To learn more about provider routing, visit: https://openrouter.ai/docs/provider-routing"}


class NotRetried(LLMTestCase):
    def check_once(self, step, typ, statuses, rc=None, fallback=True):
        """The upstream answers `step` forever; exactly one request reaches it, even with a
        fallback model configured."""
        self.serve({"default": step})
        args = ("--fallback", "test/fallback") if fallback else ()
        run = self.llm("hi", *args)
        self.assertIsNotNone(run.json, run)
        self.assertIn(run.json["status"], statuses, run)
        if rc is not None:
            self.assertEqual(run.rc, rc, run)
        self.assertErrorType(run, typ)
        self.assertEqual(len(self.reqs()), 1, f"must not be retried: {run!r}")
        self.assertEqual(run.json["requests"], 1)
        self.assertNotIn("RETRY", run.strategies)
        self.assertNotIn("RETRY_WITH_BACKOFF", run.strategies)
        return run

    def test_401_escalates(self):
        run = self.check_once({"status": 401, "message": "User not found.", "error_type": "authentication"},
                              "AUTHENTICATION_ERROR", ["escalated"], rc=3)
        self.assertEqual(run.strategies, ["ESCALATE"])
        self.assertEqual(run.chosen(), [("AUTHENTICATION_ERROR", "ESCALATE")])
        self.assertEqual(run.json["models_tried"], ["test/primary"])

    def test_402_escalates(self):
        run = self.check_once({"status": 402, "message": "Insufficient credits. Add more using "
                               "https://openrouter.ai/credits", "error_type": "payment_required"},
                              "AUTHENTICATION_ERROR", ["escalated"], rc=3)
        self.assertEqual(run.strategies, ["ESCALATE"])

    def test_403_not_moderation_escalates(self):
        run = self.check_once({"status": 403, "message": "Key disabled", "error_type": "permission_denied"},
                              "AUTHENTICATION_ERROR", ["escalated"], rc=3)
        self.assertEqual(run.strategies, ["ESCALATE"])

    def test_401_string_code(self):
        # `code` may be a string
        self.check_once({"status": 401, "code": "unauthorized", "message": "No auth credentials found"},
                        "AUTHENTICATION_ERROR", ["escalated"], rc=3)

    def test_400_validation(self):
        self.check_once({"status": 400, "message": "tools[0].function.name: invalid", "error_type": "invalid_request"},
                        "VALIDATION_ERROR", ["failed", "escalated"])

    def test_422_validation(self):
        self.check_once({"status": 422, "message": "Unprocessable: messages must not be empty"},
                        "VALIDATION_ERROR", ["failed", "escalated"])

    def test_403_moderation_not_retried(self):
        # flagged input is not an authentication problem and asking again gives the same answer
        self.serve({"default": {"status": 403, "message": "Input was flagged",
                                "reasons": ["violence"], "provider_name": "OpenAI"}})
        run = self.llm("hi")
        self.assertIn(run.json["status"], ["failed", "escalated"], run)
        self.assertEqual(len(self.reqs()), 1, run)

    def test_context_length_condense(self):
        # `agentbox llm` has no history to shorten: it reports the signal (status "condense",
        # "condense": true) and stops; the agent loop condenses and asks again
        run = self.check_once({"status": 400, "code": 400, "error_type": "context_length_exceeded",
                               "message": "This endpoint's maximum context length is 8192 tokens. "
                               "However, you requested about 9100 tokens"},
                              "VALIDATION_ERROR", ["condense"], rc=1, fallback=False)
        self.assertIs(run.json.get("condense"), True, run)
        self.assertEqual(run.strategies, [])

    def test_413_is_context_length(self):
        run = self.check_once({"status": 413, "message": "Request entity too large"},
                              "VALIDATION_ERROR", ["condense"], rc=1, fallback=False)
        self.assertIs(run.json.get("condense"), True, run)


class NoEndpoints(LLMTestCase):
    def test_404_falls_back_at_once(self):
        self.serve({"models": {"test/primary": NO_ENDPOINTS, "test/fallback": {"content": "from fallback"}}})
        run = self.llm("hi", "--fallback", "test/fallback")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.json["models_tried"], ["test/primary", "test/fallback"])
        self.assertEqual(run.json["model"], "test/fallback")
        self.assertEqual(run.json["message"]["content"], "from fallback")
        self.assertEqual([r["model"] for r in self.reqs()], ["test/primary", "test/fallback"])
        self.assertEqual(run.chosen(), [("VALIDATION_ERROR", "FALLBACK_MODEL")])
        self.assertLess(self.gaps()[0], 0.5, "a dead model is left at once, without backoff")
        fb = run.events_of("model_fallback")
        self.assertEqual(len(fb), 1)
        self.assertIn("test/fallback", str(fb[0]))

    def test_availability_not_retryable_falls_back(self):
        self.serve({"models": {"test/primary": {"status": 503, "message": "Model unavailable",
                                                "error_type": "provider_unavailable",
                                                "availability": {"retryable": False}},
                               "test/fallback": {"content": "ok"}}})
        run = self.llm("hi", "--fallback", "test/fallback")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual([r["model"] for r in self.reqs()], ["test/primary", "test/fallback"])

    def test_fallback_order(self):
        # A: gone; B: no tool endpoints; C answers. Each is asked once, in the order given.
        self.serve({"models": {"test/a": {"status": 404, "message": "Model test/a not found",
                                          "error_type": "not_found"},
                               "test/b": NO_ENDPOINTS, "test/c": {"content": "c"}}})
        run = self.llm("hi", "--model", "test/a", "--fallback", "test/b", "--fallback", "test/c")
        self.assertResult(run, "succeeded", 0)
        self.assertEqual(run.json["models_tried"], ["test/a", "test/b", "test/c"])
        self.assertEqual([r["model"] for r in self.reqs()], ["test/a", "test/b", "test/c"])
        self.assertEqual(len(run.events_of("model_fallback")), 2)

    def test_all_models_gone(self):
        self.serve({"default": NO_ENDPOINTS})
        run = self.llm("hi", "--fallback", "test/b")
        self.assertIn(run.json["status"], ["failed", "escalated"], run)
        self.assertNotEqual(run.rc, 0)
        self.assertEqual([r["model"] for r in self.reqs()], ["test/primary", "test/b"])
        self.assertErrorType(run, "VALIDATION_ERROR")
        self.assertEqual(run.json["models_tried"], ["test/primary", "test/b"])


if __name__ == "__main__":
    unittest.main()
