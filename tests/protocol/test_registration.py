"""RFC 7591 / RFC 7592 dynamic registration over HTTP against the live server.

``requests`` plays the registering client; the authorization-code flow after an open
registration is Authlib's (tests/protocol/test_flows.py). Every refusal is the RFC 7591
§3.2.2 (or RFC 6750 §3.1) JSON error, is not cacheable, and stores nothing.
"""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
import requests
import time_machine
from cryptography.hazmat.primitives.asymmetric import rsa
from django.utils import timezone
from jwcrypto.jwk import JWK

from authserver import ratelimit
from authserver.audit import AuditEvent
from authserver.models import Scope
from clients.dcr_metadata import MetadataError, parse_client_metadata, redirect_uri_problems
from clients.models import Client, ClientCredential, ClientIntake
from clients.services import initial_access_token_issue

from ..conftest import REDIRECT_URI, RegisteredClient, make_client_key
from .test_flows import code_flow, verify_access_token

TIMEOUT = 10
JSON = "application/json"
STATEMENT_ISSUER = "https://registry.example.nl"


# ---- fixtures and helpers ---------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _registration_settings(settings):
    settings.AUTHSERVER_OPEN_REGISTRATION_ENABLED = True
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = True
    settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = False
    # Tests share the caller address 127.0.0.1; the rate limit has a test of its own.
    settings.AUTHSERVER_REGISTRATION_RATE_LIMIT = "100000/hour"


@pytest.fixture
def catalogue(transactional_db):
    """One low-risk scope open registration may get, and two that need more."""
    return {
        "low": Scope.objects.create(
            name="catalogue:read", risk_level=Scope.RiskLevel.LOW, open_registration=True, description="Read"
        ),
        "medium": Scope.objects.create(name="orders:read", risk_level=Scope.RiskLevel.MEDIUM),
        "other": Scope.objects.create(name="orders:write", risk_level=Scope.RiskLevel.MEDIUM),
    }


@pytest.fixture
def statement_key():
    return make_client_key("RS256")


@pytest.fixture
def trusted_issuer(settings, statement_key):
    settings.AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS = {STATEMENT_ISSUER: {"keys": [statement_key.public_jwk]}}
    return statement_key


def web_metadata(key=None, **overrides: Any) -> dict[str, Any]:
    key = key or make_client_key()
    body = {
        "client_name": "Open RP",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.public_jwk]},
        "scope": "catalogue:read",
    }
    body.update(overrides)
    return {name: value for name, value in body.items() if value is not None}


def register(issuer: str, body: Any, *, token: str | None = None, content_type: str = JSON) -> requests.Response:
    headers = {"Content-Type": content_type}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    data = body if isinstance(body, (str, bytes)) else json.dumps(body)
    return requests.post(f"{issuer}/oauth/register", data=data, headers=headers, timeout=TIMEOUT)


def manage(method: str, uri: str, token: str, body: Any = None) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"}
    if body is not None:
        headers["Content-Type"] = JSON
    data = json.dumps(body) if body is not None else None
    return requests.request(method, uri, data=data, headers=headers, timeout=TIMEOUT)


def assert_error(response: requests.Response, status: int, error: str, *, mentions: str = "") -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.text[:500])
    assert response.headers["Content-Type"].startswith(JSON)
    assert "no-store" in response.headers.get("Cache-Control", "")
    body = response.json()
    assert body["error"] == error, body
    assert isinstance(body.get("error_description"), str), body
    assert len(body["error_description"]) >= 8, body
    if mentions:
        assert mentions.lower() in body["error_description"].lower(), body
    assert "client_id" not in body
    assert "registration_access_token" not in body
    return body


def stored() -> tuple[int, int, int, int]:
    return (
        Client.objects.count(),
        ClientCredential.objects.count(),
        ClientIntake.objects.count(),
        AuditEvent.objects.filter(event__startswith="client.").count(),
    )


