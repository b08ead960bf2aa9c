"""Secrets stay where they belong (RFC 6819 §5.1.4, §4.5.4; RFC 9700 §4.14; ADR no-sensitive-uris).

tests/test_log_secrets.py runs the protocol flows through the configured log handlers. This
module covers the rest of what a curious admin, a log reader or an error page could see: every
kind of secret the server hands out once (client secrets issued and rotated, dynamic
registration's secret and registration access tokens, initial access tokens, invitation and
password-reset links, tokens and codes, TOTP seeds and backup codes, passwords) must then be
absent from the log records our code and its libraries emit (caplog, unredacted), from every
admin page, from the audit log, and from error pages, 500s included.
"""

from __future__ import annotations

import base64
import io
import json
import logging
from typing import Any
from urllib.parse import urlsplit

import pytest
from django.core import mail
from django.test import Client as Browser
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice
from oauth2_provider.models import get_access_token_model, get_grant_model, get_id_token_model, get_refresh_token_model

from authserver.audit import AuditEvent
from authserver.twofactor.devices import backup_codes_issue
from clients.models import Client, ClientCredential, InitialAccessToken
from clients.services import initial_access_token_issue
from onboarding import services as onboarding_services
from onboarding.models import Membership

from ..api.conftest import session_client
from ..conftest import REDIRECT_URI
from ..factories import PASSWORD, ScopeFactory, UserFactory
from ..protocol.test_errors import obtain_code, redeem
from ..test_log_secrets import configured_handlers, fragments
from .conftest import add_member, otp_verified_browser

pytestmark = pytest.mark.django_db


class Secrets:
    def __init__(self) -> None:
        self.values: dict[str, str] = {}

    def keep(self, label: str, value: str) -> str:
        assert isinstance(value, str), label
        assert len(value) >= 6, (label, value)
        self.values[label] = value
        return value

    def leaks(self, text: str) -> dict[str, list[str]]:
        found = {
            label: sorted(piece for piece in fragments(value) | {value} if len(piece) >= 6 and piece in text)
            for label, value in self.values.items()
        }
        return {label: pieces for label, pieces in found.items() if pieces}


@pytest.fixture
def everything(client, user, web_client, organisation, caplog) -> tuple[Secrets, list[logging.LogRecord]]:
    """Hand out one of every secret the server issues, logging at DEBUG throughout."""
    secrets = Secrets()
    ScopeFactory(name="orders:read", risk_level="low")
    member = add_member(organisation, Membership.Role.OWNER)
    staff = UserFactory(is_staff=True, is_superuser=True)
    secrets.keep("password", PASSWORD)
    secrets.keep("web client secret", web_client.secret)

    caplog.set_level(logging.DEBUG)
    # Tokens, a code and a verifier (the authorization code flow, then a refresh).
    code, verifier = obtain_code(client, user, web_client)
    secrets.keep("authorization code", code)
    secrets.keep("code verifier", verifier)
    tokens = redeem(client, web_client, code, verifier).json()
    secrets.keep("access token", tokens["access_token"])
    secrets.keep("refresh token", tokens["refresh_token"])
    secrets.keep("id token signature", tokens["id_token"].rsplit(".", 1)[1])

    # Client secrets issued and rotated through the REST API.
    api = session_client(member)
    from ..conftest import register_client

    secret_client = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    )
    secrets.keep("issued client secret", secret_client.secret)
    rotated = api.post(
        f"/api/v1/organisations/{organisation.pk}/clients/{secret_client.client.pk}/credentials/rotate",
        {"overlap_seconds": 3600},
        format="json",
    )
    assert rotated.status_code == 201, rotated.content
    secrets.keep("rotated client secret", rotated.json()["credential"]["secret"])

    # Dynamic registration with an initial access token: a secret and registration tokens.
    iat = initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=staff)
    secrets.keep("initial access token", iat.value)
    metadata = {
        "client_name": "Registered RP",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "client_secret_basic",
        "scope": "orders:read",
    }
    registered = client.post(
        "/oauth/register",
        json.dumps(metadata),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {iat.value}",
    )
    assert registered.status_code == 201, registered.content
    document = registered.json()
    secrets.keep("registered client secret", document["client_secret"])
    secrets.keep("registration access token", document["registration_access_token"])
    updated = client.put(
        urlsplit(document["registration_client_uri"]).path,
        json.dumps({**metadata, "client_id": document["client_id"], "client_name": "Renamed RP"}),
        content_type="application/json",
        HTTP_AUTHORIZATION=f"Bearer {document['registration_access_token']}",
    )
    assert updated.status_code == 200, updated.content
    secrets.keep("rotated registration access token", updated.json()["registration_access_token"])

    # An invitation link, a password-reset link.
    _invitation, invitation_token = onboarding_services.invitation_create(
        organisation_id=organisation.pk, email="new@example.org", role="developer", actor=member
    )
    secrets.keep("invitation token", invitation_token)
    assert Browser().post("/accounts/password-reset/", {"email": user.email}).status_code == 302
    reset_link = next(line for line in mail.outbox[-1].body.splitlines() if "/password-reset/" in line)
    secrets.keep("password reset token", reset_link.rstrip("/").rsplit("/", 1)[1])

    # A staff member's second factor: the TOTP seed and backup codes.
    device = TOTPDevice.objects.create(user=staff, name="Authenticator app", confirmed=True)
    secrets.keep("totp seed (hex)", device.key)
    secrets.keep("totp seed (base32)", base64.b32encode(device.bin_key).decode().rstrip("="))
    for number, backup in enumerate(backup_codes_issue(user=staff)):
        secrets.keep(f"backup code {number}", backup)

    records = [record for record in caplog.records if not record.name.startswith("factory")]
    assert records, "the capture saw nothing: the test would prove nothing"
    return secrets, records


