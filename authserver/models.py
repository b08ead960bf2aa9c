"""Layer 3 runtime models: signing keys and the audit log."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

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
