"""Onboarding services: every organisation state change goes through here (STYLE.md §1)."""

from __future__ import annotations

from typing import Any

from django.db import transaction

from authserver.audit import audit_record
from authserver.errors import DomainError

from .models import Organisation


@transaction.atomic
def organisation_create(
    *,
    name: str,
    kind: str = Organisation.Kind.PRIVATE,
    oin: str = "",
    kvk_number: str = "",
    status: str = Organisation.Status.PENDING,
    trust_level: str = Organisation.TrustLevel.LOW,
    actor: Any = None,
) -> Organisation:
    """Create an organisation; identifiers are unique and validated by the model."""
    organisation = Organisation(
        name=name.strip(),
        kind=kind,
        oin=oin.strip(),
        kvk_number=kvk_number.strip(),
        status=status,
        trust_level=trust_level,
    )
    if not organisation.name:
        raise DomainError("an organisation needs a name")
    if kind not in Organisation.Kind.values:
        raise DomainError(f"unknown kind {kind!r}; choose one of {', '.join(Organisation.Kind.values)}")
    if status not in Organisation.Status.values:
        raise DomainError(f"unknown status {status!r}")
    if trust_level not in Organisation.TrustLevel.values:
        raise DomainError(f"unknown trust level {trust_level!r}")
    if oin and Organisation.objects.filter(oin=organisation.oin).exists():
        raise DomainError(f"an organisation with OIN {oin} exists already")
    if kvk_number and Organisation.objects.filter(kvk_number=organisation.kvk_number).exists():
        raise DomainError(f"an organisation with KvK number {kvk_number} exists already")
    organisation.full_clean()
    organisation.save()
    audit_record("organisation.created", actor=actor, target=organisation, organisation=organisation)
    return organisation
