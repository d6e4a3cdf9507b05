"""Asyncio client for the agentbox socket protocol (docs/protocol.md): newline-delimited JSON
over a Unix stream socket. One connection per request, so that calls from many coroutines
never interleave on one stream and an ``events`` stream owns its connection. Stdlib only.
Never sends anything but the request it was asked to send; never trusts a reply's shape."""
import asyncio
import base64
import io
import json
import os
import socket
import tarfile
from typing import Any, AsyncIterator, Dict, List, Optional, Union

from .errors import (AgentboxConnectionError, AgentboxProtocolError, NotFound, ShuttingDown,
                     server_error)

DEFAULT_SOCKET = "/run/agentbox-api/agentbox.sock"
# Ops that may be sent again after a lost connection (a restarted server answers them the same).
_IDEMPOTENT = ("status", "wait", "events", "list", "health", "metrics", "artifact", "cancel")
# The server's inline upload limit (decoded tar bytes; docs/protocol.md).
UPLOAD_MAX_BYTES = 3_000_000
# Bigger archives go as a descriptor (a memfd over SCM_RIGHTS) up to this.
UPLOAD_FD_MAX_BYTES = 64 << 20
ARTIFACT_CHUNK = 1 << 20
# A reply line can carry a whole result (diff and all); the server bounds results at 256 MB.
REPLY_MAX_BYTES = 300 * 1024 * 1024


