"""The demo API: orders, and statistics for its administrators, behind bearer tokens.

A plain WSGI application that knows nothing of the authorization server's code: it is
protected the way any API owner would protect theirs, with the resource-server library
``authserver_rs`` (a ``TokenValidator`` and a ``ScopePolicy`` in ``BearerTokenMiddleware``).
Each endpoint needs its own scope, as its OpenAPI document (``openapi.json`` beside this file)
says and as the server's catalogue publishes it once ``manage.py bootstrap`` imported that
document:

    GET  /orders              demo:read     the orders, and who asked
    POST /orders              demo:write    place an order
    GET  /orders/{order_id}   demo:read     one order
    GET  /admin/stats         demo:admin    counts per client
    GET  /openapi.json, /healthz            public

Every answer says who called: the client id, its organisation's identifier (OIN, else KvK
number) and the token's scopes. Three modes (``DEMO_API_MODE``):

- ``introspection`` (the default): every request asks the server's introspection endpoint,
  with the resource server's own credentials (``DEMO_API_CLIENT_ID``/``_SECRET``), so a
  revoked token or client fails on the very next call;
- ``jwt``: the token's signature is checked against the server's JWKS, with no call per
  request; a revocation counts only when the token expires;
- ``gateway``: the API sits behind ``deploy/gateway/`` (nginx ``auth_request``), which
  checked the token and the scopes already and passes the verified identity in
  ``X-Client-Id``, ``X-Organisation-Id``, ``X-Scopes`` and ``X-Subject``. The API must then
  be reachable only through the gateway; a request without ``X-Client-Id`` is refused.

Configuration comes from the environment (``Config.from_env``); ``python -m examples.demo_api``
serves it. State lives in memory and is gone on a restart.
"""

from __future__ import annotations

import itertools
import json
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from authserver_rs.errors import bearer_challenge
from authserver_rs.policy import PathTemplate, ScopePolicy
from authserver_rs.validator import TokenValidator, VerifiedToken
from authserver_rs.wsgi import ENVIRON_KEY, BearerTokenMiddleware

__all__ = ["Config", "ConfigError", "DemoApi", "create_app", "openapi_rules"]

OPENAPI_PATH = Path(__file__).with_name("openapi.json")
MODES = ("introspection", "jwt", "gateway")
SCOPE_SOURCES = ("catalogue", "openapi")
PUBLIC = ("GET /openapi.json", "GET /healthz")
MAX_BODY_BYTES = 16 * 1024

StartResponse = Callable[..., Any]
Handler = Callable[["Request"], tuple[int, dict[str, Any]]]

_REASONS = {
    200: "OK",
    201: "Created",
    400: "Bad Request",
    401: "Unauthorized",
    404: "Not Found",
    405: "Method Not Allowed",
    413: "Content Too Large",
    415: "Unsupported Media Type",
}


class ConfigError(ValueError):
    """A configuration the demo API cannot start with; the message says what to set."""


