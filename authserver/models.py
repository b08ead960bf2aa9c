"""Layer 3 runtime models: signing keys and the audit log."""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from clients.models import Client
from onboarding.models import Organisation

from .audit import AuditEvent
from .ratelimit import validate_limit

__all__ = ["ApiResource", "AuditEvent", "Endpoint", "NetworkZone", "RateLimitTier", "Scope", "SigningKey"]


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
    # The API it belongs to; a token for one API (RFC 8707 resource) carries only its scopes.
    api = models.ForeignKey("ApiResource", null=True, blank=True, on_delete=models.PROTECT, related_name="scopes")
    allowed_zones = models.ManyToManyField(
        "NetworkZone", blank=True, related_name="scopes", help_text="Network zones it may be used from; empty: any"
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


class ApiResource(models.Model):
    """An API whose access this server decides: its audience (RFC 8707), owner and token shape."""

    class TokenFormat(models.TextChoices):
        JWT = "jwt", "JWT (RFC 9068)"
        OPAQUE = "opaque", "Opaque (introspect it)"

    name = models.CharField(max_length=255, unique=True)
    slug = models.SlugField(max_length=100, unique=True, help_text="Its address in the catalogue: /apis/<slug>/")
    description = models.TextField(blank=True, default="")
    audience = models.CharField(
        max_length=512, unique=True, help_text="RFC 8707 resource indicator: an absolute URI, no fragment"
    )
    owner = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="apis")
    token_format = models.CharField(max_length=8, choices=TokenFormat.choices, default=TokenFormat.JWT)
    access_token_lifetime = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds; empty: the server's lifetime for the grant"
    )
    documentation_url = models.URLField(max_length=2048, blank=True, default="")
    # OAUTH-NL: resource servers introspect with credentials of their own, only for their APIs.
    introspectors = models.ManyToManyField(
        "clients.Client",
        blank=True,
        related_name="introspectable_apis",
        help_text="Resource-server clients that may introspect tokens for this API",
    )
    published = models.BooleanField(default=True, help_text="Listed in the public catalogue (/apis/)")
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Endpoint(models.Model):
    """One operation of an API and the scopes it needs (OAUTH-NL §4: documented per endpoint)."""

    class Method(models.TextChoices):
        GET = "GET"
        POST = "POST"
        PUT = "PUT"
        PATCH = "PATCH"
        DELETE = "DELETE"
        HEAD = "HEAD"
        OPTIONS = "OPTIONS"

    api = models.ForeignKey(ApiResource, on_delete=models.CASCADE, related_name="endpoints")
    method = models.CharField(max_length=8, choices=Method.choices)
    path = models.CharField(max_length=1024, help_text="As in the OpenAPI document: /orders/{id}")
    summary = models.CharField(max_length=512, blank=True, default="")
    required_scopes = models.ManyToManyField(Scope, blank=True, related_name="endpoints")

    class Meta:
        ordering = ["api", "path", "method"]
        constraints = [models.UniqueConstraint(fields=["api", "method", "path"], name="endpoint_unique_operation")]

    def __str__(self) -> str:
        return f"{self.method} {self.path}"


class NetworkZone(models.Model):
    """A named network (internet, Diginetwerk, a closed government network) in one environment."""

    name = models.CharField(max_length=100)
    description = models.TextField(blank=True, default="")
    environment = models.CharField(
        max_length=16, choices=Client.Environment.choices, default=Client.Environment.PRODUCTION
    )
    cidrs = models.JSONField(default=list, help_text="IPv4/IPv6 networks in CIDR notation")
    clients = models.ManyToManyField(
        "clients.Client",
        blank=True,
        related_name="network_zones",
        help_text="Clients bound to this zone: they get tokens only from an address in one of their zones",
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["environment", "name"]
        constraints = [models.UniqueConstraint(fields=["name", "environment"], name="network_zone_unique_name")]

    def __str__(self) -> str:
        return f"{self.name} ({self.environment})"


class RateLimitTier(models.Model):
    """Request budgets an admin assigns to clients or organisations (limits' syntax: "600/minute")."""

    name = models.CharField(max_length=100, unique=True)
    description = models.TextField(blank=True, default="")
    token_rate = models.CharField(max_length=64, default="600/minute", validators=[validate_limit])
    introspection_rate = models.CharField(max_length=64, default="6000/minute", validators=[validate_limit])
    organisation_token_rate = models.CharField(
        max_length=64,
        blank=True,
        default="",
        validators=[validate_limit],
        help_text="All clients of an organisation together; empty: no limit",
    )
    clients = models.ManyToManyField("clients.Client", blank=True, related_name="rate_limit_tiers")
    organisations = models.ManyToManyField(Organisation, blank=True, related_name="rate_limit_tiers")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name