def sign_statement(key, claims: dict[str, Any], **header: Any) -> str:
    now = int(time.time())
    payload = {"iss": STATEMENT_ISSUER, "iat": now, "exp": now + 3600, **claims}
    payload = {k: v for k, v in payload.items() if v is not None}
    return jwt.encode(payload, key.private_key, algorithm=key.alg, headers={"kid": key.kid, **header})


# ---- discovery --------------------------------------------------------------------------------


def test_discovery_advertises_the_registration_endpoint(issuer):
    for path in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
        document = requests.get(f"{issuer}{path}", timeout=TIMEOUT).json()
        assert document["registration_endpoint"] == f"{issuer}/oauth/register"


# ---- open mode ----------------------------------------------------------------------------------


def test_open_registration_gets_only_low_risk_scopes_and_then_a_token(issuer, catalogue, user, password):
    key = make_client_key()
    before = stored()
    refused = register(issuer, web_metadata(key, scope="catalogue:read orders:read"))
    assert_error(refused, 400, "invalid_client_metadata", mentions="orders:read")
    assert stored() == before

    response = register(issuer, web_metadata(key))

    assert response.status_code == 201, response.text
    assert "no-store" in response.headers["Cache-Control"]
    body = response.json()
    assert body["scope"] == "catalogue:read"
    assert body["grant_types"] == ["authorization_code", "refresh_token"]
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["redirect_uris"] == [REDIRECT_URI]
    assert body["jwks"]["keys"][0]["kid"] == key.kid
    assert body["registration_client_uri"] == f"{issuer}/oauth/register/{body['client_id']}"
    assert len(body["registration_access_token"]) >= 32
    assert "client_secret" not in body
    assert "status" not in body
    assert abs(body["client_id_issued_at"] - time.time()) < 60

    client = Client.objects.get(client_id=body["client_id"])
    assert client.registration_mode == Client.RegistrationMode.OPEN
    assert client.status == Client.Status.ACTIVE
    assert client.scopes == ["catalogue:read"]
    assert client.registration_token_hash
    assert body["registration_access_token"] not in client.registration_token_hash
    credential = client.credentials.get()
    assert credential.kind == ClientCredential.Kind.PUBLIC_KEY
    # Open clients hold short-lived credentials (AUTHSERVER_OPEN_CREDENTIAL_LIFETIME_DAYS).
    assert credential.expires_at is not None
    assert timedelta(days=29) < credential.expires_at - timezone.now() <= timedelta(days=30)
    assert AuditEvent.objects.filter(event="client.registered", target_id=str(client.pk)).exists()

    # The client works: the authorization-code flow with PKCE and private_key_jwt.
    _run, token = code_flow(issuer, RegisteredClient(client=client, key=key), user, password, scope="catalogue:read")
    claims = verify_access_token(token["access_token"], issuer, client.client_id)
    assert claims["scope"] == "catalogue:read"


def test_open_registration_of_a_client_credentials_client_is_refused(issuer, catalogue):
    before = stored()
    response = register(
        issuer,
        web_metadata(grant_types=["client_credentials"], redirect_uris=None, response_types=None),
    )
    assert_error(response, 400, "invalid_client_metadata", mentions="client_credentials")
    assert stored() == before


def test_open_registration_with_a_secret_returns_it_once(issuer, catalogue):
    response = register(issuer, web_metadata(token_endpoint_auth_method="client_secret_basic", jwks=None))

    assert response.status_code == 201, response.text
    body = response.json()
    secret = body["client_secret"]
    assert len(secret) >= 32
    assert abs(body["client_secret_expires_at"] - (time.time() + 30 * 86400)) < 120
    client = Client.objects.get(client_id=body["client_id"])
    assert client.credentials.get().hint == secret[-4:]
    assert secret not in json.dumps(list(AuditEvent.objects.values_list("data", flat=True)))
    read = manage("GET", body["registration_client_uri"], body["registration_access_token"])
    assert read.status_code == 200
    assert "client_secret" not in read.json()


