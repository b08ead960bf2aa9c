"""The admins' side of client registration: the intake queue, client suspend / reinstate / revoke,
allowlist entries, initial access tokens and the scope catalogue. All behind the 2FA admin."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.contrib.admin.models import LogEntry
from django.contrib.auth.models import Permission
from django.contrib.messages import get_messages
from django.core import mail
from django.test import Client as Browser
from django.urls import reverse
from django.utils import timezone

from authserver.audit import AuditEvent
from authserver.celery import app
from authserver.models import Scope
from authserver.oauth.client_auth import hash_client_secret
from clients import policy, services
from clients.models import AllowlistEntry, Client, ClientCredential, ClientIntake, InitialAccessToken
from onboarding.models import Membership, Organisation
from tests.factories import MembershipFactory, OrganisationFactory, UserFactory

from ..conftest import register_client
from .conftest import make_staff, verified_client

INTAKES = reverse("admin:clients_clientintake_changelist")
IAT_ADD = reverse("admin:clients_initialaccesstoken_add")
IAT_LIST = reverse("admin:clients_initialaccesstoken_changelist")
ALLOWLIST_ADD = reverse("admin:clients_allowlistentry_add")
ALLOWLIST_LIST = reverse("admin:clients_allowlistentry_changelist")
SCOPE_ADD = reverse("admin:authserver_scope_add")


@pytest.fixture(autouse=True)
def eager_tasks():
    """The decision emails, enqueued on commit, run in the test process."""
    saved = app.conf.CELERY_TASK_ALWAYS_EAGER, app.conf.get("CELERY_TASK_EAGER_PROPAGATES", False)
    app.conf.CELERY_TASK_ALWAYS_EAGER, app.conf.CELERY_TASK_EAGER_PROPAGATES = True, True
    yield
    app.conf.CELERY_TASK_ALWAYS_EAGER, app.conf.CELERY_TASK_EAGER_PROPAGATES = saved


@pytest.fixture
def catalogue(db) -> dict[str, Scope]:
    rows = [
        Scope(name="orders:read", description="Read orders", risk_level="low", open_registration=True),
        Scope(name="orders:write", description="Place and change orders", risk_level="medium"),
        Scope(name="invoices:read", description="Read invoices", risk_level="medium", min_trust_level="substantial"),
    ]
    return {row.name: row for row in Scope.objects.bulk_create(rows)}


@pytest.fixture
def member(organisation):
    return MembershipFactory(organisation=organisation, role=Membership.Role.DEVELOPER).user


def request_client(organisation, member, *, name="Order sync", scopes=("orders:read", "orders:write", "invoices:read")):
    """An explicit-mode request through the registration service, as the portal makes it."""
    registration = services.client_register(
        channel=policy.MEMBER,
        organisation=organisation,
        name=name,
        grant_type="client_credentials",
        scopes=list(scopes),
        intake=services.IntakeDetails(
            purpose="Synchronise orders with our ERP every night.",
            contact_name="Piet Jansen",
            contact_email="piet@example.org",
            justifications={"orders:read": "We read the new orders", "orders:write": "We confirm them"},
        ),
        actor=member,
    )
    assert registration.client.status == Client.Status.PENDING
    return registration.client.intake


@pytest.fixture
def intake(catalogue, organisation, member) -> ClientIntake:
    return request_client(organisation, member)


def flashed(response) -> list[str]:
    return [str(m) for m in get_messages(response.wsgi_request)]


def intake_url(intake, view: str = "change") -> str:
    return reverse(f"admin:clients_clientintake_{view}", args=[intake.pk])


def client_url(client, view: str = "change") -> str:
    return reverse(f"admin:clients_client_{view}", args=[client.pk])


def events(name: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=name).order_by("id"))


def form_data(response) -> dict[str, Any]:
    """What the browser would post back from an admin change form, unchanged (inlines included)."""
    data: dict[str, Any] = {}

    def add(form) -> None:
        for name, field in form.fields.items():
            value = field.prepare_value(form[name].value())
            key = form.add_prefix(name)
            if isinstance(value, bool):
                if value:
                    data[key] = "on"
            elif value is not None:
                data[key] = value

    add(response.context["adminform"].form)
    for inline in response.context["inline_admin_formsets"]:
        formset = inline.formset
        add(formset.management_form)
        for form in formset.forms:
            add(form)
    return data


# --- the intake queue ------------------------------------------------------------------------


def test_queue_lists_pending_requests_first_oldest_first_with_what_reviewers_need(
    admin_browser, catalogue, organisation, member, staff
):
    newer = request_client(organisation, member, name="Newer", scopes=["orders:read"])
    older = request_client(organisation, member, name="Older", scopes=["orders:write"])
    decided = request_client(organisation, member, name="Decided", scopes=["orders:read"])
    now = timezone.now()
    ClientIntake.objects.filter(pk=newer.pk).update(submitted_at=now - timedelta(days=1))
    ClientIntake.objects.filter(pk=older.pk).update(submitted_at=now - timedelta(days=5))
    ClientIntake.objects.filter(pk=decided.pk).update(submitted_at=now - timedelta(days=9))
    services.client_intake_reject(intake_id=decided.pk, reviewer=staff, reason="Duplicate.")

    response = admin_browser.get(INTAKES)
    assert response.status_code == 200
    assert [i.client.name for i in response.context["cl"].result_list] == ["Older", "Newer", "Decided"]
    html = response.content.decode()
    for header in ("Client", "Organisation", "Grant type", "Environment", "Requested scopes", "Submitted by"):
        assert header in html
    assert organisation.name in html
    assert member.username in html
    assert "Client credentials" in html
    assert "Production" in html

    pending = admin_browser.get(f"{INTAKES}?status__exact=pending")
    assert [i.client.name for i in pending.context["cl"].result_list] == ["Older", "Newer"]
    # The queue is read-only: nothing is added or deleted by hand.
    assert reverse("admin:clients_clientintake_add") not in html
    assert "delete_selected" not in html


def test_review_page_shows_each_scope_with_its_catalogue_entry_and_justification(admin_browser, intake, organisation):
    response = admin_browser.get(intake_url(intake))
    assert response.status_code == 200
    html = response.content.decode()
    for text in (
        "Synchronise orders with our ERP every night.",
        "Piet Jansen",
        "piet@example.org",
        "Place and change orders",  # the catalogue's description
        "We confirm them",  # the requester's justification
        "(none given)",  # invoices:read came without one
        "Medium",
        organisation.get_kind_display(),
        organisation.get_trust_level_display(),
        organisation.get_status_display(),
    ):
        assert text in html, text
    # One checkbox per requested scope, all ticked; the decision forms post to the services' views.
    assert html.count('name="granted_scopes"') == 3
    assert html.count("checked") >= 3
    assert intake_url(intake, "approve") in html
    assert intake_url(intake, "reject") in html
    assert "✓ may be granted" in html
    assert 'name="_save"' not in html


def test_approve_part_of_the_scopes_activates_the_client_with_exactly_those(
    admin_browser, intake, staff, member, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_browser.post(
            intake_url(intake, "approve"),
            {"granted_scopes": ["orders:read", "invoices:read"], "note": "Writing waits for the pilot."},
        )
    assert response.status_code == 302
    assert response["Location"] == intake_url(intake)

    intake.refresh_from_db()
    client = Client.objects.get(pk=intake.client_id)
    assert (client.status, client.scopes) == (Client.Status.ACTIVE, ["orders:read", "invoices:read"])
    assert (intake.status, intake.granted_scopes, intake.decided_by) == (
        ClientIntake.Status.APPROVED,
        "orders:read invoices:read",
        staff,
    )
    [approved] = events("client.intake.approved")
    assert approved.actor_user == staff
    assert approved.data["granted_scopes"] == ["orders:read", "invoices:read"]
    assert approved.data["refused_scopes"] == ["orders:write"]

    [to_requester] = [m for m in mail.outbox if m.to == [member.email]]
    assert to_requester.subject == "Client Order sync is approved"
    assert "Not granted: orders:write" in to_requester.body
    assert "Writing waits for the pilot." in to_requester.body

    # Decided: read-only, and a second decision is refused with a message, not a 500.
    page = admin_browser.get(intake_url(intake)).content.decode()
    assert intake_url(intake, "approve") not in page
    assert 'name="granted_scopes"' not in page
    assert "orders:read invoices:read" in page
    again = admin_browser.post(intake_url(intake, "reject"), {"reason": "Changed my mind."}, follow=True)
    assert again.status_code == 200
    assert any("approved already" in m.lower() for m in flashed(again))
    assert Client.objects.get(pk=client.pk).status == Client.Status.ACTIVE


def test_approving_without_any_scope_is_a_form_error(admin_browser, intake):
    response = admin_browser.post(intake_url(intake, "approve"), {"note": "nothing"})
    assert response.status_code == 200
    assert response.context["form"].errors["granted_scopes"] == [
        "Grant at least one scope, or reject the request with a reason."
    ]
    intake.refresh_from_db()
    assert intake.status == ClientIntake.Status.PENDING
    assert events("client.intake.approved") == []


def test_reject_needs_a_reason_then_rejects_and_tells_the_requester(
    admin_browser, intake, staff, member, django_capture_on_commit_callbacks
):
    response = admin_browser.post(intake_url(intake, "reject"), {"reason": "   "})
    assert response.status_code == 200
    assert response.context["form"].errors["reason"] == ["A reason is required."]
    assert "A reason is required." in response.content.decode()
    intake.refresh_from_db()
    assert intake.status == ClientIntake.Status.PENDING
    assert events("client.intake.rejected") == []

    with django_capture_on_commit_callbacks(execute=True):
        response = admin_browser.post(intake_url(intake, "reject"), {"reason": "Use the test environment first."})
    assert response.status_code == 302
    intake.refresh_from_db()
    assert (intake.status, intake.decision_reason, intake.decided_by) == (
        ClientIntake.Status.REJECTED,
        "Use the test environment first.",
        staff,
    )
    assert Client.objects.get(pk=intake.client_id).status == Client.Status.REJECTED
    [rejected] = events("client.intake.rejected")
    assert rejected.actor_user == staff
    [to_requester] = [m for m in mail.outbox if m.to == [member.email]]
    assert "Use the test environment first." in to_requester.body


def test_approving_a_scope_above_the_organisations_trust_level_is_refused_with_a_message(
    admin_browser, intake, catalogue
):
    # The catalogue tightened after the request came in: the organisation is "substantial".
    Scope.objects.filter(name="invoices:read").update(min_trust_level=Organisation.TrustLevel.HIGH)
    page = admin_browser.get(intake_url(intake)).content.decode()
    assert "needs trust level high" in page  # the reviewer sees it before deciding

    response = admin_browser.post(
        intake_url(intake, "approve"), {"granted_scopes": ["orders:read", "invoices:read"]}, follow=True
    )
    assert response.status_code == 200
    assert any("needs trust level high" in m for m in flashed(response))
    intake.refresh_from_db()
    assert intake.status == ClientIntake.Status.PENDING
    assert Client.objects.get(pk=intake.client_id).status == Client.Status.PENDING
    assert events("client.intake.approved") == []

    # Without that scope it goes through.
    admin_browser.post(intake_url(intake, "approve"), {"granted_scopes": ["orders:read"]})
    assert Client.objects.get(pk=intake.client_id).scopes == ["orders:read"]


def test_staff_with_only_the_view_permission_cannot_decide(intake):
    viewer = make_staff(is_superuser=False)
    viewer.user_permissions.add(Permission.objects.get(codename="view_clientintake"))
    browser = verified_client(viewer)
    page = browser.get(intake_url(intake))
    assert page.status_code == 200
    assert 'name="granted_scopes"' not in page.content.decode()
    assert browser.post(intake_url(intake, "approve"), {"granted_scopes": ["orders:read"]}).status_code == 403
    intake.refresh_from_db()
    assert intake.status == ClientIntake.Status.PENDING


# --- clients: suspend, reinstate, revoke, credentials, scopes by hand ------------------------


def test_suspend_asks_a_reason_then_suspends_and_reinstate_restores(admin_browser, cc_jwt, staff):
    client = cc_jwt.client
    page = admin_browser.get(client_url(client)).content.decode()
    assert client_url(client, "suspend") in page
    assert client_url(client, "revoke") in page
    assert client_url(client, "reinstate") not in page  # only for suspended clients

    form = admin_browser.get(client_url(client, "suspend"))
    assert form.status_code == 200
    assert 'name="reason"' in form.content.decode()
    missing = admin_browser.post(client_url(client, "suspend"), {"reason": ""})
    assert missing.status_code == 200
    assert missing.context["form"].errors["reason"] == ["A reason is required."]
    client.refresh_from_db()
    assert client.status == Client.Status.ACTIVE

    done = admin_browser.post(client_url(client, "suspend"), {"reason": "Leaked key suspected."}, follow=True)
    assert any("Suspended" in m for m in flashed(done))
    client.refresh_from_db()
    assert client.status == Client.Status.SUSPENDED
    [suspended] = events("client.suspended")
    assert (suspended.actor_user, suspended.data["reason"]) == (staff, "Leaked key suspected.")
    # Credentials stay for a reinstatement.
    assert client.credentials.get().status == ClientCredential.Status.ACTIVE

    page = admin_browser.get(client_url(client)).content.decode()
    assert client_url(client, "reinstate") in page
    assert client_url(client, "suspend") not in page
    done = admin_browser.post(client_url(client, "reinstate"), {"reason": "Key rotated."}, follow=True)
    assert any("Reinstated" in m for m in flashed(done))
    client.refresh_from_db()
    assert client.status == Client.Status.ACTIVE
    [reinstated] = events("client.reinstated")
    assert (reinstated.actor_user, reinstated.data["reason"]) == (staff, "Key rotated.")


def test_revoke_asks_for_confirmation_then_revokes_client_and_credentials(admin_browser, cc_jwt, staff):
    client = cc_jwt.client
    confirm = admin_browser.get(client_url(client, "revoke"))
    assert confirm.status_code == 200
    assert "cannot be undone" in confirm.content.decode()
    client.refresh_from_db()
    assert client.status == Client.Status.ACTIVE  # nothing before the confirmation

    done = admin_browser.post(client_url(client, "revoke"), follow=True)
    assert any("Revoked" in m for m in flashed(done))
    client.refresh_from_db()
    assert client.status == Client.Status.REVOKED
    assert set(client.credentials.values_list("status", flat=True)) == {ClientCredential.Status.REVOKED}
    assert [e.actor_user for e in events("client.revoked")] == [staff]

    # Revoked is final: no buttons, and a forged suspend is refused with a message.
    page = done.content.decode()
    assert client_url(client, "suspend") not in page
    assert client_url(client, "revoke") not in page
    refused = admin_browser.post(client_url(client, "suspend"), {"reason": "Again."}, follow=True)
    assert refused.status_code == 200
    assert any("cannot go from revoked" in m for m in flashed(refused))
    assert events("client.suspended") == []


def test_a_credential_is_revoked_from_its_row(admin_browser, cc_jwt, organisation, staff):
    client = cc_jwt.client
    credential = client.credentials.get()
    url = reverse("admin:clients_client_credential_revoke", args=[client.pk, credential.pk])
    assert url in admin_browser.get(client_url(client)).content.decode()
    assert "cannot be undone" in admin_browser.get(url).content.decode()

    admin_browser.post(url)
    credential.refresh_from_db()
    assert credential.status == ClientCredential.Status.REVOKED
    assert [e.actor_user for e in events("client.credential.revoked")] == [staff]
    assert Client.objects.get(pk=client.pk).status == Client.Status.ACTIVE  # the client itself stays

    # A credential only opens through its own client.
    other = register_client(organisation, grant_type="client_credentials", auth_method="private_key_jwt", scopes=[])
    foreign = reverse("admin:clients_client_credential_revoke", args=[client.pk, other.client.credentials.get().pk])
    assert admin_browser.post(foreign).status_code == 404


def test_a_scope_changed_by_hand_is_audited_and_an_unknown_one_is_a_form_error(admin_browser, cc_jwt, catalogue, staff):
    client = cc_jwt.client
    data = form_data(admin_browser.get(client_url(client)))
    assert data["scope"] == "orders:read"

    refused = admin_browser.post(client_url(client), {**data, "scope": "orders:read nope:write"})
    assert refused.status_code == 200
    assert "Not in the scope catalogue: nope:write." in refused.content.decode()
    client.refresh_from_db()
    assert client.scopes == ["orders:read"]

    saved = admin_browser.post(client_url(client), {**data, "scope": "orders:read orders:write openid"})
    assert saved.status_code == 302
    client.refresh_from_db()
    assert client.scopes == ["orders:read", "orders:write", "openid"]
    [changed] = events("client.scope.changed")
    assert changed.actor_user == staff
    assert (changed.data["added"], changed.data["removed"]) == (["orders:write", "openid"], [])

    # Saving without a scope change adds no audit row; status cannot be edited by hand.
    admin_browser.post(client_url(client), {**form_data(admin_browser.get(client_url(client))), "status": "revoked"})
    client.refresh_from_db()
    assert client.status == Client.Status.ACTIVE
    assert len(events("client.scope.changed")) == 1


# --- initial access tokens -------------------------------------------------------------------


def iat_data(organisation, /, **overrides) -> dict[str, Any]:
    return {
        "organisation": organisation.pk,
        "scopes": "orders:read orders:write",
        "allowed_redirect_hosts": "App.Example.org",
        "max_uses": "3",
        "expires_at_0": "",
        "expires_at_1": "",
        **overrides,
    }


def test_an_initial_access_token_is_shown_once_and_stored_only_as_a_hash(admin_browser, catalogue, organisation, staff):
    response = admin_browser.post(IAT_ADD, iat_data(organisation))
    assert response.status_code == 200
    value = response.context["token_value"]
    assert len(value) >= 40
    assert value in response.content.decode()
    assert "no-store" in response["Cache-Control"]

    token = InitialAccessToken.objects.get()
    assert token.token_hash == hash_client_secret(value)
    assert (token.scope_list, token.allowed_redirect_hosts, token.max_uses, token.organisation) == (
        ["orders:read", "orders:write"],
        ["app.example.org"],
        3,
        organisation,
    )
    assert token.created_by == staff
    assert token.expires_at > timezone.now()
    row = InitialAccessToken.objects.filter(pk=token.pk).values().get()
    assert all(value not in str(column) for column in row.values())
    stored = json.dumps(list(AuditEvent.objects.values("data", "target_label")), default=str)
    stored += json.dumps(list(LogEntry.objects.values("object_repr", "change_message")), default=str)
    assert value not in stored
    assert [e.actor_user for e in events("client.initial_access_token.issued")] == [staff]

    # Never again: not on its page, not in the list.
    for url in (reverse("admin:clients_initialaccesstoken_change", args=[token.pk]), IAT_LIST):
        page = admin_browser.get(url)
        assert page.status_code == 200
        assert value not in page.content.decode()
        assert f"…{token.hint}" in page.content.decode()
    # And the value works for registration (RFC 7591 §3).
    assert services.initial_access_token_lookup(value).pk == token.pk


def test_initial_access_token_bad_input_is_a_form_error_and_stores_nothing(admin_browser, catalogue, organisation):
    suspended = OrganisationFactory(status=Organisation.Status.SUSPENDED)
    page = admin_browser.get(IAT_ADD)
    choices = [str(value) for value, _ in page.context["adminform"].form.fields["organisation"].choices if value]
    assert str(organisation.pk) in choices
    assert str(suspended.pk) not in choices

    cases = [
        ({"scopes": "orders:read nope:write"}, "scopes", "Not in the scope catalogue: nope:write"),
        ({"organisation": suspended.pk}, "organisation", "Choose an active organisation"),
        ({"max_uses": "0"}, "max_uses", "greater than or equal to 1"),
        ({"allowed_redirect_hosts": "https://app.example.org/cb"}, "allowed_redirect_hosts", "host names only"),
        ({"expires_at_0": "2001-01-01", "expires_at_1": "00:00:00"}, "expires_at", "must lie in the future"),
    ]
    for overrides, field, message in cases:
        response = admin_browser.post(IAT_ADD, iat_data(organisation, **overrides))
        assert response.status_code == 200, overrides
        errors = response.context["adminform"].form.errors
        assert message in " ".join(errors[field]), (overrides, errors)
    assert not InitialAccessToken.objects.exists()
    assert events("client.initial_access_token.issued") == []


def test_initial_access_tokens_are_revoked_by_an_action(admin_browser, catalogue, organisation, staff):
    issued = services.initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=staff)
    listing = admin_browser.get(IAT_LIST).content.decode()
    assert f"…{issued.token.hint}" in listing
    assert "0 of 1" in listing
    response = admin_browser.post(
        IAT_LIST, {"action": "revoke_selected", ACTION_CHECKBOX_NAME: [issued.token.pk]}, follow=True
    )
    assert any("1 initial access token revoked" in m for m in flashed(response))
    issued.token.refresh_from_db()
    assert issued.token.revoked_at is not None
    assert [e.actor_user for e in events("client.initial_access_token.revoked")] == [staff]
    with pytest.raises(services.RegistrationRefused, match="revoked"):
        services.initial_access_token_lookup(issued.value)


# --- allowlist entries -----------------------------------------------------------------------


def allowlist_data(organisation, /, **overrides) -> dict[str, Any]:
    return {
        "organisation": organisation.pk,
        "software_id": "",
        "allowed_scopes": "orders:read, orders:write",
        "grant_types": ["authorization_code"],
        "allowed_redirect_hosts": "app.example.org portal.example.org",
        "environments": [],
        "max_clients": "2",
        "expires_at_0": "",
        "expires_at_1": "",
        "note": "Pilot with the ERP vendor.",
        **overrides,
    }


def test_allowlist_entry_with_an_unknown_scope_is_a_form_error(admin_browser, catalogue, organisation):
    response = admin_browser.post(ALLOWLIST_ADD, allowlist_data(organisation, allowed_scopes="orders:read nope:write"))
    assert response.status_code == 200
    assert "Not in the scope catalogue: nope:write" in " ".join(
        response.context["adminform"].form.errors["allowed_scopes"]
    )
    unnamed = admin_browser.post(ALLOWLIST_ADD, allowlist_data(organisation, organisation=""))
    assert unnamed.status_code == 200
    assert "Name an organisation or a software id" in unnamed.content.decode()
    assert not AllowlistEntry.objects.exists()
    assert events("client.allowlist_entry.created") == []


def test_allowlist_entry_is_created_by_the_service_listed_and_revoked(admin_browser, catalogue, organisation, staff):
    response = admin_browser.post(ALLOWLIST_ADD, allowlist_data(organisation))
    assert response.status_code == 302
    entry = AllowlistEntry.objects.get()
    assert (entry.scopes, entry.allowed_redirect_hosts, entry.grant_types, entry.max_clients) == (
        ["orders:read", "orders:write"],
        ["app.example.org", "portal.example.org"],
        ["authorization_code"],
        2,
    )
    assert entry.created_by == staff
    [created] = events("client.allowlist_entry.created")
    assert created.actor_user == staff

    listing = admin_browser.get(ALLOWLIST_LIST)
    html = listing.content.decode()
    assert "app.example.org portal.example.org" in html
    [listed] = listing.context["cl"].result_list
    assert listed.used_count == 0
    # Read-only once created.
    page = admin_browser.get(reverse("admin:clients_allowlistentry_change", args=[entry.pk])).content.decode()
    assert 'name="_save"' not in page

    response = admin_browser.post(
        ALLOWLIST_LIST, {"action": "revoke_selected", ACTION_CHECKBOX_NAME: [entry.pk]}, follow=True
    )
    assert any("1 allowlist entry revoked" in m for m in flashed(response))
    entry.refresh_from_db()
    assert entry.revoked_at is not None
    [revoked] = events("client.allowlist_entry.revoked")
    assert revoked.actor_user == staff
    # Revoking twice changes nothing and audits nothing more.
    services.allowlist_entry_revoke(entry_id=entry.pk, actor=staff)
    assert len(events("client.allowlist_entry.revoked")) == 1


# --- the scope catalogue ---------------------------------------------------------------------


def scope_data(**overrides) -> dict[str, Any]:
    return {
        "name": "payments:write",
        "description": "Make payments",
        "risk_level": "high",
        "min_trust_level": "high",
        "allowed_organisation_kinds": ["government"],
        "allowed_environments": [],
        **overrides,
    }


def test_scope_admin_refuses_open_registration_on_a_high_risk_scope_as_a_form_error(admin_browser, staff):
    response = admin_browser.post(SCOPE_ADD, scope_data(open_registration="on"))
    assert response.status_code == 200
    errors = response.context["adminform"].form.errors
    assert "Only low-risk scopes may be given by open registration" in " ".join(errors["open_registration"])
    assert not Scope.objects.exists()

    bad_name = admin_browser.post(SCOPE_ADD, scope_data(name='pay "all"'))
    assert "RFC 6749" in " ".join(bad_name.context["adminform"].form.errors["name"])

    assert admin_browser.post(SCOPE_ADD, scope_data()).status_code == 302
    scope = Scope.objects.get()
    assert (scope.risk_level, scope.open_registration, scope.allowed_organisation_kinds) == (
        "high",
        False,
        ["government"],
    )
    [created] = events("scope.created")
    assert created.actor_user == staff
    listing = admin_browser.get(reverse("admin:authserver_scope_changelist")).content.decode()
    for header in ("Name", "Risk level", "Min trust level", "Open registration", "Requires approval"):
        assert header in listing


# --- 2FA -------------------------------------------------------------------------------------


def test_staff_without_a_verified_device_is_sent_to_the_login(intake, cc_jwt):
    staff = make_staff()  # signed in with a password only
    browser = Browser()
    browser.force_login(staff)
    for url in (
        INTAKES,
        intake_url(intake),
        intake_url(intake, "approve"),
        client_url(cc_jwt.client, "suspend"),
        IAT_ADD,
    ):
        response = browser.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
    response = browser.post(intake_url(intake, "approve"), {"granted_scopes": ["orders:read"]})
    assert response.status_code == 302
    intake.refresh_from_db()
    assert intake.status == ClientIntake.Status.PENDING
    # Not staff at all: the same.
    outsider = Browser()
    outsider.force_login(UserFactory())
    assert outsider.get(INTAKES).status_code == 302
