"""/api/v1/organisations/{id}/clients and credentials: register, look, rotate, revoke; refusals store nothing."""

from __future__ import annotations

import base64
import datetime as dt
import json
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from django.db import connection
from django.test import Client as DjangoClient
from django.test.utils import CaptureQueriesContext
from jwcrypto.jwk import JWK

from authserver.audit import AuditEvent
from authserver.oauth.client_auth import hash_client_secret
from clients.models import Client, ClientCredential, ClientIntake
from clients.services import allowlist_entry_create, client_intake_approve
from onboarding.models import Membership, Organisation
from tests.conftest import make_client_key
from tests.factories import OrganisationFactory, ScopeFactory, UserFactory

from .conftest import API, Member, assert_problem, bearer_client, field_errors, mint_token, session_client

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
CALLBACK = "https://app.example.nl/callback"


# ---- fixtures and helpers -----------------------------------------------------------------


@pytest.fixture(autouse=True)
def catalogue() -> dict[str, Any]:
    return {
        "read": ScopeFactory(name="orders:read", risk_level="low"),
        "write": ScopeFactory(name="orders:write", risk_level="medium"),
        "persons": ScopeFactory(name="persons:read", risk_level="high", min_trust_level="high"),
    }


@pytest.fixture
def member(make_member, organisation) -> Member:
    """A developer of an active organisation (trust level substantial): developers manage clients."""
    return make_member(organisation, Membership.Role.DEVELOPER)


@pytest.fixture
def reviewer(db):
    return UserFactory(is_staff=True)


@pytest.fixture
def allowlisted(organisation):
    """Whitelist mode: the organisation is pre-approved for the orders scopes."""
    return allowlist_entry_create(
        actor=None, organisation=organisation, allowed_scopes=["orders:read", "orders:write"], max_clients=10
    )


def clients_url(organisation: Organisation) -> str:
    return f"{API}/organisations/{organisation.pk}/clients"


def client_url(client: Client | int, organisation: Organisation) -> str:
    pk = client if isinstance(client, int) else client.pk
    return f"{clients_url(organisation)}/{pk}"


def machine(**overrides: Any) -> dict[str, Any]:
    """A client-credentials client with a secret (the test deployment allows secrets)."""
    body = {
        "name": "Orders sync",
        "grant_type": "client_credentials",
        "token_endpoint_auth_method": "client_secret_basic",
        "scopes": ["orders:read"],
        "purpose": "Synchronise orders every night.",
        "contact_email": "ops@example.org",
        "justifications": {"orders:read": "we list the orders"},
    }
    body.update(overrides)
    return body


def web_app(**overrides: Any) -> dict[str, Any]:
    body = {
        "name": "Orders portal",
        "grant_type": "authorization_code",
        "scopes": ["orders:read"],
        "redirect_uris": [CALLBACK],
        "purpose": "Citizens see their orders.",
    }
    body.update(overrides)
    return body


def stored() -> tuple[int, int, int, int]:
    return (
        Client.objects.count(),
        ClientCredential.objects.count(),
        ClientIntake.objects.count(),
        AuditEvent.objects.count(),
    )


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def token_request(client_id: str, secret: str, scope: str = "orders:read"):
    return DjangoClient().post(
        "/oauth/token",
        urlencode({"grant_type": "client_credentials", "scope": scope}),
        content_type=FORM,
        HTTP_AUTHORIZATION=basic(client_id, secret),
    )


def rsa_jwk(bits: int = 2048) -> dict[str, Any]:
    key = rsa.generate_private_key(65537, bits)
    public = JWK.from_pyca(key.public_key()).export_public(as_dict=True)
    public["alg"] = "RS256"
    return public


def certificate_pem(*, days_valid: int = 365, expired: bool = False) -> str:
    key = rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "orders.example.nl")])
    now = dt.datetime.now(dt.UTC)
    start, end = (
        (now - dt.timedelta(days=30), now - dt.timedelta(days=1))
        if expired
        else (now, now + dt.timedelta(days=days_valid))
    )
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def register(api, organisation, body: dict[str, Any]):
    return api.post(clients_url(organisation), body, format="json")


def active_secret_client(api, organisation) -> dict[str, Any]:
    """Registered within the allowlist, with its secret issued in the 201 response."""
    response = register(api, organisation, machine(issue_secret=True))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "active"
    return body


