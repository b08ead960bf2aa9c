"""Onboarding services: the transition tables, four eyes, roles, invitations and identifiers."""

from __future__ import annotations

import hashlib
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.exceptions import ValidationError
from django.forms.models import model_to_dict
from django.utils import timezone

from authserver.errors import DomainError, InvalidTransition
from authserver.models import AuditEvent
from onboarding import services
from onboarding.models import Evidence, Invitation, KycApplication, KycApproval, KycMessage, Membership, Organisation
from onboarding.permissions import PermissionDenied, membership_for, require_role

from ..factories import (
    EvidenceFactory,
    InvitationFactory,
    KycApplicationFactory,
    MembershipFactory,
    OrganisationFactory,
    UserFactory,
    otp_verified,
)

pytestmark = pytest.mark.django_db

AppStatus = KycApplication.Status
OrgStatus = Organisation.Status
Role = Membership.Role
GOOD_OIN = "00000001002220647000"


def snapshot(instance) -> dict[str, Any]:
    instance.refresh_from_db()
    return model_to_dict(instance) | {"updated": getattr(instance, "updated_at", None)}


def counts() -> dict[str, int]:
    return {
        "audit": AuditEvent.objects.count(),
        "messages": KycMessage.objects.count(),
        "approvals": KycApproval.objects.count(),
        "organisations": Organisation.objects.count(),
        "memberships": Membership.objects.count(),
        "invitations": Invitation.objects.count(),
        "evidence": Evidence.objects.count(),
    }


def events() -> list[str]:
    return list(AuditEvent.objects.order_by("id").values_list("event", flat=True))


# --- the KYC application transition table ---------------------------------------------------

# The service that moves an application to each status, and the audit event it writes.
APPLICATION_MOVES = {
    AppStatus.SUBMITTED: ("kyc.submitted", lambda app, who: services.kyc_application_submit(
        application_id=app.pk, actor=who["owner"])),
    AppStatus.IN_REVIEW: ("kyc.review_started", lambda app, who: services.kyc_application_start_review(
        application_id=app.pk, reviewer=who["reviewer"])),
    AppStatus.APPROVED: ("kyc.approved", lambda app, who: services.kyc_application_approve(
        application_id=app.pk, reviewer=who["reviewer"], note="All in order.")),
    AppStatus.REJECTED: ("kyc.rejected", lambda app, who: services.kyc_application_reject(
        application_id=app.pk, reviewer=who["reviewer"], reason="Not an organisation we serve.")),
    AppStatus.CHANGES_REQUESTED: ("kyc.changes_requested", lambda app, who: services.kyc_application_request_changes(
        application_id=app.pk, reviewer=who["reviewer"], reason="Attach a current KvK extract.")),
    AppStatus.EXPIRED: ("kyc.expired", lambda app, who: services.kyc_application_expire(application_id=app.pk)),
}  # fmt: skip

APPLICATION_PAIRS = [(source, target) for source in AppStatus.values for target in APPLICATION_MOVES]


def test_every_status_has_a_row_in_the_transition_table_and_every_target_a_service():
    assert set(KycApplication.TRANSITIONS) == set(AppStatus.values)
    targets = set().union(*KycApplication.TRANSITIONS.values())
    assert targets <= set(APPLICATION_MOVES)


@pytest.fixture
def people(pending_organisation, owner, reviewer) -> dict[str, Any]:
    return {"organisation": pending_organisation, "owner": owner, "reviewer": reviewer}


def application_in(status: str, organisation: Organisation) -> KycApplication:
    application = KycApplicationFactory(organisation=organisation, status=status)
    EvidenceFactory(application=application)
    return application


