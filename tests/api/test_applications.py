"""/api/v1/.../applications, evidence, submit and messages: by session and by token, and refusals."""

from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from authserver.audit import AuditEvent
from onboarding import services
from onboarding.models import Evidence, KycApplication, KycMessage

from .conftest import API, OIN, PDF, assert_problem, field_errors, session_client

pytestmark = pytest.mark.django_db


def upload(api, application, content: bytes, *, kind: str = "certificate", name: str = "cert.pem"):
    return api.post(
        f"{API}/applications/{application.pk}/evidence",
        {"kind": kind, "file": SimpleUploadedFile(name, content, content_type="application/octet-stream")},
        format="multipart",
    )


# ---- applications -------------------------------------------------------------------------


def test_create_and_list(caller, owner, org):
    api = caller(owner.user)
    response = api.post(
        f"{API}/organisations/{org.pk}/applications",
        {"requested_trust_level": "high", "motivation": "We need the BRP."},
        format="json",
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["status"] == "draft"
    assert body["requested_trust_level"] == "high"
    assert response["Location"] == f"{API}/applications/{body['id']}"
    listed = api.get(f"{API}/organisations/{org.pk}/applications").json()
    assert [item["id"] for item in listed["results"]] == [body["id"]]
    assert AuditEvent.objects.filter(event="kyc.created", organisation=org).exists()


def test_a_second_open_application_is_a_conflict(owner, org, draft):
    response = session_client(owner.user).post(f"{API}/organisations/{org.pk}/applications", {}, format="json")
    assert_problem(response, 409, type_slug="conflict")
    assert KycApplication.objects.filter(organisation=org).count() == 1


def test_a_developer_cannot_apply(caller, developer, org):
    response = caller(developer.user).post(f"{API}/organisations/{org.pk}/applications", {}, format="json")
    assert_problem(response, 403, type_slug="forbidden")
    assert not KycApplication.objects.exists()


def test_a_bad_trust_level(owner, org):
    response = session_client(owner.user).post(
        f"{API}/organisations/{org.pk}/applications", {"requested_trust_level": "extreme"}, format="json"
    )
    assert "requested_trust_level" in field_errors(assert_problem(response, 400, type_slug="validation-error"))


def test_detail_and_patch(caller, owner, developer, draft):
    assert caller(developer.user).get(f"{API}/applications/{draft.pk}").json()["motivation"] == "BRP access."
    response = caller(owner.user).patch(
        f"{API}/applications/{draft.pk}", {"motivation": "BRP and BAG access."}, format="json"
    )
    assert response.status_code == 200, response.content
    draft.refresh_from_db()
    assert draft.motivation == "BRP and BAG access."


def test_a_developer_cannot_patch(caller, developer, draft):
    response = caller(developer.user).patch(f"{API}/applications/{draft.pk}", {"motivation": "x"}, format="json")
    assert_problem(response, 403, type_slug="forbidden")
    draft.refresh_from_db()
    assert draft.motivation == "BRP access."


@pytest.mark.parametrize(
    ("method", "suffix", "data"),
    [
        ("get", "", None),
        ("patch", "", {"motivation": "mine"}),
        ("post", "/submit", None),
        ("get", "/evidence", None),
        ("get", "/messages", None),
        ("post", "/messages", {"body": "hello"}),
    ],
)
def test_another_organisations_application_is_not_found(caller, outsider, draft, method, suffix, data):
    api = caller(outsider.user)
    for application_id in (draft.pk, draft.pk + 1):
        response = getattr(api, method)(f"{API}/applications/{application_id}{suffix}", data, format="json")
        assert_problem(response, 404)
    draft.refresh_from_db()
    assert draft.status == "draft"
    assert draft.motivation == "BRP access."
    assert not KycMessage.objects.exists()


def test_another_organisations_application_list_is_not_found(outsider, org, draft):
    api = session_client(outsider.user)
    assert_problem(api.get(f"{API}/organisations/{org.pk}/applications"), 404)
    assert_problem(api.post(f"{API}/organisations/{org.pk}/applications", {}, format="json"), 404)


def test_an_outsider_cannot_upload(outsider, draft, make_certificate):
    assert_problem(upload(session_client(outsider.user), draft, make_certificate()), 404)
    assert not Evidence.objects.exists()


# ---- evidence -----------------------------------------------------------------------------


@pytest.mark.parametrize("der", [False, True])
def test_upload_a_certificate(caller, owner, draft, make_certificate, der):
    response = upload(caller(owner.user), draft, make_certificate(der=der), name="cert.der" if der else "cert.pem")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["kind"] == "certificate"
    assert body["extracted"]["serial_number"] == OIN
    assert body["mismatches"] == []
    assert "content" not in body
    listed = caller(owner.user).get(f"{API}/applications/{draft.pk}/evidence").json()
    assert [item["id"] for item in listed["results"]] == [body["id"]]


def test_upload_a_kvk_extract(owner, draft):
    response = upload(session_client(owner.user), draft, PDF, kind="kvk_extract", name="uittreksel.pdf")
    assert response.status_code == 201, response.content
    assert response.json()["content_type"] == "application/pdf"


@pytest.mark.parametrize(
    ("kind", "content", "words"),
    [
        ("certificate", b"-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", "certificate"),
        ("certificate", b"\x30\x82\x01\x00garbage", "certificate"),
        ("kvk_extract", b"GIF89a not a pdf", "not a PDF"),
        ("kvk_extract", b"%PDF-1.4 truncated", "truncated"),
    ],
)
def test_bad_documents_are_field_errors_and_nothing_is_stored(caller, owner, draft, kind, content, words):
    response = upload(caller(owner.user), draft, content, kind=kind)
    body = assert_problem(response, 400, type_slug="validation-error")
    messages = field_errors(body)["file"]
    assert any(words.lower() in message.lower() for message in messages), messages
    assert not Evidence.objects.exists()


def test_a_certificate_of_another_oin_is_refused(owner, draft, make_certificate):
    response = upload(session_client(owner.user), draft, make_certificate(serial_number="00000001123456782000"))
    body = assert_problem(response, 400, type_slug="validation-error")
    assert "OIN" in " ".join(field_errors(body)["file"])
    assert not Evidence.objects.exists()


def test_an_oversized_upload_is_refused_before_reading(owner, draft, settings):
    settings.ONBOARDING_MAX_UPLOAD_BYTES = 1024
    response = upload(session_client(owner.user), draft, PDF + b" " * 2048, kind="kvk_extract")
    body = assert_problem(response, 400, type_slug="validation-error")
    assert "limit" in " ".join(field_errors(body)["file"])
    assert not Evidence.objects.exists()


def test_upload_without_a_file_or_kind(owner, draft):
    response = session_client(owner.user).post(
        f"{API}/applications/{draft.pk}/evidence", {"kind": "passport"}, format="multipart"
    )
    assert set(field_errors(assert_problem(response, 400, type_slug="validation-error"))) == {"kind", "file"}


def test_a_developer_cannot_upload(caller, developer, draft, make_certificate):
    assert_problem(upload(caller(developer.user), draft, make_certificate()), 403, type_slug="forbidden")
    assert not Evidence.objects.exists()


def test_evidence_must_be_multipart(owner, draft):
    response = session_client(owner.user).post(
        f"{API}/applications/{draft.pk}/evidence", {"kind": "certificate", "file": "PEM"}, format="json"
    )
    assert_problem(response, 415)


# ---- submit -------------------------------------------------------------------------------


def test_submit(caller, owner, draft, make_certificate):
    services.evidence_attach(
        application_id=draft.pk,
        kind="certificate",
        filename="cert.pem",
        content=make_certificate(),
        content_type="application/x-pem-file",
        actor=owner.user,
    )
    api = caller(owner.user)
    response = api.post(f"{API}/applications/{draft.pk}/submit")
    assert response.status_code == 200, response.content
    assert response.json()["status"] == "submitted"
    draft.refresh_from_db()
    assert draft.status == "submitted"
    assert draft.submitted_at is not None
    assert AuditEvent.objects.filter(event="kyc.submitted").count() == 1
    # Twice is a conflict (the transition table), and changes nothing.
    body = assert_problem(api.post(f"{API}/applications/{draft.pk}/submit"), 409, type_slug="conflict")
    assert "submitted" in body["detail"]
    assert AuditEvent.objects.filter(event="kyc.submitted").count() == 1
    # A submitted application cannot change.
    assert_problem(
        api.patch(f"{API}/applications/{draft.pk}", {"motivation": "x"}, format="json"), 409, type_slug="conflict"
    )
    assert_problem(upload(api, draft, make_certificate(der=True)), 409, type_slug="conflict")


def test_submit_without_evidence_is_a_conflict(owner, draft):
    body = assert_problem(
        session_client(owner.user).post(f"{API}/applications/{draft.pk}/submit"), 409, type_slug="conflict"
    )
    assert "document" in body["detail"]
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_a_developer_cannot_submit(caller, developer, draft):
    assert_problem(caller(developer.user).post(f"{API}/applications/{draft.pk}/submit"), 403, type_slug="forbidden")
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_submit_accepts_an_empty_json_body(owner, draft):
    response = session_client(owner.user).post(f"{API}/applications/{draft.pk}/submit", {}, format="json")
    assert_problem(response, 409, type_slug="conflict")  # no evidence yet, but the body is fine


# ---- messages -----------------------------------------------------------------------------


def test_messages(caller, owner, developer, draft):
    response = caller(owner.user).post(
        f"{API}/applications/{draft.pk}/messages", {"body": "Our answer."}, format="json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["from_reviewer"] is False
    listed = caller(developer.user).get(f"{API}/applications/{draft.pk}/messages").json()
    assert [message["body"] for message in listed["results"]] == ["Our answer."]


def test_a_developer_cannot_post_messages(caller, developer, draft):
    response = caller(developer.user).post(f"{API}/applications/{draft.pk}/messages", {"body": "hi"}, format="json")
    assert_problem(response, 403, type_slug="forbidden")
    assert not KycMessage.objects.exists()


def test_an_empty_message(owner, draft):
    response = session_client(owner.user).post(f"{API}/applications/{draft.pk}/messages", {"body": " "}, format="json")
    assert "body" in field_errors(assert_problem(response, 400, type_slug="validation-error"))
