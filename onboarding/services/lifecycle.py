"""Lifecycle jobs (Celery beat): bounded, idempotent, each item in its own transaction."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from authserver.audit import audit_record
from authserver.errors import DomainError

from .. import tasks
from ..models import Evidence, Invitation, KycApplication, Membership, Organisation
from ._common import AppStatus, OrgStatus, enqueue
from .applications import expire_application
from .organisations import organisation_suspend


def _now(now: datetime | None) -> datetime:
    return now or timezone.now()


def kyc_applications_expire_stale(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Expire drafts untouched for ONBOARDING_DRAFT_EXPIRY_DAYS; returns how many expired."""
    cutoff = _now(now) - timedelta(days=settings.ONBOARDING_DRAFT_EXPIRY_DAYS)
    stale = Q(status=AppStatus.DRAFT, updated_at__lt=cutoff)
    count = 0
    for application_id in KycApplication.objects.filter(stale).order_by("pk").values_list("pk", flat=True)[:batch_size]:
        with transaction.atomic():
            application = KycApplication.objects.select_for_update().filter(stale, pk=application_id).first()
            if application is None:  # touched or expired meanwhile
                continue
            expire_application(application)
            count += 1
    return count


def organisations_remind_review(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Remind active organisations ONBOARDING_REVIEW_REMINDER_DAYS before next_review_at, once per review date."""
    now = _now(now)
    due = Q(
        status=OrgStatus.ACTIVE,
        next_review_at__isnull=False,
        next_review_at__lte=now + timedelta(days=settings.ONBOARDING_REVIEW_REMINDER_DAYS),
        review_reminder_sent_at__isnull=True,
    )
    count = 0
    for organisation_id in Organisation.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:batch_size]:
        with transaction.atomic():
            organisation = Organisation.objects.select_for_update().filter(due, pk=organisation_id).first()
            if organisation is None:
                continue
            organisation.review_reminder_sent_at = now
            organisation.save(update_fields=["review_reminder_sent_at"])
            audit_record(
                "organisation.review_reminder_sent",
                target=organisation,
                organisation=organisation,
                data={"next_review_at": organisation.next_review_at.isoformat() if organisation.next_review_at else ""},
            )
            enqueue(tasks.notify_organisation_task, organisation.pk, "review_reminder", "")
            count += 1
    return count


def organisations_suspend_lapsed(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Suspend active organisations whose review is ONBOARDING_REVIEW_GRACE_DAYS overdue."""
    cutoff = _now(now) - timedelta(days=settings.ONBOARDING_REVIEW_GRACE_DAYS)
    lapsed = Organisation.objects.filter(status=OrgStatus.ACTIVE, next_review_at__lt=cutoff).order_by("pk")
    count = 0
    for organisation_id in lapsed.values_list("pk", flat=True)[:batch_size]:
        try:
            organisation_suspend(
                organisation_id=organisation_id, reason="The periodic review lapsed (past its grace period)."
            )
        except DomainError:  # changed meanwhile (reactivated, offboarded): the next run sees it
            continue
        count += 1
    return count


def memberships_end_expired(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """End memberships past their expires_at; returns how many ended."""
    now = _now(now)
    expired = Q(ended_at__isnull=True, expires_at__lte=now)
    count = 0
    for membership_id in Membership.objects.filter(expired).order_by("pk").values_list("pk", flat=True)[:batch_size]:
        with transaction.atomic():
            membership = (
                Membership.objects.select_for_update()
                .select_related("organisation", "user")
                .filter(expired, pk=membership_id)
                .first()
            )
            if membership is None:
                continue
            membership.ended_at = membership.expires_at
            membership.save(update_fields=["ended_at"])
            audit_record(
                "membership.expired",
                target=membership,
                organisation=membership.organisation,
                data={"user": membership.user.get_username(), "role": membership.role},
            )
            count += 1
    return count


def invitations_expire(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Mark unused invitations past expires_at as expired; returns how many."""
    now = _now(now)
    expired = Q(accepted_at__isnull=True, revoked_at__isnull=True, expired_at__isnull=True, expires_at__lte=now)
    count = 0
    for invitation_id in Invitation.objects.filter(expired).order_by("pk").values_list("pk", flat=True)[:batch_size]:
        with transaction.atomic():
            invitation = (
                Invitation.objects.select_for_update()
                .select_related("organisation")
                .filter(expired, pk=invitation_id)
                .first()
            )
            if invitation is None:
                continue
            invitation.expired_at = now
            invitation.save(update_fields=["expired_at"])
            audit_record("invitation.expired", target=invitation, organisation=invitation.organisation)
            count += 1
    return count


def evidence_warn_expiring(*, now: datetime | None = None, batch_size: int = 500) -> int:
    """Warn once when a certificate of a live application nears valid_until (ONBOARDING_CERT_WARNING_DAYS)."""
    now = _now(now)
    due = Q(
        kind=Evidence.Kind.CERTIFICATE,
        valid_until__isnull=False,
        valid_until__lte=now + timedelta(days=settings.ONBOARDING_CERT_WARNING_DAYS),
        expiry_warning_sent_at__isnull=True,
        application__status__in=(*KycApplication.OPEN_STATUSES, AppStatus.APPROVED),
    ) & ~Q(application__organisation__status=OrgStatus.OFFBOARDED)
    count = 0
    for evidence_id in Evidence.objects.filter(due).order_by("pk").values_list("pk", flat=True)[:batch_size]:
        with transaction.atomic():
            evidence = (
                Evidence.objects.select_for_update()
                .select_related("application__organisation")
                .filter(due, pk=evidence_id)
                .first()
            )
            if evidence is None:
                continue
            evidence.expiry_warning_sent_at = now
            evidence.save(update_fields=["expiry_warning_sent_at"])
            audit_record(
                "kyc.evidence.expiry_warning_sent",
                target=evidence,
                organisation=evidence.application.organisation,
                data={"valid_until": evidence.valid_until.isoformat() if evidence.valid_until else ""},
            )
            enqueue(tasks.notify_certificate_expiring_task, evidence.pk)
            count += 1
    return count
