"""Credential lifecycle (docs/decisions/0004): rotation with overlap, expiry, reminders, and the
lifecycle jobs Celery beat runs (clients/tasks.py).

Rotation keeps a client working without downtime: the new credential is ACTIVE at once and
every credential it replaces stays usable as EXPIRING until its overlap ends. Rotations of one
client serialise on its row lock, so after any number of concurrent rotations exactly one
credential of the client's kind is ACTIVE and every one handed out so far works until its
overlap ends.

The jobs are bounded (``batch_size``) and idempotent: each item is re-checked under its row
lock in a transaction of its own, so a second run, or a run after one was killed halfway,
finds nothing left to do. They audit with the system as actor.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from django.conf import settings
from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from authserver.audit import audit_record
from authserver.errors import DomainError

from ..models import Client, ClientCredential, InitialAccessToken
from . import clients as client_services

Kind = ClientCredential.Kind
CredStatus = ClientCredential.Status

# Dead initial access tokens (expired, used up or revoked) are deleted this long after they
# died: admins can still see why a registration was refused, and no dead hash lingers forever.
# The audit log keeps their history.
INITIAL_ACCESS_TOKEN_RETENTION = timedelta(days=30)


@dataclass(frozen=True)
class RotationResult:
    """The outcome of a rotation. ``secret`` is the new clear secret (secret clients), shown once."""

    credential: ClientCredential
    secret: str | None
    overlapping: tuple[ClientCredential, ...]
    overlap_ends_at: datetime | None


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def credential_kinds(client: Client) -> tuple[str, ...]:
    """The credential kinds the client's token_endpoint_auth_method authenticates with."""
    if client.uses_client_secret:
        return (Kind.SECRET,)
    if client.token_endpoint_auth_method == Client.AuthMethod.PRIVATE_KEY_JWT:
        return (Kind.PUBLIC_KEY, Kind.JWKS_URI)
    if client.uses_mtls:
        return (Kind.CERTIFICATE,)
    return ()


def _certificate_not_after(certificate_pem: str | bytes) -> datetime | None:
    pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
    try:
        return x509.load_pem_x509_certificate(pem).not_valid_after_utc
    except ValueError:
        return None  # client_credential_add_certificate refuses it with a clear message


def _issue_replacement(
    client: Client,
    *,
    actor: Any,
    expires_at: datetime | None,
    jwk: dict[str, Any] | None,
    jwks_uri: str | None,
    certificate_pem: str | bytes | None,
    subject_dn: str | None,
) -> tuple[ClientCredential, str | None]:
    given = [
        name
        for name, value in (("jwk", jwk), ("jwks_uri", jwks_uri), ("certificate", certificate_pem or subject_dn))
        if value
    ]
    if client.uses_client_secret:
        if given:
            raise DomainError("a secret client gets a generated secret; give no key or certificate")
        issued = client_services.client_credential_issue_secret(client=client, expires_at=expires_at, actor=actor)
        return issued.credential, issued.secret
    if client.token_endpoint_auth_method == Client.AuthMethod.PRIVATE_KEY_JWT:
        if given not in (["jwk"], ["jwks_uri"]):
            raise DomainError("a private_key_jwt client rotates to a new public key: give a JWK or a jwks_uri")
        if jwk is not None:
            credential = client_services.client_credential_add_public_key(
                client=client, jwk=jwk, expires_at=expires_at, actor=actor
            )
            return credential, None
        # Fetched once to check it serves a key: while this client's row is locked, so
        # AUTHSERVER_JWKS_URI_TIMEOUT_SECONDS bounds how long a rotation may hold it.
        credential = client_services.client_credential_add_jwks_uri(
            client=client, jwks_uri=jwks_uri or "", expires_at=expires_at, actor=actor
        )
        return credential, None
    if given != ["certificate"]:
        raise DomainError("a mutual-TLS client rotates to a new certificate: give a certificate or a subject DN")
    if certificate_pem and expires_at is not None:
        not_after = _certificate_not_after(certificate_pem)
        expires_at = min(expires_at, not_after) if not_after else expires_at
    credential = client_services.client_credential_add_certificate(
        client=client, certificate_pem=certificate_pem, subject_dn=subject_dn, expires_at=expires_at, actor=actor
    )
    return credential, None


