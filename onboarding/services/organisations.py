"""Organisations: registration, details and status (pending, active, suspended, offboarded)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from authserver.audit import audit_record
from authserver.errors import DomainError, InvalidInput

from .. import tasks
from ..models import Membership, Organisation
from ..permissions import MANAGE_ROLES, PermissionDenied, is_reviewer, require_role
from ..signals import organisation_deactivated
from ._common import AppStatus, OrgStatus, Role, check_choice, enqueue, require_staff_or_system, required_text
from .applications import expire_application

# What organisation_update may change; identity only while the organisation is pending.
IDENTITY_FIELDS = ("name", "kind", "oin", "kvk_number", "rsin", "eidas_identifier", "country")
CONTACT_FIELDS = ("contact_name", "contact_email", "contact_phone")
# Unique identifiers and the words a duplicate is reported in.
UNIQUE_IDENTIFIERS = {"oin": "OIN", "kvk_number": "KvK number", "eidas_identifier": "eIDAS legal identifier"}


def _normalise_organisation(organisation: Organisation) -> None:
    for field in ("name", "oin", "kvk_number", "rsin", "contact_name", "contact_email", "contact_phone"):
        setattr(organisation, field, (getattr(organisation, field) or "").strip())
    organisation.eidas_identifier = (organisation.eidas_identifier or "").strip()
    organisation.country = (organisation.country or "").strip().upper()
    organisation.contact_email = organisation.contact_email.lower()


def _validate_organisation(organisation: Organisation) -> None:
    """The model's validators and clean() rules, plus unique identifiers as field errors."""
    errors: dict[str, list[str]] = {}
    try:
        # Conditional unique constraints are checked below, with a message naming the field.
        organisation.full_clean(validate_constraints=False)
    except ValidationError as exc:
        errors = {field: list(messages) for field, messages in exc.message_dict.items()}
    for field, label in UNIQUE_IDENTIFIERS.items():
        value = getattr(organisation, field)
        if value and field not in errors:
            taken = Organisation.objects.filter(**{field: value}).exclude(pk=organisation.pk).exists()
            if taken:
                errors[field] = [f"An organisation with {label} {value} exists already."]
    if errors:
        raise InvalidInput(errors)


def _save_organisation(organisation: Organisation, **kwargs: Any) -> None:
    """Save; a duplicate committed by a concurrent request still becomes a field error."""
    try:
        with transaction.atomic():
            organisation.save(**kwargs)
    except IntegrityError as exc:
        text = str(exc)
        for field, label in UNIQUE_IDENTIFIERS.items():
            if f"organisation_{field.split('_')[0]}_unique" in text:
                value = getattr(organisation, field)
                raise InvalidInput({field: [f"An organisation with {label} {value} exists already."]}) from exc
        raise


@transaction.atomic
def organisation_create(
    *,
    name: str,
    kind: str = Organisation.Kind.PRIVATE,
    oin: str = "",
    kvk_number: str = "",
    rsin: str = "",
    eidas_identifier: str = "",
    country: str = "NL",
    contact_name: str = "",
    contact_email: str = "",
    contact_phone: str = "",
    status: str = OrgStatus.PENDING,
    trust_level: str = Organisation.TrustLevel.LOW,
    actor: Any = None,
    owner: Any = None,
) -> Organisation:
    """Register an organisation with validated, unique identifiers; ``owner`` becomes its first owner."""
    check_choice("kind", kind, Organisation.Kind)
    check_choice("status", status, OrgStatus)
    check_choice("trust_level", trust_level, Organisation.TrustLevel)
    organisation = Organisation(
        name=name,
        kind=kind,
        oin=oin,
        kvk_number=kvk_number,
        rsin=rsin,
        eidas_identifier=eidas_identifier,
        country=country,
        contact_name=contact_name,
        contact_email=contact_email,
        contact_phone=contact_phone,
        status=status,
        trust_level=trust_level,
    )
    _normalise_organisation(organisation)
    _validate_organisation(organisation)
    _save_organisation(organisation)
    audit_record(
        "organisation.created",
        actor=actor,
        target=organisation,
        organisation=organisation,
        data={"kind": kind, "status": status, "identifier": organisation.identifier},
    )
    if owner is not None:
        membership = Membership.objects.create(user=owner, organisation=organisation, role=Role.OWNER)
        audit_record(
            "membership.created",
            actor=actor,
            target=membership,
            organisation=organisation,
            data={"user": owner.get_username(), "role": Role.OWNER},
        )
    return organisation


