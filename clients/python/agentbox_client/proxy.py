"""The OpenHands orchestrator's agent interface over agentbox: ``execute_development_task(task,
context)`` returns ``{"success", "output", "error", "execution_time", "metadata"}`` and
publishes ``task_started``, ``task_completed``, ``task_failed`` and the finer agentbox events
(``llm_request``, ``tool_call``, ...) to a callback. Registering this class as the "openhands"
agent replaces the OpenHands SDK path (clients/python/README.md). Never raises for a task that
failed: failures are results, as the OpenHands agent proxy returns them; only a cancelled caller sees
CancelledError (after the task was cancelled on the server too)."""
import asyncio
import inspect
import logging
import os
import time
from typing import Any, Dict, Optional

from .client import AgentboxClient
from .errors import AgentboxConnectionError, AgentboxError

log = logging.getLogger("agentbox_client")

# Context keys copied into the task as they are (the task's own fields).
_TASK_FIELDS = ("model", "fallback_models", "max_iterations", "policy", "network", "limits",
                "outputs", "budget", "verify")
# Every context key build_task reads: anything else is refused (a typo must not pass).
CONTEXT_KEYS = frozenset(_TASK_FIELDS + (
    "task_id", "id", "timeout", "timeout_s", "workspace", "files", "workspace_files",
    "workspace_dir", "from_dir", "git", "metadata"))
# The summary events this proxy publishes itself, once per task, after the result is in.
_SUMMARY_EVENTS = ("task_completed", "task_failed")
_SERVER_CODE_TO_ERROR_TYPE = {
    "invalid_task": "VALIDATION_ERROR", "bad_request": "VALIDATION_ERROR",
    "too_large": "VALIDATION_ERROR", "duplicate_id": "VALIDATION_ERROR",
    "forbidden": "AUTHENTICATION_ERROR", "queue_full": "RATE_LIMIT_ERROR",
    "no_space": "RATE_LIMIT_ERROR",
    "shutting_down": "CONNECTION_ERROR", "connection_error": "CONNECTION_ERROR",
    "timeout": "TIMEOUT_ERROR",
}


def _env_timeout():
    try:
        return float(os.environ.get("OPENHANDS_TIMEOUT", "300"))
    except ValueError:
        return 300.0


