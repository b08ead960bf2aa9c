"""The demo API (examples/demo_api/): its endpoints, its three modes, and its agreement with
what the server's catalogue publishes for it.

The WSGI application is called in process; in ``jwt`` and ``introspection`` mode it validates
tokens from the live server, registered the way ``make run`` registers it (``manage.py
bootstrap``), so the scopes it enforces are the ones the catalogue (/apis.json) publishes.
"""

from __future__ import annotations

import io
import json
import secrets
from datetime import timedelta
from io import StringIO
from typing import Any
from wsgiref.util import setup_testing_defaults

import pytest
import requests
import time_machine
from django.core.management import call_command
from django.utils import timezone

from authserver.models import ApiResource
from clients.models import Client
from clients.services import client_revoke
from examples.demo_api.app import OPENAPI_PATH, Config, ConfigError, DemoApi, openapi_rules

AUDIENCE = "http://localhost:8001/"


def wsgi(
    app: Any,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    body: bytes = b"",
    content_type: str = "",
) -> tuple[int, dict[str, str], Any]:
    environ: dict[str, Any] = {"REQUEST_METHOD": method, "PATH_INFO": path}
    setup_testing_defaults(environ)
    for name, value in (headers or {}).items():
        environ["HTTP_" + name.upper().replace("-", "_")] = value
    environ["wsgi.input"] = io.BytesIO(body)
    environ["CONTENT_LENGTH"] = str(len(body))
    if content_type:
        environ["CONTENT_TYPE"] = content_type
    answer: dict[str, Any] = {}

    def start_response(status: str, response_headers: list[tuple[str, str]], exc_info: Any = None) -> None:
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(response_headers)

    content = b"".join(app(environ, start_response))
    return answer["status"], answer["headers"], json.loads(content)


GATEWAY_CALLER = {
    "X-Client-Id": "orders-service",
    "X-Organisation-Id": "00000001002220647000",
    "X-Scopes": "demo:write demo:read",
    "X-Subject": "orders-service",
}


@pytest.fixture
def behind_gateway() -> DemoApi:
    return DemoApi(Config(mode="gateway"))


# ---- what is documented is what is implemented ----------------------------------------------


def test_the_routes_are_the_operations_of_the_openapi_document(behind_gateway):
    routes = {f"{method} {template.template}" for method, template, _ in behind_gateway.routes}

    assert routes == set(openapi_rules())
    assert openapi_rules() == {
        "GET /orders": ["demo:read"],
        "POST /orders": ["demo:write"],
        "GET /orders/{order_id}": ["demo:read"],
        "GET /admin/stats": ["demo:admin"],
    }


def test_the_openapi_document_and_liveness_are_public(behind_gateway):
    status, headers, body = wsgi(behind_gateway, "GET", "/openapi.json")
    assert status == 200
    assert body == json.loads(OPENAPI_PATH.read_text())
    assert headers["Cache-Control"] == "no-store"

    assert wsgi(behind_gateway, "GET", "/healthz")[2] == {"mode": "gateway", "status": "ok"}


# ---- gateway mode ---------------------------------------------------------------------------


def test_behind_the_gateway_the_caller_comes_from_its_headers(behind_gateway):
    status, _headers, body = wsgi(behind_gateway, "GET", "/orders", headers=GATEWAY_CALLER)

    assert status == 200
    assert body == {
        "orders": [],
        "caller": {
            "client_id": "orders-service",
            "organisation_id": "00000001002220647000",
            "organisation": None,
            "scopes": ["demo:read", "demo:write"],
            "subject": "orders-service",
            "checked_by": "gateway",
        },
    }


def test_behind_the_gateway_a_request_without_a_verified_caller_is_refused(behind_gateway):
    status, headers, body = wsgi(behind_gateway, "GET", "/orders", headers={"X-Scopes": "demo:read"})

    assert status == 401
    assert headers["Content-Type"] == "application/problem+json"
    assert headers["WWW-Authenticate"].startswith(f'Bearer realm="{AUDIENCE}", error="invalid_token"')
    assert body["detail"] == "This API is reached through its gateway only."