def test_without_open_mode_an_initial_access_token_is_required(issuer, catalogue, settings):
    settings.AUTHSERVER_OPEN_REGISTRATION_ENABLED = False
    before = stored()
    response = register(issuer, web_metadata())
    assert_error(response, 401, "access_denied", mentions="initial access token")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert stored() == before


# ---- whitelist mode: initial access tokens ---------------------------------------------------------


def test_initial_access_token_registers_within_its_bounds_then_is_used_up(issuer, catalogue, organisation):
    issued = initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=None, max_uses=1)

    response = register(issuer, web_metadata(scope="orders:read"), token=issued.value)

    assert response.status_code == 201, response.text
    body = response.json()
    client = Client.objects.get(client_id=body["client_id"])
    assert client.registration_mode == Client.RegistrationMode.WHITELIST
    assert client.status == Client.Status.ACTIVE
    assert client.organisation == organisation
    assert body["scope"] == "orders:read"
    assert "status" not in body

    before = stored()
    again = register(issuer, web_metadata(scope="orders:read"), token=issued.value)
    assert_error(again, 401, "invalid_token", mentions="used up")
    assert 'error="invalid_token"' in again.headers["WWW-Authenticate"]
    assert stored() == before


def test_initial_access_token_is_refused_after_it_expires(issuer, catalogue, organisation):
    issued = initial_access_token_issue(
        organisation=organisation,
        scopes=["orders:read"],
        actor=None,
        max_uses=5,
        expires_at=timezone.now() + timedelta(days=1),
    )
    before = stored()
    with time_machine.travel(timezone.now() + timedelta(days=2), tick=True):
        response = register(issuer, web_metadata(scope="orders:read"), token=issued.value)
    assert_error(response, 401, "invalid_token", mentions="expired")
    assert stored() == before


@pytest.mark.parametrize("header", ["Bearer not-a-token-we-issued", "Basic dXNlcjpwYXNz", "Bearer"])
def test_unknown_or_malformed_initial_access_token_is_refused(issuer, catalogue, header):
    before = stored()
    response = requests.post(
        f"{issuer}/oauth/register",
        data=json.dumps(web_metadata()),
        headers={"Content-Type": JSON, "Authorization": header},
        timeout=TIMEOUT,
    )
    assert_error(response, 401, "invalid_token")
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]
    assert stored() == before


def test_outside_the_token_bounds_goes_to_review_and_says_pending(issuer, catalogue, organisation):
    issued = initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=None)

    response = register(issuer, web_metadata(scope="orders:read orders:write"), token=issued.value)

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["status"] == "pending"
    assert body["scope"] == ""  # nothing granted until an administrator decides
    client = Client.objects.get(client_id=body["client_id"])
    assert client.status == Client.Status.PENDING
    assert client.registration_mode == Client.RegistrationMode.EXPLICIT
    assert client.intake.requested == ["orders:read", "orders:write"]
    assert "orders:write" in client.intake.policy_reason


# ---- RFC 7592: read, update, delete ------------------------------------------------------------------