# ---- register -----------------------------------------------------------------------------


def test_register_outside_any_preapproval_is_pending_with_an_intake(caller, member, organisation):
    response = register(caller(member.user), organisation, machine(issue_secret=True))
    assert response.status_code == 201, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    client = Client.objects.get(pk=body["id"])
    assert response["Location"] == client_url(client, organisation)
    assert body["client_id"] == client.client_id
    assert body["status"] == "pending"
    assert body["registration_mode"] == "explicit"
    assert body["grant_type"] == "client_credentials"
    assert body["token_endpoint_auth_method"] == "client_secret_basic"
    assert body["scopes"] == []
    assert body["requested_scopes"] == ["orders:read"]
    assert body["intake"]["status"] == "pending"
    assert body["intake"]["purpose"] == "Synchronise orders every night."
    assert body["intake"]["justifications"] == {"orders:read": "we list the orders"}
    assert body["client_secret"] is None  # pending: the secret comes after approval
    assert body["credentials"] == []
    assert client.created_by == member.user
    assert AuditEvent.objects.filter(event="client.registered", organisation=organisation).exists()


def test_register_within_the_allowlist_is_active_and_shows_the_secret_once(caller, member, organisation, allowlisted):
    api = caller(member.user)
    body = active_secret_client(api, organisation)
    assert body["registration_mode"] == "whitelist"
    assert body["scopes"] == ["orders:read"]
    assert body["reasons"] == []
    secret = body["client_secret"]
    assert len(secret) >= 32
    [credential] = body["credentials"]
    assert credential["kind"] == "secret"
    assert credential["hint"] == secret[-4:]
    assert body["client_secret_expires_at"] == credential["expires_at"]
    stored_credential = ClientCredential.objects.get(pk=credential["id"])
    assert stored_credential.secret_hash == hash_client_secret(secret)

    # Never again: not in the client, not in its credentials, not as the hash.
    for url in (
        client_url(body["id"], organisation),
        f"{client_url(body['id'], organisation)}/credentials",
        f"{client_url(body['id'], organisation)}/credentials/{credential['id']}",
        clients_url(organisation),
    ):
        page = api.get(url)
        assert page.status_code == 200, (url, page.content)
        assert secret not in page.content.decode()
        assert stored_credential.secret_hash not in page.content.decode()
        assert "secret_hash" not in page.content.decode()

    assert token_request(body["client_id"], secret).status_code == 200


def test_the_secret_of_a_pending_client_comes_after_approval_once(member, organisation, reviewer):
    api = session_client(member.user)
    body = register(api, organisation, machine()).json()
    credentials = f"{client_url(body['id'], organisation)}/credentials"
    before = stored()
    refused = api.post(credentials, {"kind": "secret"}, format="json")
    assert "pending" in assert_problem(refused, 409, type_slug="conflict")["detail"]
    assert stored() == before

    intake = ClientIntake.objects.get(client_id=body["id"])
    client_intake_approve(intake_id=intake.pk, reviewer=reviewer, granted_scopes=["orders:read"])
    issued = api.post(credentials, {"kind": "secret"}, format="json")
    assert issued.status_code == 201, issued.content
    secret = issued.json()["secret"]
    assert issued["Location"].endswith(f"/credentials/{issued.json()['id']}")
    assert token_request(body["client_id"], secret).status_code == 200
    detail = api.get(client_url(body["id"], organisation)).json()
    assert detail["status"] == "active"
    assert detail["intake"]["status"] == "approved"
    assert detail["intake"]["granted_scopes"] == ["orders:read"]

    again = api.post(credentials, {"kind": "secret"}, format="json")
    assert "rotate" in assert_problem(again, 409, type_slug="conflict")["detail"]
    assert ClientCredential.objects.filter(client_id=body["id"]).count() == 1


def test_register_a_private_key_jwt_client_with_its_keys(member, organisation, allowlisted):
    key = make_client_key()
    response = register(
        session_client(member.user),
        organisation,
        machine(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [key.public_jwk]}),
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["client_secret"] is None
    [credential] = body["credentials"]
    assert credential["kind"] == "public_key"
    assert credential["kid"] == key.kid
    assert credential["public_jwk"]["n"] == key.public_jwk["n"]
    assert "d" not in credential["public_jwk"]


