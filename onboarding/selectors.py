"""Reads of onboarding data that more than one caller needs (portal, admin, REST API, jobs).

Everything a member may see is reached through the member: ``*_for_user`` selectors return
only rows of organisations the user is a live member of, so a guessed id finds nothing.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, Count, IntegerField, QuerySet, Value, When
from django.utils import timezone

from .models import Evidence, Invitation, KycApplication, Membership, Organisation
from .permissions import MANAGE_ROLES, live_membership_filter, live_memberships


def organisations_for_user(user: Any) -> QuerySet[Organisation]:
    """The organisations the user is a live member of (any role)."""
    if not getattr(user, "is_authenticated", False):
        return Organisation.objects.none()
    ids = live_memberships().filter(user_id=user.pk).values("organisation_id")
    return Organisation.objects.filter(pk__in=ids)


def memberships_for_user(user: Any) -> QuerySet[Membership]:
    """The user's live memberships with their organisations, by organisation name."""
    if not getattr(user, "is_authenticated", False):
        return Membership.objects.none()
    return (
        live_memberships().filter(user_id=user.pk).select_related("organisation").order_by("organisation__name", "pk")
    )


def organisation_for_user(*, user: Any, organisation_id: int) -> Organisation:
    """One organisation of the user's; Organisation.DoesNotExist otherwise (callers answer 404)."""
    return organisations_for_user(user).get(pk=organisation_id)


def organisation_members(organisation: Organisation | int) -> QuerySet[Membership]:
    """Live memberships of an organisation with their users: owners, then admins, then developers."""
    organisation_id = organisation.pk if isinstance(organisation, Organisation) else organisation
    order = [Membership.Role.OWNER, Membership.Role.ADMIN, Membership.Role.DEVELOPER]
    rank = Case(*(When(role=role, then=Value(i)) for i, role in enumerate(order)), output_field=IntegerField())
    return (
        live_memberships()
        .filter(organisation_id=organisation_id)
        .select_related("user")
        .annotate(role_rank=rank)
        .order_by("role_rank", "user__username")
    )


def organisation_managers(organisation: Organisation | int) -> QuerySet[Membership]:
    return organisation_members(organisation).filter(role__in=MANAGE_ROLES)


def invitations_open(organisation: Organisation | int, *, now: datetime | None = None) -> QuerySet[Invitation]:
    """Invitations that can still be accepted, newest first."""
    organisation_id = organisation.pk if isinstance(organisation, Organisation) else organisation
    return Invitation.objects.filter(
        organisation_id=organisation_id,
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expired_at__isnull=True,
        expires_at__gt=now or timezone.now(),
    ).order_by("-created_at")


def invitations_for_email(email: str, *, now: datetime | None = None) -> QuerySet[Invitation]:
    """Open invitations addressed to ``email`` (a signed-in person's own address only)."""
    return Invitation.objects.filter(
        email__iexact=email.strip(),
        accepted_at__isnull=True,
        revoked_at__isnull=True,
        expired_at__isnull=True,
        expires_at__gt=now or timezone.now(),
    ).select_related("organisation")


def applications_for_organisation(organisation: Organisation | int) -> QuerySet[KycApplication]:
    organisation_id = organisation.pk if isinstance(organisation, Organisation) else organisation
    return KycApplication.objects.filter(organisation_id=organisation_id).order_by("-created_at", "-pk")


def application_for_user(*, user: Any, application_id: int) -> KycApplication:
    """One application of one of the user's organisations; KycApplication.DoesNotExist otherwise."""
    return KycApplication.objects.select_related("organisation").get(
        pk=application_id, organisation__in=organisations_for_user(user)
    )


def open_application(organisation: Organisation | int) -> KycApplication | None:
    """The organisation's undecided application, if any (there is at most one)."""
    return applications_for_organisation(organisation).filter(status__in=KycApplication.OPEN_STATUSES).first()


def latest_approved_application(organisation: Organisation | int) -> KycApplication | None:
    return applications_for_organisation(organisation).filter(status=KycApplication.Status.APPROVED).first()


def approvals_required(application: KycApplication) -> int:
    """How many different reviewers must approve: two for trust level high (four eyes), else one."""
    return application.approvals_required


def review_queue(
    *,
    status: str | list[str] | None = None,
    trust_level: str | None = None,
    waiting_days: int | None = None,
    now: datetime | None = None,
) -> QuerySet[KycApplication]:
    """Applications for reviewers, oldest submission first, with ``approvals_count`` annotated.

    Defaults to what waits for a reviewer (submitted and in review). ``waiting_days``: submitted
    at least that many days ago.
    """
    statuses = [status] if isinstance(status, str) else status
    statuses = statuses or [KycApplication.Status.SUBMITTED, KycApplication.Status.IN_REVIEW]
    queue = (
        KycApplication.objects.filter(status__in=statuses)
        .select_related("organisation", "reviewer")
        .annotate(approvals_count=Count("approvals", distinct=True), evidence_count=Count("evidence", distinct=True))
        .order_by("submitted_at", "pk")
    )
    if trust_level:
        queue = queue.filter(requested_trust_level=trust_level)
    if waiting_days is not None:
        queue = queue.filter(submitted_at__lte=(now or timezone.now()) - timedelta(days=waiting_days))
    return queue


def evidence_for_application(application: KycApplication | int) -> QuerySet[Evidence]:
    """An application's documents without their bytes (the content is fetched only to download)."""
    application_id = application.pk if isinstance(application, KycApplication) else application
    return Evidence.objects.filter(application_id=application_id).defer("content").order_by("uploaded_at", "pk")


def evidence_with_mismatches(application: KycApplication | int) -> QuerySet[Evidence]:
    return evidence_for_application(application).exclude(mismatches=[])


def organisations_due_for_review(*, within_days: int, now: datetime | None = None) -> QuerySet[Organisation]:
    """Active organisations whose next review falls within ``within_days`` (or has passed)."""
    limit = (now or timezone.now()) + timedelta(days=within_days)
    return Organisation.objects.filter(
        status=Organisation.Status.ACTIVE, next_review_at__isnull=False, next_review_at__lte=limit
    ).order_by("next_review_at")


def user_is_member(user: Any, organisation: Organisation | int, *, now: datetime | None = None) -> bool:
    if not getattr(user, "is_authenticated", False):
        return False
    organisation_id = organisation.pk if isinstance(organisation, Organisation) else organisation
    return Membership.objects.filter(
        live_membership_filter(now), user_id=user.pk, organisation_id=organisation_id
    ).exists()
