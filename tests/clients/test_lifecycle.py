"""The client lifecycle jobs with frozen time: each does its work once; a second run changes
nothing, audits nothing and mails nobody."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.core import mail
from oauth2_provider.models import AccessToken, RefreshToken

from authserver.models import AuditEvent, Scope
from clients import tasks
from clients.models import Client, ClientCredential, InitialAccessToken
from clients.notifications import notify_credential_expiring
from clients.services import (
    client_create,
    client_credential_add_certificate,
    client_credential_add_public_key,
    client_credential_issue_secret,
    client_credential_revoke,
    client_credential_rotate,
    client_revoke,
    clients_expire_unused_open,
    credentials_expire_due,
    credentials_remind_expiring,
    initial_access_token_issue,
    initial_access_token_revoke,
    initial_access_tokens_expire,
)
from clients.services.credentials import INITIAL_ACCESS_TOKEN_RETENTION
from onboarding.models import Membership, Organisation

from ..conftest import REDIRECT_URI, make_client_key, register_client
from ..factories import MembershipFactory, UserFactory
from ..protocol.test_errors import basic, obtain_code, post_form, redeem

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
Status = ClientCredential.Status


@pytest.fixture
def run(django_capture_on_commit_callbacks, time_machine):
    """Run a job at a frozen moment, with the emails it enqueues on commit actually sent."""

    def run_at(job: Callable[..., int], moment: datetime, **kwargs: Any) -> int:
        time_machine.move_to(moment, tick=False)
        with django_capture_on_commit_callbacks(execute=True):
            return job(**kwargs)

    return run_at


def snapshot() -> dict[str, Any]:
    """Every row the jobs may touch, as plain values."""
    return {
        "clients": list(Client.objects.order_by("pk").values("pk", "status", "last_used_at")),
        "credentials": list(ClientCredential.objects.order_by("pk").values()),
        "initial_access_tokens": list(InitialAccessToken.objects.order_by("pk").values_list("pk", flat=True)),
        "access_tokens": AccessToken.objects.count(),
        "audit": AuditEvent.objects.count(),
        "mails": len(mail.outbox),
    }


def assert_second_run_changes_nothing(run, job: Callable[..., int], moment: datetime) -> None:
    before = snapshot()
    assert run(job, moment) == 0
    assert snapshot() == before


# --- credentials_expire_due ------------------------------------------------------------------


def test_expire_due_expires_active_and_overlapping_credentials_past_their_date(run, organisation, time_machine):
    time_machine.move_to(T0, tick=False)
    registered = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    )
    client = registered.client
    (first,) = client.credentials.all()
    rotated = client_credential_rotate(client_id=client.pk, overlap_seconds=3600)  # first: overlap until T0+1h
    short = client_credential_issue_secret(client=client, expires_at=T0 + 2 * 3600 * SECOND).credential
    later = client_credential_issue_secret(client=client, expires_at=T0 + 10 * DAY).credential
    revoked = client_credential_issue_secret(client=client, expires_at=T0 + 3600 * SECOND).credential
    client_credential_revoke(credential_id=revoked.pk)
    keyed = register_client(organisation, grant_type="client_credentials", auth_method="private_key_jwt", scopes=[])
    (key,) = keyed.client.credentials.all()  # no expiry at all

    assert run(credentials_expire_due, T0 + 3 * 3600 * SECOND) == 2

    for row in (first, rotated.credential, short, later, revoked, key):
        row.refresh_from_db()
    assert (first.status, short.status) == (Status.EXPIRED, Status.EXPIRED)
    assert (rotated.credential.status, later.status, revoked.status, key.status) == (
        Status.ACTIVE,
        Status.ACTIVE,
        Status.REVOKED,
        Status.ACTIVE,
    )
    events = {e.target_id: e for e in AuditEvent.objects.filter(event="client.credential.expired")}
    assert set(events) == {str(first.pk), str(short.pk)}
    assert events[str(first.pk)].data["overlap_ended"] is True
    assert events[str(short.pk)].data["overlap_ended"] is False
    assert {e.actor_type for e in events.values()} == {"system"}
    assert events[str(first.pk)].organisation == organisation
    assert_second_run_changes_nothing(run, credentials_expire_due, T0 + 3 * 3600 * SECOND)


def test_expire_due_is_bounded_by_its_batch_size(run, organisation, time_machine):
    time_machine.move_to(T0, tick=False)
    client = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    ).client
    for _ in range(3):
        client_credential_issue_secret(client=client, expires_at=T0 + DAY)

    assert run(credentials_expire_due, T0 + 2 * DAY, batch_size=2) == 2
    assert client.credentials.filter(status=Status.EXPIRED).count() == 2
    assert run(credentials_expire_due, T0 + 2 * DAY, batch_size=2) == 1
    assert_second_run_changes_nothing(run, credentials_expire_due, T0 + 2 * DAY)


# --- credentials_remind_expiring -------------------------------------------------------------


@pytest.fixture
def people(organisation) -> dict[str, Any]:
    Organisation.objects.filter(pk=organisation.pk).update(contact_email="contact@example.org")
    organisation.refresh_from_db()
    owner = MembershipFactory(organisation=organisation, role=Membership.Role.OWNER).user
    admin = MembershipFactory(organisation=organisation, role=Membership.Role.ADMIN).user
    developer = MembershipFactory(organisation=organisation, role=Membership.Role.DEVELOPER).user
    outsider = UserFactory()  # registered the client, no longer a member
    return {"owner": owner, "admin": admin, "developer": developer, "creator": outsider}


def expiring_credential(kind: str, organisation: Organisation, expires_at: datetime, creator: Any = None):
    """A client of the kind's auth method with one credential that expires at ``expires_at``."""
    methods = {
        "secret": Client.AuthMethod.CLIENT_SECRET_BASIC,
        "public_key": Client.AuthMethod.PRIVATE_KEY_JWT,
        "certificate": Client.AuthMethod.TLS_CLIENT_AUTH,
    }
    client = client_create(
        organisation=organisation,
        name=f"Orders ({kind})",
        grant_type="client_credentials",
        auth_method=methods[kind],
        metadata={"created_by": creator},
    )
    if kind == "secret":
        return client_credential_issue_secret(client=client, expires_at=expires_at).credential
    if kind == "public_key":
        return client_credential_add_public_key(client=client, jwk=make_client_key().public_jwk, expires_at=expires_at)
    return client_credential_add_certificate(
        client=client, subject_dn="CN=orders.voorbeeld.nl,O=Gemeente Voorbeeld,C=NL", expires_at=expires_at
    )


