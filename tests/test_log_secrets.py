"""No credential ever reaches the logs (STANDARDS.md: no secrets in logs or URIs).

A full run at DEBUG (our code, django-oauth-toolkit, oauthlib, Django) is captured through
every handler configured in ``settings.LOGGING``, with that handler's own filters and
formatter, so what is checked is what production would write. Then no client secret, access
token, refresh token, authorization code, code_verifier, client assertion or password may
appear in it, not even in part.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import secrets
from collections.abc import Iterator
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings

from authserver.logging import RedactSecretsFilter

from .conftest import REDIRECT_URI
from .factories import PASSWORD

FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# Everything that could log: the server's own packages, DOT, oauthlib, Django, JWT libraries.
VERBOSE_LOGGERS = [
    "",
    "authserver",
    "clients",
    "onboarding",
    "oauth2_provider",
    "oauthlib",
    "django",
    "jwt",
    "jwcrypto",
]


class Capture:
    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.records: list[logging.LogRecord] = []

    @property
    def text(self) -> str:
        return self.stream.getvalue()


class _Recorder(logging.Handler):
    """Counts what reached the configured handlers, so an empty capture cannot pass silently."""

    def __init__(self, capture: Capture) -> None:
        super().__init__(logging.DEBUG)
        self.capture = capture

    def emit(self, record: logging.LogRecord) -> None:
        self.capture.records.append(record)


def configured_handlers() -> dict[str, logging.Handler]:
    """The live handler objects ``logging.config.dictConfig`` built from settings.LOGGING."""
    handlers = {}
    for name in settings.LOGGING.get("handlers", {}):
        handler = logging._handlers.get(name)  # type: ignore[attr-defined]
        assert handler is not None, f"handler {name!r} of settings.LOGGING is not configured"
        handlers[name] = handler
    assert handlers, "settings.LOGGING configures no handler"
    return handlers


@pytest.fixture
def captured_logs() -> Iterator[Capture]:
    """Every configured handler's filters and formatter, writing to memory, at DEBUG everywhere."""
    capture = Capture()
    mirrors = []
    for handler in configured_handlers().values():
        mirror = logging.StreamHandler(capture.stream)
        mirror.setLevel(logging.DEBUG)
        mirror.setFormatter(handler.formatter)
        for log_filter in handler.filters:  # the same filter objects, in the same order
            mirror.addFilter(log_filter)
        mirrors.append(mirror)
    recorder = _Recorder(capture)
    root = logging.getLogger()
    saved_levels = {name: logging.getLogger(name).level for name in VERBOSE_LOGGERS}
    for name in VERBOSE_LOGGERS:
        logging.getLogger(name).setLevel(logging.DEBUG)
    for handler in (*mirrors, recorder):
        root.addHandler(handler)
    try:
        yield capture
    finally:
        for handler in (*mirrors, recorder):
            root.removeHandler(handler)
        for name, level in saved_levels.items():
            logging.getLogger(name).setLevel(level)


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def post_form(client, path: str, data: dict[str, str], authorization: str | None = None):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    return client.post(path, urlencode(data), content_type=FORM, **extra)


def fragments(value: str) -> set[str]:
    """The value and long pieces of it: a truncated or split secret is a leaked secret."""
    pieces = {value}
    parts = value.split(".") if value.count(".") == 2 else [value]
    if len(parts) == 3:
        pieces.add(parts[2])  # a JWT's signature
        parts = [parts[1], parts[2]]  # its claims and signature; the header is not unique
    for part in parts:
        for start in range(0, max(len(part) - 16, 0) + 1, 8):
            pieces.add(part[start : start + 16])
    return {piece for piece in pieces if len(piece) >= 12}


def test_configured_handlers_redact_credentials(captured_logs):
    """The filter is on the handler settings.LOGGING configures, and it works there."""
    handlers = configured_handlers()
    assert all(any(isinstance(f, RedactSecretsFilter) for f in h.filters) for h in handlers.values())
    secret = secrets.token_urlsafe(32)
    log = logging.getLogger("oauthlib.test")
    log.debug("body client_secret=%s&grant_type=client_credentials", secret)
    log.debug("Saving grant %r for %r.", {"code": secret, "state": "xyz"}, "<request>")
    log.debug("headers %r", {"Authorization": f"Bearer {secret}"})
    log.debug("code_verifier: %s", secret)
    log.debug("Validating refresh token %s for client %r.", secret, "<client>")
    log.debug("Invalid refresh token, %s, for client %r.", secret, "<client>")
    log.debug("Refresh token %s lack requested scopes, %r.", secret, ["openid"])
    assert len(captured_logs.records) == 7
    assert "Validating refresh token [redacted] for client" in captured_logs.text
    assert "grant_type=client_credentials" in captured_logs.text
    assert not {piece for piece in fragments(secret) if piece in captured_logs.text}