def test_rfc7592_read_update_delete_with_right_wrong_and_old_tokens(issuer, catalogue, organisation):
    issued = initial_access_token_issue(organisation=organisation, scopes=["orders:read", "orders:write"], actor=None)
    key = make_client_key()
    created = register(
        issuer, web_metadata(key, scope="orders:read orders:write", contacts=["dev@example.org"]), token=issued.value
    ).json()
    uri, token = created["registration_client_uri"], created["registration_access_token"]
    client = Client.objects.get(client_id=created["client_id"])

    # Read: the right token only; a wrong one and someone else's client look the same.
    read = manage("GET", uri, token)
    assert read.status_code == 200, read.text
    assert read.json()["contacts"] == ["dev@example.org"]
    assert read.json()["scope"] == "orders:read orders:write"
    wrong = assert_error(manage("GET", uri, token + "x"), 401, "invalid_token")
    unknown = assert_error(manage("GET", f"{issuer}/oauth/register/no-such-client", token), 401, "invalid_token")
    assert wrong == unknown
    assert_error(requests.get(uri, timeout=TIMEOUT), 401, "invalid_token")

    # Update: narrower scope, a new name, a second key; the token rotates.
    second = make_client_key("ES256")
    update = {
        **read.json(),
        "client_name": "Renamed RP",
        "scope": "orders:read",
        "jwks": {"keys": [key.public_jwk, second.public_jwk]},
    }
    updated = manage("PUT", uri, token, update)
    assert updated.status_code == 200, updated.text
    new_token = updated.json()["registration_access_token"]
    assert new_token != token
    client.refresh_from_db()
    assert client.name == "Renamed RP"
    assert client.scopes == ["orders:read"]
    assert sorted(c.kid for c in client.credentials.filter(status="active")) == sorted([key.kid, second.kid])
    event = AuditEvent.objects.get(event="client.registration.updated", target_id=str(client.pk))
    assert {"name", "scope", "jwks"} <= set(event.data["changed"])

    # The old token is dead for every method.
    assert_error(manage("GET", uri, token), 401, "invalid_token")
    assert_error(manage("PUT", uri, token, update), 401, "invalid_token")
    assert_error(manage("DELETE", uri, token), 401, "invalid_token")
    assert manage("GET", uri, new_token).status_code == 200

    # Widening the scope again is refused and changes nothing (the token stays valid).
    wider = manage("PUT", uri, new_token, {**update, "scope": "orders:read orders:write"})
    assert_error(wider, 400, "invalid_client_metadata", mentions="orders:write")
    other_host = manage("PUT", uri, new_token, {**update, "redirect_uris": ["https://evil.example.com/cb"]})
    assert_error(other_host, 400, "invalid_redirect_uri", mentions="evil.example.com")
    no_client_id = {name: value for name, value in update.items() if name != "client_id"}
    assert_error(manage("PUT", uri, new_token, no_client_id), 400, "invalid_client_metadata", mentions="client_id")
    client.refresh_from_db()
    assert client.scopes == ["orders:read"]
    assert manage("GET", uri, new_token).status_code == 200

    # Delete: revoked, and the token with it.
    deleted = manage("DELETE", uri, new_token)
    assert deleted.status_code == 204
    client.refresh_from_db()
    assert client.status == Client.Status.REVOKED
    assert not client.credentials.filter(status__in=ClientCredential.USABLE_STATUSES).exists()
    assert_error(manage("GET", uri, new_token), 401, "invalid_token")


def test_rfc7592_a_pending_client_cannot_change_but_can_withdraw(issuer, catalogue, organisation):
    issued = initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=None)
    created = register(issuer, web_metadata(scope="orders:write"), token=issued.value).json()
    assert created["status"] == "pending"
    uri, token = created["registration_client_uri"], created["registration_access_token"]

    read = manage("GET", uri, token)
    assert read.json()["status"] == "pending"
    update = manage("PUT", uri, token, {**read.json(), "client_name": "Impatient"})
    assert_error(update, 403, "access_denied", mentions="under review")
    assert manage("GET", uri, token).status_code == 200  # a refused update rotates nothing

    response = manage("DELETE", uri, token)

    assert response.status_code == 204
    intake = ClientIntake.objects.get(client__client_id=created["client_id"])
    assert intake.status == ClientIntake.Status.REJECTED
    assert "withdrawn" in intake.decision_reason.lower()


def test_rfc7592_methods_other_than_get_put_delete_are_refused(issuer, catalogue):
    created = register(issuer, web_metadata()).json()
    response = manage("POST", created["registration_client_uri"], created["registration_access_token"], {})
    assert_error(response, 405, "invalid_request")
    assert response.headers["Allow"] == "GET, PUT, DELETE"
    assert_error(requests.get(f"{issuer}/oauth/register", timeout=TIMEOUT), 405, "invalid_request")


