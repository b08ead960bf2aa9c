"""The three registration modes carried out: gather the facts, ask clients.policy, act on it.

Every channel (the RFC 7591 endpoint, the portal, the REST API) registers through
``client_register``; admins decide intakes with ``client_intake_approve`` /
``client_intake_reject`` and pre-approve with ``allowlist_entry_create`` and
``initial_access_token_issue`` (docs/decisions/0008-registration-modes.md).
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from authserver.audit import audit_record
from authserver.errors import DomainError
from authserver.oauth.client_auth import hash_client_secret
from onboarding.models import Organisation

from .. import policy
from ..models import AllowlistEntry, Client, ClientIntake, InitialAccessToken
from .clients import client_create

OPEN_ORGANISATION_NAME = "Open registration (unverified)"


class RegistrationRefused(DomainError):
    """The policy refused a registration. ``error`` is the RFC 7591 §3.2.2 code (or
    ``invalid_token`` / ``access_denied``); the message lists every reason."""

    def __init__(self, error: str, reasons: list[str] | tuple[str, ...]):
        self.error = error
        self.reasons = tuple(reasons)
        super().__init__("; ".join(self.reasons))


@dataclass(frozen=True)
class IntakeDetails:
    """What an explicit-mode request tells the reviewers."""

    purpose: str
    contact_name: str = ""
    contact_email: str = ""
    justifications: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Registration:
    client: Client
    decision: policy.RegistrationDecision
    # RFC 7592 §3, clear value returned once, only to dynamic (RFC 7591) registrations.
    registration_token: str | None = None


def generate_token() -> str:
    return secrets.token_urlsafe(32)


def catalogue_rules(names: list[str] | tuple[str, ...] | None = None) -> dict[str, policy.ScopeRule]:
    """The catalogue's rules for these scopes (all scopes when ``names`` is None)."""
    from authserver.models import Scope

    rows = Scope.objects.all() if names is None else Scope.objects.filter(name__in=list(names))
    return {
        row.name: policy.ScopeRule(
            name=row.name,
            risk_level=row.risk_level,
            open_registration=row.open_registration,
            requires_approval=row.requires_approval,
            min_trust_level=row.min_trust_level,
            organisation_kinds=tuple(row.allowed_organisation_kinds or ()),
            environments=tuple(row.allowed_environments or ()),
        )
        for row in rows
    }


def registration_settings() -> policy.RegistrationSettings:
    return policy.RegistrationSettings(open_enabled=settings.AUTHSERVER_OPEN_REGISTRATION_ENABLED)


def open_registration_organisation() -> Organisation:
    """The organisation open (anonymous) clients belong to: unverified, trust level low."""
    organisation, _ = Organisation.objects.get_or_create(
        name=OPEN_ORGANISATION_NAME,
        kind=Organisation.Kind.PRIVATE,
        defaults={"status": Organisation.Status.ACTIVE, "trust_level": Organisation.TrustLevel.LOW},
    )
    return organisation


def _organisation_facts(organisation: Organisation) -> policy.OrganisationFacts:
    return policy.OrganisationFacts(
        status=organisation.status, trust_level=organisation.trust_level, kind=organisation.kind
    )


def _token_bounds(token: InitialAccessToken) -> policy.Bounds:
    return policy.Bounds(
        source="initial access token",
        scopes=frozenset(token.scope_list),
        redirect_hosts=frozenset(token.allowed_redirect_hosts or ()),
        expires_at=token.expires_at,
        remaining=token.max_uses - token.uses,
        revoked=token.revoked_at is not None,
    )


def _entry_bounds(entry: AllowlistEntry) -> policy.Bounds:
    used = entry.clients.exclude(status__in=(Client.Status.REJECTED, Client.Status.REVOKED)).count()
    return policy.Bounds(
        source=f"allowlist entry #{entry.pk}",
        scopes=frozenset(entry.scopes),
        redirect_hosts=frozenset(entry.allowed_redirect_hosts or ()),
        grant_types=frozenset(entry.grant_types or ()),
        environments=frozenset(entry.environments or ()),
        expires_at=entry.expires_at,
        remaining=entry.max_clients - used,
        revoked=entry.revoked_at is not None,
    )


