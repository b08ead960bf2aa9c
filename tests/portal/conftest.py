"""Portal fixtures: organisations with members of each role, certificates, and a signed-in client."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from django.test import Client

from onboarding.models import KycApplication, Membership, Organisation, User
from tests.factories import OrganisationFactory, UserFactory

# A valid OIN built on an RSIN that passes the 11-test (1*9+1*8+1*7+2*6+2*5+2*4+3*3+3*2-3*1 = 66).
RSIN = "111222333"
OIN = f"00000001{RSIN}000"
# A minimal, complete PDF (magic, body, %%EOF).
PDF = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


@dataclass
class Member:
    user: User
    membership: Membership

    def client(self) -> Client:
        client = Client()
        client.force_login(self.user)
        return client


@pytest.fixture
def make_member(db) -> Callable[..., Member]:
    def make(organisation: Organisation, role: str = Membership.Role.OWNER, **user_fields: object) -> Member:
        user = UserFactory(**user_fields)
        membership = Membership.objects.create(user=user, organisation=organisation, role=role)
        return Member(user=user, membership=membership)

    return make


@pytest.fixture
def pending_organisation(db) -> Organisation:
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
def owner(make_member, pending_organisation) -> Member:
    return make_member(pending_organisation, Membership.Role.OWNER)


@pytest.fixture
def admin_member(make_member, pending_organisation) -> Member:
    return make_member(pending_organisation, Membership.Role.ADMIN)


@pytest.fixture
def developer(make_member, pending_organisation) -> Member:
    return make_member(pending_organisation, Membership.Role.DEVELOPER)


@pytest.fixture
def other_organisation(db) -> Organisation:
    return OrganisationFactory(name="Andere Organisatie BV")


@pytest.fixture
def outsider(make_member, other_organisation) -> Member:
    """The owner of another organisation: for them, pending_organisation does not exist."""
    return make_member(other_organisation, Membership.Role.OWNER)


@pytest.fixture
def draft(pending_organisation, owner) -> KycApplication:
    from onboarding import services

    return services.kyc_application_create(
        organisation_id=pending_organisation.pk, actor=owner.user, motivation="We connect to the BRP API."
    )


@pytest.fixture(scope="session")
def certificate_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture
def make_certificate(certificate_key) -> Callable[..., bytes]:
    """A self-signed certificate naming an organisation (O) and its OIN (serialNumber), PEM or DER."""

    def make(
        *, organisation: str = "Gemeente Voorbeeld", serial_number: str = OIN, der: bool = False, days: int = 365
    ) -> bytes:
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
            .not_valid_before(now - dt.timedelta(days=400))
            .not_valid_after(now + dt.timedelta(days=days))
            .sign(certificate_key, hashes.SHA256())
        )
        return certificate.public_bytes(serialization.Encoding.DER if der else serialization.Encoding.PEM)

    return make
