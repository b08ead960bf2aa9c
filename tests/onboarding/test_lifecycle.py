"""Lifecycle jobs with frozen time: each does its work once, a second run changes nothing and mails nobody.

Also the hook of DESIGN.md: suspending an organisation suspends its clients and revokes their
tokens; reactivating it does not bring them back.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from oauth2_provider.models import AccessToken, Grant, RefreshToken

from authserver.models import AuditEvent
from clients.models import Client, ClientCredential
from onboarding import services
from onboarding.models import Evidence, Invitation, KycApplication, Membership, Organisation

from ..conftest import REDIRECT_URI, register_client
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

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
AppStatus = KycApplication.Status
OrgStatus = Organisation.Status


def state() -> dict[str, Any]:
    """Every row the jobs may touch, as plain values."""
    return {
        "organisations": list(Organisation.objects.order_by("pk").values()),
        "applications": list(KycApplication.objects.order_by("pk").values()),
        "memberships": list(Membership.objects.order_by("pk").values()),
        "invitations": list(Invitation.objects.order_by("pk").values()),
        "evidence": list(Evidence.objects.order_by("pk").values("pk", "expiry_warning_sent_at")),
        "clients": list(Client.objects.order_by("pk").values("pk", "status")),
        "tokens": AccessToken.objects.count(),
        "audit": AuditEvent.objects.count(),
    }


@pytest.fixture
def run(django_capture_on_commit_callbacks, time_machine):
    """Run a job at a frozen moment, with the emails it enqueues on commit actually sent."""

    def run_at(job: Callable[..., int], moment: datetime) -> int:
        time_machine.move_to(moment, tick=False)
        with django_capture_on_commit_callbacks(execute=True):
            return job()

    return run_at


def member_of(organisation: Organisation, role: str = Membership.Role.OWNER) -> Any:
    return MembershipFactory(organisation=organisation, role=role).user


@dataclass
class Case:
    job: Callable[..., int]
    arrange: Callable[[Any], dict[str, Any]]
    when: datetime
    check: Callable[[dict[str, Any]], None]
    mails: int


# --- arrangements: something due and something not ------------------------------------------


def stale_drafts(time_machine) -> dict[str, Any]:
    time_machine.move_to(T0, tick=False)
    organisation = OrganisationFactory(status=OrgStatus.PENDING)
    member_of(organisation)
    stale = KycApplicationFactory(organisation=organisation)
    old_but_submitted = KycApplicationFactory(status=AppStatus.SUBMITTED)
    time_machine.move_to(T0 + 60 * DAY, tick=False)
    fresh = KycApplicationFactory()
    return {"stale": stale, "submitted": old_but_submitted, "fresh": fresh}


def check_stale_drafts(rows: dict[str, Any]) -> None:
    for row in rows.values():
        row.refresh_from_db()
    assert rows["stale"].status == AppStatus.EXPIRED
    assert (rows["submitted"].status, rows["fresh"].status) == (AppStatus.SUBMITTED, AppStatus.DRAFT)
    assert AuditEvent.objects.filter(event="kyc.expired").count() == 1


def reviews_due(time_machine) -> dict[str, Any]:
    time_machine.move_to(T0, tick=False)
    due = OrganisationFactory(next_review_at=T0 + 20 * DAY, contact_email="contact@example.org")
    member_of(due)
    member_of(due, Membership.Role.DEVELOPER)  # developers get no decisions or reminders
    later = OrganisationFactory(next_review_at=T0 + 60 * DAY)
    member_of(later)
    return {"due": due, "later": later}


def check_reviews_due(rows: dict[str, Any]) -> None:
    for row in rows.values():
        row.refresh_from_db()
    assert rows["due"].review_reminder_sent_at == T0
    assert rows["later"].review_reminder_sent_at is None
    assert {m.subject for m in mail.outbox} == {f"{rows['due'].name} is due for its periodic review"}


def lapsed_reviews(time_machine) -> dict[str, Any]:
    time_machine.move_to(T0, tick=False)
    lapsed = OrganisationFactory(next_review_at=T0 - (settings.ONBOARDING_REVIEW_GRACE_DAYS + 1) * DAY)
    member_of(lapsed)
    in_grace = OrganisationFactory(next_review_at=T0 - 5 * DAY)
    return {"lapsed": lapsed, "in_grace": in_grace}


def check_lapsed_reviews(rows: dict[str, Any]) -> None:
    for row in rows.values():
        row.refresh_from_db()
    assert rows["lapsed"].status == OrgStatus.SUSPENDED
    assert rows["in_grace"].status == OrgStatus.ACTIVE
    event = AuditEvent.objects.get(event="organisation.suspended")
    assert (event.actor_type, event.organisation_id) == ("system", rows["lapsed"].pk)


def expiring_memberships(time_machine) -> dict[str, Any]:
    time_machine.move_to(T0, tick=False)
    organisation = OrganisationFactory()
    member_of(organisation)
    expired = MembershipFactory(organisation=organisation, role=Membership.Role.DEVELOPER, expires_at=T0 - DAY)
    live = MembershipFactory(organisation=organisation, role=Membership.Role.DEVELOPER, expires_at=T0 + DAY)
    return {"expired": expired, "live": live}


def check_expiring_memberships(rows: dict[str, Any]) -> None:
    for row in rows.values():
        row.refresh_from_db()
    assert rows["expired"].ended_at == T0 - DAY  # it ended when it expired, not when the job noticed
    assert rows["live"].ended_at is None


def expiring_invitations(time_machine) -> dict[str, Any]:
    time_machine.move_to(T0, tick=False)
    expired = InvitationFactory(expires_at=T0 - DAY)
    accepted = InvitationFactory(expires_at=T0 - DAY, accepted_at=T0 - 2 * DAY)
    open_one = InvitationFactory(expires_at=T0 + DAY)
    return {"expired": expired, "accepted": accepted, "open": open_one}


def check_expiring_invitations(rows: dict[str, Any]) -> None:
    for row in rows.values():
        row.refresh_from_db()
    assert rows["expired"].expired_at == T0
    assert (rows["accepted"].expired_at, rows["open"].expired_at) == (None, None)
    assert not rows["expired"].is_open()


def expiring_certificates(time_machine) -> dict[str, Any]:
    time_machine.move_to(T0, tick=False)
    organisation = OrganisationFactory()
    member_of(organisation)
    approved = KycApplicationFactory(organisation=organisation, status=AppStatus.APPROVED)
    near = EvidenceFactory(application=approved, kind=Evidence.Kind.CERTIFICATE, valid_until=T0 + 10 * DAY)
    far = EvidenceFactory(application=approved, kind=Evidence.Kind.CERTIFICATE, valid_until=T0 + 90 * DAY)
    rejected = KycApplicationFactory(organisation=organisation, status=AppStatus.REJECTED)
    ignored = EvidenceFactory(application=rejected, kind=Evidence.Kind.CERTIFICATE, valid_until=T0 + 10 * DAY)
    return {"near": near, "far": far, "ignored": ignored}


def check_expiring_certificates(rows: dict[str, Any]) -> None:
    for row in rows.values():
        row.refresh_from_db()
    assert rows["near"].expiry_warning_sent_at == T0
    assert (rows["far"].expiry_warning_sent_at, rows["ignored"].expiry_warning_sent_at) == (None, None)
    [message] = mail.outbox
    assert "expires on 12 March 2026" in message.body


CASES = {
    "expire-stale-drafts": Case(
        services.kyc_applications_expire_stale, stale_drafts, T0 + 91 * DAY, check_stale_drafts, mails=1
    ),
    "remind-review": Case(services.organisations_remind_review, reviews_due, T0, check_reviews_due, mails=2),
    "suspend-lapsed": Case(services.organisations_suspend_lapsed, lapsed_reviews, T0, check_lapsed_reviews, mails=1),
    "end-memberships": Case(
        services.memberships_end_expired, expiring_memberships, T0, check_expiring_memberships, mails=0
    ),
    "expire-invitations": Case(services.invitations_expire, expiring_invitations, T0, check_expiring_invitations, 0),
    "warn-certificates": Case(
        services.evidence_warn_expiring, expiring_certificates, T0, check_expiring_certificates, mails=1
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES.keys())
def test_a_lifecycle_job_does_its_work_once(case: Case, run, time_machine):
    rows = case.arrange(time_machine)

    assert run(case.job, case.when) == 1
    case.check(rows)
    assert len(mail.outbox) == case.mails
    after_first = state()

    assert run(case.job, case.when) == 0
    assert state() == after_first
    assert len(mail.outbox) == case.mails


def test_jobs_are_bounded_by_the_batch_size(time_machine):
    time_machine.move_to(T0, tick=False)
    InvitationFactory.create_batch(5, expires_at=T0 - DAY)

    assert services.invitations_expire(batch_size=2) == 2
    assert services.invitations_expire(batch_size=2) == 2
    assert services.invitations_expire(batch_size=2) == 1
    assert services.invitations_expire(batch_size=2) == 0


def test_the_reminder_comes_again_after_the_next_approval(run, time_machine, django_capture_on_commit_callbacks):
    rows = reviews_due(time_machine)
    assert run(services.organisations_remind_review, T0) == 1
    organisation = rows["due"]
    application = KycApplicationFactory(organisation=organisation, status=AppStatus.IN_REVIEW)

    services.kyc_application_approve(application_id=application.pk, reviewer=otp_verified(UserFactory(is_staff=True)))

    organisation.refresh_from_db()
    assert organisation.review_reminder_sent_at is None
    assert organisation.next_review_at == T0 + settings.ONBOARDING_REVIEW_INTERVAL_DAYS * DAY
    assert run(services.organisations_remind_review, T0) == 0  # not due: a year ahead


def test_a_reminder_goes_to_owners_admins_and_the_contact_not_developers(run, time_machine):
    rows = reviews_due(time_machine)
    owner = Membership.objects.get(organisation=rows["due"], role=Membership.Role.OWNER).user

    run(services.organisations_remind_review, T0)

    assert sorted(m.to[0] for m in mail.outbox) == sorted([owner.email, "contact@example.org"])


# --- suspension reaches the clients ---------------------------------------------------------


def issue_tokens(client: Client, user) -> dict[str, Any]:
    access = AccessToken.objects.create(
        user=user, application=client, token=secrets.token_urlsafe(), expires=T0 + timedelta(hours=1)
    )
    refresh = RefreshToken.objects.create(
        user=user, application=client, token=secrets.token_urlsafe(), access_token=access
    )
    bare = AccessToken.objects.create(
        user=user, application=client, token=secrets.token_urlsafe(), expires=T0 + timedelta(hours=1)
    )
    grant = Grant.objects.create(
        user=user,
        application=client,
        code=secrets.token_urlsafe(),
        expires=T0 + timedelta(minutes=1),
        redirect_uri=REDIRECT_URI,
        code_challenge=secrets.token_urlsafe(43),
        code_challenge_method="S256",
    )
    return {"access": access, "refresh": refresh, "bare": bare, "grant": grant}


@pytest.fixture
def organisation_with_clients(time_machine):
    time_machine.move_to(T0, tick=False)
    organisation = OrganisationFactory(next_review_at=T0 - (settings.ONBOARDING_REVIEW_GRACE_DAYS + 1) * DAY)
    member_of(organisation)
    service = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    ).client
    web = register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
    ).client
    bystander = register_client(
        OrganisationFactory(), grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    ).client
    user = UserFactory()
    tokens = {client.pk: issue_tokens(client, user) for client in (service, web, bystander)}
    return organisation, [service, web], bystander, tokens


def test_suspension_suspends_the_clients_and_revokes_their_tokens(organisation_with_clients, run):
    organisation, clients, bystander, tokens = organisation_with_clients

    assert run(services.organisations_suspend_lapsed, T0) == 1

    for client in clients:
        client.refresh_from_db()
        assert client.status == Client.Status.SUSPENDED
        assert not client.is_usable(None)
        assert not AccessToken.objects.filter(application=client).exists()
        assert not Grant.objects.filter(application=client).exists()
        assert RefreshToken.objects.get(pk=tokens[client.pk]["refresh"].pk).revoked == T0
        # Credentials are kept: suspension is not revocation.
        assert client.credentials.filter(status=ClientCredential.Status.ACTIVE).exists()
    bystander.refresh_from_db()
    assert bystander.status == Client.Status.ACTIVE
    assert AccessToken.objects.filter(application=bystander).count() == 2
    suspended = AuditEvent.objects.filter(event="client.suspended", organisation=organisation)
    assert sorted(int(e.target_id) for e in suspended) == sorted(c.pk for c in clients)


def test_reactivation_does_not_reactivate_the_clients(organisation_with_clients, run):
    organisation, clients, _bystander, _tokens = organisation_with_clients
    run(services.organisations_suspend_lapsed, T0)

    services.organisation_reactivate(
        organisation_id=organisation.pk,
        actor=otp_verified(UserFactory(is_staff=True)),
        reason="Review completed by phone.",
    )

    organisation.refresh_from_db()
    assert organisation.status == OrgStatus.ACTIVE
    # A full interval ahead, so the job does not suspend it again at once.
    assert organisation.next_review_at == T0 + settings.ONBOARDING_REVIEW_INTERVAL_DAYS * DAY
    assert run(services.organisations_suspend_lapsed, T0) == 0
    for client in clients:
        client.refresh_from_db()
        assert client.status == Client.Status.SUSPENDED
        assert not client.is_usable(None)
        assert not AccessToken.objects.filter(application=client).exists()


def test_offboarding_revokes_the_clients_for_good(organisation_with_clients, time_machine):
    organisation, clients, _bystander, _tokens = organisation_with_clients
    open_invitation = InvitationFactory(organisation=organisation, expires_at=T0 + DAY)
    draft = KycApplicationFactory(organisation=organisation)

    services.organisation_offboard(
        organisation_id=organisation.pk, actor=otp_verified(UserFactory(is_staff=True)), reason="Gone."
    )

    for client in clients:
        client.refresh_from_db()
        assert client.status == Client.Status.REVOKED
        assert not client.credentials.exclude(status=ClientCredential.Status.REVOKED).exists()
    open_invitation.refresh_from_db()
    draft.refresh_from_db()
    assert open_invitation.revoked_at is not None
    assert draft.status == AppStatus.EXPIRED


def test_a_failed_suspension_leaves_the_clients_alone(organisation_with_clients):
    organisation, clients, _bystander, _tokens = organisation_with_clients
    Organisation.objects.filter(pk=organisation.pk).update(status=OrgStatus.PENDING)

    with pytest.raises(Exception, match="cannot go from pending to suspended"):
        services.organisation_suspend(organisation_id=organisation.pk, reason="x")

    assert {c.status for c in Client.objects.filter(pk__in=[c.pk for c in clients])} == {Client.Status.ACTIVE}
    assert AccessToken.objects.filter(application__in=clients).count() == 4