def initial_access_token_lookup(token: str) -> InitialAccessToken:
    """The usable initial access token with this value, locked for update; else RegistrationRefused."""
    row = (
        InitialAccessToken.objects.select_for_update()
        .select_related("organisation")
        .filter(token_hash=hash_client_secret(token))
        .first()
    )
    if row is None:
        raise RegistrationRefused("invalid_token", ["the initial access token is not known"])
    if row.revoked_at is not None:
        raise RegistrationRefused("invalid_token", ["the initial access token is revoked"])
    if row.expires_at <= timezone.now():
        raise RegistrationRefused("invalid_token", ["the initial access token has expired"])
    if row.uses >= row.max_uses:
        raise RegistrationRefused("invalid_token", ["the initial access token is used up"])
    return row


@transaction.atomic
def client_register(
    *,
    channel: str,
    name: str,
    grant_type: str,
    scopes: list[str],
    organisation: Organisation | None = None,
    redirect_uris: list[str] | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    auth_method: str | None = None,
    environment: str = Client.Environment.PRODUCTION,
    initial_access_token: str | None = None,
    software_id: str = "",
    intake: IntakeDetails | None = None,
    metadata: dict[str, Any] | None = None,
    subject_type: str = Client.SubjectType.PUBLIC,
    actor: Any = None,
) -> Registration:
    """Register a client in the mode the policy decides; refused registrations store nothing.

    ``channel`` is policy.DYNAMIC (RFC 7591: anonymous, or with an initial access token) or
    policy.MEMBER (a member of ``organisation`` in the portal or the REST API). A pending
    (explicit) client gets an intake for the admins' queue and no scopes until approved.
    Credentials are not issued here: callers issue them (clients.services.clients) once the
    client exists, in the same transaction.
    """
    scopes = list(dict.fromkeys(scopes))
    token_row: InitialAccessToken | None = None
    if initial_access_token is not None:
        token_row = initial_access_token_lookup(initial_access_token)
        organisation = token_row.organisation
    elif channel == policy.MEMBER and organisation is None:
        raise DomainError("a member registers a client for an organisation")

    bounds: list[policy.Bounds] = []
    entries: list[tuple[policy.Bounds, AllowlistEntry]] = []
    if token_row is not None:
        bounds.append(_token_bounds(token_row))
    elif organisation is not None or software_id:
        query = AllowlistEntry.objects.select_for_update().filter(revoked_at__isnull=True)
        by_org = query.filter(organisation=organisation) if organisation is not None else query.none()
        by_software = query.filter(software_id=software_id) if software_id else query.none()
        for entry in (by_org | by_software).order_by("pk"):
            entries.append((_entry_bounds(entry), entry))
            bounds.append(entries[-1][0])

    request = policy.RegistrationRequest(
        channel=channel,
        grant_type=grant_type,
        scopes=tuple(scopes),
        environment=environment,
        redirect_uris=tuple(redirect_uris or ()),
        organisation=_organisation_facts(organisation) if organisation is not None else None,
        bounds=tuple(bounds),
        now=timezone.now(),
    )
    decision = policy.decide_registration(request, catalogue=catalogue_rules(scopes), config=registration_settings())
    if decision.refused:
        raise RegistrationRefused(decision.error, decision.reasons)

    extra = dict(metadata or {})
    extra["software_id"] = software_id
    if isinstance(actor, Organisation) or actor is None or not getattr(actor, "is_authenticated", False):
        created_by = None
    else:
        created_by = actor
    extra["created_by"] = created_by
    if decision.mode == policy.WHITELIST and decision.bounds is not None and token_row is None:
        extra["allowlist_entry"] = next(entry for b, entry in entries if b is decision.bounds)
    if decision.mode == policy.OPEN:
        organisation = open_registration_organisation()
    assert organisation is not None

    client = client_create(
        organisation=organisation,
        name=name,
        grant_type=grant_type,
        scopes=scopes if decision.active else [],
        redirect_uris=redirect_uris,
        post_logout_redirect_uris=post_logout_redirect_uris,
        auth_method=auth_method,
        registration_mode=decision.mode or "",
        environment=environment,
        status=Client.Status.ACTIVE if decision.active else Client.Status.PENDING,
        metadata=extra,
        subject_type=subject_type,
        actor=actor,
    )
    if decision.mode == policy.EXPLICIT:
        details = intake or IntakeDetails(purpose="Registered through RFC 7591; outside its pre-approval.")
        ClientIntake.objects.create(
            client=client,
            purpose=details.purpose,
            contact_name=details.contact_name,
            contact_email=details.contact_email,
            requested_scopes=" ".join(scopes),
            justifications={k: v for k, v in details.justifications.items() if k in scopes},
            policy_reason="; ".join(decision.reasons),
            submitted_by=created_by,
        )
    if token_row is not None:
        token_row.uses += 1
        token_row.last_used_at = timezone.now()
        token_row.save(update_fields=["uses", "last_used_at"])

    registration_token = None
    if channel == policy.DYNAMIC:
        registration_token = generate_token()
        client.registration_token_hash = hash_client_secret(registration_token)
        client.save(update_fields=["registration_token_hash"])
    audit_record(
        "client.registered",
        actor=actor,
        target=client,
        organisation=organisation,
        data={
            "client_id": client.client_id,
            "mode": decision.mode,
            "status": client.status,
            "channel": channel,
            "requested_scopes": scopes,
            "reasons": list(decision.reasons),
            "initial_access_token": token_row.pk if token_row is not None else None,
        },
    )
    return Registration(client=client, decision=decision, registration_token=registration_token)


