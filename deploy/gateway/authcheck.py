#!/usr/bin/env python3
"""The gateway's validation endpoint: ``authserver_rs.gateway.AuthRequestApp``, configured
from the environment, for nginx ``auth_request`` (deploy/gateway/gateway.conf).

Production, with gunicorn (the repository on PYTHONPATH for ``authserver_rs``):

    PYTHONPATH=/opt/authserver gunicorn --bind 127.0.0.1:8002 --workers 4 \\
        --chdir /opt/authserver/deploy/gateway authcheck:application

Development: ``python deploy/gateway/authcheck.py`` (the standard library's server, on
``GATEWAY_CHECK_BIND``, default ``127.0.0.1:8002``).

Settings (deploy/gateway/README.md has the table):

- ``GATEWAY_ISSUER`` (required): the authorization server's issuer URL.
- ``GATEWAY_AUDIENCE`` (required): the API's audience, its RFC 8707 resource indicator.
- ``GATEWAY_MODE``: ``introspection`` (default) or ``jwt``.
- ``GATEWAY_CLIENT_ID`` and ``GATEWAY_CLIENT_SECRET`` or ``GATEWAY_CLIENT_SECRET_FILE``, or
  ``GATEWAY_PRIVATE_KEY_FILE`` (PEM; ``GATEWAY_PRIVATE_KEY_ID``, ``GATEWAY_PRIVATE_KEY_ALG``):
  the resource server's own credentials, for introspection.
- ``GATEWAY_SCOPES``: ``catalogue`` (default: the scopes per endpoint from the issuer's
  ``/apis.json`` for the audience) or the path of a JSON file ``{"GET /orders": ["orders:read"]}``.
- ``GATEWAY_PUBLIC``: endpoints that need no token, e.g. ``GET /healthz, GET /openapi.json``.
- ``GATEWAY_INTROSPECTION_CACHE_SECONDS`` (default 0), ``GATEWAY_CLOCK_SKEW`` (default 30),
  ``GATEWAY_TIMEOUT`` (default 5), ``GATEWAY_REALM`` (default the audience),
  ``GATEWAY_ALLOW_INSECURE_HTTP`` (default false: https only, except to loopback).

Beyond what the library answers, this adds ``X-Auth-Detail`` to a refusal: the problem's
``detail``, which nginx cannot read from the body of a subrequest and puts in its own
problem document.
"""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from authserver_rs.errors import quoted_value
from authserver_rs.gateway import AuthRequestApp
from authserver_rs.policy import ScopePolicy
from authserver_rs.validator import TokenValidator

__all__ = ["ConfigError", "application", "from_environ", "main"]

log = logging.getLogger("authserver_gateway")

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]

# The header nginx fills from $ssl_client_escaped_cert (snippets/authserver-gateway-check.conf).
CERTIFICATE_HEADER = "X-SSL-Client-Cert"
_TRUE = ("1", "true", "yes", "on")


class ConfigError(ValueError):
    """A setting the check cannot start with; the message names it."""


def _text(environ: Mapping[str, str], name: str, default: str = "") -> str:
    return environ.get(name, "").strip() or default


def _number(environ: Mapping[str, str], name: str, default: float) -> float:
    value = _text(environ, name)
    if not value:
        return default
    try:
        number = float(value)
    except ValueError:
        raise ConfigError(f"{name} is a number, not {value!r}") from None
    if number < 0:
        raise ConfigError(f"{name} is not negative")
    return number


def _read(path: str, name: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"{name}: cannot read {path}: {exc.strerror}") from None


def _credentials(environ: Mapping[str, str]) -> dict[str, Any]:
    client_id = _text(environ, "GATEWAY_CLIENT_ID")
    secret = environ.get("GATEWAY_CLIENT_SECRET", "")
    if _text(environ, "GATEWAY_CLIENT_SECRET_FILE"):
        secret = _read(environ["GATEWAY_CLIENT_SECRET_FILE"].strip(), "GATEWAY_CLIENT_SECRET_FILE")
    key_file = _text(environ, "GATEWAY_PRIVATE_KEY_FILE")
    if not client_id:
        raise ConfigError("introspection needs the resource server's own client: set GATEWAY_CLIENT_ID")
    if bool(secret) == bool(key_file):
        raise ConfigError(
            "introspection needs exactly one credential: GATEWAY_CLIENT_SECRET(_FILE) or GATEWAY_PRIVATE_KEY_FILE"
        )
    if secret:
        return {"client_id": client_id, "client_secret": secret}
    return {
        "client_id": client_id,
        "private_key": _read(key_file, "GATEWAY_PRIVATE_KEY_FILE"),
        "private_key_id": _text(environ, "GATEWAY_PRIVATE_KEY_ID") or None,
        "private_key_algorithm": _text(environ, "GATEWAY_PRIVATE_KEY_ALG", "RS256"),
    }


