"""One circuit breaker shared by every task of a supervisor: a dead upstream (the fake answers
503 to everything) is not hammered by every task's own retries once the breaker opens."""
import threading

from servetest_util import ServeTestCase

DEAD = {"default": {"kind": "error", "status": 503, "message": "Service temporarily unavailable",
                    "error_type": "provider_overloaded"}}
TASKS = 20
ATTEMPTS_PER_CALL = 4  # RETRY_WITH_BACKOFF*3 (the default chain) + the first attempt


class BreakerTest(ServeTestCase):
    def run_tasks(self, env):
        self.start_fake(DEAD)
        self.start_server("--jobs", str(TASKS), env=env)
        results = {}

        def one(i):
            c = self.conn(timeout=120)
            tid = self.submit(c, {"prompt": "p", "id": f"b{i}"})
            results[tid] = self.wait_result(c, tid, 100)
        threads = [threading.Thread(target=one, args=(i,)) for i in range(TASKS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        self.assertEqual(len(results), TASKS)
        for r in results.values():
            self.assertIn(r["status"], ("failed", "escalated"), r)
            self.assertFalse(r["success"])
        return results

    def test_breaker_shared_across_tasks(self):
        results = self.run_tasks({"OPENHANDS_ENABLE_CIRCUIT_BREAKER": "true",
                                  "OPENHANDS_CB_FAILURE_THRESHOLD": "5",
                                  "OPENHANDS_CB_OPEN_SECONDS": "60"})
        sent = len(self.fake.requests())
        # every task retrying on its own would send TASKS * ATTEMPTS_PER_CALL requests
        self.assertLess(sent, TASKS * ATTEMPTS_PER_CALL / 3, f"{sent} requests reached upstream")
        self.assertGreaterEqual(sent, 5)
        tripped = [r for r in results.values()
                   if "CIRCUIT_BREAK" in ((r.get("error") or {}).get("strategies") or [])]
        self.assertGreater(len(tripped), TASKS // 2)
        c = self.conn()
        h = c.ask({"op": "health"})
        self.assertIn("open", h["breaker"].values(), h)
        text = c.ask({"op": "metrics"})["text"]
        self.assertRegex(text, r'agentbox_breaker_state\{model="[^"]+"\} 2')
        self.assertRegex(text, r'agentbox_llm_calls_total\{model="[^"]+",'
                               r'error_type="CONNECTION_ERROR"\} \d+')

    def test_without_breaker_every_task_retries(self):
        # the control: the same dead upstream with the breaker switched off
        self.run_tasks({"OPENHANDS_ENABLE_CIRCUIT_BREAKER": "false"})
        self.assertGreaterEqual(len(self.fake.requests()), TASKS * ATTEMPTS_PER_CALL)