def test_register_a_mutual_tls_client_with_its_certificate(member, organisation, allowlisted):
    response = register(
        session_client(member.user),
        organisation,
        machine(token_endpoint_auth_method="self_signed_tls_client_auth", certificate_pem=certificate_pem()),
    )
    assert response.status_code == 201, response.content
    [credential] = response.json()["credentials"]
    assert credential["kind"] == "certificate"
    assert len(credential["thumbprint"]) == 43


def test_a_web_client_defaults_to_private_key_jwt(member, organisation):
    response = register(session_client(member.user), organisation, web_app())
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["grant_type"] == "authorization_code"
    assert body["token_endpoint_auth_method"] == "private_key_jwt"
    assert body["redirect_uris"] == [CALLBACK]


def test_scopes_past_the_allowlist_go_to_review_with_the_reason(member, organisation, allowlisted):
    response = register(session_client(member.user), organisation, machine(scopes=["orders:read", "orders:ship"]))
    # orders:ship is not in the catalogue: refused outright, not reviewed.
    assert "scopes" in field_errors(assert_problem(response, 400, type_slug="validation-error"))
    ScopeFactory(name="orders:ship")
    response = register(session_client(member.user), organisation, machine(scopes=["orders:read", "orders:ship"]))
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "pending"
    assert any("orders:ship" in reason and "allowlist" in reason for reason in body["reasons"])
    assert body["intake"]["policy_reason"]


# ---- bad input: a problem, and nothing stored ---------------------------------------------


BAD_REGISTRATIONS = [
    pytest.param(machine(grant_type="password"), "grant_type", "valid choice", id="unknown-grant-type"),
    pytest.param(
        machine(grant_type=["client_credentials", "authorization_code"]), "grant_type", "valid choice", id="two-grants"
    ),
    pytest.param(
        machine(grant_type="authorization_code client_credentials"), "grant_type", "valid choice", id="two-grants-text"
    ),
    pytest.param(web_app(redirect_uris=["http://app.example.nl/callback"]), "redirect_uris.0", "https", id="http"),
    pytest.param(web_app(redirect_uris=[f"{CALLBACK}#top"]), "redirect_uris.0", "fragment", id="fragment"),
    pytest.param(web_app(redirect_uris=[]), "redirect_uris", "at least one", id="no-redirect"),
    pytest.param(machine(redirect_uris=[CALLBACK]), "redirect_uris", "no redirect", id="redirect-for-machine"),
    pytest.param(
        machine(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [{"kty": "RSA", "n": "abc", "e": "AQAB"}]}),
        "jwks.keys.0",
        "",
        id="malformed-jwk",
    ),
    pytest.param(
        machine(token_endpoint_auth_method="private_key_jwt", jwks={"keys": [rsa_jwk(1024)]}),
        "jwks.keys.0",
        "2048",
        id="rsa-1024",
    ),
    pytest.param(
        machine(
            token_endpoint_auth_method="private_key_jwt", jwks={"keys": [rsa_jwk(), {"kty": "oct", "k": "c2VjcmV0"}]}
        ),
        "jwks.keys.1",
        "private",
        id="symmetric-key",
    ),
    pytest.param(
        machine(
            token_endpoint_auth_method="private_key_jwt",
            jwks={"keys": [rsa_jwk()]},
            jwks_uri="https://keys.example.nl/jwks",
        ),
        "jwks_uri",
        "not both",
        id="jwks-and-jwks-uri",
    ),
    pytest.param(
        machine(
            token_endpoint_auth_method="self_signed_tls_client_auth", certificate_pem=certificate_pem(expired=True)
        ),
        "certificate_pem",
        "expired",
        id="expired-certificate",
    ),
    pytest.param(
        machine(
            token_endpoint_auth_method="self_signed_tls_client_auth", certificate_pem="-----BEGIN CERTIFICATE-----\nxx"
        ),
        "certificate_pem",
        "PEM",
        id="malformed-certificate",
    ),
    pytest.param(
        machine(token_endpoint_auth_method="private_key_jwt", jwks_uri="http://keys.example.nl/jwks"),
        "jwks_uri",
        "https",
        id="http-jwks-uri",
    ),
    pytest.param(
        machine(token_endpoint_auth_method="private_key_jwt", jwks_uri="https://127.0.0.1/jwks"),
        "jwks_uri",
        "loopback",
        id="loopback-jwks-uri",
    ),
    pytest.param(machine(scopes=["orders:unknown"], justifications={}), "scopes", "catalogue", id="unknown-scope"),
    pytest.param(
        machine(scopes=["persons:read"], justifications={}), "scopes", "trust level", id="scope-above-trust-level"
    ),
    pytest.param(machine(scopes=[]), "scopes", "", id="no-scope"),
    pytest.param(machine(scopes=["orders read"]), "scopes.0", "spaces", id="scope-with-space"),
    pytest.param(
        machine(token_endpoint_auth_method="none"), "token_endpoint_auth_method", "confidential", id="public-machine"
    ),
    pytest.param(
        machine(token_endpoint_auth_method="basic"), "token_endpoint_auth_method", "valid choice", id="unknown-method"
    ),
    pytest.param(
        machine(issue_secret=True, token_endpoint_auth_method="private_key_jwt"),
        "issue_secret",
        "secret",
        id="secret-for-jwt",
    ),
    pytest.param(
        machine(justifications={"persons:read": "just because"}), "justifications", "requested", id="justify-unasked"
    ),
    pytest.param(machine(name=""), "name", "blank", id="no-name"),
    pytest.param(machine(purpose=None), "purpose", "null", id="no-purpose"),
]


