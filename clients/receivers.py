"""clients reacts to onboarding (DESIGN.md: onboarding knows nothing of clients).

When an organisation stops being active, onboarding sends ``organisation_deactivated`` inside
its transaction; here the organisation's clients are suspended (offboarding: revoked) and their
tokens revoked in that same transaction, so the organisation's state and its clients' never
disagree. Reactivating the organisation sends nothing: suspended clients stay suspended.
"""

from __future__ import annotations

from typing import Any

from onboarding.models import Organisation

from .services import clients_deactivate_for_organisation


def on_organisation_deactivated(
    sender: Any, *, organisation: Organisation, actor: Any = None, reason: str = "", status: str = "", **kwargs: Any
) -> None:
    clients_deactivate_for_organisation(
        organisation_id=organisation.pk,
        actor=actor,
        reason=reason,
        revoke=(status or organisation.status) == Organisation.Status.OFFBOARDED,
    )
