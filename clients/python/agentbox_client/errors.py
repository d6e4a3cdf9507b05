"""Exceptions of the agentbox client. Every error the server reports keeps its wire code
(docs/protocol.md) in ``.code``; transport trouble and malformed replies have their own
classes so that a caller can tell "the server said no" from "no server"."""


# error.reason of a result that the agent itself ended (docs/errors.md): no LLM error, the
# loop stopped. "stuck": the same action or error over and over; "no_tool_calls": replies
# without a tool call, nudges included; "max_iterations": the task's iteration limit;
# "budget": its token or cost budget; "error": the agent could not go on.
AGENT_END_REASONS = ("stuck", "no_tool_calls", "max_iterations", "budget", "error",
                     "protocol_violation")


class AgentboxError(Exception):
    """Base class. ``code`` is the server's error code (or a client-side one)."""

    code = "error"

    def __init__(self, message, code=None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self):
        return f"{self.code}: {self.message}"


class AgentboxConnectionError(AgentboxError, ConnectionError):
    """The socket could not be reached, or the server went away mid-reply."""

    code = "connection_error"


class AgentboxProtocolError(AgentboxError):
    """The server's reply was not what docs/protocol.md says (not JSON, no "ok", too long)."""

    code = "protocol_error"


class AgentboxServerError(AgentboxError):
    """The server answered {"ok": false, "error": {"code", "message"}}."""


class BadRequest(AgentboxServerError):
    code = "bad_request"


class TooLarge(AgentboxServerError):
    code = "too_large"


class UnknownOp(AgentboxServerError):
    code = "unknown_op"


class NotFound(AgentboxServerError):
    """No such task for this caller: never submitted, forgotten by retention, or another
    uid's task (a task belongs to the uid that submitted it; only root, the server's uid
    and --admin-gid members see every task)."""
    code = "not_found"


class DuplicateId(AgentboxServerError):
    code = "duplicate_id"


class InvalidTask(AgentboxServerError):
    code = "invalid_task"


class Forbidden(AgentboxServerError):
    code = "forbidden"


class ShuttingDown(AgentboxServerError):
    code = "shutting_down"


class QueueFull(AgentboxServerError):
    code = "queue_full"


class WaitTimeout(AgentboxServerError, TimeoutError):
    """``wait`` with a timeout returned before the task ended (the task goes on)."""

    code = "timeout"


class InternalError(AgentboxServerError):
    code = "internal"


class NoSpace(AgentboxServerError):
    """The server's state disk is full: the task was not accepted (try again later)."""

    code = "no_space"


_BY_CODE = {cls.code: cls for cls in (BadRequest, TooLarge, UnknownOp, NotFound, DuplicateId,
                                      InvalidTask, Forbidden, ShuttingDown, QueueFull,
                                      WaitTimeout, InternalError, NoSpace)}


def server_error(code, message):
    """The exception for a server error reply; unknown codes keep their code."""
    cls = _BY_CODE.get(code, AgentboxServerError)
    return cls(message, code=code)