@pytest.mark.parametrize(("body", "field", "words"), BAD_REGISTRATIONS)
def test_bad_registrations_are_field_errors_and_store_nothing(member, organisation, allowlisted, body, field, words):
    before = stored()
    response = register(session_client(member.user), organisation, body)
    problem = assert_problem(response, 400, type_slug="validation-error")
    errors = field_errors(problem)
    assert field in errors, errors
    assert words.lower() in " ".join(errors[field]).lower(), errors
    assert stored() == before


def test_secret_clients_are_refused_where_the_deployment_disables_secrets(member, organisation, settings):
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = False
    before = stored()
    response = register(session_client(member.user), organisation, machine())
    errors = field_errors(assert_problem(response, 400, type_slug="validation-error"))
    assert "does not allow client secrets" in errors["token_endpoint_auth_method"][0]
    assert stored() == before


def test_no_new_secret_where_the_deployment_disables_secrets(member, organisation, allowlisted, settings):
    api = session_client(member.user)
    body = register(api, organisation, machine()).json()
    assert body["status"] == "active"
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = False
    before = stored()
    response = api.post(f"{client_url(body['id'], organisation)}/credentials", {"kind": "secret"}, format="json")
    errors = field_errors(assert_problem(response, 400, type_slug="validation-error"))
    assert "does not allow client secrets" in errors["kind"][0]
    assert stored() == before


@pytest.mark.parametrize(
    ("content_type", "payload"),
    [
        ("text/plain", "name=x"),
        ("application/x-www-form-urlencoded", "name=x&grant_type=client_credentials"),
        ("application/xml", "<client/>"),
        ("", json.dumps(machine())),
    ],
)
def test_wrong_content_types_are_415_and_store_nothing(member, organisation, content_type, payload):
    before = stored()
    response = session_client(member.user).generic(
        "POST", clients_url(organisation), payload, content_type=content_type
    )
    assert_problem(response, 415)
    assert stored() == before


@pytest.mark.parametrize("payload", [b'{"name": "x"', b"{'name': 'x'}", b'{"name": NaN}', b"\xff\xfe"])
def test_invalid_json_is_a_400_problem_and_stores_nothing(member, organisation, payload):
    before = stored()
    response = session_client(member.user).generic(
        "POST", clients_url(organisation), payload, content_type="application/json"
    )
    assert_problem(response, 400, type_slug="invalid-request")
    assert stored() == before


def test_a_pending_organisation_cannot_register_and_nothing_is_stored(make_member):
    pending = OrganisationFactory(status=Organisation.Status.PENDING)
    owner = make_member(pending, Membership.Role.OWNER)
    before = stored()
    response = register(session_client(owner.user), pending, machine())
    assert "pending" in assert_problem(response, 409, type_slug="conflict")["detail"]
    assert stored() == before


# ---- who may see and do what --------------------------------------------------------------


