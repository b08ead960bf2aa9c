"""Layer 3 runtime models: signing keys and the audit log."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from onboarding.models import Organisation

from .audit import AuditEvent

__all__ = ["AuditEvent", "SigningKey"]


class SigningKey(models.Model):
    """A key that signs access and ID tokens; the private half is encrypted at rest.

    Lifecycle: ``next`` (published in the JWKS, not yet signing) -> ``active`` (signs; one
    per algorithm) -> ``retired`` (still published until no token it signed can be valid).
    """

    class Status(models.TextChoices):
        NEXT = "next", "Next"
        ACTIVE = "active", "Active"
        RETIRED = "retired", "Retired"

    TRANSITIONS: dict[str, set[str]] = {
        Status.NEXT: {Status.ACTIVE, Status.RETIRED},
        Status.ACTIVE: {Status.RETIRED},
        Status.RETIRED: set(),
    }

    class Algorithm(models.TextChoices):
        RS256 = "RS256", "RS256 (RSASSA-PKCS1-v1_5, SHA-256)"
        PS256 = "PS256", "PS256 (RSASSA-PSS, SHA-256)"
        ES256 = "ES256", "ES256 (ECDSA P-256, SHA-256)"

    kid = models.CharField(max_length=64, unique=True)
    alg = models.CharField(max_length=8, choices=Algorithm.choices)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.NEXT)
    # Fernet token (AES-128-CBC + HMAC-SHA256) of the PKCS#8 PEM, under the key-encryption key.
    private_key_encrypted = models.BinaryField(editable=False)
    public_jwk = models.JSONField(editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    activated_at = models.DateTimeField(null=True, blank=True)
    retired_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["alg", "-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["alg"], condition=models.Q(status="active"), name="one_active_signing_key_per_alg"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.alg} {self.kid} ({self.status})"

    def transition_to(self, status: str) -> None:
        from .errors import InvalidTransition

        if status not in self.TRANSITIONS[self.status]:
            raise InvalidTransition(f"signing key cannot go from {self.status} to {status}")
        self.status = status


class Scope(models.Model):
    """A scope in the public catalogue: what it means and who may get it.

    The registration policy (clients.policy) and, later, the issuance policy read these rows;
    the catalogue pages render them. One source, so what is published is what is enforced.
    """

    class RiskLevel(models.TextChoices):
        LOW = "low", "Low"
        MEDIUM = "medium", "Medium"
        HIGH = "high", "High"

    name = models.CharField(max_length=128, unique=True)
    description = models.TextField(blank=True, default="")
    risk_level = models.CharField(max_length=8, choices=RiskLevel.choices, default=RiskLevel.MEDIUM)
    min_trust_level = models.CharField(
        max_length=16, choices=Organisation.TrustLevel.choices, default=Organisation.TrustLevel.LOW
    )
    allowed_organisation_kinds = models.JSONField(
        default=list, blank=True, help_text="Organisation kinds that may get it; empty: every kind"
    )
    allowed_environments = models.JSONField(
        default=list, blank=True, help_text="Client environments that may get it; empty: every environment"
    )
    requires_approval = models.BooleanField(
        default=False, help_text="Every client asking for it is reviewed by an administrator"
    )
    open_registration = models.BooleanField(
        default=False, help_text="Open (unreviewed, dynamic) registration may get it; only for low-risk scopes"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~models.Q(open_registration=True) | models.Q(risk_level="low"),
                name="scope_open_registration_low_risk_only",
            ),
        ]

    def __str__(self) -> str:
        return self.name