class AgentboxAgentProxy:
    """``event_callback(event_type, payload)`` may be a plain function or a coroutine
    function; its exceptions are logged, never propagated into the task."""

    def __init__(self, socket_path: Optional[str] = None, event_callback: Any = None,
                 model: Optional[str] = None, timeout: Optional[float] = None,
                 policy: Optional[str] = None, client: Optional[AgentboxClient] = None,
                 wait_timeout: Optional[float] = None) -> None:
        self.client = client or AgentboxClient(socket_path)
        self.event_callback = event_callback
        self.model = model or os.environ.get("OPENHANDS_MODEL") or None
        self.timeout = timeout if timeout is not None else _env_timeout()
        self.policy = policy
        # Seconds this proxy waits for a result at most (queueing included); None: as long
        # as the server takes (agentbox enforces the task's own wall clock).
        self.wait_timeout = wait_timeout

    # ---- building the task ----

    def build_task(self, task_description: str,
                   context: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        """The agentbox task (docs/agent.md) for a description and the orchestrator's context.
        Context keys used: task_id/id, model, fallback_models, timeout/timeout_s,
        max_iterations, policy, network, limits, outputs, budget, metadata, workspace (the task's
        object) or files/workspace_files (path -> content) and workspace_dir/from_dir."""
        if not isinstance(task_description, str) or not task_description.strip():
            raise ValueError("task_description: expected a non-empty string")
        ctx = dict(context or {})
        unknown = sorted(str(k) for k in ctx if k not in CONTEXT_KEYS)
        if unknown:
            raise ValueError(f"context: unknown key{'s' if len(unknown) > 1 else ''} "
                             f"{', '.join(repr(k) for k in unknown)} (known: "
                             f"{', '.join(sorted(CONTEXT_KEYS))})")
        task: Dict[str, Any] = {"prompt": task_description}
        tid = ctx.get("task_id", ctx.get("id"))
        if tid is not None:
            task["id"] = str(tid)
        for key in _TASK_FIELDS:
            if ctx.get(key) is not None:
                task[key] = ctx[key]
        if "model" not in task and self.model:
            task["model"] = self.model
        if "policy" not in task and self.policy:
            task["policy"] = self.policy
        timeout = ctx.get("timeout_s", ctx.get("timeout"))
        if timeout is None:
            timeout = self.timeout
        if timeout is not None:
            task["timeout_s"] = float(timeout)
        ws = dict(ctx.get("workspace") or {})
        files = ctx.get("files", ctx.get("workspace_files"))
        if files:
            ws["files"] = {**(ws.get("files") or {}), **files}
        from_dir = ctx.get("workspace_dir", ctx.get("from_dir"))
        if from_dir:
            ws["from_dir"] = os.path.abspath(from_dir)
        git = ctx.get("git")  # {"repo", "rev"}, or "REPO@REV"
        if git:
            if isinstance(git, str):
                repo, _, rev = git.rpartition("@") if "@" in git else (git, "", "HEAD")
                git = {"repo": repo, "rev": rev or "HEAD"}
            if not isinstance(git, dict):
                raise ValueError("context.git: expected {\"repo\": PATH, \"rev\": REV} or \"PATH@REV\"")
            git = dict(git)
            if isinstance(git.get("repo"), str) and "://" not in git["repo"]:
                git["repo"] = os.path.abspath(git["repo"])
            ws["git"] = git
        if ws:
            task["workspace"] = ws
        if ctx.get("metadata") is not None:
            if not isinstance(ctx["metadata"], dict):
                raise ValueError("context.metadata: expected an object")
            task["metadata"] = ctx["metadata"]
        return task

    # ---- events ----

    async def _publish(self, event_type, payload):
        cb = self.event_callback
        if cb is None:
            return
        try:
            res = cb(event_type, payload)
            if inspect.isawaitable(res):
                await res
        except asyncio.CancelledError:
            raise
        except Exception:  # a broken subscriber must not break the task
            log.exception("agentbox event callback failed on %s", event_type)

    async def _follow(self, tid):
        """Publishes the task's events until its terminal one; the summary events are left
        to the caller, who publishes them with the result."""
        async with self.client.events(tid, follow=True) as stream:
            async for ev in stream:
                typ = ev.get("type")
                if not isinstance(typ, str) or typ in _SUMMARY_EVENTS:
                    continue
                await self._publish(typ, {**ev, "task_id": tid})

    # ---- the orchestrator's interface ----

    async def execute_development_task(self, task_description: str,
                                       context: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
        t0 = time.monotonic()
        try:
            task = self.build_task(task_description, context)
        except (ValueError, TypeError) as e:
            return await self._failed(None, "VALIDATION_ERROR", str(e), t0)
        try:
            tid = await self.client.submit(task)
        except AgentboxError as e:
            return await self._failed(task.get("id"), self._error_type(e), str(e), t0,
                                      server_code=e.code)
        try:
            result = await asyncio.wait_for(self._follow_and_wait(tid), self.wait_timeout)
        except asyncio.TimeoutError:
            await self._cancel_quietly(tid)
            return await self._failed(tid, "TIMEOUT_ERROR",
                                      f"no result within {self.wait_timeout}s; the task was cancelled",
                                      t0)
        except asyncio.CancelledError:
            await asyncio.shield(self._cancel_quietly(tid))
            raise
        except AgentboxError as e:
            return await self._failed(tid, self._error_type(e), str(e), t0, server_code=e.code)
        return await self._finished(tid, result, t0)

    async def _follow_and_wait(self, tid):
        try:
            await self._follow(tid)
        except AgentboxConnectionError as e:
            # the stream broke; the result may still be there
            log.warning("agentbox events of %s: %s", tid, e)
        return await self.client.wait(tid)

    async def _cancel_quietly(self, tid):
        try:
            await self.client.cancel(tid)
        except AgentboxError as e:
            log.warning("agentbox cancel of %s: %s", tid, e)

    @staticmethod
    def _error_type(e):
        return _SERVER_CODE_TO_ERROR_TYPE.get(e.code, "UNKNOWN_ERROR")

    async def _finished(self, tid, result, t0):
        status = result.get("status")
        success = status == "succeeded" and result.get("success") is True
        mock = status == "mock" or bool((result.get("metadata") or {}).get("mock"))
        err = result.get("error") if isinstance(result.get("error"), dict) else None
        if success:
            message = None
        elif mock:
            message = "mock result: no model answered (OPENHANDS_FALLBACK_TO_MOCK); nothing was done"
        elif err and err.get("reason"):
            # the agent's own ending (stuck, no_tool_calls, max_iterations, budget, error)
            message = f"{err.get('type', 'UNKNOWN_ERROR')} ({err['reason']}): {err.get('message', '')}"
        elif err:
            message = f"{err.get('type', 'UNKNOWN_ERROR')}: {err.get('message', '')}"
        else:
            message = f"task {status}"
        metadata = {
            "task_id": tid, "status": status, "mock": mock,
            "model": result.get("model"), "models_tried": result.get("models_tried"),
            "iterations": result.get("iterations"), "usage": result.get("usage"),
            "files": result.get("files"), "diff": result.get("diff"),
            "outputs_dir": result.get("outputs_dir"), "events_file": result.get("events_file"),
            "patch": result.get("patch"), "verify": result.get("verify"),
            "sandbox": result.get("sandbox"), "error": err,
            "error_reason": err.get("reason") if err else None,
            "agentbox_execution_time": result.get("execution_time"),
            "task_metadata": result.get("metadata"),
            "agentbox_result": result,
        }
        out = {"success": success, "output": result.get("output") or "", "error": message,
               "execution_time": time.monotonic() - t0, "metadata": metadata}
        await self._publish("task_completed" if success else "task_failed",
                            {"task_id": tid, "status": status, "success": success,
                             "error": message, "execution_time": out["execution_time"],
                             "result": result})
        return out

    async def _failed(self, tid, error_type, message, t0, server_code=None):
        """A task that never produced an agentbox result (refused, or no server)."""
        err = {"type": error_type, "message": message, "strategies": []}
        metadata = {"task_id": tid, "status": "failed", "mock": False, "error": err,
                    "agentbox_result": None}
        if server_code:
            metadata["server_error_code"] = server_code
        out = {"success": False, "output": "", "error": f"{error_type}: {message}",
               "execution_time": time.monotonic() - t0, "metadata": metadata}
        await self._publish("task_failed", {"task_id": tid, "status": "failed", "success": False,
                                            "error": out["error"],
                                            "execution_time": out["execution_time"],
                                            "result": None})
        return out

    # ---- the rest of what an orchestrator asks of an agent ----

    async def health(self):
        """The server's health; {"status": "unreachable", "error"} when there is none."""
        try:
            return await self.client.health()
        except AgentboxError as e:
            return {"status": "unreachable", "error": str(e)}

    async def cancel_task(self, task_id):
        return await self.client.cancel(task_id)


# The OpenHands name: the orchestrator registers this class as its "openhands" agent.
OpenHandsAgentProxy = AgentboxAgentProxy


class SyncAgentboxAgentProxy:
    """For callers without an event loop: each call runs its own (asyncio.run); calling it
    from inside a running loop raises RuntimeError (use AgentboxAgentProxy there)."""

    def __init__(self, *args, **kwargs):
        self._args = args
        self._kwargs = kwargs

    def execute_development_task(self, task_description, context=None):
        async def go():
            proxy = AgentboxAgentProxy(*self._args, **self._kwargs)
            return await proxy.execute_development_task(task_description, context)
        return asyncio.run(go())

    def health(self):
        async def go():
            return await AgentboxAgentProxy(*self._args, **self._kwargs).health()
        return asyncio.run(go())
