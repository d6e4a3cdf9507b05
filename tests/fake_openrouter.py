#!/usr/bin/env python3
"""A fake OpenRouter API on loopback for tests and benchmarks (asyncio, stdlib only).
Owns: replaying scripted answers (completions, every error shape, SSE quirks, transport
faults) and recording every request. Never listens beyond loopback, never stores a key value.

Script (a JSON object; every field optional):
  key            expected API key; requests without "Authorization: Bearer KEY" get 401.
                 null/absent = accept anything (auth_ok is still recorded as None).
  conversations  {"NAME": [STEP, ...]}  used when a message contains "[conv:NAME]" or the
                 X-Title header is "conv:NAME". Steps are consumed in order; the last one
                 repeats once the list is used up.
  models         {"MODEL_ID": STEP or [STEP, ...]}  per-model behaviour (same consumption rule)
                 for requests not matched by a conversation.
  models_first   the same, consulted before conversations (a dead primary under a scripted
                 conversation that its fallback answers).
  queue          [STEP, ...]  a global queue for everything else, consumed and not repeated.
  default        STEP used when nothing above applies (default: a short completion).
  strict         true: every chat request is checked against the strict OpenAI rules
                 (tests/wire_check.py) and answered 400 "fake strict: ..." when it breaks one.
                 The problems are recorded as "wire" on every request either way.
  faults         {"rate": 0.2, "seed": 1, "kinds": ["502", "503", "429", "reset"],
                  "models": [ids] (only these; default all)}  injected before `models`/`queue`/
                 `default` (never into conversations), drawn from a seeded RNG.
  models_list    the "data" list GET /models answers (default: a small realistic list).
  models_auth    require the key on GET /models too (default false, like OpenRouter).

STEP ("kind" defaults to "completion", or "error" when "status" >= 400):
  common: delay (s before answering), headers {..}, status, close (answer with
          "Connection: close" and close the connection); expectations on the request it
          answers: expect_last (substring of the last message's content), expect_last_role
          ("tool", "user"...), expect_tools (true: tools must be sent). An unmet expectation
          is answered 400 "fake: ..." and recorded as kind "expect_failed" with the reason.
  completion: content, tool_calls [{id? (null: omitted), name, arguments (str or object)}], finish_reason,
              usage {prompt_tokens, completion_tokens, total_tokens, cost}, model, reasoning.
              Rendered as SSE when the request asked "stream": true.
  stream:     as completion, always SSE; comments (n ": OPENROUTER PROCESSING" lines), chunk
              (chars per content delta), arg_chunk (chars per arguments fragment), interleave
              (tool-call fragments of different indexes interleaved), write_split (bytes per
              socket write), chunk_delay (s between events), error_after (n data events, then a
              mid-stream error chunk and the end; with error {code, message}), cut_after (n data
              events, then a clean end without finish_reason or [DONE]), crlf (CRLF line ends),
              nospace ("data:{...}" without the space), content_type (default
              text/event-stream; "text/plain" as some servers send it).
  error:      status, code (int or str; default = status), message, error_type, raw,
              provider_name, availability {retryable, retry_after}, retry_after_seconds,
              reasons, retry_after_header, body (a raw override string or object).
              "${AUTH}" in message/raw is replaced by the Authorization header the client sent
              (an upstream echoing the key).
  error_in_200: error {code, message} placed in choices[0].error with finish_reason "error".
  hang:       never answers (until the client goes away or the server stops).
  reset:      sends `after_bytes` bytes of a 200 completion (default: headers only), then RST.
  truncate:   Content-Length larger than what is sent, then a normal close.
  malformed:  200 with a JSON body cut in the middle (or `body`).
  empty:      200 with an empty body.
  html:       status (default 502) with an HTML page, as a CDN in front of the API sends.

Control endpoints (no auth, not recorded): GET /_fake/requests, GET /_fake/stats,
POST /_fake/script (body = new script), POST /_fake/reset (records and positions).

CLI: fake_openrouter.py [--host 127.0.0.1] [--port 0] [--script FILE] [--key KEY]
prints "PORT" on the first stdout line, serves until SIGTERM/SIGINT.
"""
import argparse
import asyncio
import copy
import json
import random
import re
import signal
import socket
import struct
import threading
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import wire_check  # noqa: E402  (beside this file)