@transaction.atomic
def client_intake_approve(*, intake_id: int, reviewer: Any, granted_scopes: list[str], note: str = "") -> ClientIntake:
    """Approve an intake with all or part of the requested scopes; the client becomes active."""
    intake = ClientIntake.objects.select_for_update().select_related("client__organisation").get(pk=intake_id)
    client = intake.client
    granted = list(dict.fromkeys(granted_scopes))
    if not granted:
        raise DomainError("grant at least one scope, or reject the request with a reason")
    extra = [scope for scope in granted if scope not in intake.requested]
    if extra:
        raise DomainError(f"scopes {' '.join(extra)} were not requested")
    hard = policy.scope_refusals(
        tuple(granted), catalogue_rules(granted), _organisation_facts(client.organisation), client.environment
    )
    if hard:
        raise DomainError("; ".join(hard))
    if not client.organisation.is_active:
        raise DomainError(f"the organisation is {client.organisation.status}, not active")
    intake.transition_to(ClientIntake.Status.APPROVED)
    intake.granted_scopes = " ".join(granted)
    intake.decided_by = reviewer
    intake.decided_at = timezone.now()
    intake.decision_reason = note
    intake.save()
    client.transition_to(Client.Status.ACTIVE)
    client.scope = " ".join(granted)
    client.save(update_fields=["status", "scope", "updated"])
    audit_record(
        "client.intake.approved",
        actor=reviewer,
        target=client,
        organisation=client.organisation,
        data={
            "client_id": client.client_id,
            "granted_scopes": granted,
            "refused_scopes": [s for s in intake.requested if s not in granted],
            "note": note,
        },
    )
    _notify_decision(intake)
    return intake


@transaction.atomic
def client_intake_reject(*, intake_id: int, reviewer: Any, reason: str) -> ClientIntake:
    """Reject an intake with a reason the requester reads; the client never becomes active."""
    if not reason.strip():
        raise DomainError("a rejection needs a reason")
    intake = ClientIntake.objects.select_for_update().select_related("client__organisation").get(pk=intake_id)
    client = intake.client
    intake.transition_to(ClientIntake.Status.REJECTED)
    intake.decided_by = reviewer
    intake.decided_at = timezone.now()
    intake.decision_reason = reason.strip()
    intake.save()
    client.transition_to(Client.Status.REJECTED)
    client.save(update_fields=["status", "updated"])
    client.credentials.filter(revoked_at__isnull=True).update(status="revoked", revoked_at=timezone.now())
    audit_record(
        "client.intake.rejected",
        actor=reviewer,
        target=client,
        organisation=client.organisation,
        data={"client_id": client.client_id, "reason": intake.decision_reason},
    )
    _notify_decision(intake)
    return intake


def _notify_decision(intake: ClientIntake) -> None:
    from ..tasks import notify_intake_decision_task

    transaction.on_commit(lambda: notify_intake_decision_task.delay(intake.pk))


@dataclass(frozen=True)
class IssuedInitialAccessToken:
    token: InitialAccessToken
    value: str  # shown once


