"""The API gateway (deploy/gateway/) on the real nginx, in front of the demo API.

nginx runs deploy/gateway/gateway.conf, rendered by deploy/gateway/render_gateway.py, with
TLS from the deploy tests' CA (tests/deploy/conftest.py); its auth_request asks the
validation endpoint deploy/gateway/authcheck.py (a subprocess, introspection mode, the
scopes per endpoint from the live server's /apis.json), and the upstream is the demo API
(examples/demo_api/, a subprocess) in gateway mode, which answers with the caller it was
handed in X-Client-Id, X-Organisation-Id, X-Scopes and X-Subject. Tokens come from the live
server, for an API whose endpoints were imported from the demo API's OpenAPI document.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.conf import settings

from authserver.catalogue import api_import_openapi
from authserver.models import ApiResource
from clients.services import client_create, client_credential_issue_secret, client_revoke

from ..conftest import RegisteredClient, register_client
from ..factories import OrganisationFactory
from .conftest import BACK, NGINX, Nginx, Pki, free_port, main_config

pytestmark = [pytest.mark.xdist_group("nginx"), pytest.mark.django_db(transaction=True)]

REPO = Path(settings.BASE_DIR)
GATEWAY = REPO / "deploy" / "gateway"
AUDIENCE = "https://demo-api.gateway.test/"
OIN = "00000001003214345000"
CHECK_CLIENT_ID = "gateway-check"
CHECK_SECRET = secrets.token_urlsafe(32)
# Not in the catalogue, declared public in the gateway: a request passes without a token and
# reaches the demo API, which then sees no caller at all.
PUBLIC = "GET /status, GET /healthz"


def _load_render() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("authserver_gateway_render", GATEWAY / "render_gateway.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


render_gateway = _load_render()


def _wait_for(port: int, process: subprocess.Popen[Any], log: Path) -> None:
    for _ in range(200):
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited: {log.read_text()}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)  # waiting for a process to listen, not for time to pass
    raise RuntimeError(f"{process.args} did not start listening: {log.read_text()}")


def _start(args: list[str], env: dict[str, str], port: int, log: Path) -> subprocess.Popen[Any]:
    process = subprocess.Popen(args, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=log.open("w"))
    _wait_for(port, process, log)
    return process


def _stop(process: subprocess.Popen[Any]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=10)


def _base_env() -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "TMPDIR")
    return {**{name: os.environ[name] for name in keep if name in os.environ}, "PYTHONPATH": str(REPO)}


@pytest.fixture(scope="module")
def demo_api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The demo API in gateway mode: it believes the gateway's headers."""
    port = free_port()
    env = {**_base_env(), "DEMO_API_MODE": "gateway", "DEMO_API_PORT": str(port), "DEMO_API_AUDIENCE": AUDIENCE}
    log = tmp_path_factory.mktemp("demo-api") / "demo-api.log"
    process = _start([sys.executable, "-m", "examples.demo_api"], env, port, log)
    yield f"127.0.0.1:{port}"
    _stop(process)


def start_authcheck(issuer: str, directory: Path) -> Iterator[str]:
    port = free_port()
    env = {
        **_base_env(),
        "GATEWAY_CHECK_BIND": f"127.0.0.1:{port}",
        "GATEWAY_ISSUER": issuer,
        "GATEWAY_AUDIENCE": AUDIENCE,
        "GATEWAY_MODE": "introspection",
        "GATEWAY_CLIENT_ID": CHECK_CLIENT_ID,
        "GATEWAY_CLIENT_SECRET": CHECK_SECRET,
        "GATEWAY_PUBLIC": PUBLIC,
    }
    process = _start([sys.executable, str(GATEWAY / "authcheck.py")], env, port, directory / "authcheck.log")
    yield f"127.0.0.1:{port}"
    _stop(process)


@pytest.fixture(scope="module")
def authcheck(live_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """deploy/gateway/authcheck.py for the demo API, introspecting as ``gateway-check``."""
    yield from start_authcheck(live_server.url, tmp_path_factory.mktemp("authcheck"))


def start_gateway(prefix: Path, pki: Pki, *, upstream: str, check: str) -> Iterator[Nginx]:
    """gateway.conf rendered into its own nginx prefix, with the test CA's back-channel certificates."""
    port = free_port()
    for name in ("logs", "tmp"):
        (prefix / name).mkdir(parents=True, exist_ok=True)
    shutil.copytree(pki.directory / "tls" / "back", prefix / "tls" / "gateway")
    render_gateway.install(
        prefix,
        {
            "NGINX_GATEWAY_SERVER_NAME": BACK,
            "NGINX_GATEWAY_LISTEN": f"127.0.0.1:{port}",
            "NGINX_GATEWAY_UPSTREAM": upstream,
            "NGINX_GATEWAY_CHECK": check,
            "NGINX_GATEWAY_ACCESS_LOG": str(prefix / "logs" / "gateway-access.log"),
        },
    )
    (prefix / "nginx.conf").write_text(main_config(prefix))
    server = Nginx(prefix, https_port=port, http_port=0, pki=pki)
    checked = server.run("-t")
    assert checked.returncode == 0, checked.stderr
    log = prefix / "logs" / "stderr.log"
    process = subprocess.Popen(
        [NGINX, "-p", f"{prefix}/", "-c", str(server.config), "-g", "daemon off;"],
        stdout=subprocess.DEVNULL,
        stderr=log.open("w"),
    )
    try:
        _wait_for(port, process, log)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=10)


