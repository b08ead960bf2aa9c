"""The errors a protected resource answers (RFC 6750 §3), and how they are written.

Every refusal is a ``BearerError``: its HTTP status, the RFC 6750 ``error`` code (none when
the request carried no token at all, RFC 6750 §3.1), a description for the developer, and
for ``insufficient_scope`` the scope the resource needs. ``challenge`` writes the
``WWW-Authenticate`` header and ``body`` an RFC 9457 problem document, so every adapter
(WSGI, DRF, the nginx ``auth_request`` app) answers the same way.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable

__all__ = [
    "BearerError",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "IssuerUnavailable",
    "MissingToken",
]

# RFC 6750 §3: error_description and scope values are %x20-21 / %x23-5B / %x5D-7E (no " or \).
_UNSAFE = re.compile(r"[^\x20\x21\x23-\x5b\x5d-\x7e]")
_TITLES = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}


def quoted_value(value: str) -> str:
    """A value that may stand between the quotes of an RFC 6750 auth-param."""
    return _UNSAFE.sub("'", value.replace('"', "'").replace("\\", "/"))


def bearer_challenge(realm: str, error: str | None = None, description: str = "", scope: Iterable[str] = ()) -> str:
    """``Bearer realm="...", error="...", error_description="...", scope="..."`` (RFC 6750 §3)."""
    params = [f'realm="{quoted_value(realm)}"']
    if error:
        params.append(f'error="{error}"')
        if description:
            params.append(f'error_description="{quoted_value(description)}"')
    scopes = " ".join(scope)
    if scopes:
        params.append(f'scope="{quoted_value(scopes)}"')
    return "Bearer " + ", ".join(params)


class BearerError(Exception):
    """A request the resource refuses. ``error`` is None when no token was sent at all."""

    status: int = 401
    error: str | None = None

    def __init__(self, description: str, *, scope: Iterable[str] = ()) -> None:
        super().__init__(description)
        self.description = description
        self.scope = tuple(scope)

    def challenge(self, realm: str) -> str | None:
        """The ``WWW-Authenticate`` value, or None when the answer carries none."""
        return bearer_challenge(realm, self.error, self.description, self.scope)

    def headers(self, realm: str) -> list[tuple[str, str]]:
        headers = [
            ("Content-Type", "application/problem+json"),
            ("Cache-Control", "no-store"),
        ]
        challenge = self.challenge(realm)
        if challenge is not None:
            headers.append(("WWW-Authenticate", challenge))
        return headers

    def body(self) -> bytes:
        """RFC 9457 problem details, with the RFC 6750 ``error`` (and ``scope``) as extensions."""
        problem: dict[str, object] = {
            "type": "about:blank",
            "title": _TITLES.get(self.status, "Error"),
            "status": self.status,
            "detail": self.description,
        }
        if self.error:
            problem["error"] = self.error
        if self.scope:
            problem["scope"] = " ".join(self.scope)
        return json.dumps(problem).encode()

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.description!r})"


class MissingToken(BearerError):
    """RFC 6750 §3.1: no token (or another scheme): 401 with a bare challenge, no error code."""

    status = 401
    error = None


class InvalidRequest(BearerError):
    """RFC 6750 §3.1 invalid_request: a malformed Authorization header, or a token sent in the
    URL query or a form body (refused: RFC 6750 §2.3, OAUTH-NL, RFC 9700 §4.3.2)."""

    status = 400
    error = "invalid_request"


class InvalidToken(BearerError):
    """RFC 6750 §3.1 invalid_token: expired, revoked, malformed, wrongly signed, or not for us."""

    status = 401
    error = "invalid_token"


class InsufficientScope(BearerError):
    """RFC 6750 §3.1 insufficient_scope: a valid token without the scope(s) the endpoint needs."""

    status = 403
    error = "insufficient_scope"


class IssuerUnavailable(BearerError):
    """The token cannot be checked now: the issuer's discovery, JWKS or introspection endpoint
    did not answer usefully. 503, not 401: the token may well be valid."""

    status = 503
    error = None

    def challenge(self, realm: str) -> str | None:
        return None

    def headers(self, realm: str) -> list[tuple[str, str]]:
        return [*super().headers(realm), ("Retry-After", "5")]
