"""The KYC review queue in the admin: list, filters, the evidence view and the decisions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from authserver.audit import AuditEvent
from onboarding.models import KycApplication, KycApproval, KycMessage, Membership, Organisation
from tests.factories import OrganisationFactory, UserFactory

from .conftest import submitted_application, verified_client

Status = KycApplication.Status
CHANGELIST = reverse("admin:onboarding_kycapplication_changelist")


def change_url(application) -> str:
    return reverse("admin:onboarding_kycapplication_change", args=[application.pk])


def decision_url(application, view: str) -> str:
    return reverse(f"admin:onboarding_kycapplication_{view}", args=[application.pk])


def flashed(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def in_review(applicant, browser) -> KycApplication:
    browser.post(decision_url(applicant.application, "start_review"))
    applicant.application.refresh_from_db()
    assert applicant.application.status == Status.IN_REVIEW
    return applicant.application


def events_for(application) -> list[str]:
    return list(
        AuditEvent.objects.filter(target_type="onboarding.kycapplication", target_id=str(application.pk))
        .order_by("id")
        .values_list("event", flat=True)
    )


# --- the queue -------------------------------------------------------------------------------


def make_application(status, *, days_ago=None, trust_level=Organisation.TrustLevel.SUBSTANTIAL, name=None):
    organisation = OrganisationFactory(status=Organisation.Status.PENDING, **({"name": name} if name else {}))
    submitted_at = timezone.now() - timedelta(days=days_ago) if days_ago is not None else None
    return KycApplication.objects.create(
        organisation=organisation, status=status, requested_trust_level=trust_level, submitted_at=submitted_at
    )


def listed(browser, query: str = "") -> set[str]:
    response = browser.get(f"{CHANGELIST}?{query}")
    assert response.status_code == 200
    return {str(app.organisation) for app in response.context["cl"].result_list}


def test_queue_lists_organisation_status_trust_level_submitted_reviewer_and_approvals(admin_browser, staff):
    application = make_application(Status.IN_REVIEW, days_ago=2, trust_level=Organisation.TrustLevel.HIGH, name="Hoog")
    application.reviewer = staff
    application.save()
    KycApproval.objects.create(application=application, reviewer=staff)
    make_application(Status.SUBMITTED, days_ago=1, name="Gewoon")
    response = admin_browser.get(CHANGELIST)
    html = response.content.decode()
    for header in ("Organisation", "Status", "Trust level", "Submitted at", "Reviewer", "Approvals"):
        assert header in html
    assert "1 of 2" in html  # high: four eyes
    assert "0 of 1" in html
    assert staff.username in html
    # The queue is read-only: no add, no delete action.
    assert reverse("admin:onboarding_kycapplication_add") not in html
    assert "delete_selected" not in html


def test_queue_filters_by_status_age_and_trust_level(admin_browser):
    make_application(Status.SUBMITTED, days_ago=1, name="Fresh")
    make_application(Status.SUBMITTED, days_ago=10, name="Waiting")
    make_application(Status.IN_REVIEW, days_ago=45, trust_level=Organisation.TrustLevel.HIGH, name="Stale")
    make_application(Status.DRAFT, name="Draft")

    assert listed(admin_browser) == {"Fresh", "Waiting", "Stale", "Draft"}
    assert listed(admin_browser, "status__exact=submitted") == {"Fresh", "Waiting"}
    assert listed(admin_browser, "status__exact=in_review") == {"Stale"}
    assert listed(admin_browser, "age=lt7") == {"Fresh"}
    assert listed(admin_browser, "age=7-30") == {"Waiting"}
    assert listed(admin_browser, "age=gt30") == {"Stale"}
    assert listed(admin_browser, "requested_trust_level__exact=high") == {"Stale"}
    assert listed(admin_browser, "status__exact=submitted&age=7-30") == {"Waiting"}
    html = admin_browser.get(CHANGELIST).content.decode()
    for label in ("By status", "By age since submitted", "Less than 7 days", "7 to 30 days", "More than 30 days"):
        assert label in html


# --- the evidence beside the claims ---------------------------------------------------------


def comparison_rows(response) -> dict[str, object]:
    [item] = response.context["kyc_evidence"]
    return {row.field: row for row in item.rows}


def test_change_view_shows_extracted_oin_beside_claimed_oin(admin_browser, applicant):
    response = admin_browser.get(change_url(applicant.application))
    assert response.status_code == 200
    rows = comparison_rows(response)
    oin = applicant.organisation.oin
    assert (rows["oin"].claimed, rows["oin"].found, rows["oin"].mismatch) == (oin, oin, False)
    html = response.content.decode()
    assert "OIN (subject serialNumber)" in html
    assert html.count(oin) >= 3  # claimed, beside it the extracted one, and in the claims table
    assert "✓ matches" in html
    assert 'class="kyc-mismatch"' not in html
    # Read-only: no save buttons, and the decision form for this state.
    assert 'name="_save"' not in html
    assert decision_url(applicant.application, "start_review") in html


def test_change_view_highlights_a_mismatch_in_red_and_in_words(admin_browser, db):
    applicant = submitted_application(name="Gemeente Voorbeeld", certificate_name="Gemeente Anders")
    # The organisation's claimed OIN changed after the certificate was read.
    other_oin = "00000004003214345000"
    Organisation.objects.filter(pk=applicant.organisation.pk).update(oin=other_oin)
    response = admin_browser.get(change_url(applicant.application))
    rows = comparison_rows(response)
    assert (rows["oin"].claimed, rows["oin"].found, rows["oin"].mismatch) == (
        other_oin,
        applicant.organisation.oin,
        True,
    )
    assert (rows["name"].found, rows["name"].mismatch) == ("Gemeente Anders", True)
    assert not rows["country"].mismatch
    html = response.content.decode()
    assert html.count('class="kyc-mismatch"') == 2
    assert html.count("✗ mismatch") == 2  # in words, not colour alone
    assert "2 mismatches" in html
    assert "background: #fde2e1" in html


def test_evidence_is_downloadable_by_staff_and_the_download_is_audited(admin_browser, applicant, staff):
    evidence = applicant.application.evidence.get()
    url = reverse("admin:onboarding_kycapplication_evidence", args=[applicant.application.pk, evidence.pk])
    assert url in admin_browser.get(change_url(applicant.application)).content.decode()
    response = admin_browser.get(url)
    assert response.status_code == 200
    assert response.content == bytes(evidence.content)
    assert response["Content-Disposition"].startswith("attachment")
    assert response["Content-Type"] == "application/x-pem-file"
    assert AuditEvent.objects.filter(event="kyc.evidence.downloaded", actor_user=staff).count() == 1
    # Another application's evidence id does not open through this application.
    other = submitted_application(name="Andere Gemeente", oin="00000004003214345000")
    wrong = reverse("admin:onboarding_kycapplication_evidence", args=[other.application.pk, evidence.pk])
    assert admin_browser.get(wrong).status_code == 404
    # Not staff: no download.
    outsider = Client()
    outsider.force_login(UserFactory())
    assert outsider.get(url).status_code == 302


# --- decisions -------------------------------------------------------------------------------


def test_start_review_and_approve_change_state_and_audit(admin_browser, applicant, staff):
    response = admin_browser.post(decision_url(applicant.application, "start_review"))
    assert response.status_code == 302
    assert response["Location"] == change_url(applicant.application)
    application = KycApplication.objects.get(pk=applicant.application.pk)
    assert (application.status, application.reviewer) == (Status.IN_REVIEW, staff)

    page = admin_browser.get(change_url(application)).content.decode()
    for view in ("approve", "reject", "request_changes"):
        assert decision_url(application, view) in page

    response = admin_browser.post(
        decision_url(application, "approve"), {"note": "Certificate and OIN agree."}, follow=True
    )
    assert any("Approved" in m for m in flashed(response))
    application.refresh_from_db()
    assert application.status == Status.APPROVED
    organisation = application.organisation
    assert organisation.status == Organisation.Status.ACTIVE
    assert organisation.trust_level == Organisation.TrustLevel.SUBSTANTIAL
    assert organisation.next_review_at is not None
    assert events_for(application)[-3:] == ["kyc.submitted", "kyc.review_started", "kyc.approved"]
    approved = AuditEvent.objects.get(event="kyc.approved", target_id=str(application.pk))
    assert approved.actor_user == staff


def test_reject_needs_a_reason_and_then_changes_state_and_audits(admin_browser, applicant):
    application = in_review(applicant, admin_browser)
    before = AuditEvent.objects.count()
    response = admin_browser.post(decision_url(application, "reject"), {"reason": "   "}, follow=True)
    assert "A reason is required." in flashed(response)
    application.refresh_from_db()
    assert application.status == Status.IN_REVIEW
    assert AuditEvent.objects.count() == before

    response = admin_browser.post(
        decision_url(application, "reject"), {"reason": "The certificate belongs to another body."}, follow=True
    )
    assert response.status_code == 200
    assert any("Rejected" in m for m in flashed(response))
    application.refresh_from_db()
    assert application.status == Status.REJECTED
    assert application.decision_reason == "The certificate belongs to another body."
    assert application.organisation.status == Organisation.Status.PENDING
    assert events_for(application)[-1] == "kyc.rejected"


def test_request_changes_needs_a_reason_and_asks_the_applicant(admin_browser, applicant, staff):
    application = in_review(applicant, admin_browser)
    response = admin_browser.post(decision_url(application, "request_changes"), {}, follow=True)
    assert "A reason is required." in flashed(response)
    application.refresh_from_db()
    assert application.status == Status.IN_REVIEW

    response = admin_browser.post(
        decision_url(application, "request_changes"), {"reason": "Please add the KvK extract."}, follow=True
    )
    assert any("Changes requested" in m for m in flashed(response))
    application.refresh_from_db()
    assert application.status == Status.CHANGES_REQUESTED
    message = KycMessage.objects.get(application=application)
    assert (message.body, message.from_reviewer, message.author) == ("Please add the KvK extract.", True, staff)
    assert events_for(application)[-1] == "kyc.changes_requested"
    # The conversation shows on the application's page.
    assert "Please add the KvK extract." in admin_browser.get(change_url(application)).content.decode()


def test_an_admin_cannot_approve_their_own_organisation(staff, admin_browser, applicant):
    Membership.objects.create(user=staff, organisation=applicant.organisation, role=Membership.Role.ADMIN)
    response = admin_browser.post(decision_url(applicant.application, "start_review"), follow=True)
    assert response.status_code == 200
    assert any("cannot review an organisation you are or were a member of" in m for m in flashed(response))
    applicant.application.refresh_from_db()
    assert applicant.application.status == Status.SUBMITTED

    # Even once someone else started the review, approving stays refused.
    other = verified_client(UserFactory(is_staff=True, is_superuser=True))
    in_review(applicant, other)
    before = AuditEvent.objects.count()
    response = admin_browser.post(decision_url(applicant.application, "approve"), {"note": ""}, follow=True)
    assert response.status_code == 200
    assert any("cannot review an organisation" in m for m in flashed(response))
    applicant.application.refresh_from_db()
    assert applicant.application.status == Status.IN_REVIEW
    assert not applicant.application.approvals.exists()
    assert applicant.application.organisation.status == Organisation.Status.PENDING
    assert AuditEvent.objects.count() == before


def test_four_eyes_for_trust_level_high(admin_browser, second_admin_browser, staff, second_admin, db):
    applicant = submitted_application(trust_level=Organisation.TrustLevel.HIGH)
    application = in_review(applicant, admin_browser)

    response = admin_browser.post(decision_url(application, "approve"), {"note": "first"}, follow=True)
    assert any("1 of 2 approvals" in m for m in flashed(response))
    application.refresh_from_db()
    assert application.status == Status.IN_REVIEW
    assert application.organisation.status == Organisation.Status.PENDING
    assert "1 of 2 approvals" in response.content.decode()
    assert "1 of 2" in admin_browser.get(CHANGELIST).content.decode()

    # The same admin approving again does not count twice.
    response = admin_browser.post(decision_url(application, "approve"), {"note": "again"}, follow=True)
    assert any("second reviewer must approve" in m for m in flashed(response))
    application.refresh_from_db()
    assert application.status == Status.IN_REVIEW
    assert application.approvals.count() == 1

    response = second_admin_browser.post(decision_url(application, "approve"), {"note": "second"}, follow=True)
    assert any("Approved" in m for m in flashed(response))
    application.refresh_from_db()
    assert application.status == Status.APPROVED
    assert application.organisation.status == Organisation.Status.ACTIVE
    assert application.organisation.trust_level == Organisation.TrustLevel.HIGH
    assert set(application.approvals.values_list("reviewer", flat=True)) == {staff.pk, second_admin.pk}
    assert events_for(application)[-2:] == ["kyc.approval_recorded", "kyc.approved"]


def test_a_decision_the_transition_table_forbids_is_an_error_message_not_a_500(admin_browser, applicant):
    # Submitted, not in review yet: approving, rejecting or asking for changes is not a move.
    for view, data in (("approve", {}), ("reject", {"reason": "r"}), ("request_changes", {"reason": "r"})):
        response = admin_browser.post(decision_url(applicant.application, view), data, follow=True)
        assert response.status_code == 200
        assert any("cannot go from submitted" in m for m in flashed(response)), view
    applicant.application.refresh_from_db()
    assert applicant.application.status == Status.SUBMITTED
    # A second start is refused too.
    in_review(applicant, admin_browser)
    response = admin_browser.post(decision_url(applicant.application, "start_review"), follow=True)
    assert any("cannot go from in_review" in m for m in flashed(response))


def test_decision_views_take_only_csrf_protected_posts(staff, staff_device, applicant):
    browser = verified_client(staff)
    assert browser.get(decision_url(applicant.application, "start_review")).status_code == 405
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = browser.cookies
    assert strict.post(decision_url(applicant.application, "start_review")).status_code == 403
    applicant.application.refresh_from_db()
    assert applicant.application.status == Status.SUBMITTED
    assert browser.post(reverse("admin:onboarding_kycapplication_approve", args=[999999])).status_code == 404


def test_staff_who_may_only_view_see_the_queue_but_cannot_decide(applicant):
    viewer = UserFactory(is_staff=True)
    viewer.user_permissions.add(Permission.objects.get(codename="view_kycapplication"))
    browser = verified_client(viewer)
    page = browser.get(change_url(applicant.application))
    assert page.status_code == 200
    assert decision_url(applicant.application, "start_review") not in page.content.decode()
    assert browser.post(decision_url(applicant.application, "start_review")).status_code == 403
    applicant.application.refresh_from_db()
    assert applicant.application.status == Status.SUBMITTED


@pytest.mark.parametrize("view", ["start_review", "approve", "reject", "request_changes"])
def test_decisions_are_not_reachable_without_a_verified_session(view, staff, staff_device, applicant):
    browser = Client()
    browser.force_login(staff)  # password only
    response = browser.post(decision_url(applicant.application, view), {"reason": "x", "note": "x"})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("admin:login"))
    applicant.application.refresh_from_db()
    assert applicant.application.status == Status.SUBMITTED


def test_a_reviewer_can_ask_a_question_without_changing_the_status(admin_browser, applicant, staff):
    response = admin_browser.post(decision_url(applicant.application, "message"), {"body": ""}, follow=True)
    assert "Write a message." in flashed(response)
    response = admin_browser.post(
        decision_url(applicant.application, "message"), {"body": "Who signs for the organisation?"}, follow=True
    )
    assert "Message sent to the applicant." in flashed(response)
    applicant.application.refresh_from_db()
    assert applicant.application.status == Status.SUBMITTED
    message = KycMessage.objects.get(application=applicant.application)
    assert (message.from_reviewer, message.author) == (True, staff)
    assert events_for(applicant.application)[-1] == "kyc.message_added"
