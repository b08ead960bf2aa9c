"""The KYC application page: draft, evidence (what was read, mismatches), submit, questions and answers."""

from __future__ import annotations

from io import BytesIO

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from authserver.audit import AuditEvent
from onboarding import services
from onboarding.models import Evidence, KycApplication, KycMessage
from tests.factories import UserFactory, otp_verified

from .conftest import OIN, PDF

pytestmark = pytest.mark.django_db


def app_url(application: KycApplication, action: str = "") -> str:
    base = f"/portal/organisations/{application.organisation_id}/applications/{application.pk}/"
    return f"{base}{action}/" if action else base


def upload(name: str, content: bytes, content_type: str = "application/octet-stream") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type=content_type)


@pytest.fixture
def reviewer(db):
    """A staff reviewer as the admin has them: signed in with a second factor."""
    return otp_verified(UserFactory(is_staff=True))


def test_owner_starts_a_draft(owner, pending_organisation):
    url = f"/portal/organisations/{pending_organisation.pk}/applications/new/"
    assert owner.client().get(url).status_code == 200
    response = owner.client().post(url, {"requested_trust_level": "high", "motivation": "We need BRP data."})
    application = KycApplication.objects.get(organisation=pending_organisation)
    assert response.status_code == 302
    assert response["Location"] == app_url(application)
    assert (application.status, application.requested_trust_level) == ("draft", "high")


def test_a_second_open_application_is_refused(owner, draft, pending_organisation):
    url = f"/portal/organisations/{pending_organisation.pk}/applications/new/"
    response = owner.client().post(url, {"requested_trust_level": "low", "motivation": ""})
    assert response.status_code == 400
    assert response.context["form"].non_field_errors()
    assert KycApplication.objects.count() == 1


def test_bad_trust_level_is_a_field_error(owner, draft, pending_organisation):
    response = owner.client().post(app_url(draft, "edit"), {"requested_trust_level": "ultra", "motivation": "x"})
    assert response.status_code == 400
    assert response.context["edit_form"].errors["requested_trust_level"]
    draft.refresh_from_db()
    assert draft.requested_trust_level == "substantial"


def test_owner_edits_the_draft(owner, draft):
    response = owner.client().post(app_url(draft, "edit"), {"requested_trust_level": "high", "motivation": "Updated."})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert (draft.requested_trust_level, draft.motivation) == ("high", "Updated.")


@pytest.mark.parametrize("der", [False, True], ids=["pem", "der"])
def test_certificate_upload_shows_what_was_read(owner, draft, make_certificate, der):
    certificate = make_certificate(der=der)
    response = owner.client().post(
        app_url(draft, "evidence"), {"kind": "certificate", "file": upload("cert.pem", certificate)}
    )
    assert response.status_code == 302
    evidence = Evidence.objects.get(application=draft)
    assert evidence.extracted["serial_number"] == OIN
    assert evidence.mismatches == []
    page = owner.client().get(app_url(draft)).content.decode()
    assert OIN in page
    assert "Subject serialNumber (OIN)" in page
    assert "cert.pem" in page