@transaction.atomic
def client_credential_rotate(
    *,
    client_id: int,
    actor: Any = None,
    jwk: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
    certificate_pem: str | bytes | None = None,
    subject_dn: str | None = None,
    overlap_seconds: int | None = None,
) -> RotationResult:
    """Issue a new credential and put every ACTIVE one of its kind in overlap (EXPIRING).

    Invariant: afterwards exactly one credential of the kind is ACTIVE; the old ones keep
    working until min(their own expiry, now + overlap), then credentials_expire_due ends them.
    """
    # FOR NO KEY UPDATE: concurrent rotations of this client wait for each other, while token
    # requests (which insert tokens referencing the client, a FOR KEY SHARE lock) never wait.
    client = Client.objects.select_for_update(no_key=True).select_related("organisation").get(pk=client_id)
    if client.status not in (Client.Status.ACTIVE, Client.Status.SUSPENDED):
        raise DomainError(f"client {client.client_id} is {client.status}; only active or suspended clients rotate")
    kinds = credential_kinds(client)
    if not kinds:
        raise DomainError(f"client {client.client_id} is public (auth method none): it has no credential to rotate")
    if overlap_seconds is None:
        overlap_seconds = settings.AUTHSERVER_CREDENTIAL_ROTATION_OVERLAP_SECONDS
    if overlap_seconds < 0:
        raise DomainError("the overlap cannot be negative")

    now = timezone.now()
    # Locked in primary-key order, like every job here, so two lockers never wait on each other.
    current = list(
        ClientCredential.objects.select_for_update()
        .filter(client=client, kind__in=kinds, status=CredStatus.ACTIVE)
        .order_by("pk")
    )
    # The old credentials go into overlap first: a private_key_jwt client may rotate from jwks
    # to jwks_uri (or back), and the two kinds are never both ACTIVE (RFC 7591 §2,
    # clients.services.clients._key_kinds_conflict). A refused new credential rolls it all back.
    overlap_end = now + timedelta(seconds=overlap_seconds)
    overlapping: list[ClientCredential] = []
    ended: list[ClientCredential] = []
    for old in current:
        if old.is_usable(now) and overlap_seconds > 0:
            old.transition_to(CredStatus.EXPIRING)
            old.expires_at = min(old.expires_at, overlap_end) if old.expires_at else overlap_end
            overlapping.append(old)
        else:
            # Past its date already (the job had not run yet), or no overlap asked: it ends now.
            old.transition_to(CredStatus.EXPIRED)
            old.expires_at = min(old.expires_at, now) if old.expires_at else now
            ended.append(old)
        old.save(update_fields=["status", "expires_at"])

    expires_at = None
    if client.registration_mode == Client.RegistrationMode.OPEN:
        expires_at = now + timedelta(days=settings.AUTHSERVER_OPEN_CREDENTIAL_LIFETIME_DAYS)
    credential, secret = _issue_replacement(
        client,
        actor=actor,
        expires_at=expires_at,
        jwk=jwk,
        jwks_uri=jwks_uri,
        certificate_pem=certificate_pem,
        subject_dn=subject_dn,
    )
    replaced = max([*overlapping, *ended], key=lambda c: (c.created_at, c.pk), default=None)
    if replaced is not None:
        credential.replaces = replaced
        credential.save(update_fields=["replaces"])
    overlap_ends_at = max((c.expires_at for c in overlapping if c.expires_at), default=None)
    audit_record(
        "client.credential.rotated",
        actor=actor,
        target=credential,
        organisation=client.organisation,
        data={
            "client_id": client.client_id,
            "kind": credential.kind,
            "replaces": replaced.pk if replaced else None,
            "overlapping": [c.pk for c in overlapping],
            "ended": [c.pk for c in ended],
            "overlap_seconds": overlap_seconds,
            "overlap_ends_at": overlap_ends_at.isoformat() if overlap_ends_at else None,
        },
    )
    return RotationResult(
        credential=credential,
        secret=secret,
        overlapping=tuple(overlapping),
        overlap_ends_at=overlap_ends_at,
    )


