"""Memberships and invitations: who belongs to an organisation, with which role."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from authserver.audit import audit_record
from authserver.errors import DomainError, InvalidInput

from .. import notifications
from ..models import Invitation, Membership, Organisation
from ..permissions import MANAGE_ROLES, PermissionDenied, is_reviewer, live_memberships, membership_for, require_role
from ._common import OrgStatus, Role, check_choice, hash_token, required_text


@transaction.atomic
def invitation_create(*, organisation_id: int, email: str, role: str, actor: Any) -> tuple[Invitation, str]:
    """Invite a person by email; the token is returned (and mailed) once, only its hash is stored.

    Owners and admins invite; only an owner invites another owner. A new invitation to the
    same address replaces the open one.
    """
    organisation = Organisation.objects.select_for_update().get(pk=organisation_id)
    inviter = require_role(actor, organisation, *MANAGE_ROLES)
    check_choice("role", role, Role)
    if role == Role.OWNER and inviter.role != Role.OWNER:
        raise PermissionDenied("Only an owner may invite another owner.")
    if organisation.status == OrgStatus.OFFBOARDED:
        raise DomainError("An offboarded organisation cannot invite members.")
    email = required_text("email", email, "an email address").lower()
    try:
        Invitation._meta.get_field("email").run_validators(email)
    except ValidationError as exc:
        raise InvalidInput({"email": exc.messages}) from exc
    if live_memberships().filter(organisation=organisation, user__email__iexact=email).exists():
        raise InvalidInput({"email": ["Someone with this email address is a member already."]})
    now = timezone.now()
    for previous in organisation.invitations.select_for_update().filter(
        email__iexact=email, accepted_at__isnull=True, revoked_at__isnull=True, expired_at__isnull=True
    ):
        previous.revoked_at = now
        previous.save(update_fields=["revoked_at"])
        audit_record("invitation.revoked", actor=actor, target=previous, organisation=organisation)
    token = secrets.token_urlsafe(32)
    invitation = Invitation.objects.create(
        organisation=organisation,
        email=email,
        role=role,
        token_hash=hash_token(token),
        invited_by=actor,
        expires_at=now + timedelta(days=settings.ONBOARDING_INVITATION_DAYS),
    )
    audit_record(
        "invitation.created",
        actor=actor,
        target=invitation,
        organisation=organisation,
        data={"email": email, "role": role, "expires_at": invitation.expires_at.isoformat()},
    )
    # Sent from this process, not through the broker: the clear token must not sit in a queue.
    invitation_pk = invitation.pk
    transaction.on_commit(lambda: notifications.send_invitation(invitation_pk, token), robust=True)
    return invitation, token


@transaction.atomic
def invitation_accept(*, token: str, user: Any) -> Membership:
    """Join the organisation with the invitation's role: once, before it expires, as the invited address."""
    invitation = (
        Invitation.objects.select_for_update()
        .select_related("organisation")
        .filter(token_hash=hash_token(token or ""))
        .first()
    )
    if invitation is None:
        raise DomainError("This invitation link is not valid.")
    if invitation.accepted_at is not None:
        raise DomainError("This invitation has been used already.")
    if invitation.revoked_at is not None:
        raise DomainError("This invitation was withdrawn.")
    if invitation.expired_at is not None or invitation.expires_at <= timezone.now():
        raise DomainError("This invitation has expired; ask for a new one.")
    if not user.is_authenticated or (user.email or "").strip().lower() != invitation.email.lower():
        raise PermissionDenied("This invitation was sent to another email address.")
    organisation = Organisation.objects.select_for_update().get(pk=invitation.organisation_id)
    if organisation.status == OrgStatus.OFFBOARDED:
        raise DomainError("This organisation has been offboarded.")
    if membership_for(user, organisation) is not None:
        raise DomainError("You are a member of this organisation already.")
    # An expired but not yet ended membership would block the new one (one live membership).
    Membership.objects.filter(user=user, organisation=organisation, ended_at__isnull=True).update(
        ended_at=timezone.now()
    )
    membership = Membership.objects.create(user=user, organisation=organisation, role=invitation.role)
    invitation.accepted_at = timezone.now()
    invitation.accepted_by = user
    invitation.save(update_fields=["accepted_at", "accepted_by"])
    audit_record("invitation.accepted", actor=user, target=invitation, organisation=organisation)
    audit_record(
        "membership.created",
        actor=user,
        target=membership,
        organisation=organisation,
        data={"user": user.get_username(), "role": membership.role, "invitation": invitation.pk},
    )
    return membership


@transaction.atomic
def invitation_revoke(*, invitation_id: int, actor: Any) -> Invitation:
    """Withdraw an open invitation (owners and admins)."""
    invitation = Invitation.objects.select_for_update().select_related("organisation").get(pk=invitation_id)
    require_role(actor, invitation.organisation_id, *MANAGE_ROLES)
    if not invitation.is_open():
        raise DomainError("Only an open invitation can be withdrawn.")
    invitation.revoked_at = timezone.now()
    invitation.save(update_fields=["revoked_at"])
    audit_record("invitation.revoked", actor=actor, target=invitation, organisation=invitation.organisation)
    return invitation


@transaction.atomic
def membership_end(*, membership_id: int, actor: Any) -> Membership:
    """End a membership (owners and admins, or the member); an organisation keeps at least one owner."""
    membership = Membership.objects.select_for_update().select_related("organisation", "user").get(pk=membership_id)
    if membership.ended_at is not None:
        raise DomainError("This membership has ended already.")
    is_self = actor is not None and actor.pk == membership.user_id
    if not is_self and not is_reviewer(actor):
        manager = require_role(actor, membership.organisation_id, *MANAGE_ROLES)
        if membership.role == Role.OWNER and manager.role != Role.OWNER:
            raise PermissionDenied("Only an owner may remove an owner.")
    if membership.role == Role.OWNER:
        # Lock the owners so two owners cannot both leave at once.
        owners = list(
            live_memberships()
            .select_for_update()
            .filter(organisation_id=membership.organisation_id, role=Role.OWNER)
            .values_list("pk", flat=True)
        )
        if set(owners) <= {membership.pk} and membership.organisation.status != OrgStatus.OFFBOARDED:
            raise DomainError("The last owner cannot leave; make someone else an owner first.")
    membership.ended_at = timezone.now()
    membership.save(update_fields=["ended_at"])
    audit_record(
        "membership.ended",
        actor=actor,
        target=membership,
        organisation=membership.organisation,
        data={"user": membership.user.get_username(), "role": membership.role},
    )
    return membership