def test_orders_are_placed_read_and_counted(behind_gateway):
    order = json.dumps({"item": "stroopwafels", "quantity": 12}).encode()

    status, _headers, body = wsgi(
        behind_gateway, "POST", "/orders", headers=GATEWAY_CALLER, body=order, content_type="application/json"
    )
    assert status == 201
    assert body["order"]["item"] == "stroopwafels"
    assert body["order"]["placed_by"] == "orders-service"
    assert body["order"]["organisation_id"] == "00000001002220647000"
    order_id = body["order"]["id"]

    status, _headers, body = wsgi(behind_gateway, "GET", f"/orders/{order_id}", headers=GATEWAY_CALLER)
    assert status == 200
    assert body["order"]["quantity"] == 12
    assert [order["id"] for order in wsgi(behind_gateway, "GET", "/orders", headers=GATEWAY_CALLER)[2]["orders"]] == [
        order_id
    ]
    stats = wsgi(behind_gateway, "GET", "/admin/stats", headers=GATEWAY_CALLER)[2]
    assert stats["orders"] == 1
    assert stats["orders_per_client"] == {"orders-service": 1}
    assert stats["calls_per_client"]["orders-service"] == 4


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "detail"),
    [
        ("POST", "/orders", b"{not json", "application/json", 400, "not JSON"),
        ("POST", "/orders", b"[1, 2]", "application/json", 400, "not a JSON object"),
        ("POST", "/orders", b'{"item": ""}', "application/json", 400, "item is a text"),
        ("POST", "/orders", b'{"quantity": 0}', "application/json", 400, "quantity is a whole number"),
        ("POST", "/orders", b'{"quantity": true}', "application/json", 400, "quantity is a whole number"),
        ("POST", "/orders", b"item=x", "application/x-www-form-urlencoded", 415, "application/json"),
        ("POST", "/orders", b'{"item": "' + b"x" * 20000 + b'"}', "application/json", 413, "at most"),
        ("GET", "/orders/999", b"", "", 404, "no order 999"),
        ("GET", "/orders/abc", b"", "", 404, "no order abc"),
        ("DELETE", "/orders", b"", "", 405, "/orders answers GET, POST"),
        ("GET", "/nothing-here", b"", "", 404, "no /nothing-here"),
    ],
)
def test_bad_requests_get_a_problem_document(behind_gateway, method, path, body, content_type, status, detail):
    answer_status, headers, answer = wsgi(
        behind_gateway, method, path, headers=GATEWAY_CALLER, body=body, content_type=content_type
    )

    assert answer_status == status
    assert headers["Content-Type"] == "application/problem+json"
    assert answer["status"] == status
    assert detail in answer["detail"]
    if status == 405:
        assert headers["Allow"] == "GET, POST"


# ---- configuration --------------------------------------------------------------------------


def test_configuration_from_the_environment():
    config = Config.from_env(
        {
            "DEMO_API_ISSUER": "http://localhost:9000",
            "DEMO_API_AUDIENCE": "http://localhost:9001/",
            "DEMO_API_CLIENT_SECRET": "s" * 32,
            "DEMO_API_PORT": "9001",
        }
    )

    assert (config.issuer, config.audience, config.mode, config.port) == (
        "http://localhost:9000",
        "http://localhost:9001/",
        "introspection",
        9001,
    )
    assert config.client_id == "demo-api"
    assert "s" * 32 not in repr(config)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DEMO_API_MODE": "gateway", "DEMO_API_PORT": "eighty"}, "DEMO_API_PORT is a number"),
        ({"DEMO_API_MODE": "gateway", "DEMO_API_PORT": "70000"}, "DEMO_API_PORT is a TCP port"),
        ({"DEMO_API_MODE": "magic"}, "DEMO_API_MODE is one of introspection, jwt, gateway"),
        ({"DEMO_API_MODE": "jwt", "DEMO_API_SCOPES_FROM": "guess"}, "DEMO_API_SCOPES_FROM is one of"),
        ({}, "introspection mode needs the resource server's own credentials"),
    ],
)
def test_a_bad_configuration_is_refused_with_what_to_set(environ, message):
    with pytest.raises(ConfigError, match=message):
        Config.from_env(environ)


