"""Asyncio client for the agentbox socket protocol (docs/protocol.md): newline-delimited JSON
over a Unix stream socket. One connection per request, so that calls from many coroutines
never interleave on one stream and an ``events`` stream owns its connection. Stdlib only.
Never sends anything but the request it was asked to send; never trusts a reply's shape."""
import asyncio
import json
import os

from .errors import (AgentboxConnectionError, AgentboxProtocolError, server_error)

DEFAULT_SOCKET = "/run/agentbox-api/agentbox.sock"
# A reply line can carry a whole result (diff and all); the server bounds results at 256 MB.
REPLY_MAX_BYTES = 300 * 1024 * 1024


def default_socket():
    """$AGENTBOX_SOCKET, else the path the systemd unit uses."""
    return os.environ.get("AGENTBOX_SOCKET") or DEFAULT_SOCKET


def _absolute_from_dir(task):
    """A relative workspace.from_dir is below the caller's working directory, not the
    server's: made absolute here (on a copy; the caller's dict is left alone)."""
    ws = task.get("workspace") if isinstance(task, dict) else None
    from_dir = ws.get("from_dir") if isinstance(ws, dict) else None
    if not isinstance(from_dir, str) or not from_dir or os.path.isabs(from_dir):
        return task
    return {**task, "workspace": {**ws, "from_dir": os.path.realpath(from_dir)}}


class AgentboxClient:
    """Talks to one ``agentbox serve``. ``connect_timeout`` bounds connecting and the first
    reply line of each request (not ``wait``'s wait, nor an ``events`` stream)."""

    def __init__(self, socket_path=None, connect_timeout=10.0, reply_max_bytes=REPLY_MAX_BYTES):
        self.socket_path = socket_path or default_socket()
        self.connect_timeout = connect_timeout
        self.reply_max_bytes = reply_max_bytes

    # ---- plumbing ----

    async def _open(self):
        try:
            return await asyncio.wait_for(
                asyncio.open_unix_connection(self.socket_path, limit=self.reply_max_bytes),
                self.connect_timeout)
        except asyncio.TimeoutError as e:
            raise AgentboxConnectionError(
                f"{self.socket_path}: no connection within {self.connect_timeout}s") from e
        except OSError as e:
            raise AgentboxConnectionError(f"{self.socket_path}: {e.strerror or e}") from e

    @staticmethod
    async def _close(writer):
        writer.close()
        try:
            await writer.wait_closed()
        except OSError:
            pass

    async def _read_line(self, reader, timeout):
        try:
            if timeout is None:
                line = await reader.readline()
            else:
                line = await asyncio.wait_for(reader.readline(), timeout)
        except asyncio.TimeoutError as e:
            raise AgentboxConnectionError(f"{self.socket_path}: no reply within {timeout}s") from e
        except (asyncio.LimitOverrunError, ValueError) as e:
            raise AgentboxProtocolError(
                f"reply longer than {self.reply_max_bytes} bytes") from e
        except OSError as e:
            raise AgentboxConnectionError(f"{self.socket_path}: {e.strerror or e}") from e
        if not line:
            return None
        if not line.endswith(b"\n"):
            raise AgentboxConnectionError(f"{self.socket_path}: the server closed mid-reply")
        try:
            obj = json.loads(line)
        except ValueError as e:
            raise AgentboxProtocolError(f"reply is not JSON: {line[:200]!r}") from e
        if not isinstance(obj, dict):
            raise AgentboxProtocolError(f"reply is not a JSON object: {line[:200]!r}")
        return obj

    @staticmethod
    def _check(reply):
        if "ok" not in reply:
            raise AgentboxProtocolError(f"reply without \"ok\": {str(reply)[:200]}")
        if reply["ok"] is True:
            return reply
        err = reply.get("error")
        if not isinstance(err, dict):
            raise AgentboxProtocolError(f"error reply without an error object: {str(reply)[:200]}")
        raise server_error(str(err.get("code", "error")), str(err.get("message", "")))

    async def request(self, op, reply_timeout="default", **fields):
        """Sends {"op": op, **fields}; returns the reply object or raises."""
        reader, writer = await self._open()
        try:
            writer.write(json.dumps({"op": op, **fields}, separators=(",", ":")).encode() + b"\n")
            try:
                await writer.drain()
            except OSError as e:
                raise AgentboxConnectionError(f"{self.socket_path}: {e.strerror or e}") from e
            timeout = self.connect_timeout if reply_timeout == "default" else reply_timeout
            reply = await self._read_line(reader, timeout)
            if reply is None:
                raise AgentboxConnectionError(f"{self.socket_path}: the server closed without a reply")
            return self._check(reply)
        finally:
            await self._close(writer)

    # ---- ops ----

    async def submit(self, task):
        """Queues a task (a dict: the task object of docs/protocol.md); returns its id."""
        if isinstance(task, str):
            task = {"prompt": task}
        task = _absolute_from_dir(task)
        reply = await self.request("submit", task=task)
        tid = reply.get("id")
        if not isinstance(tid, str):
            raise AgentboxProtocolError("submit reply without an id")
        return tid

    async def status(self, task_id):
        """The task's summary: {"id", "status", "submitted", "started", "ended", ...}."""
        return (await self.request("status", id=task_id)).get("task")

    async def wait(self, task_id, timeout=None):
        """The task's result once it ends. ``timeout`` (seconds) is the server-side wait:
        past it, WaitTimeout is raised and the task goes on. None waits for as long as it
        takes."""
        fields = {"id": task_id}
        if timeout is not None:
            fields["timeout_s"] = max(0.0, float(timeout))
        reply = await self.request("wait", reply_timeout=None, **fields)
        result = reply.get("result")
        if not isinstance(result, dict):
            raise AgentboxProtocolError("wait reply without a result")
        return result

    async def cancel(self, task_id):
        """Asks the server to cancel; returns {"status", "cancelling"}. The task's result
        (status "cancelled") comes from ``wait``."""
        reply = await self.request("cancel", id=task_id)
        return {k: v for k, v in reply.items() if k != "ok"}

    def events(self, task_id="all", follow=True):
        """An EventStream (async iterator of event objects): a task's earlier events, then,
        with follow, its live ones until its terminal event; "all": every task's live
        events. Use ``async with client.events(id) as stream: async for ev in stream`` (or
        call ``aclose()``) so that breaking out of the loop closes the connection at once."""
        return EventStream(self, task_id, follow)

    async def list(self):
        return (await self.request("list")).get("tasks") or []

    async def health(self):
        reply = await self.request("health")
        return {k: v for k, v in reply.items() if k != "ok"}

    async def metrics(self):
        """Prometheus text format."""
        text = (await self.request("metrics")).get("text")
        if not isinstance(text, str):
            raise AgentboxProtocolError("metrics reply without text")
        return text

    async def run(self, task, timeout=None):
        """submit + wait."""
        return await self.wait(await self.submit(task), timeout=timeout)