@pytest.mark.parametrize(
    ("source", "target"),
    [pair for pair in APPLICATION_PAIRS if pair[1] in KycApplication.TRANSITIONS[pair[0]]],
    ids=lambda status: str(status),
)
def test_an_allowed_application_move_works_and_is_audited(source, target, people):
    application = application_in(source, people["organisation"])
    event, move = APPLICATION_MOVES[target]

    moved = move(application, people)

    application.refresh_from_db()
    assert moved.status == application.status == target
    assert events()[-1:] == [event] or event in events()
    assert AuditEvent.objects.filter(event=event, target_id=str(application.pk)).count() == 1


@pytest.mark.parametrize(
    ("source", "target"),
    [pair for pair in APPLICATION_PAIRS if pair[1] not in KycApplication.TRANSITIONS[pair[0]]],
    ids=lambda status: str(status),
)
def test_any_other_application_move_is_refused_and_changes_nothing(source, target, people):
    application = application_in(source, people["organisation"])
    before, rows = snapshot(application), counts()
    _event, move = APPLICATION_MOVES[target]

    with pytest.raises(InvalidTransition, match=f"application cannot go from {source} to {target}"):
        move(application, people)

    assert snapshot(application) == before
    assert counts() == rows


# --- the organisation transition table ------------------------------------------------------


def activate(organisation: Organisation, who: dict[str, Any]) -> Organisation:
    if organisation.status == OrgStatus.PENDING:
        # A pending organisation becomes active only through an approved application.
        application = application_in(AppStatus.IN_REVIEW, organisation)
        services.kyc_application_approve(application_id=application.pk, reviewer=who["reviewer"])
        organisation.refresh_from_db()
        return organisation
    return services.organisation_reactivate(organisation_id=organisation.pk, actor=who["reviewer"], reason="Reviewed.")


ORGANISATION_MOVES = {
    OrgStatus.ACTIVE: (("organisation.activated", "organisation.reactivated"), activate),
    OrgStatus.SUSPENDED: (("organisation.suspended",), lambda org, who: services.organisation_suspend(
        organisation_id=org.pk, actor=who["reviewer"], reason="Misuse reported.")),
    OrgStatus.OFFBOARDED: (("organisation.offboarded",), lambda org, who: services.organisation_offboard(
        organisation_id=org.pk, actor=who["reviewer"], reason="Contract ended.")),
}  # fmt: skip
ORGANISATION_PAIRS = [(source, target) for source in OrgStatus.values for target in ORGANISATION_MOVES]


def test_every_organisation_target_has_a_service():
    assert set(Organisation.TRANSITIONS) == set(OrgStatus.values)
    assert set().union(*Organisation.TRANSITIONS.values()) <= set(ORGANISATION_MOVES)


@pytest.mark.parametrize(
    ("source", "target"),
    [pair for pair in ORGANISATION_PAIRS if pair[1] in Organisation.TRANSITIONS[pair[0]]],
    ids=lambda status: str(status),
)
def test_an_allowed_organisation_move_works_and_is_audited(source, target, people):
    organisation = people["organisation"]
    Organisation.objects.filter(pk=organisation.pk).update(status=source)
    organisation.refresh_from_db()
    names, move = ORGANISATION_MOVES[target]

    move(organisation, people)

    organisation.refresh_from_db()
    assert organisation.status == target
    assert AuditEvent.objects.filter(event__in=names, target_id=str(organisation.pk)).count() == 1


@pytest.mark.parametrize(
    ("source", "target"),
    [pair for pair in ORGANISATION_PAIRS if pair[1] not in Organisation.TRANSITIONS[pair[0]]],
    ids=lambda status: str(status),
)
def test_any_other_organisation_move_is_refused_and_changes_nothing(source, target, people):
    organisation = people["organisation"]
    Organisation.objects.filter(pk=organisation.pk).update(status=source)
    before, rows = snapshot(organisation), counts()
    _names, move = ORGANISATION_MOVES[target]

    with pytest.raises(InvalidTransition, match=f"organisation cannot go from {source} to {target}"):
        move(organisation, people)

    assert snapshot(organisation) == before
    assert counts() == rows


