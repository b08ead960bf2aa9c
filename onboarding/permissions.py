"""Who may do what with an organisation: its live members by role, and staff reviewers.

Owners and admins manage an organisation (edit it, invite, apply, upload evidence, answer the
reviewer); developers only see it. Only an owner makes another owner. Reviewers are active
staff users, verified by their second factor (OTP), who are not, and never were, members of
the organisation they decide on.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from authserver.errors import DomainError

from .models import Membership, Organisation

MANAGE_ROLES: tuple[str, ...] = (Membership.Role.OWNER, Membership.Role.ADMIN)
ALL_ROLES: tuple[str, ...] = tuple(Membership.Role.values)


class PermissionDenied(DomainError):
    """The actor may not do this to this organisation; the message is safe to show."""


def _organisation_id(organisation: Organisation | int) -> int:
    return organisation.pk if isinstance(organisation, Organisation) else int(organisation)


def live_membership_filter(now: datetime | None = None) -> Q:
    """Memberships that count: not ended and not past their expiry."""
    now = now or timezone.now()
    return Q(ended_at__isnull=True) & (Q(expires_at__isnull=True) | Q(expires_at__gt=now))


def live_memberships(now: datetime | None = None) -> QuerySet[Membership]:
    return Membership.objects.filter(live_membership_filter(now))


def _is_authenticated(user: Any) -> bool:
    return user is not None and bool(getattr(user, "is_authenticated", False)) and bool(user.is_active)


def membership_for(user: Any, organisation: Organisation | int) -> Membership | None:
    """The user's live (not ended, not expired) membership of the organisation, or None."""
    if not _is_authenticated(user):
        return None
    return (
        live_memberships()
        .filter(user_id=user.pk, organisation_id=_organisation_id(organisation))
        .select_related("organisation")
        .first()
    )


def require_role(user: Any, organisation: Organisation | int, *roles: str) -> Membership:
    """The user's live membership with one of ``roles`` (any role when none given), else PermissionDenied."""
    membership = membership_for(user, organisation)
    if membership is None:
        raise PermissionDenied("You are not a member of this organisation.")
    if roles and membership.role not in roles:
        allowed = " or ".join(f"{Membership.Role(role).label.lower()}s" for role in roles)
        raise PermissionDenied(f"Only the organisation's {allowed} may do this.")
    return membership


def can_manage(user: Any, organisation: Organisation | int) -> bool:
    """Whether the user is a live owner or admin of the organisation."""
    membership = membership_for(user, organisation)
    return membership is not None and membership.role in MANAGE_ROLES


def _otp_verified(user: Any) -> bool:
    """Whether an OTP device verified this user's session (django-otp's OTPMiddleware sets
    ``is_verified`` on the request's user; a user from anywhere else has none and is not)."""
    check = getattr(user, "is_verified", None)
    return callable(check) and bool(check())


def is_reviewer(user: Any) -> bool:
    """An active staff user whose session a second factor verified, as the admin demands.

    Staff powers reach beyond the admin (the services take any actor), so they need the same
    second factor there: a staff password alone, or a portal access token, gives a staff
    account no more than its memberships (docs/security.md, privilege escalation).
    """
    return _is_authenticated(user) and bool(user.is_staff) and _otp_verified(user)


def require_reviewer(user: Any, organisation: Organisation | int) -> None:
    """An active staff user with no membership (live or past) of the organisation (no self-approval)."""
    if not is_reviewer(user):
        raise PermissionDenied("Only a staff reviewer, signed in with a second factor, may do this.")
    if Membership.objects.filter(user_id=user.pk, organisation_id=_organisation_id(organisation)).exists():
        raise PermissionDenied("You cannot review an organisation you are or were a member of.")