def default_socket() -> str:
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
    reply line of each request (not ``wait``'s wait, nor an ``events`` stream).
    ``reconnect_timeout``: how long a request keeps trying (with exponential backoff, 0.05 s
    doubling to 2 s) when the server is not there or the connection drops, e.g. while serve
    restarts; 0 disables it. A ``submit`` is only retried when it could not connect (it is
    never sent twice), ``wait`` and the other reads are sent again."""

    def __init__(self, socket_path: Optional[str] = None, connect_timeout: float = 10.0,
                 reply_max_bytes: int = REPLY_MAX_BYTES, reconnect_timeout: float = 30.0) -> None:
        self.socket_path = socket_path or default_socket()
        self.connect_timeout = connect_timeout
        self.reply_max_bytes = reply_max_bytes
        self.reconnect_timeout = reconnect_timeout

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

    async def _retrying(self, retry_on, attempt):
        """Runs attempt() again on the exceptions retry_on names until reconnect_timeout has
        passed since the first failure."""
        loop = asyncio.get_running_loop()
        deadline = None
        delay = 0.05
        while True:
            try:
                return await attempt()
            except retry_on:
                now = loop.time()
                if deadline is None:
                    deadline = now + max(0.0, self.reconnect_timeout)
                if now + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def request(self, op: str, reply_timeout: Any = "default", **fields: Any) -> Dict[str, Any]:
        """Sends {"op": op, **fields}; returns the reply object or raises. Retries on a
        connection error as the class docstring says."""
        if op in _IDEMPOTENT:  # a draining server's "shutting_down" ends a wait: ask the next one
            return await self._retrying((AgentboxConnectionError, ShuttingDown),
                                        lambda: self._request_once(op, reply_timeout, fields))
        return await self._request_once(op, reply_timeout, fields, connect_retry=True)

    async def _request_once(self, op, reply_timeout, fields, connect_retry=False):
        if connect_retry:
            reader, writer = await self._retrying(AgentboxConnectionError, self._open)
        else:
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

    async def submit(self, task: Union[str, Dict[str, Any]], workspace_tar: Optional[bytes] = None,
                     workspace_dir: Optional[str] = None) -> str:
        """Queues a task (a dict, the task object of docs/agent.md); returns its id. ``workspace_tar`` (the bytes of a
        tar archive) or ``workspace_dir`` (a local directory, archived here) is uploaded
        with the request, for a server that does not share this file system: inline up to
        UPLOAD_MAX_BYTES, as a memfd passed over the socket up to UPLOAD_FD_MAX_BYTES."""
        if isinstance(task, str):
            task = {"prompt": task}
        task = _absolute_from_dir(task)
        if workspace_dir is not None:
            if workspace_tar is not None:
                raise ValueError("give workspace_tar or workspace_dir, not both")
            workspace_tar = tar_directory(workspace_dir)
        fields: Dict[str, Any] = {"task": task}
        if workspace_tar is not None and len(workspace_tar) > UPLOAD_MAX_BYTES:
            if len(workspace_tar) > UPLOAD_FD_MAX_BYTES:
                raise ValueError(f"workspace archive of {len(workspace_tar)} bytes: the server "
                                 f"takes at most {UPLOAD_FD_MAX_BYTES}")
            reply = await asyncio.get_running_loop().run_in_executor(
                None, self._submit_with_fd, task, workspace_tar)
        else:
            if workspace_tar is not None:
                fields["workspace_tar"] = base64.b64encode(workspace_tar).decode()
            reply = await self.request("submit", **fields)
        tid = reply.get("id")
        if not isinstance(tid, str):
            raise AgentboxProtocolError("submit reply without an id")
        return tid

    def _submit_with_fd(self, task: Dict[str, Any], archive: bytes) -> Dict[str, Any]:
        """A submit whose archive travels as a memfd over SCM_RIGHTS (blocking; run in a
        thread)."""
        fd = os.memfd_create("agentbox-workspace.tar", os.MFD_CLOEXEC)
        try:
            os.write(fd, archive)
            line = json.dumps({"op": "submit", "task": task, "workspace_tar_fd": True},
                              separators=(",", ":")).encode() + b"\n"
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                s.settimeout(self.connect_timeout)
                try:
                    s.connect(self.socket_path)
                    socket.send_fds(s, [line], [fd])
                    reply = s.makefile("rb").readline(self.reply_max_bytes)
                except OSError as e:
                    raise AgentboxConnectionError(f"{self.socket_path}: {e.strerror or e}") from e
        finally:
            os.close(fd)
        try:
            obj = json.loads(reply)
        except ValueError as e:
            raise AgentboxProtocolError(f"reply is not JSON: {reply[:200]!r}") from e
        if not isinstance(obj, dict):
            raise AgentboxProtocolError(f"reply is not a JSON object: {reply[:200]!r}")
        return self._check(obj)

    async def status(self, task_id: str) -> Optional[Dict[str, Any]]:
        """The task's summary: {"id", "status", "submitted", "started", "ended", ...}."""
        return (await self.request("status", id=task_id)).get("task")

    async def wait(self, task_id: str, timeout: Optional[float] = None) -> Dict[str, Any]:
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

    async def cancel(self, task_id: str) -> Dict[str, Any]:
        """Asks the server to cancel; returns {"status", "cancelling"}. The task's result
        (status "cancelled") comes from ``wait``."""
        reply = await self.request("cancel", id=task_id)
        return {k: v for k, v in reply.items() if k != "ok"}

    def events(self, task_id: str = "all", follow: bool = True,
               since_seq: Optional[int] = None) -> "EventStream":
        """An EventStream (async iterator of event objects): a task's earlier events, then,
        with follow, its live ones until its terminal event; "all": every task's live
        events. Use ``async with client.events(id) as stream: async for ev in stream`` (or
        call ``aclose()``) so that breaking out of the loop closes the connection at once.
        ``since_seq``: only events with a larger ``seq`` (a consumer that saw up to N picks
        up after N, e.g. after a reconnect)."""
        return EventStream(self, task_id, follow, since_seq)

    async def list(self) -> List[Dict[str, Any]]:
        return (await self.request("list")).get("tasks") or []

    async def health(self) -> Dict[str, Any]:
        reply = await self.request("health")
        return {k: v for k, v in reply.items() if k != "ok"}

    async def metrics(self) -> str:
        """Prometheus text format."""
        text = (await self.request("metrics")).get("text")
        if not isinstance(text, str):
            raise AgentboxProtocolError("metrics reply without text")
        return text

    async def run(self, task: Union[str, Dict[str, Any]], timeout: Optional[float] = None,
                  **upload: Any) -> Dict[str, Any]:
        """submit + wait."""
        return await self.wait(await self.submit(task, **upload), timeout=timeout)

    # ---- files (the artifact op) ----

    async def artifact(self, task_id: str, name: str) -> bytes:
        """A finished task's file as bytes: "result.json", "events.jsonl", "patch.diff" or
        "outputs/PATH", fetched in chunks of at most 1 MiB."""
        data = bytearray()
        while True:
            r = await self.request("artifact", id=task_id, name=name, offset=len(data),
                                   length=ARTIFACT_CHUNK)
            chunk = base64.b64decode(r.get("data") or "")
            data += chunk
            if r.get("eof") or not chunk:
                return bytes(data)

    async def patch(self, task_id: str) -> bytes:
        """The task's patch (git workspaces), b"" when there is none."""
        try:
            return await self.artifact(task_id, "patch.diff")
        except NotFound:
            return b""

    async def outputs(self, task_id: str) -> List[Dict[str, Any]]:
        """The task's output files: [{"path": "outputs/...", "size": N}]."""
        return (await self.request("artifact", id=task_id, name="outputs/")).get("files") or []

    async def download_outputs(self, task_id: str, dest_dir: str) -> List[str]:
        """Saves every output file below dest_dir (paths as in the task's outputs dir, new
        files only, no link followed); returns the local paths."""
        saved = []
        root = os.path.realpath(dest_dir)
        for entry in await self.outputs(task_id):
            rel = str(entry.get("path", ""))[len("outputs/"):]
            parts = rel.split("/")
            if not rel or rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
                raise AgentboxProtocolError(f"unsafe output path from the server: {rel!r}")
            data = await self.artifact(task_id, "outputs/" + rel)
            path = os.path.join(root, *parts)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            if os.path.realpath(os.path.dirname(path)) != os.path.dirname(path):
                raise AgentboxProtocolError(f"{path}: a link in the destination")
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            saved.append(path)
        return saved


def tar_directory(path: str) -> bytes:
    """A tar archive (bytes) of the regular files, directories and symlinks below path."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name in sorted(os.listdir(path)):
            t.add(os.path.join(path, name), arcname=name, recursive=True)
    return buf.getvalue()


class EventStream:
    """One ``events`` request and its connection."""

    def __init__(self, client: AgentboxClient, task_id: str, follow: bool,
                 since_seq: Optional[int] = None) -> None:
        self._client = client
        self._task_id = task_id
        self._follow = bool(follow)
        self._since = since_seq
        self._reader = None
        self._writer = None
        self._done = False

    async def _start(self):
        c = self._client
        self._reader, self._writer = await c._retrying(AgentboxConnectionError, c._open)
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
                seq = ev.get("seq")
                if self._since is not None and isinstance(seq, int) and seq <= self._since:
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