def reminder_mails() -> dict[str, str]:
    return {message.to[0]: message.body for message in mail.outbox}


@pytest.mark.parametrize("kind", ["secret", "public_key", "certificate"])
def test_owners_are_reminded_30_7_and_1_days_before_expiry_once_each(run, organisation, people, time_machine, kind):
    time_machine.move_to(T0, tick=False)
    expires = T0 + 40 * DAY
    credential = expiring_credential(kind, organisation, expires, creator=people["creator"])
    recipients = {people["owner"].email, people["admin"].email, "contact@example.org", people["creator"].email}

    assert run(credentials_remind_expiring, expires - 30 * DAY - SECOND) == 0
    for days in (30, 7, 1):
        mail.outbox.clear()
        assert run(credentials_remind_expiring, expires - days * DAY) == 1
        credential.refresh_from_db()
        assert credential.expiry_reminder_days == days
        mails = reminder_mails()
        assert set(mails) == recipients  # developers get no reminder; the creator does
        assert {m.subject for m in mail.outbox} == {f"A credential of client {credential.client.name} expires soon"}
        body = mails["contact@example.org"]
        assert f"expires in {days} day" in body
        assert credential.client.client_id in body
        assert credential.hint in body
        assert f"/clients/{credential.client.pk}/" in body
        assert_second_run_changes_nothing(run, credentials_remind_expiring, expires - days * DAY + DAY / 2)
    events = AuditEvent.objects.filter(event="client.credential.expiry_reminder_sent").order_by("pk")
    assert [e.data["days"] for e in events] == [30, 7, 1]
    assert {(e.actor_type, e.target_id) for e in events} == {("system", str(credential.pk))}
    assert_second_run_changes_nothing(run, credentials_remind_expiring, expires + SECOND)


def test_a_credential_found_late_gets_only_the_most_urgent_reminder(run, organisation, people, time_machine):
    time_machine.move_to(T0, tick=False)
    credential = expiring_credential("secret", organisation, T0 + 5 * DAY)

    assert run(credentials_remind_expiring, T0) == 1

    credential.refresh_from_db()
    assert credential.expiry_reminder_days == 7
    assert len(mail.outbox) == 3  # owner, admin, contact: one reminder each, not three
    assert all("expires in 5 days" in m.body for m in mail.outbox)
    assert_second_run_changes_nothing(run, credentials_remind_expiring, T0 + DAY)
    mail.outbox.clear()
    assert run(credentials_remind_expiring, T0 + 4 * DAY + SECOND) == 1
    credential.refresh_from_db()
    assert credential.expiry_reminder_days == 1


