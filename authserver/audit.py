"""The append-only audit log (STYLE.md §4) and the one way to write it.

``audit_record`` runs inside the caller's transaction, so an audited change and its audit
row commit or roll back together. Data is sanitised: keys that look like secrets are
dropped, whatever the caller passed.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

from .context import current_request_context

_SECRET_MARKERS = ("secret", "password", "token", "assertion", "private", "code_verifier", "otp")


class AuditEvent(models.Model):
    class ActorType(models.TextChoices):
        USER = "user", "User"
        CLIENT = "client", "Client"
        SYSTEM = "system", "System"

    event = models.CharField(max_length=100, db_index=True, help_text="Dotted name, e.g. client.credential.rotated")
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    actor_type = models.CharField(max_length=8, choices=ActorType.choices, default=ActorType.SYSTEM)
    actor_user = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    actor_label = models.CharField(max_length=255, blank=True, default="")
    target_type = models.CharField(max_length=100, blank=True, default="")
    target_id = models.CharField(max_length=255, blank=True, default="")
    target_label = models.CharField(max_length=255, blank=True, default="")
    organisation = models.ForeignKey(
        "onboarding.Organisation", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    data = models.JSONField(default=dict, blank=True)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    request_id = models.CharField(max_length=64, blank=True, default="")

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {self.event} {self.target_label}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self.pk is not None:
            raise RuntimeError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("audit events are append-only")


def _sanitise(data: dict[str, Any] | None) -> dict[str, Any]:
    clean: dict[str, Any] = {}
    for key, value in (data or {}).items():
        if any(marker in str(key).lower() for marker in _SECRET_MARKERS):
            continue
        clean[str(key)] = _sanitise_value(value)
    return clean


def _sanitise_value(value: Any) -> Any:
    # Lists are walked too: a list of dicts must not carry a secret past _sanitise.
    if isinstance(value, dict):
        return _sanitise(value)
    if isinstance(value, list | tuple):
        return [_sanitise_value(item) for item in value]
    if isinstance(value, str | int | float | bool | type(None)):
        return value
    return str(value)


def audit_record(
    event: str,
    *,
    actor: Any = None,
    target: models.Model | None = None,
    organisation: Any = None,
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one audit event; ``actor`` is a user, a client, or None for the system."""
    from clients.models import Client

    context = current_request_context()
    event_row = AuditEvent(event=event, data=_sanitise(data))
    if actor is None:
        event_row.actor_type = AuditEvent.ActorType.SYSTEM
        event_row.actor_label = "system"
    elif isinstance(actor, Client):
        event_row.actor_type = AuditEvent.ActorType.CLIENT
        event_row.actor_label = actor.client_id
    else:
        event_row.actor_type = AuditEvent.ActorType.USER
        event_row.actor_user = actor
        event_row.actor_label = actor.get_username()
    if target is not None:
        event_row.target_type = target._meta.label_lower
        event_row.target_id = str(target.pk)
        event_row.target_label = str(target)[:255]
    event_row.organisation = organisation
    if context is not None:
        event_row.ip_address = context.ip_address
        event_row.request_id = context.request_id
    event_row.save()
    return event_row