def test_no_credentials_in_logs_during_a_full_run(
    client,
    user,
    cc_basic,
    cc_post,
    cc_jwt,
    web_client,
    resource_server,
    resource_server_api,
    django_capture_on_commit_callbacks,
    captured_logs,
):
    # captured_logs comes last: capturing starts once the fixtures exist (factory_boy logs the
    # test password at DEBUG while it builds the user; that is test tooling, not the server).
    sensitive: dict[str, str] = {}

    def keep(label: str, value: str) -> str:
        sensitive[label] = value
        return value

    for registered in (cc_basic, cc_post, web_client, resource_server):
        keep(f"secret of {registered.client_id}", registered.secret)
    keep("password", PASSWORD)

    # client_credentials with a secret: Basic and in the body.
    response = post_form(
        client,
        "/oauth/token",
        {"grant_type": "client_credentials", "scope": "orders:read"},
        basic(cc_basic.client_id, cc_basic.secret),
    )
    assert response.status_code == 200, response.content
    cc_access = keep("cc access token", response.json()["access_token"])
    response = post_form(
        client,
        "/oauth/token",
        {"grant_type": "client_credentials", "client_id": cc_post.client_id, "client_secret": cc_post.secret},
    )
    assert response.status_code == 200, response.content
    keep("cc_post access token", response.json()["access_token"])

    # private_key_jwt, then the same assertion again (replay).
    assertion = keep(
        "client assertion",
        cc_jwt.key.assertion(
            cc_jwt.client_id, f"{settings.AUTHSERVER_ISSUER}/oauth/token", jti=secrets.token_urlsafe(24)
        ),
    )
    jwt_form = {
        "grant_type": "client_credentials",
        "client_id": cc_jwt.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
    }
    response = post_form(client, "/oauth/token", jwt_form)
    assert response.status_code == 200, response.content
    keep("jwt access token", response.json()["access_token"])
    assert post_form(client, "/oauth/token", jwt_form).status_code == 401

    # Authorization code with PKCE, after a password login.
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]
    verifier = keep("code_verifier", secrets.token_urlsafe(48))
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    params = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid profile orders:read",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    assert client.get("/oauth/authorize", params).status_code == 200
    response = client.post("/oauth/authorize", {**params, "allow": "Allow"})
    assert response.status_code == 302, response.content[:300]
    code = keep("authorization code", parse_qs(urlsplit(response["Location"]).query)["code"][0])
    web_auth = basic(web_client.client_id, web_client.secret)

    # A wrong verifier first (it does not burn the code), then the right one.
    wrong_verifier = keep("wrong code_verifier", secrets.token_urlsafe(48))
    response = post_form(
        client,
        "/oauth/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": wrong_verifier,
        },
        web_auth,
    )
    assert response.status_code == 400
    code_form = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    response = post_form(client, "/oauth/token", code_form, web_auth)
    assert response.status_code == 200, response.content
    tokens = response.json()
    keep("user access token", tokens["access_token"])
    keep("id token", tokens["id_token"])
    refresh = keep("refresh token", tokens["refresh_token"])

    response = client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert response.status_code == 200, response.content
    # Refused: the token in the URL (and so never logged from there by us).
    assert client.get("/oauth/userinfo", {"access_token": tokens["access_token"]}).status_code == 400

    # Refresh (rotation), then reuse of the old refresh token and of the code.
    response = post_form(client, "/oauth/token", {"grant_type": "refresh_token", "refresh_token": refresh}, web_auth)
    assert response.status_code == 200, response.content
    rotated = response.json()
    new_access = keep("refreshed access token", rotated["access_token"])
    new_refresh = keep("rotated refresh token", rotated["refresh_token"])
    response = post_form(client, "/oauth/token", {"grant_type": "refresh_token", "refresh_token": refresh}, web_auth)
    assert response.status_code == 400
    assert post_form(client, "/oauth/token", code_form, web_auth).status_code == 400

    # Introspection and revocation.
    rs_auth = basic(resource_server.client_id, resource_server.secret)
    response = post_form(client, "/oauth/introspect", {"token": cc_access}, rs_auth)
    assert response.json()["active"] is True
    response = post_form(
        client, "/oauth/introspect", {"token": new_refresh, "token_type_hint": "refresh_token"}, rs_auth
    )
    assert response.status_code == 200
    with django_capture_on_commit_callbacks(execute=True):  # the requests' commits drop cached answers
        assert (
            post_form(
                client, "/oauth/revoke", {"token": new_refresh, "token_type_hint": "refresh_token"}, web_auth
            ).status_code
            == 200
        )
        assert (
            post_form(
                client, "/oauth/revoke", {"token": cc_access}, basic(cc_basic.client_id, cc_basic.secret)
            ).status_code
            == 200
        )
    assert post_form(client, "/oauth/introspect", {"token": new_access}, rs_auth).json() == {"active": False}

    # Failures: wrong secrets (Basic, body, introspection), a secret in the query string.
    wrong = keep("wrong secret", cc_basic.secret[:-3] + "xyz")
    assert (
        post_form(
            client, "/oauth/token", {"grant_type": "client_credentials"}, basic(cc_basic.client_id, wrong)
        ).status_code
        == 401
    )
    assert (
        post_form(
            client,
            "/oauth/token",
            {"grant_type": "client_credentials", "client_id": cc_post.client_id, "client_secret": wrong},
        ).status_code
        == 401
    )
    assert (
        post_form(
            client, "/oauth/introspect", {"token": cc_access}, basic(resource_server.client_id, wrong)
        ).status_code
        == 401
    )
    query = urlencode({"client_id": cc_post.client_id, "client_secret": cc_post.secret})
    assert client.post(f"/oauth/token?{query}", "grant_type=client_credentials", content_type=FORM).status_code == 400
    assert (
        post_form(
            client,
            "/oauth/token",
            {"grant_type": "password", "username": user.username, "password": PASSWORD},
            web_auth,
        ).status_code
        == 400
    )

    # The capture saw the run (DEBUG from oauthlib and DOT included), through the real filters.
    text = captured_logs.text
    loggers = {record.name.split(".")[0] for record in captured_logs.records}
    assert {"oauthlib", "django"} <= loggers, loggers
    assert len(captured_logs.records) > 20
    assert web_client.client_id in text  # ids are fine to log; they prove the lines are there

    leaks = {label: sorted(piece for piece in fragments(value) if piece in text) for label, value in sensitive.items()}
    leaks = {label: pieces for label, pieces in leaks.items() if pieces}
    assert not leaks, f"credentials in the logs: {leaks}\n\n{text}"
