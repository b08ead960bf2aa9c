"""API fixtures: an organisation with members of each role, and callers by session or by token.

Every happy path runs twice, through the ``caller`` fixture: once with a browser session, once
with an OAuth 2.0 access token of an authorization-code client carrying the ``portal`` scope.
"""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, set_token_value
from rest_framework.test import APIClient

from clients.models import Client
from onboarding.models import KycApplication, Membership, Organisation, User
from tests.conftest import REDIRECT_URI, register_client
from tests.factories import OrganisationFactory, UserFactory

AccessToken = get_access_token_model()

# A valid OIN on an RSIN that passes the 11-test (1*9+1*8+1*7+2*6+2*5+2*4+3*3+3*2-3*1 = 66).
RSIN = "111222333"
OIN = f"00000001{RSIN}000"
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
API = "/api/v1"


@dataclass
class Member:
    user: User
    membership: Membership


@pytest.fixture
def make_member(db) -> Callable[..., Member]:
    def make(organisation: Organisation, role: str = Membership.Role.OWNER, **user_fields: Any) -> Member:
        user = UserFactory(**user_fields)
        membership = Membership.objects.create(user=user, organisation=organisation, role=role)
        return Member(user=user, membership=membership)

    return make


@pytest.fixture
def org(db) -> Organisation:
    """A pending government organisation with a known OIN, as a fresh sign-up leaves it."""
    return OrganisationFactory(
        name="Gemeente Voorbeeld",
        kind=Organisation.Kind.GOVERNMENT,
        oin=OIN,
        kvk_number="",
        rsin=RSIN,
        status=Organisation.Status.PENDING,
        trust_level=Organisation.TrustLevel.LOW,
    )


@pytest.fixture
def owner(make_member, org) -> Member:
    return make_member(org, Membership.Role.OWNER)


@pytest.fixture
def developer(make_member, org) -> Member:
    return make_member(org, Membership.Role.DEVELOPER)


@pytest.fixture
def other_org(db) -> Organisation:
    return OrganisationFactory(name="Andere Organisatie BV")


@pytest.fixture
def outsider(make_member, other_org) -> Member:
    """The owner of another organisation: for them, ``org`` does not exist."""
    return make_member(other_org, Membership.Role.OWNER)


@pytest.fixture
def draft(org, owner) -> KycApplication:
    from onboarding import services

    return services.kyc_application_create(organisation_id=org.pk, actor=owner.user, motivation="BRP access.")


# ---- callers ------------------------------------------------------------------------------


@pytest.fixture
def portal_client(db) -> Client:
    """The portal's own authorization-code client, of an active operator organisation."""
    operator = OrganisationFactory(name="Operator")
    return register_client(
        operator,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "portal"],
        redirect_uris=[REDIRECT_URI],
    ).client


def mint_token(
    client: Client, user: User | None, *, scope: str = "portal", expires_in: int = 3600, resource: str = ""
) -> str:
    """An access token row as DOT stores it (hashed at rest); the raw value is returned once."""
    raw = secrets.token_urlsafe(32)
    token = AccessToken(
        user=user, application=client, scope=scope, expires=timezone.now() + dt.timedelta(seconds=expires_in)
    )
    if resource:
        token.resource = [resource]
    set_token_value(token, raw)
    token.save()
    return raw


def session_client(user: User, *, enforce_csrf_checks: bool = False) -> APIClient:
    api = APIClient(enforce_csrf_checks=enforce_csrf_checks)
    api.force_login(user)
    return api


def bearer_client(token: str) -> APIClient:
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


@pytest.fixture(params=["session", "bearer"])
def caller(request, portal_client) -> Callable[[User], APIClient]:
    """Turns a user into an API client, by session or by a ``portal`` access token."""

    def as_user(user: User) -> APIClient:
        if request.param == "session":
            return session_client(user)
        return bearer_client(mint_token(portal_client, user))

    return as_user


def assert_problem(response: Any, status: int, *, type_slug: str | None = None) -> dict[str, Any]:
    """An RFC 9457 problem with the given status, never cached."""
    assert response.status_code == status, (response.status_code, response.content[:2000])
    assert response["Content-Type"] == "application/problem+json", response["Content-Type"]
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert set(body) >= {"type", "title", "status", "detail", "instance"}, body
    assert body["status"] == status
    assert body["instance"] == response.wsgi_request.path
    if type_slug is None:
        assert body["type"] == "about:blank"
    else:
        assert body["type"].endswith(f"/api/problems/{type_slug}"), body["type"]
    assert "Traceback" not in response.content.decode()
    return body


def field_errors(body: dict[str, Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in body["errors"]:
        assert error["pointer"].startswith("#")
        errors.setdefault(error["field"] or "", []).append(error["detail"])
    return errors


# ---- documents ----------------------------------------------------------------------------


@pytest.fixture(scope="session")
def certificate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def make_certificate(certificate_key) -> Callable[..., bytes]:
    """A self-signed certificate naming an organisation (O) and its OIN (serialNumber)."""

    def make(*, organisation: str = "Gemeente Voorbeeld", serial_number: str = OIN, der: bool = False) -> bytes:
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "NL"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, organisation),
                x509.NameAttribute(NameOID.SERIAL_NUMBER, serial_number),
                x509.NameAttribute(NameOID.COMMON_NAME, "api.voorbeeld.nl"),
            ]
        )
        now = dt.datetime.now(dt.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(certificate_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(days=1))
            .not_valid_after(now + dt.timedelta(days=365))
            .sign(certificate_key, hashes.SHA256())
        )
        encoding = serialization.Encoding.DER if der else serialization.Encoding.PEM
        return certificate.public_bytes(encoding)

    return make