# ---- against the live server, registered as make run registers it --------------------------


@pytest.fixture
def bootstrapped(issuer, monkeypatch) -> dict[str, Any]:
    """``manage.py bootstrap`` as scripts/run.sh runs it: the demo API at AUDIENCE, its secret."""
    secret = secrets.token_urlsafe(32)
    monkeypatch.setenv("DEMO_API_CLIENT_SECRET", secret)
    stdout = StringIO()
    call_command("bootstrap", "--demo-api-url", AUDIENCE, stdout=stdout)
    demo_secret = stdout.getvalue().split("secret: ")[1].split()[0]
    return {"issuer": issuer, "api_secret": secret, "demo_secret": demo_secret}


def demo_token(bootstrapped: dict[str, Any], **extra: str) -> str:
    answer = requests.post(
        f"{bootstrapped['issuer']}/oauth/token",
        data={"grant_type": "client_credentials", **extra},
        auth=("demo-service", bootstrapped["demo_secret"]),
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    return str(answer.json()["access_token"])


def live_demo_api(bootstrapped: dict[str, Any], mode: str) -> DemoApi:
    return DemoApi(
        Config(
            issuer=bootstrapped["issuer"],
            audience=AUDIENCE,
            mode=mode,
            client_secret=bootstrapped["api_secret"] if mode == "introspection" else "",
        )
    )


@pytest.mark.parametrize("mode", ["introspection", "jwt"])
def test_the_demo_api_enforces_the_scopes_the_catalogue_publishes(bootstrapped, mode):
    app = live_demo_api(bootstrapped, mode)
    bearer = {"Authorization": f"Bearer {demo_token(bootstrapped, scope='demo:read')}"}

    status, _headers, body = wsgi(app, "GET", "/orders", headers=bearer)
    assert status == 200, body
    assert body["caller"]["client_id"] == "demo-service"
    assert body["caller"]["checked_by"] == mode
    # The organisation's identifiers travel in the introspection answer, not in the JWT.
    assert body["caller"]["organisation_id"] == ("90000001" if mode == "introspection" else None)

    status, headers, body = wsgi(app, "POST", "/orders", headers=bearer, body=b"{}", content_type="application/json")
    assert status == 403, body
    assert headers["WWW-Authenticate"].endswith('scope="demo:write"')

    # An admin makes POST /orders need demo:admin instead: the catalogue changes, and so does
    # what the API enforces once it reads the catalogue again.
    endpoint = ApiResource.objects.get(slug="demo").endpoints.get(method="POST", path="/orders")
    endpoint.required_scopes.set(endpoint.api.scopes.filter(name="demo:read"))
    fresh = live_demo_api(bootstrapped, mode)
    status, _headers, body = wsgi(fresh, "POST", "/orders", headers=bearer, body=b"{}", content_type="application/json")
    assert status == 201, body


def test_a_revoked_client_fails_at_once_by_introspection_and_at_expiry_by_jwt(bootstrapped):
    token = demo_token(bootstrapped)
    bearer = {"Authorization": f"Bearer {token}"}
    by_introspection, by_jwt = live_demo_api(bootstrapped, "introspection"), live_demo_api(bootstrapped, "jwt")
    assert wsgi(by_introspection, "GET", "/orders", headers=bearer)[0] == 200
    assert wsgi(by_jwt, "GET", "/orders", headers=bearer)[0] == 200

    client_revoke(client_id=Client.objects.get(client_id="demo-service").pk)

    status, headers, body = wsgi(by_introspection, "GET", "/orders", headers=bearer)
    assert status == 401, body
    assert 'error="invalid_token"' in headers["WWW-Authenticate"]
    # A JWT is checked without asking the server: it works until it expires (README: the trade-off).
    assert wsgi(by_jwt, "GET", "/orders", headers=bearer)[0] == 200
    with time_machine.travel(timezone.now() + timedelta(hours=6, minutes=5)):
        status, headers, body = wsgi(by_jwt, "GET", "/orders", headers=bearer)
    assert status == 401, body
    assert "expired" in headers["WWW-Authenticate"]