@pytest.mark.parametrize("role", [Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.DEVELOPER])
def test_every_member_role_manages_clients_and_managers_revoke_them(make_member, organisation, role):
    someone = make_member(organisation, role)
    response = register(session_client(someone.user), organisation, machine())
    assert response.status_code == 201, response.content

    revoked = session_client(someone.user).delete(client_url(response.json()["id"], organisation))

    # clients.permissions: the same rule as the portal; a developer may not end every token.
    if role == Membership.Role.DEVELOPER:
        assert_problem(revoked, 403, type_slug="forbidden")
        assert Client.objects.get(pk=response.json()["id"]).status != Client.Status.REVOKED
    else:
        assert revoked.status_code == 204


def test_a_read_only_role_sees_but_cannot_change(member, organisation, monkeypatch):
    """Should a role that only looks be added, the API refuses it every change (403)."""
    from clients.api import views

    body = register(session_client(member.user), organisation, machine()).json()
    monkeypatch.setattr(views, "CLIENT_ROLES", (Membership.Role.OWNER, Membership.Role.ADMIN))
    api = session_client(member.user)
    assert api.get(client_url(body["id"], organisation)).status_code == 200
    before = stored()
    for response in (
        register(api, organisation, machine()),
        api.delete(client_url(body["id"], organisation)),
        api.post(f"{client_url(body['id'], organisation)}/credentials", {"kind": "secret"}, format="json"),
        api.post(f"{client_url(body['id'], organisation)}/credentials/rotate", {}, format="json"),
    ):
        assert_problem(response, 403, type_slug="forbidden")
    assert stored() == before


def test_outsiders_see_nothing(caller, member, organisation, outsider, allowlisted):
    body = active_secret_client(session_client(member.user), organisation)
    credential = body["credentials"][0]["id"]
    api = caller(outsider.user)
    base = client_url(body["id"], organisation)
    before = stored()
    for response in (
        api.get(clients_url(organisation)),
        register(api, organisation, machine()),
        api.get(base),
        api.delete(base),
        api.get(f"{base}/credentials"),
        api.post(f"{base}/credentials", {"kind": "secret"}, format="json"),
        api.post(f"{base}/credentials/rotate", {}, format="json"),
        api.get(f"{base}/credentials/{credential}"),
        api.post(f"{base}/credentials/{credential}/revoke"),
        api.post(f"{base}/credentials/{credential}/end-overlap"),
    ):
        assert_problem(response, 404)
    assert stored() == before
    assert Client.objects.get(pk=body["id"]).status == "active"


def test_a_client_is_reached_only_through_its_own_organisation(make_member, member, organisation, allowlisted):
    body = active_secret_client(session_client(member.user), organisation)
    other = OrganisationFactory()
    # A developer here and the owner there: the client is still only under its own organisation.
    both = make_member(organisation, Membership.Role.DEVELOPER)
    Membership.objects.create(user=both.user, organisation=other, role=Membership.Role.OWNER)
    api = session_client(both.user)
    assert_problem(api.get(client_url(body["id"], other)), 404)
    assert_problem(api.delete(client_url(body["id"], other)), 404)
    assert_problem(api.get(f"{client_url(body['id'], other)}/credentials"), 404)
    assert api.get(clients_url(other)).json()["count"] == 0
    assert Client.objects.get(pk=body["id"]).status == "active"


def test_anonymous_and_machine_callers_are_refused(member, organisation, portal_client):
    assert_problem(DjangoClient().get(clients_url(organisation)), 401)
    no_scope = bearer_client(mint_token(portal_client, member.user, scope="openid"))
    assert_problem(no_scope.get(clients_url(organisation)), 403, type_slug="forbidden")
    machine_token = bearer_client(mint_token(portal_client, None))
    before = stored()
    assert_problem(register(machine_token, organisation, machine()), 403, type_slug="forbidden")
    assert stored() == before


def test_list_and_detail(caller, member, organisation, allowlisted, outsider):
    api = caller(member.user)
    active = active_secret_client(api, organisation)
    web = register(api, organisation, web_app(name="A web app")).json()
    register(session_client(outsider.user), outsider.membership.organisation, machine())
    listed = api.get(clients_url(organisation))
    assert listed.status_code == 200
    assert [item["id"] for item in listed.json()["results"]] == [web["id"], active["id"]]  # by name
    assert "credentials" not in listed.json()["results"][0]
    detail = api.get(client_url(active["id"], organisation)).json()
    assert detail["credentials"][0]["status"] == "active"
    assert detail["intake"] is None
    assert "client_secret" not in detail
    assert_problem(api.get(client_url(active["id"] + 1000, organisation)), 404)


