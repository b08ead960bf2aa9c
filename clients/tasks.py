"""Client jobs. Thin (STYLE.md §5): ids in, one service or notification call, a count out."""

from __future__ import annotations

from celery import shared_task

from . import notifications, services

# --- emails (enqueued by the services on commit) --------------------------------------------


@shared_task
def notify_intake_decision_task(intake_id: int) -> int:
    return notifications.notify_intake_decision(intake_id)


@shared_task
def notify_credential_expiring_task(credential_id: int, days: int) -> int:
    return notifications.notify_credential_expiring(credential_id, days)


# --- lifecycle (Celery beat, CELERY_BEAT_SCHEDULE in authserver/settings.py) -----------------


@shared_task
def credentials_expire_due_task() -> int:
    return services.credentials_expire_due()


@shared_task
def credentials_remind_expiring_task() -> int:
    return services.credentials_remind_expiring()


@shared_task
def clients_expire_unused_open_task() -> int:
    return services.clients_expire_unused_open()


@shared_task
def initial_access_tokens_expire_task() -> int:
    return services.initial_access_tokens_expire()