@dataclass(frozen=True)
class Config:
    issuer: str = "http://localhost:8000"
    audience: str = "http://localhost:8001/"
    mode: str = "introspection"
    client_id: str = "demo-api"
    client_secret: str = field(default="", repr=False)
    scopes_from: str = "catalogue"
    introspection_cache_seconds: int = 0
    host: str = "127.0.0.1"
    port: int = 8001

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Config:
        """``DEMO_API_ISSUER``, ``_AUDIENCE``, ``_MODE``, ``_CLIENT_ID``, ``_CLIENT_SECRET``,
        ``_SCOPES_FROM``, ``_INTROSPECTION_CACHE_SECONDS``, ``_HOST``, ``_PORT``."""
        defaults = cls()

        def value(name: str, default: str) -> str:
            return environ.get(f"DEMO_API_{name}", "").strip() or default

        def number(name: str, default: int) -> int:
            text = value(name, str(default))
            try:
                return int(text)
            except ValueError:
                raise ConfigError(f"DEMO_API_{name} is a number, not {text!r}") from None

        config = cls(
            issuer=value("ISSUER", defaults.issuer),
            audience=value("AUDIENCE", defaults.audience),
            mode=value("MODE", defaults.mode),
            client_id=value("CLIENT_ID", defaults.client_id),
            client_secret=environ.get("DEMO_API_CLIENT_SECRET", ""),
            scopes_from=value("SCOPES_FROM", defaults.scopes_from),
            introspection_cache_seconds=number("INTROSPECTION_CACHE_SECONDS", defaults.introspection_cache_seconds),
            host=value("HOST", defaults.host),
            port=number("PORT", defaults.port),
        )
        config.check()
        return config

    def check(self) -> None:
        if self.mode not in MODES:
            raise ConfigError(f"DEMO_API_MODE is one of {', '.join(MODES)}, not {self.mode!r}")
        if self.scopes_from not in SCOPE_SOURCES:
            raise ConfigError(f"DEMO_API_SCOPES_FROM is one of {', '.join(SCOPE_SOURCES)}, not {self.scopes_from!r}")
        if self.mode == "introspection" and not self.client_secret:
            raise ConfigError(
                "introspection mode needs the resource server's own credentials: set DEMO_API_CLIENT_ID and "
                "DEMO_API_CLIENT_SECRET (scripts/run.sh does)"
            )
        if not 0 < self.port < 65536:
            raise ConfigError(f"DEMO_API_PORT is a TCP port, not {self.port}")


def openapi_rules(document: Mapping[str, Any] | None = None) -> dict[str, list[str]]:
    """``{"METHOD /path": [scopes]}`` from the demo API's OpenAPI document (the scopes of its
    security requirements), for ``DEMO_API_SCOPES_FROM=openapi``."""
    document = document or json.loads(OPENAPI_PATH.read_text(encoding="utf-8"))
    rules: dict[str, list[str]] = {}
    for path, item in document["paths"].items():
        for method, operation in item.items():
            scopes = [
                scope
                for requirement in operation.get("security", [])
                for names in requirement.values()
                for scope in names
            ]
            rules[f"{method.upper()} {path}"] = scopes
    return rules


@dataclass(frozen=True)
class Caller:
    """Who made the request, as the token (or the gateway) says."""

    client_id: str
    organisation_id: str | None
    organisation: str | None
    scopes: tuple[str, ...]
    subject: str | None
    checked_by: str

    @classmethod
    def from_token(cls, token: VerifiedToken) -> Caller:
        return cls(
            client_id=token.client_id,
            organisation_id=token.organisation_id,
            organisation=token.organisation.get("name"),
            scopes=tuple(sorted(token.scopes)),
            subject=token.sub,
            checked_by=token.via,
        )

    def as_json(self) -> dict[str, Any]:
        return {
            "client_id": self.client_id,
            "organisation_id": self.organisation_id,
            "organisation": self.organisation,
            "scopes": list(self.scopes),
            "subject": self.subject,
            "checked_by": self.checked_by,
        }


@dataclass
class Request:
    environ: dict[str, Any]
    caller: Caller
    path: str

    def json_body(self) -> dict[str, Any]:
        content_type = (self.environ.get("CONTENT_TYPE") or "").split(";", 1)[0].strip().lower()
        try:
            length = int(self.environ.get("CONTENT_LENGTH") or 0)
        except ValueError:
            raise Problem(400, "The Content-Length header is not a number.") from None
        if length == 0:
            return {}
        if content_type != "application/json":
            raise Problem(415, "Send the order as application/json.")
        if length > MAX_BODY_BYTES:
            raise Problem(413, f"An order is at most {MAX_BODY_BYTES} bytes of JSON.")
        try:
            body = json.loads(self.environ["wsgi.input"].read(length))
        except ValueError:
            raise Problem(400, "The body is not JSON.") from None
        if not isinstance(body, dict):
            raise Problem(400, "The body is not a JSON object.")
        return body