def _public(environ: Mapping[str, str]) -> list[str]:
    return [item.strip() for item in re.split(r"[,\n]", environ.get("GATEWAY_PUBLIC", "")) if item.strip()]


def _scope_policy(environ: Mapping[str, str], *, issuer: str, audience: str, insecure: bool) -> ScopePolicy:
    source = _text(environ, "GATEWAY_SCOPES", "catalogue")
    public = _public(environ)
    if source == "catalogue":
        return ScopePolicy.from_server(issuer, audience=audience, public=public, allow_insecure_http=insecure)
    try:
        rules = json.loads(_read(source, "GATEWAY_SCOPES"))
    except ValueError as exc:
        raise ConfigError(f"GATEWAY_SCOPES: {source} is not JSON: {exc}") from None
    if not isinstance(rules, dict):
        raise ConfigError(f'GATEWAY_SCOPES: {source} is not a JSON object {{"METHOD /path": [scopes]}}')
    try:
        return ScopePolicy(rules, public=public)
    except ValueError as exc:
        raise ConfigError(f"GATEWAY_SCOPES: {exc}") from None


def from_environ(environ: Mapping[str, str]) -> WSGIApp:
    """The validation endpoint for these settings; ``ConfigError`` names a bad one."""
    issuer, audience = _text(environ, "GATEWAY_ISSUER"), _text(environ, "GATEWAY_AUDIENCE")
    if not issuer or not audience:
        raise ConfigError("set GATEWAY_ISSUER (the issuer URL) and GATEWAY_AUDIENCE (the API's resource indicator)")
    mode = _text(environ, "GATEWAY_MODE", "introspection")
    if mode not in ("introspection", "jwt"):
        raise ConfigError(f"GATEWAY_MODE is introspection or jwt, not {mode!r}")
    insecure = _text(environ, "GATEWAY_ALLOW_INSECURE_HTTP").lower() in _TRUE
    try:
        validator = TokenValidator(
            issuer,
            audience,
            mode="introspection" if mode == "introspection" else "jwt",
            clock_skew=int(_number(environ, "GATEWAY_CLOCK_SKEW", 30)),
            timeout=_number(environ, "GATEWAY_TIMEOUT", 5),
            introspection_cache_seconds=int(_number(environ, "GATEWAY_INTROSPECTION_CACHE_SECONDS", 0)),
            allow_insecure_http=insecure,
            **(_credentials(environ) if mode == "introspection" else {}),
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    policy = _scope_policy(environ, issuer=issuer, audience=audience, insecure=insecure)
    check = AuthRequestApp(
        validator, policy, realm=_text(environ, "GATEWAY_REALM") or None, certificate_header=CERTIFICATE_HEADER
    )
    return with_detail_header(check)


def with_detail_header(app: WSGIApp) -> WSGIApp:
    """Copy a refusal's problem ``detail`` into ``X-Auth-Detail`` for nginx (see the docstring)."""

    def wrapped(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        captured: dict[str, Any] = {}

        def capture(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            captured.update(status=status, headers=headers, exc_info=exc_info)
            return lambda data: None  # the body is returned, never written (authserver_rs.gateway)

        body = b"".join(app(environ, capture))
        headers = list(captured["headers"])
        if not captured["status"].startswith("2"):
            try:
                detail = json.loads(body).get("detail")
            except (ValueError, AttributeError):
                detail = None
            if isinstance(detail, str) and detail:
                headers.append(("X-Auth-Detail", quoted_value(detail)[:500]))
        start_response(captured["status"], headers, captured["exc_info"])
        return [body] if body else []

    return wrapped


class _FromEnvironment:
    """``application`` for gunicorn: built from ``os.environ`` on the first request."""

    def __init__(self) -> None:
        self._app: WSGIApp | None = None
        self._lock = threading.Lock()

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if self._app is None:
            with self._lock:
                if self._app is None:
                    self._app = from_environ(os.environ)
        return self._app(environ, start_response)


application = _FromEnvironment()


def main() -> int:
    from socketserver import ThreadingMixIn
    from wsgiref.simple_server import WSGIServer, make_server

    class ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
        daemon_threads = True

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        app = from_environ(os.environ)
    except ConfigError as exc:
        print(f"authcheck: {exc}", file=sys.stderr)
        return 2
    host, _, port = _text(os.environ, "GATEWAY_CHECK_BIND", "127.0.0.1:8002").rpartition(":")
    server = make_server(host or "127.0.0.1", int(port), app, server_class=ThreadingWSGIServer)
    print(
        f"authcheck on http://{host or '127.0.0.1'}:{port}/ for {os.environ.get('GATEWAY_AUDIENCE')}", file=sys.stderr
    )
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