CONV_RE = re.compile(r"\[conv:([A-Za-z0-9_.:-]+)\]")
MAX_BODY = 64 * 1024 * 1024
DEFAULT_MODELS = [
    {"id": "deepseek/deepseek-chat-v3-0324", "name": "DeepSeek V3", "context_length": 163840,
     "pricing": {"prompt": "0.00000025", "completion": "0.00000085"},
     "supported_parameters": ["tools", "tool_choice", "max_tokens"]},
    {"id": "google/gemini-2.0-flash-001", "name": "Gemini Flash", "context_length": 1048576,
     "pricing": {"prompt": "0.0000001", "completion": "0.0000004"},
     "supported_parameters": ["tools", "tool_choice", "max_tokens"]},
    {"id": "meta-llama/llama-4-scout:free", "name": "Llama 4 Scout (free)", "context_length": 128000,
     "pricing": {"prompt": "0", "completion": "0"},
     "supported_parameters": ["tools", "max_tokens"]},
    {"id": "openrouter/free", "name": "Free router", "context_length": 128000,
     "pricing": {"prompt": "0", "completion": "0"},
     "supported_parameters": ["tools", "max_tokens"]},
]
REASONS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 402: "Payment Required",
           403: "Forbidden", 404: "Not Found", 408: "Request Timeout", 409: "Conflict",
           413: "Payload Too Large", 422: "Unprocessable Entity", 429: "Too Many Requests",
           500: "Internal Server Error", 502: "Bad Gateway", 503: "Service Unavailable",
           504: "Gateway Timeout", 524: "A Timeout Occurred", 529: "Site Overloaded"}
FAULT_STEPS = {
    "502": {"kind": "error", "status": 502, "message": "Provider returned error",
            "error_type": "provider_unavailable", "provider_name": "FakeProvider"},
    "503": {"kind": "error", "status": 503, "message": "Service temporarily unavailable",
            "error_type": "provider_overloaded",
            "availability": {"retryable": True, "retry_after": 0}},
    "429": {"kind": "error", "status": 429, "message": "Rate limit exceeded",
            "error_type": "rate_limit_exceeded", "retry_after_header": "0"},
    "500": {"kind": "error", "status": 500, "message": "Internal Server Error"},
    "529": {"kind": "error", "status": 529, "message": "Provider overloaded",
            "error_type": "provider_overloaded"},
    "reset": {"kind": "reset"},
    "empty": {"kind": "empty"},
    "hang": {"kind": "hang"},
}


def _json(obj):
    return json.dumps(obj, separators=(",", ":")).encode()


def _usage(step):
    u = {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19, "cost": 0.0000123}
    u.update(step.get("usage") or {})
    return u


def _tool_calls(step):
    out = []
    for i, tc in enumerate(step.get("tool_calls") or []):
        args = tc.get("arguments", "{}")
        if not isinstance(args, str):
            args = json.dumps(args)
        c = {"id": tc.get("id", f"call_{i}_{tc.get('name', 'fn')}"), "type": "function",
             "function": {"name": tc.get("name", "finish"), "arguments": args}}
        if c["id"] is None:  # "id": null in a step: the server omits the field
            del c["id"]
        out.append(c)
    return out


