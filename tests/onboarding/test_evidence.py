"""Evidence: certificates read with `cryptography`, KvK extracts and eIDAS attestations; bad input stores nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from django.core.exceptions import ValidationError

from authserver.models import AuditEvent
from onboarding import services
from onboarding.evidence import compare_claims, parse_certificate
from onboarding.models import Evidence, KycApplication, Membership, Organisation

from ..factories import MINIMAL_PDF, KycApplicationFactory, MembershipFactory, OrganisationFactory
from .certificates import OIN, ORGANISATION_NAME, make_leaf, make_root

pytestmark = pytest.mark.django_db

Kind = Evidence.Kind


@pytest.fixture
def government() -> Organisation:
    return OrganisationFactory(
        name=ORGANISATION_NAME,
        kind=Organisation.Kind.GOVERNMENT,
        oin=OIN,
        kvk_number="",
        status=Organisation.Status.PENDING,
    )


@pytest.fixture
def applicant(government):
    return MembershipFactory(organisation=government, role=Membership.Role.ADMIN).user


@pytest.fixture
def application(government) -> KycApplication:
    return KycApplicationFactory(organisation=government)


@pytest.fixture
def trust_store(tmp_path, settings):
    """A trust store file holding one self-signed root, configured as ONBOARDING_TRUST_STORE."""
    root = make_root()
    path = tmp_path / "roots.pem"
    path.write_bytes(root.pem)
    settings.ONBOARDING_TRUST_STORE = str(path)
    return root


def attach(application, actor, content: bytes, kind: str = Kind.CERTIFICATE, filename: str = "cert.pem") -> Evidence:
    return services.evidence_attach(
        application_id=application.pk,
        kind=kind,
        filename=filename,
        content=content,
        content_type="application/octet-stream",
        actor=actor,
    )


def refused(application, actor, content: bytes, kind: str = Kind.CERTIFICATE) -> str:
    """Attach, expect a field error on ``file`` and check that nothing was stored."""
    audit_before = AuditEvent.objects.count()
    updated_before = KycApplication.objects.get(pk=application.pk).updated_at
    with pytest.raises(ValidationError) as caught:
        attach(application, actor, content, kind)
    assert list(caught.value.message_dict) == ["file"]
    assert not Evidence.objects.exists()
    assert AuditEvent.objects.count() == audit_before
    assert KycApplication.objects.get(pk=application.pk).updated_at == updated_before
    return caught.value.message_dict["file"][0]


# --- reading certificates -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "key_type", "key_size", "flagged"),
    [("rsa2048", "RSA", 2048, True), ("rsa3072", "RSA", 3072, False), ("p256", "EC", 256, False)],
)
@pytest.mark.parametrize("encoding", ["PEM", "DER"])
def test_a_certificate_is_read_in_pem_and_der(key, key_type, key_size, flagged, encoding):
    leaf = make_leaf(key=key)

    extracted = parse_certificate(leaf.pem if encoding == "PEM" else leaf.der, trust_store=[])

    assert extracted["format"] == encoding
    assert extracted["organisation"] == ORGANISATION_NAME
    assert extracted["serial_number"] == OIN
    assert extracted["common_name"] == f"{ORGANISATION_NAME} services"
    assert extracted["country"] == "NL"
    assert (extracted["key_type"], extracted["key_size"]) == (key_type, key_size)
    assert extracted["rsa_below_3072"] is flagged
    assert any("3072" in warning for warning in extracted["warnings"]) is flagged
    assert extracted["curve"] == ("secp256r1" if key == "p256" else "")
    assert extracted["expired"] is False
    assert extracted["self_signed"] is True
    assert extracted["not_after"] == leaf.certificate.not_valid_after_utc.isoformat()
    json.dumps(extracted)  # stored in a JSONField


def test_a_leaf_signed_by_a_configured_root_chains_to_the_trust_store(trust_store):
    leaf = make_leaf(issuer=trust_store)

    extracted = parse_certificate(leaf.pem)

    assert extracted["trust_store_configured"] is True
    assert extracted["chains_to_trust_store"] is True
    assert extracted["self_signed"] is False
    assert extracted["issuer_organisation"] == "Test PKI"


def test_a_chain_through_an_intermediate_in_the_pem_bundle(trust_store):
    intermediate = make_root(name="Test Intermediate CA", key="p256", key_index=8)
    # Re-issue the intermediate under the root, so root -> intermediate -> leaf.
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    certificate = (
        x509.CertificateBuilder()
        .subject_name(intermediate.certificate.subject)
        .issuer_name(trust_store.certificate.subject)
        .public_key(intermediate.key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(datetime.now(UTC) - timedelta(days=1))
        .not_valid_after(datetime.now(UTC) + timedelta(days=1000))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(trust_store.key, hashes.SHA256())
    )
    intermediate.certificate = certificate
    leaf = make_leaf(issuer=intermediate)
    bundle = leaf.pem + intermediate.certificate.public_bytes(serialization.Encoding.PEM)

    assert parse_certificate(bundle)["chains_to_trust_store"] is True
    assert parse_certificate(leaf.pem)["chains_to_trust_store"] is False  # without the intermediate


def test_a_self_signed_or_foreign_certificate_does_not_chain(trust_store):
    other_root = make_root(name="Someone Else's CA", key="p256", key_index=7)

    assert parse_certificate(make_leaf().pem)["chains_to_trust_store"] is False
    assert parse_certificate(make_leaf(issuer=other_root).pem)["chains_to_trust_store"] is False


def test_without_a_trust_store_the_chain_is_reported_unchecked(settings):
    settings.ONBOARDING_TRUST_STORE = None

    extracted = parse_certificate(make_leaf().pem)

    assert (extracted["trust_store_configured"], extracted["chains_to_trust_store"]) == (False, False)


# --- attaching certificates -----------------------------------------------------------------


def test_a_matching_certificate_is_stored_with_what_was_extracted(application, applicant, trust_store):
    leaf = make_leaf(issuer=trust_store)

    evidence = attach(application, applicant, leaf.der, filename="pkio.cer")

    evidence.refresh_from_db()
    assert evidence.mismatches == []
    assert evidence.extracted["serial_number"] == OIN
    assert evidence.extracted["chains_to_trust_store"] is True
    assert evidence.valid_until == leaf.certificate.not_valid_after_utc
    assert evidence.content_type == "application/pkix-cert"
    assert bytes(evidence.content) == leaf.der
    assert (evidence.size, evidence.uploaded_by) == (len(leaf.der), applicant)
    audit = AuditEvent.objects.get(event="kyc.evidence.attached")
    assert audit.organisation == application.organisation


def test_a_different_name_is_kept_as_a_mismatch_for_the_reviewer(application, applicant):
    evidence = attach(application, applicant, make_leaf(organisation="Gemeente Elders").pem)

    assert evidence.mismatches == [{"field": "name", "claimed": ORGANISATION_NAME, "found": "Gemeente Elders"}]


def test_legal_form_punctuation_and_case_are_not_a_mismatch(government, application, applicant):
    Organisation.objects.filter(pk=government.pk).update(name="Voorbeeld Diensten B.V.")

    evidence = attach(application, applicant, make_leaf(organisation="VOORBEELD DIENSTEN BV").pem)

    assert evidence.mismatches == []


def test_a_certificate_for_another_oin_is_refused(application, applicant):
    message = refused(application, applicant, make_leaf(oin="00000003123456780000").pem)

    assert "OIN 00000003123456780000" in message
    assert OIN in message


def test_an_expired_certificate_is_refused(application, applicant):
    now = datetime.now(UTC)
    leaf = make_leaf(not_before=now - timedelta(days=400), not_after=now - timedelta(days=1))

    assert "expired" in refused(application, applicant, leaf.pem)


def test_a_certificate_that_is_not_valid_yet_is_refused(application, applicant):
    now = datetime.now(UTC)
    leaf = make_leaf(not_before=now + timedelta(days=2), not_after=now + timedelta(days=400))

    assert "not valid before" in refused(application, applicant, leaf.pem)


@pytest.mark.parametrize(
    "damage",
    [
        lambda leaf: leaf.der[: len(leaf.der) // 2],  # truncated DER
        lambda leaf: leaf.der[:-1],
        lambda leaf: leaf.pem[: len(leaf.pem) // 2] + b"\n-----END CERTIFICATE-----\n",  # truncated PEM
        lambda leaf: leaf.pem.replace(b"-----END CERTIFICATE-----", b""),
        lambda leaf: b"-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n",
        lambda leaf: b"\x30\x82\x01\x00" + b"\x00" * 40,
        lambda leaf: b"hello, I am a certificate",
    ],
    ids=["der-half", "der-minus-one", "pem-half", "pem-no-end", "pem-garbage", "der-garbage", "text"],
)
def test_a_malformed_or_truncated_certificate_is_refused(application, applicant, damage):
    message = refused(application, applicant, damage(make_leaf()))

    assert "not a readable X.509 certificate" in message


def test_the_same_document_twice_is_refused(application, applicant):
    content = make_leaf().pem
    attach(application, applicant, content)

    with pytest.raises(ValidationError, match="attached to the application already"):
        attach(application, applicant, content)
    assert Evidence.objects.count() == 1


def test_a_kvk_based_oin_is_checked_against_the_kvk_number():
    organisation = Organisation(name=ORGANISATION_NAME, kvk_number="12345678", country="NL")
    extracted = parse_certificate(make_leaf(oin="00000003876543210000").pem, trust_store=[])

    assert compare_claims(extracted, organisation) == [
        {"field": "kvk_number", "claimed": "12345678", "found": "87654321"}
    ]


def test_an_oin_the_organisation_did_not_claim_is_shown_not_refused(application, applicant, government):
    Organisation.objects.filter(pk=government.pk).update(kind=Organisation.Kind.PRIVATE, oin="", kvk_number="12345678")

    evidence = attach(application, applicant, make_leaf(oin="00000099123456780000").pem)

    assert evidence.mismatches == [{"field": "oin", "claimed": "", "found": "00000099123456780000"}]


# --- KvK extracts and eIDAS attestations ----------------------------------------------------


def test_a_kvk_extract_pdf_is_stored(application, applicant):
    evidence = attach(application, applicant, MINIMAL_PDF, kind=Kind.KVK_EXTRACT, filename="extract.pdf")

    assert evidence.content_type == "application/pdf"
    assert evidence.extracted["pdf_version"] == "1.7"
    assert evidence.valid_until is None


@pytest.mark.parametrize(
    ("content", "words"),
    [
        (b"PK\x03\x04 a zip, not a pdf", "not a PDF"),
        (b"<html>extract</html>", "not a PDF"),
        (MINIMAL_PDF[:40], "truncated"),
        (MINIMAL_PDF.replace(b"/Catalog", b"/Catalog /OpenAction << /S /JavaScript >>"), "scripts"),
        (b"", "empty"),
    ],
    ids=["zip", "html", "truncated", "javascript", "empty"],
)
def test_a_non_pdf_or_damaged_kvk_extract_is_refused(application, applicant, content, words):
    assert words in refused(application, applicant, content, kind=Kind.KVK_EXTRACT)


def test_an_oversized_upload_is_refused(application, applicant, settings):
    settings.ONBOARDING_MAX_UPLOAD_BYTES = 1024
    big = MINIMAL_PDF[:-6] + b" " * 2048 + b"%%EOF\n"

    assert "limit is 1,024 bytes" in refused(application, applicant, big, kind=Kind.KVK_EXTRACT)


@pytest.fixture
def foreign(government) -> Organisation:
    Organisation.objects.filter(pk=government.pk).update(
        kind=Organisation.Kind.FOREIGN, oin="", eidas_identifier="DE/NL/HRB123456", country="DE"
    )
    government.refresh_from_db()
    return government


def attestation(**members: str) -> bytes:
    return json.dumps(members).encode()


def test_an_eidas_attestation_in_json_is_compared_with_the_claim(foreign, application, applicant):
    content = attestation(legal_identifier="DE/NL/HRB123456", legal_name=ORGANISATION_NAME.upper())

    evidence = attach(application, applicant, content, kind=Kind.EIDAS_ATTESTATION, filename="eidas.json")

    assert evidence.extracted["legal_identifier"] == "DE/NL/HRB123456"
    assert evidence.mismatches == []
    assert evidence.content_type == "application/json"


def test_an_eidas_attestation_for_another_identifier_is_refused(foreign, application, applicant):
    message = refused(application, applicant, attestation(legal_identifier="DE/NL/HRB999"), Kind.EIDAS_ATTESTATION)

    assert "DE/NL/HRB999" in message


@pytest.mark.parametrize(
    "content",
    [attestation(name="no identifier"), attestation(legal_identifier="HRB123456"), b"[1, 2]", b"\xff\xfe not json"],
    ids=["no-identifier", "malformed-identifier", "not-an-object", "not-json"],
)
def test_an_unusable_eidas_attestation_is_refused(foreign, application, applicant, content):
    refused(application, applicant, content, Kind.EIDAS_ATTESTATION)


def test_an_eidas_attestation_as_pdf_is_kept_for_the_reviewer(foreign, application, applicant):
    evidence = attach(application, applicant, MINIMAL_PDF, kind=Kind.EIDAS_ATTESTATION)

    assert (evidence.extracted["format"], evidence.mismatches) == ("PDF", [])


def test_evidence_can_only_be_added_while_the_application_is_editable(application, applicant):
    KycApplication.objects.filter(pk=application.pk).update(status=KycApplication.Status.SUBMITTED)

    with pytest.raises(Exception, match="cannot be changed"):
        attach(application, applicant, MINIMAL_PDF, kind=Kind.KVK_EXTRACT)
    assert not Evidence.objects.exists()