def test_list_and_detail_queries_do_not_grow_with_clients_or_credentials(member, organisation, allowlisted):
    api = session_client(member.user)
    first = active_secret_client(api, organisation)

    def count(url: str) -> int:
        with CaptureQueriesContext(connection) as queries:
            assert api.get(url).status_code == 200
        return len(queries)

    list_queries, detail_queries = count(clients_url(organisation)), count(client_url(first["id"], organisation))
    for _ in range(3):
        active_secret_client(api, organisation)
    api.post(f"{client_url(first['id'], organisation)}/credentials/rotate", {}, format="json")
    assert count(clients_url(organisation)) == list_queries
    assert count(client_url(first["id"], organisation)) == detail_queries


# ---- credentials --------------------------------------------------------------------------


@pytest.fixture
def jwt_client(member, organisation, allowlisted) -> dict[str, Any]:
    response = register(
        session_client(member.user), organisation, machine(token_endpoint_auth_method="private_key_jwt")
    )
    assert response.status_code == 201, response.content
    return response.json()


def test_add_a_public_key(caller, member, organisation, jwt_client):
    key = make_client_key("ES256")
    url = f"{client_url(jwt_client['id'], organisation)}/credentials"
    response = caller(member.user).post(url, {"kind": "public_key", "jwk": key.public_jwk}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "public_key"
    assert body["kid"] == key.kid
    assert body["secret"] is None
    assert AuditEvent.objects.filter(event="client.credential.issued", organisation=organisation).exists()
    listed = caller(member.user).get(url).json()
    assert [item["id"] for item in listed["results"]] == [body["id"]]
    assert set(listed["results"][0]) >= {"id", "kind", "hint", "status", "created_at", "expires_at", "last_used_at"}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        ({"kind": "public_key", "jwk": {"kty": "RSA", "n": "abc", "e": "AQAB"}}, "jwk", ""),
        ({"kind": "public_key", "jwk": rsa_jwk(1024)}, "jwk", "2048"),
        ({"kind": "public_key", "jwk": {"kty": "EC", "crv": "P-256", "x": "AAAA", "y": "AAAA"}}, "jwk", "malformed"),
        ({"kind": "public_key", "jwk": "not an object"}, "jwk", "dictionary"),
        ({"kind": "public_key"}, "jwk", "needs"),
        ({"kind": "public_key", "jwk": rsa_jwk(), "expires_at": "2001-01-01T00:00:00Z"}, "expires_at", "future"),
        ({"kind": "jwks_uri", "jwks_uri": "https://10.1.2.3/jwks"}, "jwks_uri", "private"),
        ({"kind": "jwks_uri", "jwks_uri": "https://169.254.169.254/latest"}, "jwks_uri", "link-local"),
        ({"kind": "public_key", "jwk": rsa_jwk(), "certificate_pem": "x"}, "certificate_pem", "not used"),
        ({"kind": "secret"}, "kind", "private_key_jwt"),
        ({"kind": "certificate", "certificate_pem": certificate_pem()}, "kind", "private_key_jwt"),
        ({"kind": "password"}, "kind", "valid choice"),
        ({}, "kind", "required"),
    ],
)
def test_bad_credentials_are_field_errors_and_store_nothing(member, organisation, jwt_client, body, field, words):
    before = stored()
    response = session_client(member.user).post(
        f"{client_url(jwt_client['id'], organisation)}/credentials", body, format="json"
    )
    errors = field_errors(assert_problem(response, 400, type_slug="validation-error"))
    assert field in errors, errors
    assert words.lower() in " ".join(errors[field]).lower(), errors
    assert stored() == before


def test_an_expired_certificate_is_refused(member, organisation, allowlisted):
    body = register(
        session_client(member.user),
        organisation,
        machine(token_endpoint_auth_method="self_signed_tls_client_auth"),
    ).json()
    before = stored()
    response = session_client(member.user).post(
        f"{client_url(body['id'], organisation)}/credentials",
        {"kind": "certificate", "certificate_pem": certificate_pem(expired=True)},
        format="json",
    )
    errors = field_errors(assert_problem(response, 400, type_slug="validation-error"))
    assert "expired" in errors["certificate_pem"][0]
    assert stored() == before