def test_reactivate_refuses_a_pending_organisation(people):
    with pytest.raises(DomainError, match="application is approved"):
        services.organisation_reactivate(
            organisation_id=people["organisation"].pk, actor=people["reviewer"], reason="Why not."
        )


def test_only_staff_suspend_or_reactivate(people):
    organisation = OrganisationFactory()
    with pytest.raises(PermissionDenied):
        services.organisation_suspend(organisation_id=organisation.pk, actor=people["owner"], reason="x")
    organisation.refresh_from_db()
    assert organisation.status == OrgStatus.ACTIVE


# --- approvals: four eyes, no self-approval -------------------------------------------------


def in_review(organisation: Organisation, trust_level: str) -> KycApplication:
    application = application_in(AppStatus.IN_REVIEW, organisation)
    KycApplication.objects.filter(pk=application.pk).update(requested_trust_level=trust_level)
    return application


def test_approval_activates_the_organisation_with_the_requested_trust_level(people, settings, time_machine):
    time_machine.move_to("2026-03-01 12:00:00+00:00", tick=False)
    application = in_review(people["organisation"], Organisation.TrustLevel.SUBSTANTIAL)

    services.kyc_application_approve(application_id=application.pk, reviewer=people["reviewer"], note="Fine.")

    organisation = Organisation.objects.get(pk=people["organisation"].pk)
    assert organisation.status == OrgStatus.ACTIVE
    assert organisation.trust_level == Organisation.TrustLevel.SUBSTANTIAL
    assert organisation.next_review_at == timezone.now() + timedelta(days=settings.ONBOARDING_REVIEW_INTERVAL_DAYS)
    application.refresh_from_db()
    assert (application.decided_at, application.decision_reason) == (timezone.now(), "Fine.")
    assert {"kyc.approved", "organisation.activated"} <= set(events())


def test_trust_level_high_needs_two_different_reviewers(people, second_reviewer, django_capture_on_commit_callbacks):
    application = in_review(people["organisation"], Organisation.TrustLevel.HIGH)

    with django_capture_on_commit_callbacks(execute=True):
        services.kyc_application_approve(application_id=application.pk, reviewer=people["reviewer"])
    application.refresh_from_db()
    assert application.status == AppStatus.IN_REVIEW
    assert people["organisation"].status == OrgStatus.PENDING
    assert events()[-1] == "kyc.approval_recorded"
    assert mail.outbox == []

    rows = counts()
    with pytest.raises(PermissionDenied, match="second reviewer"):
        services.kyc_application_approve(application_id=application.pk, reviewer=people["reviewer"])
    assert counts() == rows
    application.refresh_from_db()
    assert application.status == AppStatus.IN_REVIEW

    with django_capture_on_commit_callbacks(execute=True):
        services.kyc_application_approve(application_id=application.pk, reviewer=second_reviewer)
    application.refresh_from_db()
    organisation = Organisation.objects.get(pk=people["organisation"].pk)
    assert application.status == AppStatus.APPROVED
    assert (organisation.status, organisation.trust_level) == (OrgStatus.ACTIVE, Organisation.TrustLevel.HIGH)
    assert set(application.approvals.values_list("reviewer", flat=True)) == {people["reviewer"].pk, second_reviewer.pk}
    assert [m.subject for m in mail.outbox] == [f"{organisation.name} is approved"] * 2


def test_changes_requested_clears_the_first_approval(people, second_reviewer):
    application = in_review(people["organisation"], Organisation.TrustLevel.HIGH)
    services.kyc_application_approve(application_id=application.pk, reviewer=people["reviewer"])

    services.kyc_application_request_changes(application_id=application.pk, reviewer=second_reviewer, reason="Why?")

    assert not application.approvals.exists()
    assert application.messages.get().from_reviewer


@pytest.mark.parametrize("role", Role.values)
def test_nobody_reviews_their_own_organisation(people, role):
    staff_member = otp_verified(
        MembershipFactory(organisation=people["organisation"], role=role, user__is_staff=True).user
    )
    application = in_review(people["organisation"], Organisation.TrustLevel.SUBSTANTIAL)
    before, rows = snapshot(application), counts()

    with pytest.raises(PermissionDenied, match="member of"):
        services.kyc_application_approve(application_id=application.pk, reviewer=staff_member)

    assert snapshot(application) == before
    assert counts() == rows