def test_no_secret_reaches_the_log_records_of_management_operations(everything):
    secrets, records = everything
    text = "\n".join(
        f"{record.name} {record.getMessage()} {record.exc_text or ''} {getattr(record, 'data', '')}"
        for record in records
    )
    assert not secrets.leaks(text), secrets.leaks(text)


def test_no_secret_is_in_the_audit_log(everything):
    secrets, _records = everything
    rows = list(AuditEvent.objects.values())
    events = {row["event"] for row in rows}
    # The run was audited (so this is not vacuous): issuance, rotation, registration.
    assert {"client.credential.rotated", "client.registration.updated"} & events, events
    text = "\n".join(repr(row) for row in rows)
    assert not secrets.leaks(text), secrets.leaks(text)


def test_no_admin_page_shows_a_secret(everything, organisation, web_client):
    """A curious admin browses every list and every object the run left behind."""
    secrets, _records = everything
    admin = otp_verified_browser(UserFactory(is_staff=True, is_superuser=True))
    pages = ["/admin/"]
    models: list[tuple[Any, str]] = [
        (Client, "clients/client"),
        (InitialAccessToken, "clients/initialaccesstoken"),
        (AuditEvent, "authserver/auditevent"),
        (get_access_token_model(), "oauth2_provider/accesstoken"),
        (get_refresh_token_model(), "oauth2_provider/refreshtoken"),
        (get_grant_model(), "oauth2_provider/grant"),
        (get_id_token_model(), "oauth2_provider/idtoken"),
        (TOTPDevice, "otp_totp/totpdevice"),
        (StaticDevice, "otp_static/staticdevice"),
        (Membership.user.field.related_model, "onboarding/user"),
    ]
    for model, path in models:
        pages.append(f"/admin/{path}/")
        pages += [f"/admin/{path}/{pk}/change/" for pk in model.objects.values_list("pk", flat=True)[:10]]
    shown = 0
    for page in pages:
        response = admin.get(page)
        assert response.status_code == 200, (page, response.status_code)
        shown += 1
        leaks = secrets.leaks(response.content.decode())
        assert not leaks, (page, leaks)
    assert shown > 20
    assert ClientCredential.objects.filter(kind=ClientCredential.Kind.SECRET).exists()


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/oauth/no-such-endpoint?client_secret={secret}"),
        ("get", "/api/v1/organisations/999999?access_token={secret}"),
        ("post", "/oauth/token?client_secret={secret}"),
        ("get", "/oauth/userinfo?access_token={secret}"),
        ("get", "/portal/organisations/{secret}/"),
        ("get", "/oauth/register/{secret}"),
    ],
)
def test_error_pages_never_echo_a_secret(client, user, method, path):
    secret = "S3cr3t-" + base64.urlsafe_b64encode(b"never shown back to anyone").decode().rstrip("=")
    client.force_login(user)
    response = getattr(client, method)(path.format(secret=secret))
    assert 400 <= response.status_code < 500, (path, response.status_code)
    body = response.content.decode()
    assert secret not in body, (path, body[:500])
    assert "Traceback" not in body
    for header, value in response.items():
        assert secret not in value, (path, header)


def test_a_crash_shows_nothing_and_logs_no_secret(client, resource_server, monkeypatch):
    """A bug that raises with a token in its message: the 500 page is generic, and the log
    line (through the configured handlers, whatever LOG_FORMAT) carries no token."""
    from authserver.oauth import introspection

    token = "eyJhbGciOiJSUzI1NiJ9." + base64.urlsafe_b64encode(b'{"sub":"victim-of-a-crash"}').decode() + ".c2ln"
    opaque = "opaque-token-" + base64.urlsafe_b64encode(b"crash-secret-value-123456").decode()

    def crash(**kwargs: Any) -> dict[str, Any]:
        raise RuntimeError(f"could not introspect token={kwargs['token']} also Bearer {opaque}")

    monkeypatch.setattr(introspection, "introspect", crash)
    stream = io.StringIO()
    mirrors = []
    for handler in configured_handlers().values():
        mirror = logging.StreamHandler(stream)
        mirror.setFormatter(handler.formatter)
        for log_filter in handler.filters:
            mirror.addFilter(log_filter)
        mirrors.append(mirror)
    root = logging.getLogger()
    for mirror in mirrors:
        root.addHandler(mirror)
    client.raise_request_exception = False
    try:
        response = client.post(
            "/oauth/introspect",
            f"token={token}",
            content_type="application/x-www-form-urlencoded",
            HTTP_AUTHORIZATION="Basic "
            + base64.b64encode(f"{resource_server.client_id}:{resource_server.secret}".encode()).decode(),
        )
    finally:
        for mirror in mirrors:
            root.removeHandler(mirror)
    assert response.status_code == 500
    assert token not in response.content.decode()
    assert opaque not in response.content.decode()
    logged = stream.getvalue()
    assert "RuntimeError" in logged, logged  # the crash was logged, with its traceback
    assert token not in logged
    assert token.split(".")[1] not in logged
    assert opaque not in logged