# ---- software statements ---------------------------------------------------------------------------


def test_trusted_software_statement_overrides_the_request(issuer, catalogue, trusted_issuer):
    statement = sign_statement(
        trusted_issuer,
        {"software_id": "nl.example.rp", "client_name": "Vouched RP", "redirect_uris": [REDIRECT_URI]},
    )
    response = register(
        issuer,
        web_metadata(client_name="Self-declared", software_id="something-else", software_statement=statement),
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["client_name"] == "Vouched RP"
    assert body["software_id"] == "nl.example.rp"
    client = Client.objects.get(client_id=body["client_id"])
    assert client.software_statement_issuer == STATEMENT_ISSUER
    assert client.software_id == "nl.example.rp"


def test_forged_untrusted_or_expired_software_statements_are_refused(issuer, catalogue, trusted_issuer):
    forger = make_client_key("RS256")
    forger.kid = trusted_issuer.kid  # claims to be the registry's key
    cases = {
        "forged": (sign_statement(forger, {"software_id": "x"}), "invalid_software_statement"),
        "untrusted": (
            sign_statement(forger, {"iss": "https://elsewhere.example.com"}),
            "unapproved_software_statement",
        ),
        "expired": (
            sign_statement(trusted_issuer, {"iat": int(time.time()) - 7200, "exp": int(time.time()) - 3600}),
            "invalid_software_statement",
        ),
        "malformed": ("not.a.jwt", "invalid_software_statement"),
    }
    before = stored()
    for name, (statement, error) in cases.items():
        response = register(issuer, web_metadata(software_statement=statement))
        body = assert_error(response, 400, error)
        assert body, name
    assert stored() == before


# ---- every bad input: the RFC 7591 error, nothing stored -----------------------------------------------


def _small_rsa_jwk() -> dict[str, Any]:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    jwk = JWK.from_pyca(small.public_key()).export_public(as_dict=True)
    jwk["kid"] = "small"
    return jwk


BAD_INPUTS = {
    "invalid JSON": ('{"redirect_uris": [', JSON, "invalid_client_metadata", "not valid JSON"),
    "JSON array": ("[]", JSON, "invalid_client_metadata", "JSON object"),
    "wrong content type": ("redirect_uris=x", "application/x-www-form-urlencoded", "invalid_client_metadata", JSON),
    "unknown grant type": ({"grant_types": ["password"]}, JSON, "invalid_client_metadata", "password"),
    "implicit grant": ({"grant_types": ["implicit"], "response_types": ["token"]}, JSON, "invalid_client_metadata", ""),
    "two grant types": (
        {"grant_types": ["authorization_code", "client_credentials"]},
        JSON,
        "invalid_client_metadata",
        "one grant type",
    ),
    "wrong member type": ({"redirect_uris": REDIRECT_URI}, JSON, "invalid_client_metadata", "array"),
    "http redirect for a web client": (
        {"redirect_uris": ["http://rp.example.org/callback"]},
        JSON,
        "invalid_redirect_uri",
        "https",
    ),
    "fragment in a redirect URI": (
        {"redirect_uris": ["https://rp.example.org/callback#frag"]},
        JSON,
        "invalid_redirect_uri",
        "fragment",
    ),
    "localhost redirect": (
        {"redirect_uris": ["https://localhost/callback"], "application_type": "native"},
        JSON,
        "invalid_redirect_uri",
        "localhost",
    ),
    "custom scheme for a web client": (
        {"redirect_uris": ["nl.example.app:/callback"]},
        JSON,
        "invalid_redirect_uri",
        "native",
    ),
    "malformed JWK": (
        {"jwks": {"keys": [{"kty": "RSA", "n": "!!", "e": "AQAB"}]}},
        JSON,
        "invalid_client_metadata",
        "",
    ),
    "private JWK": ({"jwks": {"keys": [{"kty": "oct", "k": "c2VjcmV0"}]}}, JSON, "invalid_client_metadata", ""),
    "RSA key under 2048 bits": (None, JSON, "invalid_client_metadata", "2048"),  # built in the test
    "jwks and jwks_uri both": (
        {"jwks_uri": "https://rp.example.org/jwks.json"},
        JSON,
        "invalid_client_metadata",
        "mutually exclusive",
    ),
    "secret method with keys": (
        {"token_endpoint_auth_method": "client_secret_basic"},
        JSON,
        "invalid_client_metadata",
        "private_key_jwt",
    ),
    "mutual TLS method": ({"token_endpoint_auth_method": "tls_client_auth"}, JSON, "invalid_client_metadata", ""),
    "response type token": ({"response_types": ["token"]}, JSON, "invalid_client_metadata", "code"),
    "no redirect URIs": ({"redirect_uris": []}, JSON, "invalid_redirect_uri", "required"),
    "bad signing algorithm": ({"id_token_signed_response_alg": "HS256"}, JSON, "invalid_client_metadata", ""),
}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_every_bad_input_gets_the_rfc7591_error_and_stores_nothing(issuer, catalogue, case):
    overrides, content_type, error, mentions = BAD_INPUTS[case]
    if case == "RSA key under 2048 bits":
        overrides = {"jwks": {"keys": [_small_rsa_jwk()]}}
    body = {**web_metadata(), **overrides} if isinstance(overrides, dict) else overrides
    before = stored()

    response = register(issuer, body, content_type=content_type)

    assert_error(response, 400, error, mentions=mentions)
    assert stored() == before


def test_secrets_are_refused_where_the_deployment_disallows_them(issuer, catalogue, settings):
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = False
    before = stored()
    response = register(issuer, web_metadata(token_endpoint_auth_method="client_secret_post", jwks=None))
    assert_error(response, 400, "invalid_client_metadata", mentions="secret")
    assert stored() == before


@pytest.mark.parametrize(
    ("jwks_uri", "mentions"),
    [
        ("https://127.0.0.1/jwks.json", "loopback"),
        ("https://10.1.2.3/jwks.json", "private"),
        ("https://169.254.169.254/latest/meta-data", "link-local"),
        ("http://rp.example.org/jwks.json", "https"),
    ],
)
def test_jwks_uri_at_loopback_private_or_http_is_refused(issuer, catalogue, jwks_uri, mentions):
    before = stored()
    response = register(issuer, web_metadata(jwks=None, jwks_uri=jwks_uri))
    assert_error(response, 400, "invalid_client_metadata", mentions=mentions)
    assert stored() == before


# ---- rate limit on open registration ------------------------------------------------------------------


def test_open_registration_is_rate_limited_per_ip(issuer, catalogue, organisation, settings):
    limit = "3/hour"
    settings.AUTHSERVER_REGISTRATION_RATE_LIMIT = limit
    ratelimit.reset(limit, "register", "127.0.0.1")
    try:
        assert register(issuer, web_metadata()).status_code == 201
        assert register(issuer, "{", content_type=JSON).status_code == 400  # refused requests count too
        assert register(issuer, web_metadata()).status_code == 201
        before = stored()

        limited = register(issuer, web_metadata())

        assert_error(limited, 429, "too_many_requests")
        assert 0 < int(limited.headers["Retry-After"]) <= 3600
        assert stored() == before
        # Registrations with an initial access token are not open ones: not limited.
        issued = initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=None)
        assert register(issuer, web_metadata(scope="orders:read"), token=issued.value).status_code == 201
        # An hour later the window has moved on.
        with time_machine.travel(timezone.now() + timedelta(seconds=3601), tick=True):
            assert register(issuer, web_metadata()).status_code == 201
    finally:
        ratelimit.reset(limit, "register", "127.0.0.1")


