"""Who may see and do what in the portal, asked of onboarding.permissions on every request.

A person who is not a live member of an organisation gets 404 for all of its pages, whatever id
they try, so the portal does not even confirm that the organisation exists. A member whose role
may only look (developer) gets 403 for every change.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.core.exceptions import PermissionDenied as Forbidden
from django.core.exceptions import ValidationError
from django.forms import BaseForm
from django.http import Http404, HttpRequest
from django.shortcuts import get_object_or_404

from authserver.errors import DomainError

from ..models import KycApplication, Membership, Organisation, User
from ..permissions import MANAGE_ROLES, membership_for


@dataclass(frozen=True)
class MemberAccess:
    """The organisation a page is about and the requesting person's live membership of it."""

    organisation: Organisation
    membership: Membership

    @property
    def can_manage(self) -> bool:
        return self.membership.role in MANAGE_ROLES

    def require_manager(self) -> None:
        if not self.can_manage:
            raise Forbidden("Only an owner or administrator of this organisation may do this.")


def portal_user(request: HttpRequest) -> User:
    user = request.user
    assert isinstance(user, User)  # the views are login_required
    return user


def member_access(request: HttpRequest, organisation_id: int) -> MemberAccess:
    """The organisation, if the requesting user is a live member of it; else 404."""
    organisation = get_object_or_404(Organisation, pk=organisation_id)
    membership = membership_for(portal_user(request), organisation)
    if membership is None:
        raise Http404("No such organisation.")
    return MemberAccess(organisation=organisation, membership=membership)


def application_of(access: MemberAccess, application_id: int) -> KycApplication:
    """An application of this organisation only: another organisation's id is a 404."""
    return get_object_or_404(KycApplication, pk=application_id, organisation=access.organisation)


def add_service_error(form: BaseForm, error: Exception) -> None:
    """Show a service's refusal on the form: field errors where the field is on it, else at the top."""
    if isinstance(error, ValidationError):
        if hasattr(error, "error_dict"):
            for field, errors in error.error_dict.items():
                form.add_error(field if field in form.fields else None, errors)
        else:
            form.add_error(None, error.messages)
    elif isinstance(error, DomainError):
        form.add_error(None, str(error) or "This cannot be done now.")
    else:  # pragma: no cover - callers pass only the two kinds above
        raise error


def form_status(*forms: BaseForm | None) -> int:
    """400 when a bound form goes back with errors, so scripts and tests see the refusal."""
    return 400 if any(form is not None and form.is_bound and form.errors for form in forms) else 200