@transaction.atomic
def initial_access_token_issue(
    *,
    organisation: Organisation,
    scopes: list[str],
    actor: Any,
    max_uses: int = 1,
    allowed_redirect_hosts: list[str] | None = None,
    expires_at: datetime | None = None,
) -> IssuedInitialAccessToken:
    """Issue an RFC 7591 §3 initial access token to an active organisation; stored as a hash."""
    if not organisation.is_active:
        raise DomainError(f"the organisation is {organisation.status}, not active")
    scopes = list(dict.fromkeys(scopes))
    if not scopes:
        raise DomainError("bind the token to at least one scope")
    unknown = [s for s in scopes if s not in catalogue_rules(scopes)]
    if unknown:
        raise DomainError(f"scopes {' '.join(unknown)} are not in the catalogue")
    if max_uses < 1:
        raise DomainError("max uses must be at least 1")
    expires_at = expires_at or timezone.now() + timedelta(days=settings.AUTHSERVER_INITIAL_ACCESS_TOKEN_LIFETIME_DAYS)
    if expires_at <= timezone.now():
        raise DomainError("the expiry must lie in the future")
    value = generate_token()
    token = InitialAccessToken.objects.create(
        organisation=organisation,
        token_hash=hash_client_secret(value),
        hint=value[-4:],
        scopes=" ".join(scopes),
        allowed_redirect_hosts=[h.lower() for h in allowed_redirect_hosts or []],
        max_uses=max_uses,
        expires_at=expires_at,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        "client.initial_access_token.issued",
        actor=actor,
        target=token,
        organisation=organisation,
        data={"scopes": scopes, "max_uses": max_uses, "expires_at": expires_at.isoformat()},
    )
    return IssuedInitialAccessToken(token=token, value=value)


@transaction.atomic
def initial_access_token_revoke(*, token_id: int, actor: Any) -> InitialAccessToken:
    token = InitialAccessToken.objects.select_for_update().get(pk=token_id)
    if token.revoked_at is None:
        token.revoked_at = timezone.now()
        token.save(update_fields=["revoked_at"])
        audit_record("client.initial_access_token.revoked", actor=actor, target=token, organisation=token.organisation)
    return token


@transaction.atomic
def allowlist_entry_create(
    *,
    actor: Any,
    allowed_scopes: list[str],
    organisation: Organisation | None = None,
    software_id: str = "",
    grant_types: list[str] | None = None,
    allowed_redirect_hosts: list[str] | None = None,
    environments: list[str] | None = None,
    max_clients: int = 1,
    expires_at: datetime | None = None,
    note: str = "",
) -> AllowlistEntry:
    """Pre-approve registrations (whitelist mode) for an organisation or a software id."""
    if organisation is None and not software_id:
        raise DomainError("an allowlist entry names an organisation or a software id")
    scopes = list(dict.fromkeys(allowed_scopes))
    unknown = [s for s in scopes if s not in catalogue_rules(scopes)]
    if unknown:
        raise DomainError(f"scopes {' '.join(unknown)} are not in the catalogue")
    bad_grants = [g for g in grant_types or [] if g not in policy.GRANT_TYPES]
    if bad_grants:
        raise DomainError(f"grant types {' '.join(bad_grants)} are not supported")
    bad_envs = [e for e in environments or [] if e not in Client.Environment.values]
    if bad_envs:
        raise DomainError(f"environments {' '.join(bad_envs)} are not known")
    if max_clients < 1:
        raise DomainError("max clients must be at least 1")
    entry = AllowlistEntry.objects.create(
        organisation=organisation,
        software_id=software_id,
        grant_types=grant_types or [],
        allowed_scopes=" ".join(scopes),
        allowed_redirect_hosts=[h.lower() for h in allowed_redirect_hosts or []],
        environments=environments or [],
        max_clients=max_clients,
        expires_at=expires_at,
        note=note,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(
        "client.allowlist_entry.created",
        actor=actor,
        target=entry,
        organisation=organisation,
        data={"scopes": scopes, "software_id": software_id, "max_clients": max_clients},
    )
    return entry


@transaction.atomic
def allowlist_entry_revoke(*, entry_id: int, actor: Any) -> AllowlistEntry:
    """Revoke an allowlist entry: no new registration uses it; clients it admitted stay as they are."""
    entry = AllowlistEntry.objects.select_for_update(of=("self",)).select_related("organisation").get(pk=entry_id)
    if entry.revoked_at is None:
        entry.revoked_at = timezone.now()
        entry.save(update_fields=["revoked_at"])
        audit_record(
            "client.allowlist_entry.revoked",
            actor=actor,
            target=entry,
            organisation=entry.organisation,
            data={"software_id": entry.software_id, "scopes": entry.scopes},
        )
    return entry
