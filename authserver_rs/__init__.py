"""authserver_rs: protect an API with access tokens from the authorization server.

A resource-server library with no dependency on the server's own apps: it speaks to the
issuer only over HTTP (discovery, JWKS, introspection, the ``/apis.json`` catalogue).
README.md beside this file is the guide; the public API is what this module exports:

- ``TokenValidator`` / ``VerifiedToken``: check a token locally (JWT, RFC 9068) or by
  introspection (RFC 7662);
- ``ScopePolicy``: the scopes each method and path template needs, from a dict or the
  catalogue;
- ``Guard``: one request's decision (token location, token, scopes) for any framework;
- errors (``BearerError`` and its kinds) that know their RFC 6750 answer;
- adapters: ``authserver_rs.wsgi.BearerTokenMiddleware``, ``authserver_rs.django``
  (DRF ``BearerTokenAuthentication``, ``RequiredScopes``), ``authserver_rs.gateway.AuthRequestApp``
  (nginx ``auth_request``).
"""

from .errors import BearerError, InsufficientScope, InvalidRequest, InvalidToken, IssuerUnavailable, MissingToken
from .guard import Guard, bearer_token
from .policy import PathTemplate, Requirement, ScopePolicy
from .validator import MemoryCache, TokenValidator, VerifiedToken, certificate_thumbprint

__all__ = [
    "BearerError",
    "Guard",
    "InsufficientScope",
    "InvalidRequest",
    "InvalidToken",
    "IssuerUnavailable",
    "MemoryCache",
    "MissingToken",
    "PathTemplate",
    "Requirement",
    "ScopePolicy",
    "TokenValidator",
    "VerifiedToken",
    "bearer_token",
    "certificate_thumbprint",
]
