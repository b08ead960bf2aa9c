"""A WSGI validation endpoint for nginx ``auth_request``: protect an API without changing it.

nginx sends a subrequest for every API request with the original ``Authorization`` header and
the original method and URI in ``X-Original-Method`` and ``X-Original-URI``::

    location = /_auth {
        internal;
        proxy_pass http://validator;   # this app
        proxy_pass_request_body off;
        proxy_set_header Content-Length "";
        proxy_set_header X-Original-Method $request_method;
        proxy_set_header X-Original-URI $request_uri;
    }

The app runs the guard (``authserver_rs.guard``) and answers:

- **204** with the verified identity in ``X-Client-Id``, ``X-Organisation-Id`` (OIN, else KvK
  number, else eIDAS identifier), ``X-Scopes`` (space separated) and ``X-Subject``, which nginx
  copies with ``auth_request_set`` onto the upstream request (after stripping what the client
  sent under those names);
- **401/403** with the RFC 6750 ``WWW-Authenticate`` header, for nginx to pass back.

nginx ``auth_request`` understands only 2xx, 401 and 403 (anything else becomes a 500), so a
refusal with another status (400 ``invalid_request`` for a token in the URL, 503 when the
issuer cannot be asked) is answered as 401, and the status to show the client is in
``X-Auth-Status`` (always set), for the gateway to restore. A form body is not seen by the
subrequest, so only the header and the query string are checked here.
"""

from __future__ import annotations

import logging
import re
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from .errors import BearerError
from .guard import Guard
from .policy import ScopePolicy
from .validator import TokenValidator, VerifiedToken, certificate_thumbprint

__all__ = ["IDENTITY_HEADERS", "AuthRequestApp"]

log = logging.getLogger("authserver_rs")

IDENTITY_HEADERS = ("X-Client-Id", "X-Organisation-Id", "X-Scopes", "X-Subject")
_HEADER_UNSAFE = re.compile(r"[^\x20-\x7e]")
StartResponse = Callable[..., Any]


def _header_value(value: str) -> str:
    return _HEADER_UNSAFE.sub("", value)


class AuthRequestApp:
    """The validation endpoint behind nginx ``auth_request`` (see the module docstring).

    ``certificate_header``: the header in which the gateway passes the client certificate
    (nginx ``$ssl_client_escaped_cert``), for certificate-bound tokens (RFC 8705). This app
    must be reachable only by the gateway, which sets (or clears) that header itself.
    """

    def __init__(
        self,
        validator: TokenValidator,
        scope_policy: ScopePolicy | None = None,
        *,
        realm: str | None = None,
        method_header: str = "X-Original-Method",
        uri_header: str = "X-Original-URI",
        certificate_header: str | None = None,
    ) -> None:
        self.guard = Guard(validator, scope_policy, realm=realm)
        self.method_key = _environ_key(method_header)
        self.uri_key = _environ_key(uri_header)
        self.certificate_key = _environ_key(certificate_header) if certificate_header else None

    def identity(self, token: VerifiedToken | None) -> list[tuple[str, str]]:
        """The headers for the upstream; empty values on a public endpoint."""
        if token is None:
            return [(name, "") for name in IDENTITY_HEADERS]
        values = (token.client_id, token.organisation_id or "", " ".join(sorted(token.scopes)), token.sub or "")
        return [(name, _header_value(value)) for name, value in zip(IDENTITY_HEADERS, values, strict=True)]

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, uri = environ.get(self.method_key), environ.get(self.uri_key)
        if not method or not uri:
            log.error("authserver_rs gateway: the subrequest lacks the original method or URI headers")
            start_response("500 Internal Server Error", [("Content-Type", "text/plain"), ("X-Auth-Status", "500")])
            return [b"The gateway does not pass the original method and URI.\n"]
        parts = urllib.parse.urlsplit(uri)
        try:
            token = self.guard.check(
                method=method,
                path=urllib.parse.unquote(parts.path or "/"),
                authorization=environ.get("HTTP_AUTHORIZATION"),
                query_string=parts.query,
                client_certificate_thumbprint=self._thumbprint(environ),
            )
        except BearerError as error:
            status = error.status if error.status in (401, 403) else 401
            headers = [*error.headers(self.guard.realm), ("X-Auth-Status", str(error.status))]
            start_response(f"{status} {'Forbidden' if status == 403 else 'Unauthorized'}", headers)
            return [error.body()]
        start_response(
            "204 No Content", [*self.identity(token), ("X-Auth-Status", "204"), ("Cache-Control", "no-store")]
        )
        return []

    def _thumbprint(self, environ: dict[str, Any]) -> str | None:
        if self.certificate_key is None:
            return None
        value = environ.get(self.certificate_key)
        if not value:
            return None
        try:
            return certificate_thumbprint(value)
        except ValueError:
            log.warning("authserver_rs gateway: the client certificate header is not a certificate")
            return None


def _environ_key(header: str) -> str:
    return "HTTP_" + header.upper().replace("-", "_")