@transaction.atomic
def organisation_update(*, organisation_id: int, actor: Any, **fields: Any) -> Organisation:
    """Change an organisation's details: identity only while pending, contact details until offboarded."""
    organisation = Organisation.objects.select_for_update().get(pk=organisation_id)
    if not is_reviewer(actor):
        require_role(actor, organisation, *MANAGE_ROLES)
    unknown = sorted(set(fields) - set(IDENTITY_FIELDS) - set(CONTACT_FIELDS))
    if unknown:
        raise DomainError(f"These cannot be changed here: {', '.join(unknown)}.")
    if organisation.status == OrgStatus.OFFBOARDED:
        raise DomainError("An offboarded organisation cannot be changed.")
    check_choice("kind", fields.get("kind", organisation.kind), Organisation.Kind)
    before = {field: getattr(organisation, field) for field in (*IDENTITY_FIELDS, *CONTACT_FIELDS)}
    for field, value in fields.items():
        setattr(organisation, field, "" if value is None else value)
    _normalise_organisation(organisation)
    changes = {
        field: [before[field], getattr(organisation, field)]
        for field in before
        if before[field] != getattr(organisation, field)
    }
    identity_changes = sorted(set(changes) & set(IDENTITY_FIELDS))
    if identity_changes and organisation.status != OrgStatus.PENDING:
        raise DomainError(
            "The name, kind and identifiers of an organisation are checked on approval; "
            f"they cannot change once it is {organisation.get_status_display().lower()} "
            f"({', '.join(identity_changes)})."
        )
    if not changes:
        return organisation
    _validate_organisation(organisation)
    _save_organisation(organisation)
    audit_record(
        "organisation.updated", actor=actor, target=organisation, organisation=organisation, data={"changes": changes}
    )
    return organisation


@transaction.atomic
def organisation_suspend(*, organisation_id: int, actor: Any = None, reason: str) -> Organisation:
    """Suspend an active organisation; its clients are suspended and their tokens revoked (signal)."""
    organisation = Organisation.objects.select_for_update().get(pk=organisation_id)
    require_staff_or_system(actor)
    reason = required_text("reason", reason, "a reason")
    organisation.transition_to(OrgStatus.SUSPENDED)
    organisation.save(update_fields=["status", "updated_at"])
    audit_record(
        "organisation.suspended", actor=actor, target=organisation, organisation=organisation, data={"reason": reason}
    )
    organisation_deactivated.send(
        sender=Organisation, organisation=organisation, actor=actor, reason=reason, status=organisation.status
    )
    enqueue(tasks.notify_organisation_task, organisation.pk, "suspended", reason)
    return organisation


@transaction.atomic
def organisation_reactivate(*, organisation_id: int, actor: Any, reason: str) -> Organisation:
    """Make a suspended organisation active again; its suspended clients and revoked tokens stay so.

    Reactivation counts as a review: a lapsed ``next_review_at`` moves a full interval ahead,
    or the lifecycle job would suspend the organisation again at once.
    """
    organisation = Organisation.objects.select_for_update().get(pk=organisation_id)
    if not is_reviewer(actor):
        raise PermissionDenied("Only staff may reactivate an organisation.")
    reason = required_text("reason", reason, "a reason")
    if organisation.status == OrgStatus.PENDING:
        raise DomainError("A pending organisation becomes active when its application is approved.")
    organisation.transition_to(OrgStatus.ACTIVE)
    now = timezone.now()
    if organisation.next_review_at is None or organisation.next_review_at <= now:
        organisation.next_review_at = now + timedelta(days=settings.ONBOARDING_REVIEW_INTERVAL_DAYS)
        organisation.review_reminder_sent_at = None
    organisation.save(update_fields=["status", "next_review_at", "review_reminder_sent_at", "updated_at"])
    audit_record(
        "organisation.reactivated",
        actor=actor,
        target=organisation,
        organisation=organisation,
        data={"reason": reason, "next_review_at": organisation.next_review_at.isoformat()},
    )
    enqueue(tasks.notify_organisation_task, organisation.pk, "reactivated", reason)
    return organisation


@transaction.atomic
def organisation_offboard(*, organisation_id: int, actor: Any, reason: str) -> Organisation:
    """End an organisation for good (staff, or one of its owners); its clients are revoked (signal)."""
    organisation = Organisation.objects.select_for_update().get(pk=organisation_id)
    if not is_reviewer(actor):
        require_role(actor, organisation, Role.OWNER)
    reason = required_text("reason", reason, "a reason")
    organisation.transition_to(OrgStatus.OFFBOARDED)
    organisation.save(update_fields=["status", "updated_at"])
    now = timezone.now()
    organisation.invitations.filter(accepted_at__isnull=True, revoked_at__isnull=True, expired_at__isnull=True).update(
        revoked_at=now
    )
    for application in organisation.applications.select_for_update().filter(status=AppStatus.DRAFT):
        expire_application(application, actor=actor, notify=False)
    audit_record(
        "organisation.offboarded", actor=actor, target=organisation, organisation=organisation, data={"reason": reason}
    )
    organisation_deactivated.send(
        sender=Organisation, organisation=organisation, actor=actor, reason=reason, status=organisation.status
    )
    enqueue(tasks.notify_organisation_task, organisation.pk, "offboarded", reason)
    return organisation
