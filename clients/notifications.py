"""Client emails: plain-text templates (templates/clients/email/) to the organisation's owners,
admins and contact address (onboarding.notifications.recipients), plus whoever asked."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.template.loader import render_to_string
from django.utils import timezone

from onboarding.notifications import recipients

from .models import ClientCredential, ClientIntake

SUBJECTS = {
    "intake_approved": "Client {client} is approved",
    "intake_rejected": "Client {client} is not approved",
    "credential_expiring": "A credential of client {client} expires soon",
}


def portal_client_url(client: Any) -> str:
    return f"{settings.AUTHSERVER_ISSUER}/portal/organisations/{client.organisation_id}/clients/{client.pk}/"


def send(template: str, *, to: list[str], context: dict[str, Any]) -> int:
    """Render ``clients/email/<template>.txt`` and send one message per address; returns how many."""
    if not to:
        return 0
    subject = SUBJECTS[template].format(client=context["client"].name)
    body = render_to_string(f"clients/email/{template}.txt", {"site_url": settings.AUTHSERVER_ISSUER, **context})
    messages = [EmailMessage(subject=subject, body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[a]) for a in to]
    with get_connection() as connection:
        return connection.send_messages(messages) or 0


def _with_requester(addresses: list[str], *extra: str) -> list[str]:
    seen: dict[str, str] = {}
    for address in [*addresses, *extra]:
        if address and address.strip():
            seen.setdefault(address.strip().lower(), address.strip())
    return list(seen.values())


def notify_intake_decision(intake_id: int) -> int:
    """Tell the organisation (and the requester) how an admin decided an intake."""
    intake = ClientIntake.objects.select_related("client__organisation", "submitted_by").get(pk=intake_id)
    if intake.status == ClientIntake.Status.PENDING:
        return 0
    client = intake.client
    requester = intake.submitted_by.email if intake.submitted_by is not None else ""
    return send(
        f"intake_{intake.status}",
        to=_with_requester(recipients(client.organisation), requester, intake.contact_email),
        context={
            "client": client,
            "intake": intake,
            "granted": intake.granted_scopes.split(),
            "refused": [s for s in intake.requested if s not in intake.granted_scopes.split()],
            "portal_url": portal_client_url(client),
        },
    )


def notify_credential_expiring(credential_id: int, days: int) -> int:
    """Warn the organisation (and who registered the client) that a credential expires soon."""
    credential = (
        ClientCredential.objects.select_related("client__organisation", "client__created_by")
        .filter(pk=credential_id)
        .first()
    )
    if credential is None or credential.expires_at is None or not credential.is_usable():
        return 0  # rotated, revoked or expired since the reminder was recorded
    client = credential.client
    creator = client.created_by.email if client.created_by is not None else ""
    # Days left, rounded up: a credential found late is told its real date, not the reminder's.
    left = max(1, math.ceil((credential.expires_at - timezone.now()) / timedelta(days=1)))
    return send(
        "credential_expiring",
        to=_with_requester(recipients(client.organisation), creator),
        context={
            "client": client,
            "credential": credential,
            "days": left,
            "reminder": days,
            "in_overlap": credential.status == ClientCredential.Status.EXPIRING,
            "portal_url": portal_client_url(client),
        },
    )
