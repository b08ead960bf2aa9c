"""Layer 1: the people and organisations that use the server.

The foundation keeps Organisation to what the runtime needs (identity, status, trust level);
the onboarding issue completes it with KYC, memberships and the review lifecycle.
"""

from __future__ import annotations

import uuid

from django.contrib.auth.models import AbstractUser
from django.db import models


class User(AbstractUser):
    """A person: an end user who signs in, an organisation member, or staff.

    ``subject_id`` is the stable, meaningless identifier behind OIDC ``sub`` (OIDC-NL forbids
    BSN, RSIN or KvK numbers as ``sub``; the database key is not exposed either).
    """

    subject_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)

    class Meta:
        db_table = "onboarding_user"


class Organisation(models.Model):
    """An organisation that registers clients or owns APIs."""

    class Kind(models.TextChoices):
        GOVERNMENT = "government", "Government"
        SEMI_GOVERNMENT = "semi_government", "Semi-government"
        PRIVATE = "private", "Private"
        FOREIGN = "foreign", "Foreign"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        OFFBOARDED = "offboarded", "Offboarded"

    class TrustLevel(models.TextChoices):
        # After the eIDAS levels of assurance.
        LOW = "low", "Low"
        SUBSTANTIAL = "substantial", "Substantial"
        HIGH = "high", "High"

    # One transition table (STYLE.md §2); services use Organisation.transition_to.
    TRANSITIONS: dict[str, set[str]] = {
        Status.PENDING: {Status.ACTIVE, Status.OFFBOARDED},
        Status.ACTIVE: {Status.SUSPENDED, Status.OFFBOARDED},
        Status.SUSPENDED: {Status.ACTIVE, Status.OFFBOARDED},
        Status.OFFBOARDED: set(),
    }

    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.PRIVATE)
    oin = models.CharField("OIN", max_length=20, blank=True, default="")
    kvk_number = models.CharField("KvK number", max_length=8, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    trust_level = models.CharField(max_length=16, choices=TrustLevel.choices, default=TrustLevel.LOW)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["oin"], condition=~models.Q(oin=""), name="organisation_oin_unique"),
            models.UniqueConstraint(
                fields=["kvk_number"], condition=~models.Q(kvk_number=""), name="organisation_kvk_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    def transition_to(self, status: str) -> None:
        """Move to ``status`` or raise InvalidTransition; the caller saves."""
        from authserver.errors import InvalidTransition

        if status not in self.TRANSITIONS[self.status]:
            raise InvalidTransition(f"organisation cannot go from {self.status} to {status}")
        self.status = status
