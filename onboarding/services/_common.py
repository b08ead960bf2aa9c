"""Helpers shared by the onboarding services."""

from __future__ import annotations

import hashlib
from typing import Any

from django.db import transaction

from authserver.errors import InvalidInput

from ..models import KycApplication, Membership, Organisation
from ..permissions import PermissionDenied, is_reviewer

Role = Membership.Role
OrgStatus = Organisation.Status
AppStatus = KycApplication.Status


def enqueue(task: Any, *args: Any) -> None:
    """Send a task once the transaction commits; a broker failure is logged, never undoes the change."""
    transaction.on_commit(lambda: task.delay(*args), robust=True)


def required_text(field: str, value: str | None, what: str) -> str:
    text = (value or "").strip()
    if not text:
        raise InvalidInput({field: [f"Give {what}."]})
    return text


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def check_choice(field: str, value: str, choices: type[Any]) -> None:
    if value not in choices.values:
        raise InvalidInput({field: [f"Choose one of {', '.join(choices.values)}."]})


def require_staff_or_system(actor: Any) -> None:
    if actor is not None and not is_reviewer(actor):
        raise PermissionDenied("Only staff may change an organisation's status.")