def test_rate_limit_hit_counts_per_key_and_reports_the_wait(settings):
    settings.REDIS_URL = ""  # memory storage: the same code path without a server
    keys = ("test-hit", str(time.time()))
    assert ratelimit.hit("2/minute", *keys) == (True, 0)
    assert ratelimit.hit("2/minute", *keys) == (True, 0)
    allowed, retry_after = ratelimit.hit("2/minute", *keys)
    assert not allowed
    assert 0 < retry_after <= 60
    assert ratelimit.hit("2/minute", "test-hit", "another caller") == (True, 0)
    assert ratelimit.hit("", *keys) == (True, 0)  # no limit configured


# ---- the metadata rules, without HTTP --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("uri", "application_type", "ok"),
    [
        ("https://rp.example.org/cb", "web", True),
        ("https://rp.example.org/cb?x=1", "web", True),
        ("http://127.0.0.1:8080/cb", "native", True),
        ("http://[::1]:8080/cb", "native", True),
        ("nl.example.app:/oauth2redirect", "native", True),
        ("https://app.example.org/cb", "native", True),
        ("http://127.0.0.1:8080/cb", "web", False),
        ("http://localhost:8080/cb", "native", False),
        ("https://localhost/cb", "web", False),
        ("http://192.168.1.10/cb", "native", False),
        ("myapp:/cb", "native", False),
        ("javascript:alert(1)", "native", False),
        ("nl.example.app:/cb", "web", False),
        ("https://rp.example.org/cb#x", "web", False),
        ("https://*.example.org/cb", "web", False),
        ("/relative/cb", "web", False),
        ("https://user:pw@rp.example.org/cb", "web", False),
        ("https://rp.example.org/c b", "web", False),
    ],
)
def test_redirect_uri_rules(uri, application_type, ok):
    assert (not redirect_uri_problems(uri, application_type)) is ok


