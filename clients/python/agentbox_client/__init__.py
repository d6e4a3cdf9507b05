"""agentbox_client: a stdlib-only asyncio client for ``agentbox serve`` (docs/protocol.md) and
an adapter with the OpenHands orchestrator's agent interface (OpenHandsAgentProxy). Python 3.9+."""
from .client import DEFAULT_SOCKET, AgentboxClient, EventStream, default_socket
from .errors import (AGENT_END_REASONS, AgentboxConnectionError, AgentboxError,
                     AgentboxProtocolError,
                     AgentboxServerError, BadRequest, DuplicateId, Forbidden, InternalError,
                     InvalidTask, NoSpace, NotFound, QueueFull, ShuttingDown, TooLarge, UnknownOp,
                     WaitTimeout)
from .proxy import AgentboxAgentProxy, OpenHandsAgentProxy, SyncAgentboxAgentProxy

__version__ = "0.1.0"
__all__ = [
    "AgentboxClient", "EventStream", "DEFAULT_SOCKET", "default_socket",
    "AgentboxAgentProxy", "OpenHandsAgentProxy", "SyncAgentboxAgentProxy",
    "AgentboxError", "AgentboxConnectionError", "AgentboxProtocolError", "AgentboxServerError",
    "BadRequest", "TooLarge", "UnknownOp", "NotFound", "DuplicateId", "InvalidTask", "Forbidden",
    "ShuttingDown", "QueueFull", "WaitTimeout", "InternalError", "AGENT_END_REASONS",
    "NoSpace",
]