def test_a_former_member_does_not_review_either(people):
    staff_member = otp_verified(
        MembershipFactory(
            organisation=people["organisation"], role=Role.ADMIN, user__is_staff=True, ended_at=timezone.now()
        ).user
    )
    application = in_review(people["organisation"], Organisation.TrustLevel.LOW)

    with pytest.raises(PermissionDenied):
        services.kyc_application_approve(application_id=application.pk, reviewer=staff_member)


def test_a_non_staff_user_cannot_review(people):
    application = application_in(AppStatus.SUBMITTED, people["organisation"])

    with pytest.raises(PermissionDenied, match="staff"):
        services.kyc_application_start_review(application_id=application.pk, reviewer=UserFactory())


@pytest.mark.parametrize(
    "decide",
    [
        lambda app, who: services.kyc_application_reject(application_id=app.pk, reviewer=who, reason="  "),
        lambda app, who: services.kyc_application_request_changes(application_id=app.pk, reviewer=who, reason=""),
    ],
    ids=["reject", "request-changes"],
)
def test_a_decision_needs_a_reason(people, decide):
    application = in_review(people["organisation"], Organisation.TrustLevel.LOW)
    before, rows = snapshot(application), counts()

    with pytest.raises(ValidationError) as caught:
        decide(application, people["reviewer"])

    assert "reason" in caught.value.message_dict
    assert snapshot(application) == before
    assert counts() == rows


# --- roles: developers look, owners and admins act ------------------------------------------


def test_a_developer_cannot_invite_submit_apply_or_upload(pending_organisation, developer):
    application = application_in(AppStatus.DRAFT, pending_organisation)
    rows = counts()
    refusals = [
        lambda: services.invitation_create(
            organisation_id=pending_organisation.pk, email="new@example.org", role=Role.DEVELOPER, actor=developer
        ),
        lambda: services.kyc_application_submit(application_id=application.pk, actor=developer),
        lambda: services.kyc_application_update(application_id=application.pk, actor=developer, motivation="x"),
        lambda: services.evidence_attach(
            application_id=application.pk,
            kind=Evidence.Kind.KVK_EXTRACT,
            filename="x.pdf",
            content=b"%PDF-1.7\n%%EOF\n",
            content_type="application/pdf",
            actor=developer,
        ),
        lambda: services.kyc_message_add(application_id=application.pk, author=developer, body="Hello"),
    ]
    for refusal in refusals:
        with pytest.raises(PermissionDenied, match="owners or administrators"):
            refusal()

    application.refresh_from_db()
    assert application.status == AppStatus.DRAFT
    assert counts() == rows


def test_a_stranger_cannot_act_on_another_organisation(pending_organisation, owner):
    other_owner = MembershipFactory(role=Role.OWNER).user
    application = application_in(AppStatus.DRAFT, pending_organisation)

    with pytest.raises(PermissionDenied, match="not a member"):
        services.kyc_application_submit(application_id=application.pk, actor=other_owner)
    with pytest.raises(PermissionDenied):
        services.organisation_update(organisation_id=pending_organisation.pk, actor=other_owner, name="Mine now")


def test_an_expired_membership_grants_nothing(pending_organisation):
    membership = MembershipFactory(organisation=pending_organisation, expires_at=timezone.now() - timedelta(seconds=1))

    assert membership_for(membership.user, pending_organisation) is None
    with pytest.raises(PermissionDenied):
        require_role(membership.user, pending_organisation)