class Problem(Exception):
    """An RFC 9457 problem answer."""

    def __init__(self, status: int, detail: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.headers = list(headers)


class Orders:
    """The API's data: orders in memory, safe for the threaded server."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._orders: dict[int, dict[str, Any]] = {}

    def place(self, *, item: str, quantity: int, caller: Caller) -> dict[str, Any]:
        with self._lock:
            order_id = next(self._ids)
            order = {
                "id": order_id,
                "item": item,
                "quantity": quantity,
                "placed_by": caller.client_id,
                "organisation_id": caller.organisation_id,
                "placed_at": datetime.now(UTC).isoformat(timespec="seconds"),
            }
            self._orders[order_id] = order
            return dict(order)

    def all(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(order) for order in self._orders.values()]

    def get(self, order_id: int) -> dict[str, Any] | None:
        with self._lock:
            order = self._orders.get(order_id)
            return dict(order) if order is not None else None


class DemoApi:
    """The WSGI application (see the module docstring)."""

    def __init__(
        self,
        config: Config,
        *,
        validator: TokenValidator | None = None,
        scope_policy: ScopePolicy | None = None,
    ) -> None:
        config.check()
        self.config = config
        self.orders = Orders()
        self.calls: Counter[str] = Counter()
        self.routes: list[tuple[str, PathTemplate, Handler]] = [
            ("GET", PathTemplate("/orders"), self.list_orders),
            ("POST", PathTemplate("/orders"), self.place_order),
            ("GET", PathTemplate("/orders/{order_id}"), self.read_order),
            ("GET", PathTemplate("/admin/stats"), self.stats),
        ]
        self.protected: Callable[[dict[str, Any], StartResponse], Iterable[bytes]]
        if config.mode == "gateway":
            self.protected = self._behind_gateway
            return
        validator = validator or TokenValidator(
            config.issuer,
            config.audience,
            mode="introspection" if config.mode == "introspection" else "jwt",
            client_id=config.client_id if config.mode == "introspection" else None,
            client_secret=config.client_secret if config.mode == "introspection" else None,
            introspection_cache_seconds=config.introspection_cache_seconds,
        )
        if scope_policy is None:
            scope_policy = (
                ScopePolicy.from_server(config.issuer, audience=config.audience)
                if config.scopes_from == "catalogue"
                else ScopePolicy(openapi_rules())
            )
        self.protected = BearerTokenMiddleware(self._with_token, validator, scope_policy)

    # ---- WSGI ---------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET").upper(), environ.get("PATH_INFO") or "/"
        # Public documents need no token: the API's description and its liveness.
        if path == "/openapi.json" and method in ("GET", "HEAD"):
            return self._send(start_response, 200, json.loads(OPENAPI_PATH.read_text(encoding="utf-8")))
        if path == "/healthz" and method in ("GET", "HEAD"):
            return self._send(start_response, 200, {"status": "ok", "mode": self.config.mode})
        return self.protected(environ, start_response)

    def _with_token(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        token: VerifiedToken | None = environ.get(ENVIRON_KEY)
        if token is None:  # a public rule in the scope policy: every endpoint here needs a caller
            return self._problem(start_response, Problem(401, "This endpoint needs an access token."))
        return self._dispatch(environ, start_response, Caller.from_token(token))

    def _behind_gateway(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        client_id = (environ.get("HTTP_X_CLIENT_ID") or "").strip()
        if not client_id:
            # Not through the gateway (or a gateway that does not pass the identity): refuse.
            challenge = bearer_challenge(self.config.audience, "invalid_token", "No verified caller: use the gateway.")
            return self._problem(
                start_response,
                Problem(401, "This API is reached through its gateway only.", [("WWW-Authenticate", challenge)]),
            )
        caller = Caller(
            client_id=client_id,
            organisation_id=(environ.get("HTTP_X_ORGANISATION_ID") or "").strip() or None,
            organisation=None,
            scopes=tuple(sorted((environ.get("HTTP_X_SCOPES") or "").split())),
            subject=(environ.get("HTTP_X_SUBJECT") or "").strip() or None,
            checked_by="gateway",
        )
        return self._dispatch(environ, start_response, caller)

    def _dispatch(self, environ: dict[str, Any], start_response: StartResponse, caller: Caller) -> Iterable[bytes]:
        method, path = environ.get("REQUEST_METHOD", "GET").upper(), environ.get("PATH_INFO") or "/"
        matching = [
            (route_method, handler) for route_method, template, handler in self.routes if template.matches(path)
        ]
        handler = next((handler for route_method, handler in matching if route_method == method), None)
        try:
            if handler is None:
                if matching:
                    allow = ", ".join(sorted({route_method for route_method, _ in matching}))
                    raise Problem(405, f"{path} answers {allow}.", [("Allow", allow)])
                raise Problem(404, f"There is no {path} here.")
            self.calls[caller.client_id] += 1
            status, body = handler(Request(environ=environ, caller=caller, path=path))
        except Problem as problem:
            return self._problem(start_response, problem)
        return self._send(start_response, status, body)

    @staticmethod
    def _send(
        start_response: StartResponse, status: int, body: dict[str, Any], headers: Iterable[tuple[str, str]] = ()
    ) -> list[bytes]:
        data = (json.dumps(body, indent=2, sort_keys=True, ensure_ascii=False) + "\n").encode()
        start_response(
            f"{status} {_REASONS.get(status, 'OK')}",
            [
                ("Content-Type", "application/json"),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-store"),
                *headers,
            ],
        )
        return [data]

    def _problem(self, start_response: StartResponse, problem: Problem) -> list[bytes]:
        body = {"type": "about:blank", "title": _REASONS.get(problem.status, "Error"), "status": problem.status}
        body["detail"] = problem.detail
        data = (json.dumps(body, indent=2, sort_keys=True) + "\n").encode()
        start_response(
            f"{problem.status} {_REASONS.get(problem.status, 'Error')}",
            [
                ("Content-Type", "application/problem+json"),
                ("Content-Length", str(len(data))),
                ("Cache-Control", "no-store"),
                *problem.headers,
            ],
        )
        return [data]

    # ---- the endpoints ------------------------------------------------------------------

    def list_orders(self, request: Request) -> tuple[int, dict[str, Any]]:
        return 200, {"orders": self.orders.all(), "caller": request.caller.as_json()}

    def place_order(self, request: Request) -> tuple[int, dict[str, Any]]:
        body = request.json_body()
        item = body.get("item", "stroopwafels")
        quantity = body.get("quantity", 1)
        if not isinstance(item, str) or not item.strip() or len(item) > 100:
            raise Problem(400, "item is a text of 1 to 100 characters.")
        if not isinstance(quantity, int) or isinstance(quantity, bool) or not 1 <= quantity <= 1000:
            raise Problem(400, "quantity is a whole number from 1 to 1000.")
        order = self.orders.place(item=item.strip(), quantity=quantity, caller=request.caller)
        return 201, {"order": order, "caller": request.caller.as_json()}

    def read_order(self, request: Request) -> tuple[int, dict[str, Any]]:
        text = request.path.rsplit("/", 1)[1]
        order = self.orders.get(int(text)) if text.isdigit() and len(text) < 10 else None
        if order is None:
            raise Problem(404, f"There is no order {text}.")
        return 200, {"order": order, "caller": request.caller.as_json()}

    def stats(self, request: Request) -> tuple[int, dict[str, Any]]:
        orders = self.orders.all()
        return 200, {
            "orders": len(orders),
            "orders_per_client": dict(Counter(order["placed_by"] for order in orders)),
            "calls_per_client": dict(self.calls),
            "caller": request.caller.as_json(),
        }


def create_app(config: Config | None = None, **kwargs: Any) -> DemoApi:
    """The demo API for ``config`` (default: from the environment)."""
    import os

    return DemoApi(config or Config.from_env(os.environ), **kwargs)