def test_no_reminder_for_an_overlap_whose_replacement_exists(run, organisation, people, time_machine):
    time_machine.move_to(T0, tick=False)
    old = expiring_credential("secret", organisation, T0 + 200 * DAY)
    rotated = client_credential_rotate(client_id=old.client_id, overlap_seconds=int((5 * DAY).total_seconds()))

    assert run(credentials_remind_expiring, T0 + DAY) == 0
    assert mail.outbox == []

    # Without a usable replacement the overlapping credential is the client's last: remind.
    client_credential_revoke(credential_id=rotated.credential.pk)
    assert run(credentials_remind_expiring, T0 + DAY) == 1
    assert all("rotation overlap" in m.body for m in mail.outbox)


def test_no_reminder_for_revoked_credentials_or_clients(run, organisation, people, time_machine):
    time_machine.move_to(T0, tick=False)
    revoked_credential = expiring_credential("secret", organisation, T0 + 5 * DAY)
    client_credential_revoke(credential_id=revoked_credential.pk)
    of_revoked_client = expiring_credential("public_key", organisation, T0 + 5 * DAY)
    client_revoke(client_id=of_revoked_client.client_id)
    never = expiring_credential("certificate", organisation, T0 + 5 * DAY)
    ClientCredential.objects.filter(pk=never.pk).update(expires_at=None)

    assert_second_run_changes_nothing(run, credentials_remind_expiring, T0)


def test_a_reminder_for_a_credential_rotated_meanwhile_is_not_sent(organisation, people, time_machine):
    time_machine.move_to(T0, tick=False)
    credential = expiring_credential("secret", organisation, T0 + 5 * DAY)
    client_credential_revoke(credential_id=credential.pk)

    assert notify_credential_expiring(credential.pk, 7) == 0
    assert mail.outbox == []


# --- clients_expire_unused_open --------------------------------------------------------------


def open_client(organisation: Organisation, **kwargs: Any):
    return register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "orders:read"],
        redirect_uris=[REDIRECT_URI],
        registration_mode=Client.RegistrationMode.OPEN,
        **kwargs,
    )


def get_tokens(http, user, registered, django_capture_on_commit_callbacks) -> dict[str, Any]:
    code, verifier = obtain_code(http, user, registered)
    with django_capture_on_commit_callbacks(execute=True):  # the client's last use is written on commit
        response = redeem(http, registered, code, verifier)
    assert response.status_code == 200, response.content
    return response.json()


def test_unused_open_clients_expire_and_lose_credentials_and_tokens(
    run, client, user, organisation, time_machine, settings, django_capture_on_commit_callbacks
):
    settings.AUTHSERVER_OPEN_CLIENT_UNUSED_DAYS = 30
    time_machine.move_to(T0, tick=True)
    unused = open_client(organisation)
    used_once = open_client(organisation)
    get_tokens(client, user, used_once, django_capture_on_commit_callbacks)
    rotated = client_credential_rotate(client_id=used_once.client.pk)  # a second, overlapping credential
    time_machine.move_to(T0 + 20 * DAY, tick=True)
    used_lately = open_client(organisation)
    tokens = get_tokens(client, user, used_lately, django_capture_on_commit_callbacks)
    get_tokens(client, user, used_lately, django_capture_on_commit_callbacks)  # used again within the hour
    manual = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    )
    assert AccessToken.objects.filter(application=used_once.client).exists()
    used_lately.client.refresh_from_db()
    assert T0 + 20 * DAY <= used_lately.client.last_used_at < T0 + 20 * DAY + timedelta(minutes=5)

    # Day 31: the unused client (created on day 0) and the one used on day 0 are past 30 days.
    assert run(clients_expire_unused_open, T0 + 31 * DAY) == 2

    for registered in (unused, used_once, used_lately, manual):
        registered.client.refresh_from_db()
    assert (unused.client.status, used_once.client.status) == (Client.Status.EXPIRED, Client.Status.EXPIRED)
    assert (used_lately.client.status, manual.client.status) == (Client.Status.ACTIVE, Client.Status.ACTIVE)
    assert set(used_once.client.credentials.values_list("status", flat=True)) == {Status.EXPIRED}
    assert rotated.credential.pk in used_once.client.credentials.values_list("pk", flat=True)
    assert not AccessToken.objects.filter(application=used_once.client).exists()
    assert not RefreshToken.objects.filter(application=used_once.client, revoked__isnull=True).exists()
    assert AccessToken.objects.filter(application=used_lately.client).exists()
    event = AuditEvent.objects.get(event="client.expired", target_id=str(used_once.client.pk))
    assert event.actor_type == "system"
    assert event.data["reason"] == "unused"
    assert event.data["credentials_expired"] == 2
    assert event.data["revoked_count"] >= 1
    assert tokens["access_token"]  # the live client's tokens are untouched
    # An expired client no longer authenticates (an active one would get invalid_grant here).
    form = {
        "grant_type": "authorization_code",
        "code": "x" * 30,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": "v" * 43,
    }
    assert post_form(client, "/oauth/token", form, basic(used_lately.client_id, used_lately.secret)).status_code == 400
    response = post_form(client, "/oauth/token", form, basic(unused.client_id, unused.secret))
    assert (response.status_code, response.json()["error"]) == (401, "invalid_client")
    assert_second_run_changes_nothing(run, clients_expire_unused_open, T0 + 31 * DAY)