def test_the_owner_submits_and_the_reviewer_sees_it(pending_organisation, owner, django_capture_on_commit_callbacks):
    application = services.kyc_application_create(organisation_id=pending_organisation.pk, actor=owner)
    with pytest.raises(DomainError, match="Attach at least one document"):
        services.kyc_application_submit(application_id=application.pk, actor=owner)
    EvidenceFactory(application=application)

    with django_capture_on_commit_callbacks(execute=True):
        services.kyc_application_submit(application_id=application.pk, actor=owner)

    application.refresh_from_db()
    assert application.status == AppStatus.SUBMITTED
    assert application.submitted_at is not None
    assert sorted(m.to[0] for m in mail.outbox) == sorted([owner.email, "info@example.org"])


def test_one_open_application_at_a_time(pending_organisation, owner):
    services.kyc_application_create(organisation_id=pending_organisation.pk, actor=owner)

    with pytest.raises(DomainError, match="open application"):
        services.kyc_application_create(organisation_id=pending_organisation.pk, actor=owner)


# --- invitations ----------------------------------------------------------------------------


def test_an_invitation_stores_only_the_hash_and_mails_the_link(
    pending_organisation, owner, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invitation, token = services.invitation_create(
            organisation_id=pending_organisation.pk, email="New.Person@Example.org", role=Role.ADMIN, actor=owner
        )

    invitation.refresh_from_db()
    assert invitation.token_hash == hashlib.sha256(token.encode()).hexdigest()
    stored = " ".join(str(value) for value in model_to_dict(invitation).values())
    assert token not in stored
    assert token not in str(AuditEvent.objects.values_list("data", flat=True)[::1])
    assert invitation.email == "new.person@example.org"
    [message] = mail.outbox
    assert message.to == ["new.person@example.org"]
    assert f"/portal/invitations/{token}/" in message.body


def test_an_invitation_is_single_use_and_must_match_the_email(pending_organisation, owner):
    _invitation, token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="new@example.org", role=Role.DEVELOPER, actor=owner
    )
    someone_else = UserFactory(email="other@example.org")
    invitee = UserFactory(email="NEW@example.org")

    with pytest.raises(PermissionDenied, match="another email address"):
        services.invitation_accept(token=token, user=someone_else)
    assert membership_for(someone_else, pending_organisation) is None

    membership = services.invitation_accept(token=token, user=invitee)
    assert (membership.user, membership.role) == (invitee, Role.DEVELOPER)
    assert "invitation.accepted" in events()

    rows = counts()
    with pytest.raises(DomainError, match="used already"):
        services.invitation_accept(token=token, user=invitee)
    assert counts() == rows


def test_an_expired_or_revoked_or_unknown_invitation_is_refused(pending_organisation, owner, time_machine):
    time_machine.move_to("2026-03-01 12:00:00+00:00", tick=False)
    invitee = UserFactory(email="new@example.org")
    expired, expired_token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="new@example.org", role=Role.DEVELOPER, actor=owner
    )
    time_machine.move_to(expired.expires_at + timedelta(seconds=1), tick=False)
    with pytest.raises(DomainError, match="expired"):
        services.invitation_accept(token=expired_token, user=invitee)

    revoked, revoked_token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="new@example.org", role=Role.DEVELOPER, actor=owner
    )
    services.invitation_revoke(invitation_id=revoked.pk, actor=owner)
    with pytest.raises(DomainError, match="withdrawn"):
        services.invitation_accept(token=revoked_token, user=invitee)
    with pytest.raises(DomainError, match="not valid"):
        services.invitation_accept(token="guessed-" + revoked_token, user=invitee)
    assert membership_for(invitee, pending_organisation) is None


def test_a_new_invitation_replaces_the_open_one(pending_organisation, owner):
    first, first_token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="new@example.org", role=Role.DEVELOPER, actor=owner
    )
    services.invitation_create(
        organisation_id=pending_organisation.pk, email="new@example.org", role=Role.ADMIN, actor=owner
    )

    first.refresh_from_db()
    assert first.revoked_at is not None
    with pytest.raises(DomainError, match="withdrawn"):
        services.invitation_accept(token=first_token, user=UserFactory(email="new@example.org"))