@pytest.fixture(scope="module")
def gateway(pki: Pki, demo_api: str, authcheck: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    yield from start_gateway(tmp_path_factory.mktemp("nginx-gateway"), pki, upstream=demo_api, check=authcheck)


@pytest.fixture(scope="module")
def gateway_without_check(pki: Pki, demo_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """The same gateway whose validation endpoint is down (nothing listens on its port)."""
    yield from start_gateway(
        tmp_path_factory.mktemp("nginx-gateway-down"), pki, upstream=demo_api, check=f"127.0.0.1:{free_port()}"
    )


@pytest.fixture(scope="module")
def gateway_without_issuer(pki: Pki, demo_api: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Nginx]:
    """The same gateway whose validation endpoint cannot reach the issuer (a closed port)."""
    directory = tmp_path_factory.mktemp("authcheck-no-issuer")
    for check in start_authcheck(f"http://localhost:{free_port()}", directory):
        yield from start_gateway(directory / "nginx", pki, upstream=demo_api, check=check)


@pytest.fixture
def demo_registration(issuer: str) -> dict[str, Any]:
    """The demo API in the catalogue (endpoints from its OpenAPI document), owned by an
    organisation with an OIN; the gateway's introspection client; a caller with read and write."""
    owner = OrganisationFactory(kind="government", oin=OIN, kvk_number="")
    api = ApiResource.objects.create(name="Demo API", slug="demo", audience=AUDIENCE, owner=owner)
    openapi = (REPO / "examples" / "demo_api" / "openapi.json").read_bytes()
    api_import_openapi(api=api, document=openapi, actor=None)
    check = client_create(
        organisation=owner,
        name="Gateway check",
        grant_type="client_credentials",
        scopes=[],
        auth_method="client_secret_basic",
        client_id=CHECK_CLIENT_ID,
        is_resource_server=True,
    )
    client_credential_issue_secret(client=check, secret=CHECK_SECRET)
    api.introspectors.add(check)
    caller = register_client(
        owner,
        grant_type="client_credentials",
        auth_method="client_secret_basic",
        scopes=["demo:read", "demo:write"],
    )
    return {"api": api, "caller": caller, "issuer": issuer}


def token_for(issuer: str, caller: RegisteredClient, *, resource: str = AUDIENCE, scope: str | None = None) -> str:
    data = {"grant_type": "client_credentials", "resource": resource}
    if scope:
        data["scope"] = scope
    assert caller.secret is not None
    response = requests.post(f"{issuer}/oauth/token", data=data, auth=(caller.client_id, caller.secret), timeout=10)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


def call(
    gateway: Nginx, method: str, path: str, *, token: str | None = None, headers: dict[str, str] | None = None
) -> tuple[int, dict[str, str], Any]:
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    body = None
    if method == "POST":
        sent["Content-Type"] = "application/json"
        body = json.dumps({"item": "stroopwafels", "quantity": 3})
    response, content = gateway.request(BACK, method, path, headers=sent, body=body)
    received: dict[str, str] = {}
    for name, value in response.getheaders():
        # One header of each name: a second WWW-Authenticate (say) would be a gateway bug.
        assert name.lower() not in received, (name, response.getheaders())
        received[name.lower()] = value
    json_answer = received.get("content-type", "").startswith(("application/json", "application/problem+json"))
    parsed = json.loads(content) if json_answer else content
    return response.status, received, parsed


def test_a_valid_token_passes_and_the_api_gets_the_verified_caller(gateway, demo_registration):
    caller = demo_registration["caller"]
    token = token_for(demo_registration["issuer"], caller)

    status, headers, body = call(gateway, "GET", "/orders", token=token)
    assert status == 200, body
    assert body["caller"] == {
        "client_id": caller.client_id,
        "organisation_id": OIN,  # the OIN, from the introspection answer
        "organisation": None,
        "scopes": ["demo:read", "demo:write"],
        "subject": caller.client_id,
        "checked_by": "gateway",
    }
    assert headers["strict-transport-security"].startswith("max-age=")

    status, _headers, body = call(gateway, "POST", "/orders", token=token)
    assert status == 201, body
    assert body["order"]["placed_by"] == caller.client_id


def test_identity_headers_a_client_sends_are_replaced_by_the_verified_ones(gateway, demo_registration):
    caller = demo_registration["caller"]
    token = token_for(demo_registration["issuer"], caller, scope="demo:read")
    forged = {
        "X-Client-Id": "someone-else",
        "X-Organisation-Id": "00000001002220647000",
        "X-Scopes": "demo:read demo:write demo:admin",
        "X-Subject": "admin",
    }

    status, _headers, body = call(gateway, "GET", "/orders", token=token, headers=forged)
    assert status == 200, body
    assert body["caller"]["client_id"] == caller.client_id
    assert body["caller"]["organisation_id"] == OIN
    assert body["caller"]["scopes"] == ["demo:read"]
    assert body["caller"]["subject"] == caller.client_id

    # The scopes the gateway enforces are the token's, not what the client claims.
    status, headers, body = call(gateway, "GET", "/admin/stats", token=token, headers=forged)
    assert status == 403, body
    assert 'scope="demo:admin"' in headers["www-authenticate"]


def test_a_client_sent_identity_is_stripped_where_no_token_is_needed(gateway, demo_registration):
    # /status is public at the gateway: no token, so no verified caller. The forged header is
    # removed, so the demo API sees no caller and refuses; had it come through, the demo API
    # would have believed it and answered 404 (it has no /status).
    status, _headers, body = call(
        gateway, "GET", "/status", headers={"X-Client-Id": demo_registration["caller"].client_id}
    )
    assert status == 401, body
    assert body["detail"] == "This API is reached through its gateway only."


def test_without_a_token_401_with_a_bare_challenge(gateway, demo_registration):
    status, headers, body = call(gateway, "GET", "/orders", headers={"X-Client-Id": "someone"})

    assert status == 401
    assert headers["www-authenticate"] == f'Bearer realm="{AUDIENCE}"'  # RFC 6750 §3.1: no error code
    assert headers["content-type"] == "application/problem+json"
    assert "no-store" in headers["cache-control"]
    assert body["status"] == 401
    assert "Authorization header" in body["detail"]


@pytest.mark.parametrize("kind", ["garbage", "wrong-audience", "revoked", "tampered"])
def test_a_bad_token_401_invalid_token(gateway, demo_registration, kind):
    issuer, caller = demo_registration["issuer"], demo_registration["caller"]
    if kind == "garbage":
        token = "not-a-token"
    elif kind == "wrong-audience":
        owner = demo_registration["api"].owner
        other = ApiResource.objects.create(
            name="Other", slug="other", audience="https://other.gateway.test/", owner=owner
        )
        other.scopes.create(name="other:read")
        stranger = register_client(
            owner, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["other:read"]
        )
        token = token_for(issuer, stranger, resource="https://other.gateway.test/")
    elif kind == "revoked":
        token = token_for(issuer, caller)
        assert call(gateway, "GET", "/orders", token=token)[0] == 200
        client_revoke(client_id=caller.client.pk)
    else:
        header, payload, signature = token_for(issuer, caller).split(".")
        token = f"{header}.{payload}.{signature[::-1]}"

    status, headers, body = call(gateway, "GET", "/orders", token=token)

    assert status == 401, body
    assert headers["www-authenticate"].startswith(f'Bearer realm="{AUDIENCE}", error="invalid_token"')
    assert body["status"] == 401
    assert body["detail"]


def test_the_wrong_scope_403_insufficient_scope_naming_it(gateway, demo_registration):
    token = token_for(demo_registration["issuer"], demo_registration["caller"], scope="demo:read")

    for path, method, needed in (("/admin/stats", "GET", "demo:admin"), ("/orders", "POST", "demo:write")):
        status, headers, body = call(gateway, method, path, token=token)
        assert status == 403, body
        challenge = headers["www-authenticate"]
        assert challenge.startswith(f'Bearer realm="{AUDIENCE}", error="insufficient_scope"')
        assert challenge.endswith(f'scope="{needed}"')
        assert body == {
            "type": "about:blank",
            "title": "Forbidden",
            "status": 403,
            "error": "insufficient_scope",
            "detail": body["detail"],
        }
        assert needed in body["detail"]


def test_a_token_in_the_query_string_is_refused_400(gateway, demo_registration):
    token = token_for(demo_registration["issuer"], demo_registration["caller"])

    status, headers, body = call(gateway, "GET", f"/orders?access_token={token}")

    assert status == 400, body
    assert 'error="invalid_request"' in headers["www-authenticate"]
    assert body["error"] == "invalid_request"
    # The access log keeps no query string (ADR no-sensitive-uris).
    assert token not in (gateway.prefix / "logs" / "gateway-access.log").read_text()


def test_the_internal_check_location_cannot_be_called(gateway, demo_registration):
    status, _headers, _body = call(gateway, "GET", "/.authserver-gateway/check", headers={"X-Original-URI": "/orders"})

    assert status == 404


@pytest.mark.parametrize("broken", ["gateway_without_check", "gateway_without_issuer"])
def test_when_the_token_cannot_be_checked_the_gateway_fails_closed_503(request, demo_registration, broken):
    gateway = request.getfixturevalue(broken)
    token = token_for(demo_registration["issuer"], demo_registration["caller"])

    status, headers, body = call(gateway, "GET", "/orders", token=token)

    assert status == 503, body
    assert headers["retry-after"] == "5"
    assert "no-store" in headers["cache-control"]
    assert headers["strict-transport-security"].startswith("max-age=")
    assert "www-authenticate" not in headers  # nothing is wrong with the token as far as anyone knows
    assert body["status"] == 503