def test_a_suspended_open_client_does_not_expire(run, organisation, time_machine, settings):
    time_machine.move_to(T0, tick=False)
    registered = open_client(organisation)
    Client.objects.filter(pk=registered.client.pk).update(status=Client.Status.SUSPENDED)

    assert_second_run_changes_nothing(run, clients_expire_unused_open, T0 + 365 * DAY)


# --- initial_access_tokens_expire ------------------------------------------------------------


def test_dead_initial_access_tokens_are_deleted_after_the_retention(run, organisation, time_machine):
    Scope.objects.create(name="orders:read", risk_level=Scope.RiskLevel.LOW)
    staff = UserFactory(is_staff=True)
    retention = INITIAL_ACCESS_TOKEN_RETENTION
    start = T0 - retention - 10 * DAY
    time_machine.move_to(start, tick=False)

    def issue(expires_at: datetime, max_uses: int = 1):
        return initial_access_token_issue(
            organisation=organisation, scopes=["orders:read"], actor=staff, expires_at=expires_at, max_uses=max_uses
        )

    expired_long_ago = issue(start + DAY)
    expired_lately = issue(T0 - DAY)
    revoked_long_ago = issue(T0 + 10 * DAY)
    initial_access_token_revoke(token_id=revoked_long_ago.token.pk, actor=staff)
    used_up_long_ago = issue(T0 + 10 * DAY)
    InitialAccessToken.objects.filter(pk=used_up_long_ago.token.pk).update(uses=1, last_used_at=start)
    time_machine.move_to(T0 - DAY, tick=False)
    used_up_lately = issue(T0 + 10 * DAY)
    InitialAccessToken.objects.filter(pk=used_up_lately.token.pk).update(uses=1, last_used_at=T0 - DAY)
    live = issue(T0 + 10 * DAY, max_uses=3)
    InitialAccessToken.objects.filter(pk=live.token.pk).update(uses=2, last_used_at=start)

    assert run(initial_access_tokens_expire, T0) == 3

    remaining = set(InitialAccessToken.objects.values_list("pk", flat=True))
    assert remaining == {expired_lately.token.pk, used_up_lately.token.pk, live.token.pk}
    event = AuditEvent.objects.get(event="client.initial_access_tokens.deleted")
    assert event.actor_type == "system"
    assert event.data["count"] == 3
    assert sorted(event.data["ids"]) == sorted(
        [expired_long_ago.token.pk, revoked_long_ago.token.pk, used_up_long_ago.token.pk]
    )
    assert_second_run_changes_nothing(run, initial_access_tokens_expire, T0)


# --- the Celery tasks -----------------------------------------------------------------------


def test_the_tasks_run_their_jobs_and_return_the_count(organisation, time_machine, django_capture_on_commit_callbacks):
    time_machine.move_to(T0, tick=False)
    credential = expiring_credential("secret", organisation, T0 + DAY)
    time_machine.move_to(T0 + 2 * DAY, tick=False)

    assert tasks.credentials_expire_due_task.delay().get() == 1
    assert tasks.credentials_expire_due_task.delay().get() == 0
    credential.refresh_from_db()
    assert credential.status == Status.EXPIRED
    assert tasks.credentials_remind_expiring_task.delay().get() == 0
    assert tasks.clients_expire_unused_open_task.delay().get() == 0
    assert tasks.initial_access_tokens_expire_task.delay().get() == 0
