"""Registration services: the policy's decision carried out, intakes decided, pre-approvals used."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import mail
from django.utils import timezone

from authserver.audit import AuditEvent
from authserver.errors import DomainError, InvalidTransition
from authserver.oauth.client_auth import hash_client_secret
from clients import policy
from clients.models import Client, ClientIntake, InitialAccessToken
from clients.services import (
    IntakeDetails,
    RegistrationRefused,
    allowlist_entry_create,
    client_intake_approve,
    client_intake_reject,
    client_register,
    initial_access_token_issue,
    initial_access_token_revoke,
)
from clients.services.registration import OPEN_ORGANISATION_NAME
from onboarding.models import Organisation
from tests.factories import OrganisationFactory, ScopeFactory, UserFactory

pytestmark = pytest.mark.django_db

WEB = {"grant_type": "authorization_code", "redirect_uris": ["https://app.example.nl/callback"]}


@pytest.fixture(autouse=True)
def catalogue():
    return {
        "profile": ScopeFactory(name="profile:read", risk_level="low", open_registration=True),
        "orders": ScopeFactory(name="orders:read"),
        "write": ScopeFactory(name="orders:write", risk_level="high", min_trust_level="substantial"),
        "persons": ScopeFactory(name="persons:read", risk_level="high", min_trust_level="high"),
    }


@pytest.fixture
def member():
    return UserFactory(email="dev@example.org")


def register(organisation, member, **kwargs):
    values = {
        "channel": policy.MEMBER,
        "organisation": organisation,
        "name": "Orders app",
        "scopes": ["orders:read", "orders:write"],
        "actor": member,
        "intake": IntakeDetails(
            purpose="Process orders",
            contact_email="ops@example.org",
            justifications={"orders:read": "list orders", "unrelated": "dropped"},
        ),
        **WEB,
    }
    values.update(kwargs)
    return client_register(**values)


def test_a_member_without_pre_approval_waits_for_review(organisation, member):
    registration = register(organisation, member)

    client = registration.client
    assert (client.registration_mode, client.status, client.scope) == ("explicit", "pending", "")
    assert client.created_by == member
    intake = client.intake
    assert intake.status == ClientIntake.Status.PENDING
    assert intake.requested == ["orders:read", "orders:write"]
    assert intake.justifications == {"orders:read": "list orders"}
    assert intake.submitted_by == member
    assert registration.registration_token is None
    event = AuditEvent.objects.get(event="client.registered")
    assert event.data["mode"] == "explicit"
    assert not client.is_usable(None)


def test_an_allowlist_entry_activates_within_its_bounds_and_counts_its_clients(organisation, member):
    entry = allowlist_entry_create(
        actor=member, organisation=organisation, allowed_scopes=["orders:read"], max_clients=1
    )

    first = register(organisation, member, scopes=["orders:read"]).client
    second = register(organisation, member, scopes=["orders:read"]).client

    assert (first.registration_mode, first.status, first.scope) == ("whitelist", "active", "orders:read")
    assert first.allowlist_entry == entry
    assert (second.registration_mode, second.status) == ("explicit", "pending")
    assert "used up" in second.intake.policy_reason


def test_outside_the_allowlist_falls_back_to_review_with_the_reason(organisation, member):
    allowlist_entry_create(actor=member, organisation=organisation, allowed_scopes=["orders:read"])

    client = register(organisation, member, scopes=["orders:read", "orders:write"]).client

    assert client.status == "pending"
    assert "orders:write are outside the allowlist entry" in client.intake.policy_reason


def test_a_hard_rule_refuses_and_stores_nothing(organisation, member):
    with pytest.raises(RegistrationRefused) as refused:
        register(organisation, member, scopes=["persons:read", "nope"])

    assert refused.value.error == "invalid_client_metadata"
    assert "needs trust level high" in str(refused.value)
    assert "'nope' is not in the catalogue" in str(refused.value)
    assert not Client.objects.exists()
    assert not AuditEvent.objects.filter(event__startswith="client.").exists()


def test_open_registration_gets_the_open_organisation_and_a_registration_token(settings):
    settings.AUTHSERVER_OPEN_REGISTRATION_ENABLED = True

    registration = client_register(
        channel=policy.DYNAMIC, name="Hobby app", scopes=["profile:read"], auth_method="none", **WEB
    )

    client = registration.client
    assert (client.registration_mode, client.status, client.scope) == ("open", "active", "profile:read")
    assert client.organisation.name == OPEN_ORGANISATION_NAME
    assert client.organisation.trust_level == Organisation.TrustLevel.LOW
    assert client.registration_token_hash == hash_client_secret(registration.registration_token)


def test_open_registration_refuses_what_is_not_low_risk(settings):
    settings.AUTHSERVER_OPEN_REGISTRATION_ENABLED = True

    with pytest.raises(RegistrationRefused, match="low-risk scopes only"):
        client_register(channel=policy.DYNAMIC, name="x", scopes=["orders:read"], auth_method="none", **WEB)
    assert not Client.objects.exists()


def test_an_initial_access_token_registers_within_bounds_and_is_used_up(organisation, member):
    issued = initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=member, max_uses=1)

    registration = client_register(
        channel=policy.DYNAMIC, name="x", scopes=["orders:read"], initial_access_token=issued.value, **WEB
    )

    assert (registration.client.registration_mode, registration.client.status) == ("whitelist", "active")
    assert registration.client.organisation == organisation
    issued.token.refresh_from_db()
    assert issued.token.uses == 1
    with pytest.raises(RegistrationRefused) as refused:
        client_register(
            channel=policy.DYNAMIC, name="y", scopes=["orders:read"], initial_access_token=issued.value, **WEB
        )
    assert (refused.value.error, str(refused.value)) == ("invalid_token", "the initial access token is used up")
    assert Client.objects.count() == 1


@pytest.mark.parametrize("spoil", ["expired", "revoked", "unknown"])
def test_an_unusable_initial_access_token_is_refused(organisation, member, spoil, time_machine):
    issued = initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=member)
    value = issued.value
    if spoil == "expired":
        time_machine.move_to(issued.token.expires_at + timedelta(seconds=1))
    elif spoil == "revoked":
        initial_access_token_revoke(token_id=issued.token.pk, actor=member)
    else:
        value = value[:-2] + "xx"

    with pytest.raises(RegistrationRefused) as refused:
        client_register(channel=policy.DYNAMIC, name="x", scopes=["orders:read"], initial_access_token=value, **WEB)

    assert refused.value.error == "invalid_token"
    assert not Client.objects.exists()
    assert InitialAccessToken.objects.get().uses == 0


def test_an_initial_access_token_is_stored_as_a_hash_only(organisation, member):
    issued = initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=member)

    row = InitialAccessToken.objects.filter(pk=issued.token.pk).values()[0]
    assert issued.value not in str(row)
    assert row["token_hash"] == hash_client_secret(issued.value)


def test_no_initial_access_token_for_an_inactive_organisation(member):
    pending = OrganisationFactory(status=Organisation.Status.PENDING)

    with pytest.raises(DomainError, match="not active"):
        initial_access_token_issue(organisation=pending, scopes=["orders:read"], actor=member)


def test_an_admin_grants_part_of_the_scopes_and_the_requester_hears(
    organisation, member, django_capture_on_commit_callbacks
):
    admin = UserFactory(is_staff=True)
    intake = register(organisation, member).client.intake

    with django_capture_on_commit_callbacks(execute=True):
        client_intake_approve(intake_id=intake.pk, reviewer=admin, granted_scopes=["orders:read"], note="read first")

    intake.refresh_from_db()
    client = intake.client
    assert (intake.status, intake.granted_scopes, intake.decided_by) == ("approved", "orders:read", admin)
    assert (client.status, client.scope) == ("active", "orders:read")
    event = AuditEvent.objects.get(event="client.intake.approved")
    assert event.data["refused_scopes"] == ["orders:write"]
    assert any("dev@example.org" in message.to for message in mail.outbox)
    assert any("Not granted: orders:write" in message.body for message in mail.outbox)


@pytest.mark.parametrize(
    ("granted", "message"),
    [([], "at least one scope"), (["persons:read"], "were not requested")],
)
def test_an_approval_within_the_request_only(organisation, member, granted, message):
    intake = register(organisation, member).client.intake

    with pytest.raises(DomainError, match=message):
        client_intake_approve(intake_id=intake.pk, reviewer=UserFactory(), granted_scopes=granted)
    assert Client.objects.get().status == "pending"


def test_an_approval_checks_the_organisation_as_it_is_now(organisation, member):
    intake = register(organisation, member).client.intake
    Organisation.objects.filter(pk=organisation.pk).update(trust_level=Organisation.TrustLevel.LOW)

    with pytest.raises(DomainError, match="needs trust level substantial"):
        client_intake_approve(intake_id=intake.pk, reviewer=UserFactory(), granted_scopes=["orders:write"])


def test_a_rejection_needs_a_reason_and_is_final(organisation, member, django_capture_on_commit_callbacks):
    intake = register(organisation, member).client.intake
    admin = UserFactory()

    with pytest.raises(DomainError, match="needs a reason"):
        client_intake_reject(intake_id=intake.pk, reviewer=admin, reason="  ")
    with django_capture_on_commit_callbacks(execute=True):
        client_intake_reject(intake_id=intake.pk, reviewer=admin, reason="No purpose given")

    intake.refresh_from_db()
    assert (intake.status, intake.client.status) == ("rejected", "rejected")
    with pytest.raises(InvalidTransition):
        client_intake_approve(intake_id=intake.pk, reviewer=admin, granted_scopes=["orders:read"])
    assert any("No purpose given" in message.body for message in mail.outbox)


def test_a_member_needs_an_organisation(member):
    with pytest.raises(DomainError):
        client_register(channel=policy.MEMBER, name="x", scopes=[], actor=member, **WEB)


def test_an_allowlist_entry_names_known_scopes(organisation, member):
    with pytest.raises(DomainError, match="not in the catalogue"):
        allowlist_entry_create(actor=member, organisation=organisation, allowed_scopes=["nope"])


def test_expiry_of_an_allowlist_entry(organisation, member, time_machine):
    allowlist_entry_create(
        actor=member,
        organisation=organisation,
        allowed_scopes=["orders:read"],
        expires_at=timezone.now() + timedelta(days=1),
    )
    time_machine.move_to(timezone.now() + timedelta(days=2))

    client = register(organisation, member, scopes=["orders:read"]).client

    assert client.status == "pending"
    assert "expired" in client.intake.policy_reason