def test_revoke_a_credential(caller, member, organisation, allowlisted):
    api = caller(member.user)
    body = active_secret_client(api, organisation)
    secret, credential = body["client_secret"], body["credentials"][0]["id"]
    url = f"{client_url(body['id'], organisation)}/credentials/{credential}"
    response = api.post(f"{url}/revoke")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "revoked"
    assert response.json()["revoked_at"]
    assert token_request(body["client_id"], secret).status_code == 401
    assert AuditEvent.objects.filter(event="client.credential.revoked", organisation=organisation).exists()
    assert_problem(api.post(f"{url}/revoke"), 409, type_slug="conflict")
    assert_problem(api.post(f"{url}/revoke", "<x/>", content_type="application/xml"), 415)


def test_a_credential_of_another_client_is_404(member, organisation, allowlisted):
    api = session_client(member.user)
    first = active_secret_client(api, organisation)
    second = active_secret_client(api, organisation)
    url = f"{client_url(first['id'], organisation)}/credentials/{second['credentials'][0]['id']}"
    assert_problem(api.get(url), 404)
    assert_problem(api.post(f"{url}/revoke"), 404)
    assert ClientCredential.objects.get(pk=second["credentials"][0]["id"]).status == "active"


def test_a_revoked_client_gets_no_new_credential(member, make_member, organisation, jwt_client):
    api = session_client(member.user)
    owner = session_client(make_member(organisation, Membership.Role.OWNER).user)
    assert owner.delete(client_url(jwt_client["id"], organisation)).status_code == 204
    before = stored()
    response = api.post(
        f"{client_url(jwt_client['id'], organisation)}/credentials",
        {"kind": "public_key", "jwk": make_client_key().public_jwk},
        format="json",
    )
    assert "revoked" in assert_problem(response, 409, type_slug="conflict")["detail"]
    assert stored() == before


# ---- rotation -----------------------------------------------------------------------------


def test_rotate_a_secret_both_work_during_the_overlap(caller, member, organisation, allowlisted):
    api = caller(member.user)
    body = active_secret_client(api, organisation)
    old_secret, old_id = body["client_secret"], body["credentials"][0]["id"]
    base = client_url(body["id"], organisation)

    response = api.post(f"{base}/credentials/rotate", {"overlap_seconds": 3600}, format="json")
    assert response.status_code == 201, response.content
    rotation = response.json()
    new_secret = rotation["credential"]["secret"]
    assert new_secret
    assert new_secret != old_secret
    assert rotation["credential"]["status"] == "active"
    assert rotation["credential"]["replaces"] == old_id
    assert [(c["id"], c["status"]) for c in rotation["overlapping"]] == [(old_id, "expiring")]
    assert "secret" not in rotation["overlapping"][0]

    # Both authenticate at the token endpoint with client_secret_basic during the overlap.
    assert token_request(body["client_id"], old_secret).status_code == 200
    assert token_request(body["client_id"], new_secret).status_code == 200
    listed = api.get(f"{base}/credentials").content.decode()
    assert new_secret not in listed
    assert old_secret not in listed

    # Ending the overlap stops the old one at once; the new one keeps working.
    ended = api.post(f"{base}/credentials/{old_id}/end-overlap")
    assert ended.status_code == 200, ended.content
    assert ended.json()["status"] == "expired"
    assert token_request(body["client_id"], old_secret).status_code == 401
    assert token_request(body["client_id"], new_secret).status_code == 200
    assert_problem(api.post(f"{base}/credentials/{old_id}/end-overlap"), 409, type_slug="conflict")


def test_rotate_with_no_body_at_all(member, organisation, allowlisted):
    api = session_client(member.user)
    body = active_secret_client(api, organisation)
    response = api.post(f"{client_url(body['id'], organisation)}/credentials/rotate")
    assert response.status_code == 201, response.content
    assert response.json()["credential"]["secret"]


def test_rotate_a_key(member, organisation, jwt_client):
    api = session_client(member.user)
    url = f"{client_url(jwt_client['id'], organisation)}/credentials"
    first = api.post(url, {"kind": "public_key", "jwk": make_client_key().public_jwk}, format="json").json()
    before = stored()
    bad = api.post(f"{url}/rotate", {"jwk": rsa_jwk(1024)}, format="json")
    assert "2048" in field_errors(assert_problem(bad, 400, type_slug="validation-error"))["jwk"][0]
    assert stored() == before
    assert ClientCredential.objects.get(pk=first["id"]).status == "active"

    missing = api.post(f"{url}/rotate", {}, format="json")
    assert_problem(missing, 400, type_slug="validation-error")
    assert stored() == before

    key = make_client_key()
    response = api.post(f"{url}/rotate", {"jwk": key.public_jwk}, format="json")
    assert response.status_code == 201, response.content
    rotation = response.json()
    assert rotation["credential"]["kid"] == key.kid
    assert rotation["credential"]["secret"] is None
    assert [c["id"] for c in rotation["overlapping"]] == [first["id"]]