def test_only_an_owner_invites_an_owner(pending_organisation):
    admin = MembershipFactory(organisation=pending_organisation, role=Role.ADMIN).user

    with pytest.raises(PermissionDenied, match="owner"):
        services.invitation_create(
            organisation_id=pending_organisation.pk, email="boss@example.org", role=Role.OWNER, actor=admin
        )
    invitation, _token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="dev@example.org", role=Role.DEVELOPER, actor=admin
    )
    assert invitation.invited_by == admin


def test_inviting_a_member_again_is_a_field_error(pending_organisation, owner):
    with pytest.raises(ValidationError) as caught:
        services.invitation_create(
            organisation_id=pending_organisation.pk, email=owner.email.upper(), role=Role.ADMIN, actor=owner
        )
    assert "email" in caught.value.message_dict


def test_invitation_factory_token_works(pending_organisation):
    invitation = InvitationFactory(organisation=pending_organisation, email="x@example.org")
    membership = services.invitation_accept(token=invitation.token, user=UserFactory(email="x@example.org"))
    assert membership.organisation == pending_organisation


# --- memberships ----------------------------------------------------------------------------


def test_the_last_owner_cannot_leave_but_a_member_can(pending_organisation, owner, developer):
    owner_membership = membership_for(owner, pending_organisation)
    with pytest.raises(DomainError, match="last owner"):
        services.membership_end(membership_id=owner_membership.pk, actor=owner)

    developer_membership = membership_for(developer, pending_organisation)
    services.membership_end(membership_id=developer_membership.pk, actor=developer)
    assert membership_for(developer, pending_organisation) is None

    MembershipFactory(organisation=pending_organisation, role=Role.OWNER)
    services.membership_end(membership_id=owner_membership.pk, actor=owner)
    assert membership_for(owner, pending_organisation) is None


def test_an_admin_cannot_remove_an_owner_and_a_developer_cannot_remove_anyone(pending_organisation, owner, developer):
    admin = MembershipFactory(organisation=pending_organisation, role=Role.ADMIN).user
    MembershipFactory(organisation=pending_organisation, role=Role.OWNER)

    with pytest.raises(PermissionDenied, match="owner"):
        services.membership_end(membership_id=membership_for(owner, pending_organisation).pk, actor=admin)
    with pytest.raises(PermissionDenied):
        services.membership_end(membership_id=membership_for(admin, pending_organisation).pk, actor=developer)
    services.membership_end(membership_id=membership_for(developer, pending_organisation).pk, actor=admin)


# --- organisations: identifiers and kinds ---------------------------------------------------


def test_create_with_an_owner_makes_the_first_membership(user):
    organisation = services.organisation_create(
        name=" Gemeente Voorbeeld ", kind=Organisation.Kind.GOVERNMENT, oin=GOOD_OIN, actor=user, owner=user
    )

    assert organisation.name == "Gemeente Voorbeeld"
    assert organisation.status == OrgStatus.PENDING
    assert membership_for(user, organisation).role == Role.OWNER
    assert events() == ["organisation.created", "membership.created"]


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"kind": Organisation.Kind.GOVERNMENT, "kvk_number": "12345678"}, "oin"),
        ({"kind": Organisation.Kind.PRIVATE}, "kvk_number"),
        ({"kind": Organisation.Kind.FOREIGN, "country": "DE"}, "eidas_identifier"),
        ({"kind": Organisation.Kind.PRIVATE, "kvk_number": "1234567"}, "kvk_number"),
        ({"kind": Organisation.Kind.GOVERNMENT, "oin": "12345678002220647000"}, "oin"),
        ({"kind": Organisation.Kind.PRIVATE, "kvk_number": "12345678", "rsin": "123456789"}, "rsin"),
        ({"kind": "church"}, "kind"),
    ],
    ids=["government-without-oin", "dutch-without-kvk", "foreign-without-eidas", "kvk-7-digits", "oin-bad-prefix",
         "rsin-11-test", "unknown-kind"],
)  # fmt: skip
def test_create_refuses_incomplete_or_bad_identifiers_with_a_field_error(fields, field):
    with pytest.raises(ValidationError) as caught:
        services.organisation_create(name="Example", **fields)

    assert field in caught.value.message_dict
    assert not Organisation.objects.exists()
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(
    ("field", "value", "kind"),
    [
        ("oin", GOOD_OIN, Organisation.Kind.GOVERNMENT),
        ("kvk_number", "12345678", Organisation.Kind.PRIVATE),
        ("eidas_identifier", "DE/NL/HRB123456", Organisation.Kind.FOREIGN),
    ],
)
def test_a_duplicate_identifier_is_a_field_error(field, value, kind):
    services.organisation_create(name="First", kind=kind, **{field: value})
    rows = counts()

    with pytest.raises(ValidationError) as caught:
        services.organisation_create(name="Second", kind=kind, **{field: value})

    assert caught.value.message_dict[field] == [
        f"An organisation with {services.UNIQUE_IDENTIFIERS[field]} {value} exists already."
    ]
    assert isinstance(caught.value, DomainError)  # commands catch DomainError
    assert counts() == rows