@transaction.atomic
def client_credential_end_overlap(*, credential_id: int, actor: Any) -> ClientCredential:
    """End a rotation overlap now: the EXPIRING credential becomes EXPIRED and stops working."""
    client_pk = ClientCredential.objects.filter(pk=credential_id).values_list("client_id", flat=True).first()
    if client_pk is None:
        raise ClientCredential.DoesNotExist(f"no credential {credential_id}")
    # The client first, then the credential: the order client_credential_rotate locks in.
    client = Client.objects.select_for_update(no_key=True).select_related("organisation").get(pk=client_pk)
    credential = ClientCredential.objects.select_for_update().get(pk=credential_id)
    if credential.status != CredStatus.EXPIRING:
        raise DomainError(
            f"the credential is {credential.status}; only one in a rotation overlap (expiring) can end it"
        )
    now = timezone.now()
    if not (
        ClientCredential.objects.filter(client=client, status=CredStatus.ACTIVE)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .exists()
    ):
        raise DomainError("the client has no other usable credential; revoke this one if that is what you want")
    credential.transition_to(CredStatus.EXPIRED)
    credential.expires_at = min(credential.expires_at, now) if credential.expires_at else now
    credential.save(update_fields=["status", "expires_at"])
    audit_record(
        "client.credential.overlap_ended",
        actor=actor,
        target=credential,
        organisation=client.organisation,
        data={"client_id": client.client_id, "kind": credential.kind},
    )
    return credential


# --- lifecycle jobs (Celery beat, clients/tasks.py) ------------------------------------------


def credentials_expire_due(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """ACTIVE or EXPIRING credentials past expires_at become EXPIRED (this ends overlaps)."""
    now = _now(now)
    due = Q(status__in=ClientCredential.USABLE_STATUSES, expires_at__isnull=False, expires_at__lte=now)
    ids = ClientCredential.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:batch_size]
    count = 0
    for credential_id in list(ids):
        with transaction.atomic():
            credential = (
                ClientCredential.objects.select_for_update()
                .select_related("client__organisation")
                .filter(due, pk=credential_id)
                .first()
            )
            if credential is None:  # rotated, revoked or expired meanwhile
                continue
            was = credential.status
            credential.transition_to(CredStatus.EXPIRED)
            credential.save(update_fields=["status"])
            audit_record(
                "client.credential.expired",
                target=credential,
                organisation=credential.client.organisation,
                data={
                    "client_id": credential.client.client_id,
                    "kind": credential.kind,
                    "overlap_ended": was == CredStatus.EXPIRING,
                    "expires_at": credential.expires_at.isoformat() if credential.expires_at else "",
                },
            )
            count += 1
    return count


def _reminder_due(expires_at: datetime, now: datetime, sent: int | None) -> int | None:
    """The most urgent reminder (days) due now and not sent yet; a late find skips the earlier ones."""
    due = [
        days for days in settings.AUTHSERVER_CREDENTIAL_EXPIRY_REMINDER_DAYS if expires_at - now <= timedelta(days=days)
    ]
    if not due:
        return None
    urgent = min(due)
    return urgent if sent is None or urgent < sent else None


