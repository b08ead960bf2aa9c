"""Onboarding jobs. Thin (STYLE.md §5): ids in, one service or notification call, a count out.

The lifecycle jobs run from Celery beat (CELERY_BEAT_SCHEDULE in authserver/settings.py); each
is bounded and idempotent, so running it twice, or again after it was killed, changes nothing.
"""

from __future__ import annotations

from celery import shared_task

from . import notifications, services

# --- emails (enqueued by the services on commit) --------------------------------------------


@shared_task
def notify_organisation_task(organisation_id: int, event: str, reason: str = "") -> int:
    return notifications.notify_organisation(organisation_id, event, reason)


@shared_task
def notify_kyc_application_task(application_id: int, event: str) -> int:
    return notifications.notify_kyc_application(application_id, event)


@shared_task
def notify_kyc_message_task(message_id: int) -> int:
    return notifications.notify_kyc_message(message_id)


@shared_task
def notify_certificate_expiring_task(evidence_id: int) -> int:
    return notifications.notify_certificate_expiring(evidence_id)


# --- lifecycle (Celery beat) ----------------------------------------------------------------


@shared_task
def kyc_applications_expire_stale_task() -> int:
    return services.kyc_applications_expire_stale()


@shared_task
def organisations_remind_review_task() -> int:
    return services.organisations_remind_review()


@shared_task
def organisations_suspend_lapsed_task() -> int:
    return services.organisations_suspend_lapsed()


@shared_task
def memberships_end_expired_task() -> int:
    return services.memberships_end_expired()


@shared_task
def invitations_expire_task() -> int:
    return services.invitations_expire()


@shared_task
def evidence_warn_expiring_task() -> int:
    return services.evidence_warn_expiring()