def test_update_changes_details_while_pending_and_only_contact_details_later(pending_organisation, owner):
    old_name = pending_organisation.name
    services.organisation_update(
        organisation_id=pending_organisation.pk, actor=owner, name="Renamed", contact_phone="+31 30 123 4567"
    )
    pending_organisation.refresh_from_db()
    assert (pending_organisation.name, pending_organisation.contact_phone) == ("Renamed", "+31 30 123 4567")
    assert AuditEvent.objects.get(event="organisation.updated").data["changes"]["name"] == [old_name, "Renamed"]

    Organisation.objects.filter(pk=pending_organisation.pk).update(status=OrgStatus.ACTIVE)
    with pytest.raises(DomainError, match="cannot change once it is active"):
        services.organisation_update(organisation_id=pending_organisation.pk, actor=owner, name="Again")
    # The form sends every field; unchanged identity fields do not count as a change.
    services.organisation_update(
        organisation_id=pending_organisation.pk, actor=owner, name="Renamed", contact_name="Anne de Vries"
    )
    pending_organisation.refresh_from_db()
    assert (pending_organisation.name, pending_organisation.contact_name) == ("Renamed", "Anne de Vries")


def test_update_refuses_a_duplicate_identifier(pending_organisation, owner):
    other = OrganisationFactory()

    with pytest.raises(ValidationError) as caught:
        services.organisation_update(organisation_id=pending_organisation.pk, actor=owner, kvk_number=other.kvk_number)
    assert "kvk_number" in caught.value.message_dict


def test_an_owner_may_offboard_their_organisation_but_an_admin_may_not(pending_organisation, owner):
    admin = MembershipFactory(organisation=pending_organisation, role=Role.ADMIN).user

    with pytest.raises(PermissionDenied, match="owners"):
        services.organisation_offboard(organisation_id=pending_organisation.pk, actor=admin, reason="Leaving.")
    services.organisation_offboard(organisation_id=pending_organisation.pk, actor=owner, reason="Leaving.")

    pending_organisation.refresh_from_db()
    assert pending_organisation.status == OrgStatus.OFFBOARDED
    assert AuditEvent.objects.get(event="organisation.offboarded").data == {"reason": "Leaving."}


def test_the_createorganisation_command_reports_field_errors():
    from django.core.management import CommandError, call_command

    with pytest.raises(CommandError, match="oin: A government organisation must have an OIN"):
        call_command("createorganisation", "--name", "Gemeente", "--kind", "government")
    call_command(
        "createorganisation", "--name", "GmbH", "--kind", "foreign", "--eidas", "DE/NL/HRB1", "--country", "de"
    )
    assert Organisation.objects.get(eidas_identifier="DE/NL/HRB1").country == "DE"