def credentials_remind_expiring(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Email the owners once per reminder day (30, 7, 1 days) before a credential expires.

    Not for a credential in a rotation overlap while its client holds an ACTIVE credential:
    the replacement exists, the old one is meant to end.
    """
    now = _now(now)
    days = settings.AUTHSERVER_CREDENTIAL_EXPIRY_REMINDER_DAYS
    if not days:
        return 0
    replacement = ClientCredential.objects.filter(client=OuterRef("client"), status=CredStatus.ACTIVE).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now)
    )
    # A reminder of ``day`` days is due once the expiry is that close and no reminder as
    # urgent went out yet (expiry_reminder_days holds the most urgent one sent).
    reminder_due = Q()
    for day in days:
        reminder_due |= Q(expires_at__lte=now + timedelta(days=day)) & (
            Q(expiry_reminder_days__isnull=True) | Q(expiry_reminder_days__gt=day)
        )
    due = (
        Q(
            client__status__in=(Client.Status.ACTIVE, Client.Status.SUSPENDED),
            status__in=ClientCredential.USABLE_STATUSES,
            expires_at__gt=now,
        )
        & reminder_due
        & (Q(status=CredStatus.ACTIVE) | ~Exists(replacement))
    )
    candidates = ClientCredential.objects.filter(due).order_by("expires_at", "pk").values_list("pk", flat=True)
    count = 0
    for credential_id in list(candidates[:batch_size]):
        with transaction.atomic():
            credential = (
                ClientCredential.objects.select_for_update()
                .select_related("client__organisation")
                .filter(due, pk=credential_id)
                .first()
            )
            if credential is None or credential.expires_at is None:
                continue
            reminder = _reminder_due(credential.expires_at, now, credential.expiry_reminder_days)
            if reminder is None:
                continue
            credential.expiry_reminder_days = reminder
            credential.save(update_fields=["expiry_reminder_days"])
            audit_record(
                "client.credential.expiry_reminder_sent",
                target=credential,
                organisation=credential.client.organisation,
                data={
                    "client_id": credential.client.client_id,
                    "kind": credential.kind,
                    "days": reminder,
                    "expires_at": credential.expires_at.isoformat(),
                },
            )
            _enqueue_reminder(credential.pk, reminder)
            count += 1
    return count


def _enqueue_reminder(credential_id: int, days: int) -> None:
    from ..tasks import notify_credential_expiring_task

    # A broker failure is logged, never undoes the recorded reminder (robust).
    transaction.on_commit(lambda: notify_credential_expiring_task.delay(credential_id, days), robust=True)


def clients_expire_unused_open(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Open (dynamically registered) clients unused for AUTHSERVER_OPEN_CLIENT_UNUSED_DAYS expire:
    their credentials expire and their tokens are revoked."""
    now = _now(now)
    cutoff = now - timedelta(days=settings.AUTHSERVER_OPEN_CLIENT_UNUSED_DAYS)
    unused = Client.objects.annotate(last_use=Coalesce("last_used_at", "created")).filter(
        status=Client.Status.ACTIVE, registration_mode=Client.RegistrationMode.OPEN, last_use__lt=cutoff
    )
    count = 0
    for client_id in list(unused.order_by("pk").values_list("pk", flat=True)[:batch_size]):
        with transaction.atomic():
            client = unused.select_for_update(no_key=True).select_related("organisation").filter(pk=client_id).first()
            if client is None:  # used or changed meanwhile
                continue
            client.transition_to(Client.Status.EXPIRED)
            client.save(update_fields=["status", "updated"])
            credentials = list(
                ClientCredential.objects.select_for_update()
                .filter(client=client, status__in=ClientCredential.USABLE_STATUSES)
                .order_by("pk")
            )
            for credential in credentials:
                credential.transition_to(CredStatus.EXPIRED)
                credential.expires_at = min(credential.expires_at, now) if credential.expires_at else now
                credential.save(update_fields=["status", "expires_at"])
            revoked = client_services._revoke_client_tokens(client)
            audit_record(
                "client.expired",
                target=client,
                organisation=client.organisation,
                data={
                    "client_id": client.client_id,
                    "reason": "unused",
                    "last_used_at": client.last_used_at.isoformat() if client.last_used_at else "",
                    "credentials_expired": len(credentials),
                    "revoked_count": revoked,  # access and refresh tokens
                },
            )
            count += 1
    return count


def initial_access_tokens_expire(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Delete initial access tokens dead (expired, used up or revoked) for longer than
    INITIAL_ACCESS_TOKEN_RETENTION; one audit event per run that deleted any."""
    cutoff = _now(now) - INITIAL_ACCESS_TOKEN_RETENTION
    dead = Q(expires_at__lt=cutoff) | Q(revoked_at__lt=cutoff) | Q(uses__gte=F("max_uses"), last_used_at__lt=cutoff)
    with transaction.atomic():
        rows = list(
            InitialAccessToken.objects.select_for_update(skip_locked=True)
            .filter(dead)
            .order_by("pk")
            .values_list("pk", "organisation_id")[:batch_size]
        )
        if not rows:
            return 0
        deleted, _ = InitialAccessToken.objects.filter(pk__in=[pk for pk, _org in rows]).delete()
        audit_record(
            "client.initial_access_tokens.deleted",
            data={
                "count": deleted,
                "ids": [pk for pk, _org in rows],
                "retention_days": INITIAL_ACCESS_TOKEN_RETENTION.days,
            },
        )
    return deleted
