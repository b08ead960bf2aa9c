"""One request, one decision: the framework-neutral core every adapter calls.

``Guard.check`` takes what any web framework knows about a request (method, path, the
``Authorization`` header, the query string, whether a form body carries ``access_token``, the
client certificate's thumbprint) and returns the ``VerifiedToken`` (None for a public
endpoint) or raises the ``BearerError`` to answer, in this order:

1. a token in the URL query or a form body: 400 ``invalid_request`` (RFC 6750 §2.3 and
   OAUTH-NL: tokens never travel in URLs; RFC 9700 §4.3.2; a form body is refused too, so the
   header is the only way in);
2. a public endpoint of the scope policy: no token needed;
3. no ``Authorization: Bearer`` header: 401 without an error code (RFC 6750 §3.1);
   a malformed one: 400 ``invalid_request``;
4. the token is checked (``TokenValidator.verify``): 401 ``invalid_token``;
5. the endpoint's scopes (``ScopePolicy.check``): 403 ``insufficient_scope`` naming them.
"""

from __future__ import annotations

import re
import urllib.parse

from .errors import InvalidRequest, MissingToken
from .policy import ScopePolicy
from .validator import TokenValidator, VerifiedToken

__all__ = ["Guard", "bearer_token", "token_in_query"]

# RFC 6750 §2.1: credentials = "Bearer" 1*SP b64token.
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")


def bearer_token(authorization: str | None) -> str:
    """The token of an ``Authorization: Bearer <token>`` header (the scheme is case-insensitive)."""
    if authorization is None or not authorization.strip():
        raise MissingToken("This endpoint needs an access token in the Authorization header (Bearer).")
    scheme, _, credentials = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        # Another scheme (Basic, DPoP, ...) is not a malformed bearer header: ask for a bearer token.
        raise MissingToken("This endpoint needs an access token in the Authorization header (Bearer).")
    token = credentials.strip()
    if not token:
        raise InvalidRequest("The Authorization header has the Bearer scheme but no token.")
    if not _B64TOKEN.fullmatch(token):
        raise InvalidRequest("The Authorization header is malformed: Bearer takes exactly one token (RFC 6750 §2.1).")
    return token


def token_in_query(query_string: str) -> bool:
    return any(name == "access_token" for name, _ in urllib.parse.parse_qsl(query_string, keep_blank_values=True))


class Guard:
    """A validator and a scope policy, and the realm to name in challenges."""

    def __init__(self, validator: TokenValidator, scope_policy: ScopePolicy | None = None, *, realm: str | None = None):
        self.validator = validator
        self.scope_policy = scope_policy
        self.realm = realm or validator.audience

    def check(
        self,
        *,
        method: str,
        path: str,
        authorization: str | None,
        query_string: str = "",
        form_access_token: bool = False,
        client_certificate_thumbprint: str | None = None,
    ) -> VerifiedToken | None:
        """The verified token (None on a public endpoint), or raise the ``BearerError`` to answer.

        Without a scope policy every valid token passes; with one, the endpoint's scopes decide
        and an endpoint it does not cover is refused.
        """
        if token_in_query(query_string):
            raise InvalidRequest("Send the access token in the Authorization header, never in the URL (RFC 6750 §2.3).")
        if form_access_token:
            raise InvalidRequest("Send the access token in the Authorization header, not in the request body.")
        requirement = self.scope_policy.match(method, path) if self.scope_policy is not None else None
        if requirement is not None and requirement.public:
            return None
        token = self.validator.verify(
            bearer_token(authorization), client_certificate_thumbprint=client_certificate_thumbprint
        )
        if self.scope_policy is not None:
            self.scope_policy.check(method, path, token)
        return token
