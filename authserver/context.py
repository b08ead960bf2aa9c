"""Per-request context (request id, caller address) for logs and audit rows."""

from __future__ import annotations

import contextvars
from dataclasses import dataclass


@dataclass(frozen=True)
class RequestContext:
    request_id: str
    ip_address: str | None


_context: contextvars.ContextVar[RequestContext | None] = contextvars.ContextVar(
    "authserver_request_context", default=None
)


def current_request_context() -> RequestContext | None:
    return _context.get()


def set_request_context(context: RequestContext | None) -> contextvars.Token:
    return _context.set(context)


def reset_request_context(token: contextvars.Token) -> None:
    _context.reset(token)
