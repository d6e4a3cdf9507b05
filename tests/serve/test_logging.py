"""What `agentbox serve` tells its operator on stderr: a line per lifecycle event (listening,
task accepted / started / ended with status and time, the recovery summary, the drain), at
--log-level, as text or --log-format json, and in the journal's dialect (priority prefixes,
no timestamps) when JOURNAL_STREAM names its stderr."""
import json
import os
import re
import signal

from servetest_util import ServeTestCase, bash_reply, finish_reply

STAMP = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


class Logging(ServeTestCase):
    def run_one_task(self, *args, env=None):
        replay = self.write_replay([bash_reply("echo hi"), finish_reply()])
        self.start_server(*args, replay=replay, env=env)
        c = self.conn()
        tid = self.submit(c, {"prompt": "x", "id": "logged"})
        self.assertEqual(self.wait_result(c, tid)["status"], "succeeded")
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(30), 0)
        return self.server_log().splitlines()

    def test_text_lines_for_every_lifecycle_event(self):
        lines = self.run_one_task()
        text = "\n".join(lines)
        for pattern in (r"info journal: no earlier tasks to recover",
                        rf"info listening on {re.escape(self.sock)}: 4 jobs at once",
                        r"info task logged accepted from uid \d+ \(1 queued\)",
                        r"info task logged started",
                        r"info task logged ended: succeeded after \d+\.\d s",
                        r"info signal 15: draining",
                        r"info drained; exiting"):
            self.assertRegex(text, rf"(?m)^{STAMP} {pattern}", text)
        order = [next(i for i, l in enumerate(lines) if w in l)
                 for w in ("listening", "accepted", "started", "ended", "draining", "drained")]
        self.assertEqual(order, sorted(order), text)

    def test_json_lines_with_fields(self):
        lines = self.run_one_task("--log-format", "json")
        recs = [json.loads(l) for l in lines]  # every line is one JSON object
        by_event = {r.get("event"): r for r in recs if r.get("event")}
        self.assertEqual(by_event["listening"]["socket"], self.sock)
        self.assertEqual(by_event["task_accepted"]["task"], "logged")
        self.assertEqual(by_event["task_started"]["task"], "logged")
        ended = by_event["task_ended"]
        self.assertEqual((ended["task"], ended["status"], ended["level"]),
                         ("logged", "succeeded", "info"))
        self.assertIsInstance(ended["seconds"], (int, float))
        self.assertTrue(all(re.fullmatch(STAMP, r["ts"]) for r in recs))

    def test_log_level_warn_keeps_only_problems(self):
        lines = self.run_one_task("--log-level", "warn")
        self.assertEqual(lines, [])

    def test_journal_stream_gets_priorities_and_no_timestamps(self):
        log = os.path.join(self.tmp, "serve.log")
        open(log, "ab").close()
        st = os.stat(log)  # start_server appends stdout and stderr to this file
        lines = self.run_one_task(env={"JOURNAL_STREAM": f"{st.st_dev}:{st.st_ino}"})
        self.assertTrue(lines)
        for l in lines:
            self.assertRegex(l, r"^<[3467]>", l)
            self.assertNotRegex(l, STAMP)
        self.assertIn("<6>task logged ended: succeeded after", "\n".join(lines))

    def test_bad_log_options_are_usage_errors(self):
        for opt, val in (("--log-level", "loud"), ("--log-format", "xml")):
            p = self.start_server(opt, val, wait=False)
            self.assertEqual(p.wait(10), 2)
            self.assertIn(f"{opt}: expected", self.server_log())