def test_metadata_defaults_follow_the_profile():
    key = make_client_key()
    web = parse_client_metadata(
        {"redirect_uris": [REDIRECT_URI], "jwks": {"keys": [key.public_jwk]}}, secrets_enabled=True
    )
    assert web.grant_type == "authorization_code"
    assert web.token_endpoint_auth_method == "private_key_jwt"
    assert web.scopes is None
    native = parse_client_metadata(
        {"redirect_uris": ["http://127.0.0.1:4000/cb"], "application_type": "native"}, secrets_enabled=True
    )
    assert native.token_endpoint_auth_method == "none"
    assert native.is_public
    with pytest.raises(MetadataError) as refused:
        parse_client_metadata({"redirect_uris": [REDIRECT_URI]}, secrets_enabled=True)
    assert "jwks" in str(refused.value)
    unknown_members = parse_client_metadata(
        {"redirect_uris": [REDIRECT_URI], "jwks": {"keys": [key.public_jwk]}, "x-vendor": {"a": 1}},
        secrets_enabled=True,
    )
    assert unknown_members.redirect_uris == (REDIRECT_URI,)


@pytest.mark.parametrize("redirect_uri", ["http://127.0.0.1:4000/cb", "nl.example.app:/oauth2redirect"])
def test_a_native_app_registers_openly_as_a_public_client(issuer, catalogue, redirect_uri):
    response = register(
        issuer,
        web_metadata(
            redirect_uris=[redirect_uri],
            application_type="native",
            token_endpoint_auth_method=None,
            jwks=None,
        ),
    )

    assert response.status_code == 201, response.text
    body = response.json()
    assert (body["application_type"], body["token_endpoint_auth_method"]) == ("native", "none")
    client = Client.objects.get(client_id=body["client_id"])
    assert (client.application_type, client.client_type, client.redirect_uris) == ("native", "public", redirect_uri)
    assert "client_secret" not in body


def test_a_web_app_may_not_use_a_native_redirect(issuer, catalogue):
    before = stored()

    response = register(issuer, web_metadata(redirect_uris=["http://127.0.0.1:4000/cb"]))

    assert_error(response, 400, "invalid_redirect_uri", mentions="https")
    assert stored() == before
