"""WSGI middleware: every request passes the guard before the application sees it.

    from authserver_rs import ScopePolicy, TokenValidator
    from authserver_rs.wsgi import BearerTokenMiddleware

    application = BearerTokenMiddleware(application, validator, scope_policy)

The application finds the ``VerifiedToken`` in ``environ["authserver_rs.token"]`` (None on a
public endpoint). The scope policy is matched against ``PATH_INFO``: the path within the
application, as the API's OpenAPI document writes it (use ``base_path`` for a prefix).
Refusals are answered here, as RFC 6750 says (status, ``WWW-Authenticate``) with an RFC 9457
problem body, and ``Cache-Control: no-store``.
"""

from __future__ import annotations

import io
import urllib.parse
from collections.abc import Callable, Iterable
from typing import Any

from .errors import BearerError, InvalidRequest
from .guard import Guard
from .policy import ScopePolicy
from .validator import TokenValidator

__all__ = ["ENVIRON_KEY", "BearerTokenMiddleware"]

ENVIRON_KEY = "authserver_rs.token"
FORM = "application/x-www-form-urlencoded"
# A form body larger than this is not searched for a token (and is refused): 1 MiB.
MAX_FORM_BYTES = 1024 * 1024

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

_REASONS = {400: "Bad Request", 401: "Unauthorized", 403: "Forbidden", 503: "Service Unavailable"}


def error_response(error: BearerError, realm: str, start_response: StartResponse) -> list[bytes]:
    body = error.body()
    headers = [*error.headers(realm), ("Content-Length", str(len(body)))]
    start_response(f"{error.status} {_REASONS.get(error.status, 'Error')}", headers)
    return [body]


def form_has_access_token(environ: dict[str, Any]) -> bool:
    """Whether a form-encoded body carries ``access_token``; the body stays readable for the app."""
    content_type = (environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
    if content_type != FORM:
        return False
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        raise InvalidRequest("The Content-Length header is not a number.") from None
    if length <= 0:
        return False
    if length > MAX_FORM_BYTES:
        raise InvalidRequest("The form body is too large.")
    body = environ["wsgi.input"].read(length)
    environ["wsgi.input"] = io.BytesIO(body)
    fields = urllib.parse.parse_qsl(body.decode("latin-1"), keep_blank_values=True)
    return any(name == "access_token" for name, _ in fields)


def request_path(environ: dict[str, Any]) -> str:
    """PATH_INFO as text: the path within the application, as OpenAPI paths are written.

    PEP 3333 hands it over as bytes decoded as latin-1; the bytes are UTF-8 on the wire.
    """
    path = environ.get("PATH_INFO") or "/"
    try:
        return path.encode("latin-1").decode("utf-8")
    except UnicodeError:
        return path


class BearerTokenMiddleware:
    """Protects a WSGI application with bearer tokens and, optionally, a scope policy.

    ``client_certificate``: a function of the environ that returns the SHA-256 thumbprint of
    the request's client certificate (``certificate_thumbprint``), for certificate-bound
    tokens (RFC 8705); take it only from a TLS terminator you trust.
    """

    def __init__(
        self,
        app: WSGIApp,
        validator: TokenValidator,
        scope_policy: ScopePolicy | None = None,
        *,
        realm: str | None = None,
        client_certificate: Callable[[dict[str, Any]], str | None] | None = None,
    ) -> None:
        self.app = app
        self.guard = Guard(validator, scope_policy, realm=realm)
        self.client_certificate = client_certificate

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        try:
            token = self.guard.check(
                method=environ.get("REQUEST_METHOD", "GET"),
                path=request_path(environ),
                authorization=environ.get("HTTP_AUTHORIZATION"),
                query_string=environ.get("QUERY_STRING") or "",
                form_access_token=form_has_access_token(environ),
                client_certificate_thumbprint=self.client_certificate(environ) if self.client_certificate else None,
            )
        except BearerError as error:
            return error_response(error, self.guard.realm, start_response)
        environ[ENVIRON_KEY] = token
        return self.app(environ, start_response)
