"""Periodic runtime jobs. Thin (STYLE.md §5): one service call, a count back."""

from celery import shared_task

from . import services


@shared_task
def clear_expired_tokens_task() -> int:
    return services.tokens_clear_expired()


@shared_task
def rotate_signing_keys_task() -> int:
    return services.signing_keys_rotate_due()
