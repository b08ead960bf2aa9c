"""Organisation decisions in the admin (suspend, reactivate with a reason) and the read-only audit log."""

from __future__ import annotations

from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.messages import get_messages
from django.urls import reverse

from authserver.audit import AuditEvent, audit_record
from onboarding.models import Organisation
from tests.factories import OrganisationFactory

CHANGELIST = reverse("admin:onboarding_organisation_changelist")


def run_action(browser, action, organisations, **extra):
    data = {"action": action, ACTION_CHECKBOX_NAME: [o.pk for o in organisations], **extra}
    return browser.post(CHANGELIST, data, follow=True)


def test_suspend_asks_for_a_reason_then_suspends_and_audits(admin_browser, staff, db):
    first, second = OrganisationFactory(), OrganisationFactory()
    page = run_action(admin_browser, "suspend_selected", [first, second], index=0)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Suspend organisations" in html
    assert 'name="reason"' in html
    first.refresh_from_db()
    assert first.status == Organisation.Status.ACTIVE  # nothing happens before the reason

    page = run_action(admin_browser, "suspend_selected", [first, second], apply="1", reason="")
    assert "A reason is required." in page.content.decode()
    first.refresh_from_db()
    assert first.status == Organisation.Status.ACTIVE

    page = run_action(admin_browser, "suspend_selected", [first, second], apply="1", reason="Review lapsed.")
    assert any("2 suspended" in str(m) for m in get_messages(page.wsgi_request))
    for organisation in (first, second):
        organisation.refresh_from_db()
        assert organisation.status == Organisation.Status.SUSPENDED
        event = AuditEvent.objects.get(event="organisation.suspended", organisation=organisation)
        assert event.actor_user == staff
        assert event.data["reason"] == "Review lapsed."


def test_reactivate_with_a_reason_and_a_refusal_is_an_error_message(admin_browser, db):
    suspended = OrganisationFactory(status=Organisation.Status.SUSPENDED)
    pending = OrganisationFactory(status=Organisation.Status.PENDING)
    page = run_action(admin_browser, "reactivate_selected", [suspended, pending], apply="1", reason="Resolved.")
    assert page.status_code == 200
    messages = [str(m) for m in get_messages(page.wsgi_request)]
    assert any("1 reactivated" in m for m in messages)
    assert any(m.startswith(f"{pending}:") for m in messages)
    suspended.refresh_from_db()
    pending.refresh_from_db()
    assert suspended.status == Organisation.Status.ACTIVE
    assert pending.status == Organisation.Status.PENDING
    assert AuditEvent.objects.filter(event="organisation.reactivated", organisation=suspended).exists()


def test_organisation_status_and_trust_level_are_not_edited_by_hand(admin_browser, db):
    organisation = OrganisationFactory()
    page = admin_browser.get(reverse("admin:onboarding_organisation_change", args=[organisation.pk]))
    form = page.context["adminform"].form
    assert "status" not in form.fields
    assert "trust_level" not in form.fields


def test_the_audit_log_is_read_only(admin_browser, staff):
    event = audit_record("test.event", actor=staff, data={"a": 1})
    changelist = reverse("admin:authserver_auditevent_changelist")
    page = admin_browser.get(changelist)
    assert page.status_code == 200
    assert "test.event" in page.content.decode()
    assert reverse("admin:authserver_auditevent_add") not in page.content.decode()
    assert "delete_selected" not in page.content.decode()

    assert admin_browser.get(reverse("admin:authserver_auditevent_add")).status_code == 403
    change = reverse("admin:authserver_auditevent_change", args=[event.pk])
    view = admin_browser.get(change)
    assert view.status_code == 200
    assert 'name="_save"' not in view.content.decode()
    assert admin_browser.post(change, {"event": "tampered"}).status_code == 403
    assert admin_browser.get(reverse("admin:authserver_auditevent_delete", args=[event.pk])).status_code == 403
    assert (
        admin_browser.post(reverse("admin:authserver_auditevent_delete", args=[event.pk]), {"post": "yes"}).status_code
        == 403
    )
    event.refresh_from_db()
    assert event.event == "test.event"