class EventStream:
    """One ``events`` request and its connection."""

    def __init__(self, client, task_id, follow):
        self._client = client
        self._task_id = task_id
        self._follow = bool(follow)
        self._reader = None
        self._writer = None
        self._done = False

    async def _start(self):
        c = self._client
        self._reader, self._writer = await c._open()
        try:
            self._writer.write(json.dumps({"op": "events", "id": self._task_id,
                                           "follow": self._follow}).encode() + b"\n")
            await self._writer.drain()
            first = await c._read_line(self._reader, c.connect_timeout)
            if first is None:
                raise AgentboxConnectionError(f"{c.socket_path}: the server closed without a reply")
            c._check(first)
        except BaseException:
            await self.aclose()
            raise

    def __aiter__(self):
        return self

    async def __anext__(self):
        if self._done:
            raise StopAsyncIteration
        if self._writer is None:
            await self._start()
        c = self._client
        try:
            while True:
                ev = await c._read_line(self._reader, None)
                if ev is None:
                    raise AgentboxConnectionError(
                        f"{c.socket_path}: the event stream ended without its end marker")
                if "ok" in ev:  # {"ok": true, "end": true} closes the stream
                    c._check(ev)
                    if ev.get("end"):
                        await self.aclose()
                        raise StopAsyncIteration
                    continue
                return ev
        except StopAsyncIteration:
            raise
        except BaseException:
            await self.aclose()
            raise

    async def aclose(self):
        self._done = True
        if self._writer is not None:
            w, self._writer = self._writer, None
            await AgentboxClient._close(w)

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc):
        await self.aclose()
        return False