def test_a_name_mismatch_is_highlighted(owner, draft, make_certificate):
    certificate = make_certificate(organisation="Heel Andere Naam BV")
    response = owner.client().post(
        app_url(draft, "evidence"), {"kind": "certificate", "file": upload("cert.pem", certificate)}, follow=True
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert 'class="mismatch"' in html
    assert "Heel Andere Naam BV" in html
    assert "Gemeente Voorbeeld" in html
    assert "disagrees" in html


@pytest.mark.parametrize(
    ("kind", "name", "content"),
    [
        pytest.param(
            "certificate",
            "cert.pem",
            b"-----BEGIN CERTIFICATE-----\nMIIBroken\n-----END CERTIFICATE-----\n",
            id="malformed-pem",
        ),
        pytest.param("certificate", "cert.der", b"\x30\x82\x01\x00garbage", id="malformed-der"),
        pytest.param("certificate", "notes.txt", b"hello", id="not-a-certificate"),
        pytest.param("kvk_extract", "extract.pdf", b"<html>not a pdf</html>", id="non-pdf"),
        pytest.param("kvk_extract", "extract.pdf", PDF[:30], id="truncated-pdf"),
        pytest.param("eidas_attestation", "att.json", b'{"legal_identifier": "nope"}', id="bad-eidas"),
        pytest.param("eidas_attestation", "att.json", b"[1, 2", id="broken-json"),
    ],
)
def test_bad_evidence_is_a_file_error_and_stores_nothing(owner, draft, kind, name, content):
    response = owner.client().post(app_url(draft, "evidence"), {"kind": kind, "file": upload(name, content)})
    assert response.status_code == 400
    assert response.context["evidence_form"].errors["file"]
    assert not Evidence.objects.exists()
    assert not AuditEvent.objects.filter(event="kyc.evidence.attached").exists()


def test_a_truncated_certificate_is_refused(owner, draft, make_certificate):
    certificate = make_certificate(der=True)
    response = owner.client().post(
        app_url(draft, "evidence"),
        {"kind": "certificate", "file": upload("cert.der", certificate[: len(certificate) // 2])},
    )
    assert response.status_code == 400
    assert response.context["evidence_form"].errors["file"]
    assert not Evidence.objects.exists()


def test_a_certificate_with_another_oin_is_refused(owner, draft, make_certificate):
    certificate = make_certificate(serial_number="00000003123456780000")
    response = owner.client().post(
        app_url(draft, "evidence"), {"kind": "certificate", "file": upload("cert.pem", certificate)}
    )
    assert response.status_code == 400
    assert "00000003123456780000" in " ".join(response.context["evidence_form"].errors["file"])
    assert not Evidence.objects.exists()


def test_an_expired_certificate_is_refused(owner, draft, make_certificate):
    response = owner.client().post(
        app_url(draft, "evidence"), {"kind": "certificate", "file": upload("cert.pem", make_certificate(days=-1))}
    )
    assert response.status_code == 400
    assert "expired" in " ".join(response.context["evidence_form"].errors["file"])
    assert not Evidence.objects.exists()


def test_an_oversized_upload_is_refused_before_it_is_read(owner, draft, settings):
    settings.ONBOARDING_MAX_UPLOAD_BYTES = 1024
    response = owner.client().post(
        app_url(draft, "evidence"), {"kind": "kvk_extract", "file": upload("big.pdf", PDF + b"0" * 2048)}
    )
    assert response.status_code == 400
    assert response.context["evidence_form"].errors["file"]
    assert not Evidence.objects.exists()


def test_missing_file_or_unknown_kind_are_field_errors(owner, draft):
    response = owner.client().post(app_url(draft, "evidence"), {"kind": "certificate"})
    assert response.status_code == 400
    assert response.context["evidence_form"].errors["file"]
    response = owner.client().post(app_url(draft, "evidence"), {"kind": "passport", "file": upload("a.pdf", PDF)})
    assert response.status_code == 400
    assert response.context["evidence_form"].errors["kind"]
    assert not Evidence.objects.exists()


def test_kvk_extract_pdf_is_attached(owner, draft):
    response = owner.client().post(
        app_url(draft, "evidence"), {"kind": "kvk_extract", "file": upload("extract.pdf", PDF, "application/pdf")}
    )
    assert response.status_code == 302
    assert Evidence.objects.get(application=draft).content_type == "application/pdf"


def test_submit_needs_evidence_then_moves_to_submitted(owner, draft):
    refused = owner.client().post(app_url(draft, "submit"))
    assert refused.status_code == 400
    assert refused.context["submit_form"].non_field_errors()
    draft.refresh_from_db()
    assert draft.status == "draft"

    owner.client().post(app_url(draft, "evidence"), {"kind": "kvk_extract", "file": upload("extract.pdf", PDF)})
    response = owner.client().post(app_url(draft, "submit"))
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == "submitted"
    page = owner.client().get(app_url(draft)).content.decode()
    assert "Submitted" in page
    assert app_url(draft, "evidence") not in page, "a submitted application takes no more evidence"
    # A late upload is refused with a message, and stores nothing.
    late = owner.client().post(app_url(draft, "evidence"), {"kind": "kvk_extract", "file": upload("x.pdf", PDF + b" ")})
    assert late.status_code == 302
    assert Evidence.objects.count() == 1


def test_reviewer_questions_are_answered_and_the_application_resubmitted(owner, draft, reviewer):
    services.evidence_attach(
        application_id=draft.pk, kind="kvk_extract", filename="e.pdf", content=PDF, content_type="", actor=owner.user
    )
    services.kyc_application_submit(application_id=draft.pk, actor=owner.user)
    services.kyc_application_start_review(application_id=draft.pk, reviewer=reviewer)
    services.kyc_application_request_changes(
        application_id=draft.pk, reviewer=reviewer, reason="Please add your PKIoverheid certificate."
    )
    page = owner.client().get(app_url(draft))
    html = page.content.decode()
    assert "Changes requested" in html
    assert "Please add your PKIoverheid certificate." in html
    assert "Resubmit the application" in html

    empty = owner.client().post(app_url(draft, "messages"), {"body": "   "})
    assert empty.status_code == 400
    assert empty.context["message_form"].errors["body"]

    answer = owner.client().post(app_url(draft, "messages"), {"body": "Attached it now."})
    assert answer.status_code == 302
    assert KycMessage.objects.filter(application=draft, from_reviewer=False, body="Attached it now.").exists()

    assert owner.client().post(app_url(draft, "submit")).status_code == 302
    draft.refresh_from_db()
    assert draft.status == "submitted"


def test_developer_sees_the_application_but_cannot_change_it(developer, owner, draft, make_certificate):
    page = developer.client().get(app_url(draft))
    assert page.status_code == 200
    html = page.content.decode()
    for action in ("evidence", "submit", "messages", "edit"):
        assert app_url(draft, action) not in html
    assert "Submit the application" not in html
    client = developer.client()
    evidence = {"kind": "certificate", "file": BytesIO(make_certificate())}
    evidence["file"].name = "cert.pem"  # type: ignore[attr-defined]
    assert client.post(app_url(draft, "evidence"), evidence).status_code == 403
    assert client.post(app_url(draft, "submit")).status_code == 403
    assert client.post(app_url(draft, "edit"), {"requested_trust_level": "high", "motivation": ""}).status_code == 403
    assert client.post(app_url(draft, "messages"), {"body": "hi"}).status_code == 403
    url = f"/portal/organisations/{draft.organisation_id}/applications/new/"
    assert client.get(url).status_code == 403
    assert not Evidence.objects.exists()
    draft.refresh_from_db()
    assert (draft.status, draft.requested_trust_level) == ("draft", "substantial")
    assert not KycMessage.objects.exists()


def test_the_representative_follows_the_decision_to_approval(owner, draft, reviewer, pending_organisation):
    services.evidence_attach(
        application_id=draft.pk, kind="kvk_extract", filename="e.pdf", content=PDF, content_type="", actor=owner.user
    )
    services.kyc_application_submit(application_id=draft.pk, actor=owner.user)
    client = owner.client()
    assert "Submitted" in client.get(app_url(draft)).content.decode()
    services.kyc_application_start_review(application_id=draft.pk, reviewer=reviewer)
    assert "In review" in client.get(app_url(draft)).content.decode()
    services.kyc_application_approve(application_id=draft.pk, reviewer=reviewer, note="All in order.")

    page = client.get(f"/portal/organisations/{pending_organisation.pk}/").content.decode()
    pending_organisation.refresh_from_db()
    assert pending_organisation.status == "active"
    assert "Active" in page
    assert "Substantial" in page
    assert f"{timezone.localtime(pending_organisation.next_review_at):%Y-%m-%d}" in page
    assert "Approved" in client.get(app_url(draft)).content.decode()
    assert "Approved" in client.get("/portal/").content.decode()
    assert "Start a new application" in page, "a higher trust level can be applied for later"