class FakeOpenRouter:
    """In-process server: start() runs an asyncio loop in a daemon thread; stop() ends it
    and every connection (hung ones included)."""

    def __init__(self, script=None, key=None, host="127.0.0.1", port=0):
        if host not in ("127.0.0.1", "::1", "localhost"):
            raise ValueError("fake_openrouter listens on loopback only")
        self.host, self.port = host, port
        self._lock = threading.Lock()
        self._requests = []
        self._t0 = time.monotonic()
        self.in_flight = 0
        self.max_in_flight = 0
        self.connections = 0
        self.set_script(script or {}, key=key)
        self._loop = None
        self._thread = None
        self._server = None
        self._stopping = None
        self._tasks = set()

    # ----- script -----
    def set_script(self, script, key=None):
        script = copy.deepcopy(script)
        if key is not None:
            script["key"] = key
        with self._lock:
            self.script = script
            self._pos = {}
            self._queue = list(script.get("queue") or [])
            f = script.get("faults") or {}
            self._rng = random.Random(f.get("seed", 1))

    def reset(self):
        with self._lock:
            self._requests = []
            self._pos = {}
            self._queue = list(self.script.get("queue") or [])
            self._rng = random.Random((self.script.get("faults") or {}).get("seed", 1))
            self.max_in_flight = self.in_flight
            self.connections = 0

    def requests(self, path_suffix="/chat/completions"):
        with self._lock:
            return [r for r in self._requests if path_suffix is None or r["path"].endswith(path_suffix)]

    def stats(self):
        with self._lock:
            return {"requests": len(self._requests), "in_flight": self.in_flight,
                    "max_in_flight": self.max_in_flight, "connections": self.connections}

    @property
    def base_url(self):
        return f"http://{self.host}:{self.port}/api/v1"

    def _seq_step(self, name, steps):
        if isinstance(steps, dict):
            return steps
        if not steps:
            return None
        i = self._pos.get(name, 0)
        self._pos[name] = i + 1
        return steps[min(i, len(steps) - 1)]

    def _choose(self, body, headers):
        """Returns (step, how) under the lock."""
        s = self.script
        text = ""
        for m in (body.get("messages") or []) if isinstance(body, dict) else []:
            c = m.get("content") if isinstance(m, dict) else None
            if isinstance(c, str):
                text += c + "\n"
            elif isinstance(c, list):
                text += " ".join(p.get("text", "") for p in c if isinstance(p, dict)) + "\n"
        conv = None
        mt = CONV_RE.search(text)
        if mt:
            conv = mt.group(1)
        elif headers.get("x-title", "").startswith("conv:"):
            conv = headers["x-title"][5:]
        model = body.get("model") if isinstance(body, dict) else None
        pinned = s.get("models_first") or {}
        if isinstance(model, str) and model in pinned:
            return self._seq_step("first:" + model, pinned[model]), "first:" + model
        convs = s.get("conversations") or {}
        if conv is not None and conv in convs:
            return self._seq_step("conv:" + conv, convs[conv]), "conv:" + conv
        model = body.get("model") if isinstance(body, dict) else None
        f = s.get("faults")
        if f and (not f.get("models") or model in f["models"]):
            if self._rng.random() < float(f.get("rate", 0)):
                kind = self._rng.choice(f.get("kinds") or ["502", "503", "429", "reset"])
                return FAULT_STEPS[str(kind)], "fault:" + str(kind)
        models = s.get("models") or {}
        if isinstance(model, str) and model in models:
            return self._seq_step("model:" + model, models[model]), "model:" + model
        if self._queue:
            return self._queue.pop(0), "queue"
        return s.get("default") or {"kind": "completion", "content": "ok"}, "default"

    # ----- lifecycle -----
    def start(self):
        ready = threading.Event()
        err = []

        def run():
            loop = asyncio.new_event_loop()
            self._loop = loop
            asyncio.set_event_loop(loop)
            self._stopping = asyncio.Event()
            try:
                self._server = loop.run_until_complete(asyncio.start_server(
                    self._client, self.host, self.port, backlog=4096, limit=1 << 20))
                self.port = self._server.sockets[0].getsockname()[1]
            except Exception as e:  # reported to start()'s caller
                err.append(e)
                ready.set()
                return
            ready.set()
            try:
                loop.run_until_complete(self._stopping.wait())
                self._server.close()
                for t in list(self._tasks):
                    t.cancel()
                if self._tasks:
                    loop.run_until_complete(asyncio.wait(list(self._tasks), timeout=5))
                loop.run_until_complete(self._server.wait_closed())
            finally:
                loop.close()

        self._thread = threading.Thread(target=run, name="fake-openrouter", daemon=True)
        self._thread.start()
        ready.wait(10)
        if err:
            raise err[0]
        return self

    def stop(self):
        if self._loop and self._thread and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stopping.set)
            self._thread.join(10)

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    async def serve_forever(self):
        """CLI use: serve on the current loop until stop_event is set."""
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._client, self.host, self.port,
                                                  backlog=4096, limit=1 << 20)
        self.port = self._server.sockets[0].getsockname()[1]
        return self._server

    # ----- HTTP -----
    async def _client(self, reader, writer):
        task = asyncio.current_task()
        self._tasks.add(task)
        with self._lock:
            self.connections += 1
        try:
            while True:
                req = await self._read_request(reader, writer)
                if req is None:
                    break
                keep = await self._handle(req, reader, writer)
                if not keep:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.LimitOverrunError,
                _ConnError):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._tasks.discard(task)
            try:
                writer.close()
            except Exception:
                pass

    async def _read_request(self, reader, writer):
        try:
            line = await reader.readline()
        except (ConnectionError, asyncio.LimitOverrunError, ValueError):
            return None
        if not line:
            return None
        parts = line.decode("latin-1").strip().split(" ")
        if len(parts) != 3:
            raise _ConnError()
        method, target, version = parts
        headers = {}
        while True:
            h = await reader.readline()
            if not h:
                raise _ConnError()
            if h in (b"\r\n", b"\n"):
                break
            k, _, v = h.decode("latin-1").partition(":")
            headers[k.strip().lower()] = v.strip()
        if headers.get("expect", "").lower() == "100-continue":
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
            await writer.drain()
        body = b""
        if headers.get("transfer-encoding", "").lower() == "chunked":
            while True:
                size = int((await reader.readline()).split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while (await reader.readline()) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                body += await reader.readexactly(size)
                await reader.readline()
                if len(body) > MAX_BODY:
                    raise _ConnError()
        elif "content-length" in headers:
            n = int(headers["content-length"])
            if n > MAX_BODY:
                raise _ConnError()
            body = await reader.readexactly(n)
        path, _, query = target.partition("?")
        keep = version == "HTTP/1.1" and headers.get("connection", "").lower() != "close"
        return {"method": method, "path": path, "query": query, "headers": headers,
                "body": body, "keep": keep}

    async def _send(self, writer, status, body, headers=None, keep=True, ctype="application/json"):
        if isinstance(body, (dict, list)):
            body = _json(body)
        elif isinstance(body, str):
            body = body.encode()
        head = [f"HTTP/1.1 {status} {REASONS.get(status, 'Status')}",
                f"Content-Type: {ctype}", f"Content-Length: {len(body)}",
                "Connection: " + ("keep-alive" if keep else "close")]
        for k, v in (headers or {}).items():
            head.append(f"{k}: {v}")
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + body)
        await writer.drain()
        return keep

    async def _handle(self, req, reader, writer):
        path, method = req["path"], req["method"]
        if path.startswith("/_fake/"):
            return await self._control(req, writer)
        auth = req["headers"].get("authorization")
        key = self.script.get("key")
        auth_ok = None if key is None else (auth == f"Bearer {key}")
        try:
            body = json.loads(req["body"]) if req["body"] else None
        except ValueError:
            body = None
        rec_headers = {k: ("<redacted>" if k == "authorization" else v)
                       for k, v in req["headers"].items()}
        rec = {"t": time.monotonic() - self._t0, "wall": time.time(), "method": method,
               "path": path, "query": req["query"], "headers": rec_headers,
               "auth_present": auth is not None, "auth_ok": auth_ok,
               "model": body.get("model") if isinstance(body, dict) else None,
               "stream": bool(body.get("stream")) if isinstance(body, dict) else False,
               "body": body if body is not None else req["body"].decode("utf-8", "replace"),
               "how": None, "kind": None}
        with self._lock:
            rec["seq"] = len(self._requests)
            self._requests.append(rec)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if method == "GET" and path.endswith("/models"):
                if self.script.get("models_auth") and key is not None and not auth_ok:
                    return await self._send(writer, 401, {"error": {"code": 401, "message": "No auth credentials found"}}, keep=req["keep"])
                rec["kind"] = "models"
                data = self.script.get("models_list") or DEFAULT_MODELS
                if "supported_parameters=tools" in req["query"]:
                    data = [m for m in data if "tools" in (m.get("supported_parameters") or [])]
                return await self._send(writer, 200, {"data": data}, keep=req["keep"])
            if not path.endswith("/chat/completions") or method != "POST":
                rec["kind"] = "not_found"
                return await self._send(writer, 404, {"error": {"code": 404, "message": f"no route {method} {path}"}}, keep=req["keep"])
            if key is not None and not auth_ok:
                rec["kind"] = "auth_fail"
                return await self._send(writer, 401, {"error": {"code": 401, "message": "No auth credentials found"}}, keep=req["keep"])
            if not isinstance(body, dict):
                rec["kind"] = "bad_json"
                return await self._send(writer, 400, {"error": {"code": 400, "message": "Invalid JSON body"}}, keep=req["keep"])
            rec["wire"] = wire_check.problems(body)
            if rec["wire"] and self.script.get("strict"):
                rec["kind"] = "strict_failed"
                return await self._send(writer, 400, {"error": {"code": 400, "message": "fake strict: " + "; ".join(rec["wire"][:5])}}, keep=req["keep"])
            with self._lock:
                step, how = self._choose(body, req["headers"])
            step = dict(step or {})
            bad = self._expectation_failed(step, body)
            if bad:
                rec["kind"], rec["how"], rec["expect_failed"] = "expect_failed", how, bad
                return await self._send(writer, 400, {"error": {"code": 400, "message": "fake: " + bad}}, keep=req["keep"])
            kind = step.get("kind") or ("error" if int(step.get("status", 200)) >= 400 else "completion")
            rec["how"], rec["kind"] = how, kind
            if step.get("delay"):
                await asyncio.sleep(float(step["delay"]))
            return await self._answer(kind, step, body, req, reader, writer, auth)
        finally:
            with self._lock:
                self.in_flight -= 1
            rec["t_done"] = time.monotonic() - self._t0

    async def _control(self, req, writer):
        p = req["path"]
        if p == "/_fake/requests":
            return await self._send(writer, 200, {"requests": self.requests(None)}, keep=req["keep"])
        if p == "/_fake/stats":
            return await self._send(writer, 200, self.stats(), keep=req["keep"])
        if p == "/_fake/reset" and req["method"] == "POST":
            self.reset()
            return await self._send(writer, 200, {"ok": True}, keep=req["keep"])
        if p == "/_fake/script" and req["method"] == "POST":
            try:
                self.set_script(json.loads(req["body"] or b"{}"))
            except ValueError as e:
                return await self._send(writer, 400, {"ok": False, "error": str(e)}, keep=req["keep"])
            return await self._send(writer, 200, {"ok": True}, keep=req["keep"])
        return await self._send(writer, 404, {"ok": False}, keep=req["keep"])

    @staticmethod
    def _expectation_failed(step, body):
        """Checks a step's expectations on the request it answers; returns why they fail."""
        msgs = body.get("messages") if isinstance(body.get("messages"), list) else []
        want = step.get("expect_last")
        if want is not None:
            last = msgs[-1] if msgs and isinstance(msgs[-1], dict) else {}
            content = last.get("content")
            text = content if isinstance(content, str) else json.dumps(content)
            if want not in (text or ""):
                return f"expected the last message to contain {want!r}, got {text[:200]!r}"
        role = step.get("expect_last_role")
        if role is not None and (not msgs or not isinstance(msgs[-1], dict) or msgs[-1].get("role") != role):
            return f"expected the last message's role to be {role!r}"
        if step.get("expect_tools") and not body.get("tools"):
            return "expected tools in the request"
        return None

    # ----- answers -----
    def _completion(self, step, body):
        msg = {"role": "assistant", "content": step.get("content", "" if step.get("tool_calls") else "ok")}
        tcs = _tool_calls(step)
        if tcs:
            msg["tool_calls"] = tcs
        if step.get("reasoning"):
            msg["reasoning"] = step["reasoning"]
        fr = step.get("finish_reason") or ("tool_calls" if tcs else "stop")
        return {"id": "gen-fake-" + str(int(time.monotonic() * 1e6)), "object": "chat.completion",
                "created": int(time.time()), "model": step.get("model") or body.get("model", "fake/model"),
                "provider": "FakeProvider",
                "choices": [{"index": 0, "finish_reason": fr, "native_finish_reason": fr, "message": msg}],
                "usage": _usage(step)}

    def _error_body(self, step, auth):
        if "body" in step:
            return step["body"]
        status = int(step.get("status", 500))

        def sub(s):
            return s.replace("${AUTH}", auth or "") if isinstance(s, str) else s
        md = {}
        for f in ("error_type", "provider_name", "retry_after_seconds", "reasons", "availability"):
            if f in step:
                md[f] = step[f]
        if "raw" in step:
            md["raw"] = sub(step["raw"])
        err = {"code": step.get("code", status), "message": sub(step.get("message", REASONS.get(status, "error")))}
        if md:
            err["metadata"] = md
        return {"error": err}

    async def _answer(self, kind, step, body, req, reader, writer, auth):
        keep = req["keep"] and not step.get("close")
        hdrs = dict(step.get("headers") or {})
        if kind == "completion" and body.get("stream"):
            kind = "stream"
        if kind == "completion":
            return await self._send(writer, int(step.get("status", 200)), self._completion(step, body), hdrs, keep)
        if kind == "error":
            if "retry_after_header" in step:
                hdrs["Retry-After"] = str(step["retry_after_header"])
            return await self._send(writer, int(step.get("status", 500)), self._error_body(step, auth), hdrs, keep)
        if kind == "error_in_200":
            c = self._completion(step, body)
            c["choices"][0]["finish_reason"] = "error"
            c["choices"][0]["message"]["content"] = step.get("content", "")
            c["choices"][0]["error"] = step.get("error") or {"code": 502, "message": "Upstream provider error"}
            return await self._send(writer, 200, c, hdrs, keep)
        if kind == "html":
            page = "<html><head><title>502 Bad Gateway</title></head><body>cloudflare</body></html>"
            return await self._send(writer, int(step.get("status", 502)), page, hdrs, keep, ctype="text/html")
        if kind == "empty":
            return await self._send(writer, int(step.get("status", 200)), b"", hdrs, keep)
        if kind == "malformed":
            raw = step.get("body") or _json(self._completion(step, body))[:40].decode()
            return await self._send(writer, int(step.get("status", 200)), raw, hdrs, keep)
        if kind == "truncate":
            full = _json(self._completion(step, body))
            head = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(full) + 100}\r\nConnection: close\r\n\r\n").encode()
            writer.write(head + full[: len(full) // 2])
            await writer.drain()
            return False
        if kind == "reset":
            full = _json(self._completion(step, body))
            resp = (f"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    f"Content-Length: {len(full)}\r\n\r\n").encode() + full
            n = int(step.get("after_bytes", 0))
            if n:
                writer.write(resp[:n])
                await writer.drain()
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if kind == "hang":
            # answer nothing; end when the client gives up or the server stops
            eof = asyncio.ensure_future(reader.read(65536))
            stop = asyncio.ensure_future(self._stopping.wait())
            try:
                await asyncio.wait([eof, stop], return_when=asyncio.FIRST_COMPLETED)
            finally:
                eof.cancel()
                stop.cancel()
            return False
        if kind == "stream":
            return await self._stream(step, body, writer, keep, hdrs)
        return await self._send(writer, 500, {"error": {"code": 500, "message": f"fake: unknown step kind {kind}"}}, keep=keep)

    def _sse_events(self, step, body):
        gid = "gen-fake-stream"
        model = step.get("model") or body.get("model", "fake/model")

        def chunk(delta, fr=None, **extra):
            c = {"id": gid, "object": "chat.completion.chunk", "created": int(time.time()),
                 "model": model, "provider": "FakeProvider",
                 "choices": [{"index": 0, "delta": delta, "finish_reason": fr}]}
            c.update(extra)
            return b"data: " + _json(c) + b"\n\n"
        events = [b": OPENROUTER PROCESSING\n\n"] * int(step.get("comments", 2))
        data = [chunk({"role": "assistant", "content": ""})]
        content = step.get("content", "" if step.get("tool_calls") else "ok")
        n = max(1, int(step.get("chunk", 3)))
        for i in range(0, len(content), n):
            data.append(chunk({"content": content[i:i + n]}))
        tcs = _tool_calls(step)
        an = max(1, int(step.get("arg_chunk", 4)))
        frags = []
        for idx, tc in enumerate(tcs):
            args = tc["function"]["arguments"]
            pieces = [args[i:i + an] for i in range(0, len(args), an)] or [""]
            seq = [{"index": idx, "type": "function",
                    "function": {"name": tc["function"]["name"], "arguments": pieces[0]}}]
            if "id" in tc:
                seq[0]["id"] = tc["id"]
            seq += [{"index": idx, "function": {"arguments": p}} for p in pieces[1:]]
            frags.append(seq)
        if step.get("interleave"):
            order = []
            while any(frags):
                for seq in frags:
                    if seq:
                        order.append(seq.pop(0))
        else:
            order = [f for seq in frags for f in seq]
        for f in order:
            data.append(chunk({"tool_calls": [f]}))
        fr = step.get("finish_reason") or ("tool_calls" if tcs else "stop")
        data.append(chunk({}, fr))
        usage = _usage(step)
        data.append(b"data: " + _json({"id": gid, "object": "chat.completion.chunk",
                                        "model": model, "choices": [], "usage": usage}) + b"\n\n")
        if "cut_after" in step:  # a clean end of the stream with no finish_reason and no [DONE]
            data = data[: int(step["cut_after"])]
            return events[:1] + data[:1] + events[1:] + data[1:], False
        if "error_after" in step:
            k = int(step["error_after"])
            err = step.get("error") or {"code": "server_error", "message": "Provider disconnected mid-stream"}
            data = data[:k] + [chunk({"content": ""}, "error", error=err)]
            return events[:1] + data[:1] + events[1:] + data[1:], False
        data.append(b"data: [DONE]\n\n")
        # a comment in the middle too, as OpenRouter sends them while the model thinks
        return events[:1] + data[:1] + events[1:] + data[1:], True

    async def _stream(self, step, body, writer, keep, hdrs):
        ctype = step.get("content_type", "text/event-stream")
        head = ["HTTP/1.1 200 OK", f"Content-Type: {ctype}", "Cache-Control: no-cache",
                "Transfer-Encoding: chunked", "Connection: " + ("keep-alive" if keep else "close")]
        head += [f"{k}: {v}" for k, v in hdrs.items()]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode())
        events, _ = self._sse_events(step, body)
        if step.get("nospace"):  # "data:{...}" is valid SSE too
            events = [e.replace(b"data: ", b"data:", 1) for e in events]
        if step.get("crlf"):  # SSE allows CRLF line ends
            events = [e.replace(b"\n", b"\r\n") for e in events]
        payload = b"".join(events)
        split = int(step.get("write_split", 0))
        delay = float(step.get("chunk_delay", 0))
        pieces = [payload[i:i + split] for i in range(0, len(payload), split)] if split else events
        for p in pieces:
            writer.write(b"%x\r\n%s\r\n" % (len(p), p))
            await writer.drain()
            if delay:
                await asyncio.sleep(delay)
        writer.write(b"0\r\n\r\n")
        await writer.drain()
        return keep


class _ConnError(Exception):
    """The client went away or sent an unreadable request: stop serving this connection."""


def main():
    ap = argparse.ArgumentParser(description="fake OpenRouter server (loopback only)")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--script", help="JSON script file")
    ap.add_argument("--key", help="expected API key (overrides the script's)")
    ap.add_argument("--dump", help="write the request records as JSON here on exit")
    a = ap.parse_args()
    script = {}
    if a.script:
        with open(a.script) as f:
            script = json.load(f)
    fake = FakeOpenRouter(script, key=a.key, host=a.host, port=a.port)

    async def run():
        server = await fake.serve_forever()
        print(fake.port, flush=True)
        loop = asyncio.get_running_loop()
        for s in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(s, fake._stopping.set)
        await fake._stopping.wait()
        server.close()
        for t in list(fake._tasks):
            t.cancel()
        if fake._tasks:
            await asyncio.wait(list(fake._tasks), timeout=5)
        if a.dump:
            with open(a.dump, "w") as f:
                json.dump({"stats": fake.stats(), "requests": fake.requests(None)}, f)

    asyncio.run(run())


if __name__ == "__main__":
    main()