def test_a_pending_client_does_not_rotate(member, organisation):
    api = session_client(member.user)
    body = register(api, organisation, machine()).json()
    before = stored()
    response = api.post(f"{client_url(body['id'], organisation)}/credentials/rotate", {}, format="json")
    assert "pending" in assert_problem(response, 409, type_slug="conflict")["detail"]
    assert stored() == before


# ---- revoking a client --------------------------------------------------------------------


def introspect(resource_server, token: str) -> dict[str, Any]:
    response = DjangoClient().post(
        "/oauth/introspect",
        urlencode({"token": token}),
        content_type=FORM,
        HTTP_AUTHORIZATION=basic(resource_server.client_id, resource_server.secret),
    )
    assert response.status_code == 200, response.content
    return response.json()


def test_revoking_a_client_makes_its_token_inactive_at_once(
    caller,
    make_member,
    organisation,
    allowlisted,
    resource_server,
    resource_server_api,
    django_capture_on_commit_callbacks,
):
    api = caller(make_member(organisation, Membership.Role.OWNER).user)
    body = active_secret_client(api, organisation)
    issued = token_request(body["client_id"], body["client_secret"])
    assert issued.status_code == 200, issued.content
    access_token = issued.json()["access_token"]
    assert introspect(resource_server, access_token)["active"] is True

    with django_capture_on_commit_callbacks(execute=True):  # the request's commit (cached answers dropped)
        response = api.delete(client_url(body["id"], organisation))
    assert response.status_code == 204
    assert response["Cache-Control"] == "no-store"

    assert introspect(resource_server, access_token) == {"active": False}
    assert token_request(body["client_id"], body["client_secret"]).status_code == 401
    detail = api.get(client_url(body["id"], organisation)).json()
    assert detail["status"] == "revoked"
    assert {c["status"] for c in detail["credentials"]} == {"revoked"}
    assert AuditEvent.objects.filter(event="client.revoked", organisation=organisation).exists()
    assert_problem(api.delete(client_url(body["id"], organisation)), 409, type_slug="conflict")


# ---- OpenAPI ------------------------------------------------------------------------------


def test_the_schema_documents_every_client_operation():
    document = DjangoClient().get("/api/schema?format=json").json()
    base = "/api/v1/organisations/{organisation_id}/clients"
    expected = {
        ("get", base),
        ("post", base),
        ("get", f"{base}/{{client_pk}}"),
        ("delete", f"{base}/{{client_pk}}"),
        ("get", f"{base}/{{client_pk}}/credentials"),
        ("post", f"{base}/{{client_pk}}/credentials"),
        ("post", f"{base}/{{client_pk}}/credentials/rotate"),
        ("get", f"{base}/{{client_pk}}/credentials/{{credential_id}}"),
        ("post", f"{base}/{{client_pk}}/credentials/{{credential_id}}/revoke"),
        ("post", f"{base}/{{client_pk}}/credentials/{{credential_id}}/end-overlap"),
    }
    found = {
        (method, path)
        for path, item in document["paths"].items()
        if path.startswith(base)
        for method in item
        if method != "parameters"
    }
    assert found == expected
    for method, path in expected:
        operation = document["paths"][path][method]
        assert {"oauth2": ["portal"]} in operation["security"], (method, path)
        assert "application/problem+json" in operation["responses"]["404"]["content"], (method, path)
        if method == "post" and "requestBody" in operation:
            assert "400" in operation["responses"], (method, path)
    created = document["paths"][base]["post"]["responses"]["201"]["content"]["application/json"]["schema"]
    registration = document["components"]["schemas"][created["$ref"].rsplit("/", 1)[1]]
    assert {"client_secret", "reasons", "status", "registration_mode"} <= set(registration["properties"])
    credential = document["components"]["schemas"]["Credential"]["properties"]
    assert "secret_hash" not in credential
    assert "secret" not in credential
