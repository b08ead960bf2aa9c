"""Layer 2: OAuth clients and their credentials.

``Client`` is django-oauth-toolkit's swapped Application model (docs/decisions/0001).
Secrets do not live on the client: every credential is a ``ClientCredential`` row, so a
client can hold several at once while it rotates (docs/decisions/0004).
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone
from oauth2_provider.models import AbstractApplication

from onboarding.models import Organisation


class Client(AbstractApplication):
    """An OAuth 2.0 client: one grant type, one organisation, credentials of its own."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending review"
        ACTIVE = "active", "Active"
        SUSPENDED = "suspended", "Suspended"
        REJECTED = "rejected", "Rejected"
        EXPIRED = "expired", "Expired (unused)"
        REVOKED = "revoked", "Revoked"

    TRANSITIONS: dict[str, set[str]] = {
        Status.PENDING: {Status.ACTIVE, Status.REJECTED, Status.REVOKED},
        Status.ACTIVE: {Status.SUSPENDED, Status.EXPIRED, Status.REVOKED},
        Status.SUSPENDED: {Status.ACTIVE, Status.REVOKED},
        Status.EXPIRED: {Status.REVOKED},
        Status.REJECTED: set(),
        Status.REVOKED: set(),
    }

    class RegistrationMode(models.TextChoices):
        MANUAL = "manual", "Registered by an administrator"
        OPEN = "open", "Registered dynamically (open)"
        WHITELIST = "whitelist", "Pre-approved registration"
        EXPLICIT = "explicit", "Reviewed by an administrator"

    class Environment(models.TextChoices):
        DEVELOPMENT = "development", "Development"
        TEST = "test", "Test"
        PRODUCTION = "production", "Production"

    class AuthMethod(models.TextChoices):
        # RFC 7591 §2 token_endpoint_auth_method values.
        PRIVATE_KEY_JWT = "private_key_jwt", "private_key_jwt (RFC 7523)"
        CLIENT_SECRET_BASIC = "client_secret_basic", "client_secret_basic"
        CLIENT_SECRET_POST = "client_secret_post", "client_secret_post"
        NONE = "none", "none (public client)"
        # RFC 8705 §2: mutual TLS with a PKI certificate (subject DN) or a self-signed one.
        TLS_CLIENT_AUTH = "tls_client_auth", "tls_client_auth (RFC 8705, PKI)"
        SELF_SIGNED_TLS_CLIENT_AUTH = "self_signed_tls_client_auth", "self_signed_tls_client_auth (RFC 8705)"

    MTLS_METHODS = (AuthMethod.TLS_CLIENT_AUTH, AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH)

    class ApplicationType(models.TextChoices):
        # OIDC Registration §2 / RFC 8252: native apps may use loopback http and their own scheme.
        WEB = "web", "Web application"
        NATIVE = "native", "Native application"

    class SubjectType(models.TextChoices):
        PUBLIC = "public", "Public"
        PAIRWISE = "pairwise", "Pairwise"

    # OAUTH-NL: only these two grants exist here; one per client.
    SUPPORTED_GRANT_TYPES = (
        AbstractApplication.GRANT_AUTHORIZATION_CODE,
        AbstractApplication.GRANT_CLIENT_CREDENTIALS,
    )
    SIGNING_ALGORITHMS = (("", "Server default"), ("RS256", "RS256"), ("PS256", "PS256"), ("ES256", "ES256"))

    organisation = models.ForeignKey(Organisation, on_delete=models.PROTECT, related_name="clients")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    registration_mode = models.CharField(
        max_length=16, choices=RegistrationMode.choices, default=RegistrationMode.MANUAL
    )
    environment = models.CharField(max_length=16, choices=Environment.choices, default=Environment.PRODUCTION)
    token_endpoint_auth_method = models.CharField(
        max_length=32, choices=AuthMethod.choices, default=AuthMethod.PRIVATE_KEY_JWT
    )
    scope = models.TextField(blank=True, default="", help_text="Scopes granted to this client, space separated")
    is_resource_server = models.BooleanField(
        default=False, help_text="May call the introspection endpoint (OAUTH-NL: its own credentials)"
    )
    subject_type = models.CharField(max_length=16, choices=SubjectType.choices, default=SubjectType.PUBLIC)
    application_type = models.CharField(max_length=8, choices=ApplicationType.choices, default=ApplicationType.WEB)
    software_statement_issuer = models.CharField(max_length=255, blank=True, default="")
    # RFC 7591 §2 metadata kept for people and for allowlist matching.
    software_id = models.CharField(max_length=255, blank=True, default="")
    software_version = models.CharField(max_length=64, blank=True, default="")
    client_uri = models.URLField(max_length=2048, blank=True, default="")
    contacts = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Whitelist mode: the allowlist entry that pre-approved it (counts against max_clients).
    allowlist_entry = models.ForeignKey(
        "AllowlistEntry", null=True, blank=True, on_delete=models.SET_NULL, related_name="clients"
    )
    # RFC 7592 §3: the registration access token, as a keyed hash; replaced on every update.
    registration_token_hash = models.CharField(max_length=64, blank=True, default="", editable=False, db_index=True)
    # Hour precision, like ClientCredential.last_used_at; unused open clients expire by it.
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    # Overrides DOT's field: secrets live in ClientCredential, hashed; this column stays empty.
    client_secret = models.CharField(max_length=255, blank=True, default="", editable=False)
    hash_client_secret = models.BooleanField(default=True, editable=False)
    # Overrides DOT's field: the ID token algorithm (OIDC id_token_signed_response_alg).
    algorithm = models.CharField(max_length=5, choices=SIGNING_ALGORITHMS, default="", blank=True)

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(authorization_grant_type__in=["authorization-code", "client-credentials"]),
                name="client_supported_grant_type",
            ),
            models.CheckConstraint(
                condition=~models.Q(authorization_grant_type="client-credentials", client_type="public"),
                name="client_credentials_confidential",
            ),
        ]

    @property
    def scopes(self) -> list[str]:
        return self.scope.split()

    @property
    def uses_mtls(self) -> bool:
        return self.token_endpoint_auth_method in self.MTLS_METHODS

    @property
    def is_public(self) -> bool:
        return self.client_type == self.CLIENT_PUBLIC

    @property
    def uses_client_secret(self) -> bool:
        return self.token_endpoint_auth_method in (
            self.AuthMethod.CLIENT_SECRET_BASIC,
            self.AuthMethod.CLIENT_SECRET_POST,
        )

    def is_usable(self, request) -> bool:
        """A client works only while it and its organisation are active."""
        return self.status == self.Status.ACTIVE and self.organisation.is_active

    def get_allowed_schemes(self) -> list[str]:
        """DOT's redirect URI scheme check: https, plus loopback http and the app's own
        scheme for native applications (RFC 8252 §7; clean() applies the finer rules)."""
        schemes = ["https"]
        if self.application_type == self.ApplicationType.NATIVE:
            schemes += sorted({uri.split(":", 1)[0].lower() for uri in self.redirect_uris.split() if ":" in uri})
        return schemes

    def transition_to(self, status: str) -> None:
        from authserver.errors import InvalidTransition

        if status not in self.TRANSITIONS[self.status]:
            raise InvalidTransition(f"client cannot go from {self.status} to {status}")
        self.status = status

    def clean(self) -> None:
        errors: dict[str, list[str]] = {}
        if self.authorization_grant_type not in self.SUPPORTED_GRANT_TYPES:
            errors["authorization_grant_type"] = [
                "Only authorization-code and client-credentials are supported (OAUTH-NL, RFC 9700)."
            ]
        if self.authorization_grant_type == self.GRANT_CLIENT_CREDENTIALS and self.is_public:
            errors["client_type"] = ["A client-credentials client must be confidential."]
        if self.is_public != (self.token_endpoint_auth_method == self.AuthMethod.NONE):
            errors["token_endpoint_auth_method"] = [
                "Public clients authenticate with 'none'; confidential clients may not."
            ]
        from .dcr_metadata import redirect_uri_problems

        for uri in self.redirect_uris.split():
            for problem in redirect_uri_problems(uri, self.application_type):
                errors.setdefault("redirect_uris", []).append(problem)
        if self.application_type == self.ApplicationType.NATIVE and self.uses_client_secret:
            errors.setdefault("token_endpoint_auth_method", []).append(
                "A native application cannot keep a client secret (RFC 8252 §8.5)."
            )
        try:
            super().clean()
        except ValidationError as exc:
            for field, messages in exc.message_dict.items():
                # DOT's algorithm rules are about its settings-held RSA key; ours signs with
                # the database keys (docs/decisions/0002), so any listed algorithm is fine.
                if field != "algorithm":
                    errors.setdefault(field, []).extend(messages)
        if errors:
            raise ValidationError(errors)


class ClientCredential(models.Model):
    """One way a client proves who it is: a hashed secret or a public key.

    Several credentials of a client may be usable at once; that overlap is what makes
    rotation possible without downtime.
    """

    class Kind(models.TextChoices):
        SECRET = "secret", "Client secret"
        PUBLIC_KEY = "public_key", "Public key (JWK)"
        CERTIFICATE = "certificate", "Client certificate (mutual TLS)"
        JWKS_URI = "jwks_uri", "Public keys at a JWKS URI"

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        EXPIRING = "expiring", "Expiring (rotation overlap)"
        EXPIRED = "expired", "Expired"
        REVOKED = "revoked", "Revoked"

    TRANSITIONS: dict[str, set[str]] = {
        Status.ACTIVE: {Status.EXPIRING, Status.EXPIRED, Status.REVOKED},
        Status.EXPIRING: {Status.EXPIRED, Status.REVOKED},
        Status.EXPIRED: {Status.REVOKED},
        Status.REVOKED: set(),
    }
    USABLE_STATUSES = (Status.ACTIVE, Status.EXPIRING)

    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="credentials")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.ACTIVE)
    # Keyed SHA-256 of the secret (docs/decisions/0003-client-secret-hash.md); never the secret.
    secret_hash = models.CharField(max_length=64, blank=True, default="", editable=False)
    hint = models.CharField(max_length=8, blank=True, default="", help_text="Last characters, for people")
    public_jwk = models.JSONField(null=True, blank=True, help_text="Public key only (RFC 7517)")
    kid = models.CharField(max_length=255, blank=True, default="")
    # Mutual TLS (RFC 8705): the registered certificate (PEM) and its x5t#S256 thumbprint,
    # or, for tls_client_auth, the subject DN (RFC 4514) the certificate must carry.
    certificate_pem = models.TextField(blank=True, default="")
    thumbprint = models.CharField(max_length=64, blank=True, default="", help_text="x5t#S256 of the certificate")
    subject_dn = models.CharField(max_length=1024, blank=True, default="", help_text="RFC 4514 subject DN")
    # RFC 7591 §2 jwks_uri: https only, fetched with SSRF protection (clients.jwks_uri).
    jwks_uri = models.URLField(max_length=2048, blank=True, default="")
    # The credential this one replaced in a rotation (docs/decisions/0004).
    replaces = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="replaced_by"
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    # Which of the 30/7/1-day expiry reminders went out already (the smallest sent).
    expiry_reminder_days = models.PositiveSmallIntegerField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["client", "kind", "status"])]
        constraints = [
            models.CheckConstraint(
                condition=(models.Q(kind="secret") & ~models.Q(secret_hash=""))
                | (models.Q(kind="public_key") & models.Q(public_jwk__isnull=False))
                | (models.Q(kind="certificate") & (~models.Q(thumbprint="") | ~models.Q(subject_dn="")))
                | (models.Q(kind="jwks_uri") & ~models.Q(jwks_uri="")),
                name="credential_material_matches_kind",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} …{self.hint}" if self.hint else self.get_kind_display()

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.status in self.USABLE_STATUSES and (self.expires_at is None or self.expires_at > now)

    def transition_to(self, status: str) -> None:
        from authserver.errors import InvalidTransition

        if status not in self.TRANSITIONS[self.status]:
            raise InvalidTransition(f"credential cannot go from {self.status} to {status}")
        self.status = status


class ClientIntake(models.Model):
    """An explicit-mode request: the client waits (status pending) until an admin decides."""

    class Status(models.TextChoices):
        PENDING = "pending", "Waiting for review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    TRANSITIONS: dict[str, set[str]] = {
        Status.PENDING: {Status.APPROVED, Status.REJECTED},
        Status.APPROVED: set(),
        Status.REJECTED: set(),
    }

    client = models.OneToOneField(Client, on_delete=models.CASCADE, related_name="intake")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    purpose = models.TextField(help_text="What the client is for")
    contact_name = models.CharField(max_length=255, blank=True, default="")
    contact_email = models.EmailField(blank=True, default="")
    requested_scopes = models.TextField(blank=True, default="", help_text="Space separated")
    justifications = models.JSONField(default=dict, blank=True, help_text="Scope name -> why it is needed")
    # Why the policy sent it to review (e.g. outside an allowlist entry's bounds).
    policy_reason = models.TextField(blank=True, default="")
    submitted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    submitted_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, default="")
    granted_scopes = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["submitted_at"]
        indexes = [models.Index(fields=["status", "submitted_at"])]

    def __str__(self) -> str:
        return f"Intake for {self.client.name} ({self.get_status_display()})"

    @property
    def requested(self) -> list[str]:
        return self.requested_scopes.split()

    def transition_to(self, status: str) -> None:
        from authserver.errors import InvalidTransition

        if status not in self.TRANSITIONS[self.status]:
            raise InvalidTransition(f"intake cannot go from {self.status} to {status}")
        self.status = status


class AllowlistEntry(models.Model):
    """Pre-approval (whitelist mode): registrations within these bounds are active at once."""

    organisation = models.ForeignKey(
        Organisation, null=True, blank=True, on_delete=models.CASCADE, related_name="allowlist_entries"
    )
    software_id = models.CharField(max_length=255, blank=True, default="")
    grant_types = models.JSONField(
        default=list, blank=True, help_text="authorization_code / client_credentials; empty: both"
    )
    allowed_scopes = models.TextField(help_text="Space separated")
    allowed_redirect_hosts = models.JSONField(default=list, blank=True, help_text="Host names, exact")
    environments = models.JSONField(default=list, blank=True, help_text="Empty: every environment")
    max_clients = models.PositiveIntegerField(default=1)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    note = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "allowlist entries"
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(organisation__isnull=False) | ~models.Q(software_id=""),
                name="allowlist_entry_names_organisation_or_software",
            ),
        ]

    def __str__(self) -> str:
        return f"Allowlist: {self.organisation or self.software_id}"

    @property
    def scopes(self) -> list[str]:
        return self.allowed_scopes.split()

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and (self.expires_at is None or self.expires_at > now)


class InitialAccessToken(models.Model):
    """An RFC 7591 §3 initial access token an admin issued to an approved organisation."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="initial_access_tokens")
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    hint = models.CharField(max_length=8, blank=True, default="")
    scopes = models.TextField(help_text="Space separated: the most a client registered with it may get")
    allowed_redirect_hosts = models.JSONField(default=list, blank=True, help_text="Host names, exact; empty: any")
    max_uses = models.PositiveIntegerField(default=1)
    uses = models.PositiveIntegerField(default=0, editable=False)
    expires_at = models.DateTimeField()
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(condition=models.Q(uses__lte=models.F("max_uses")), name="iat_uses_within_max"),
        ]

    def __str__(self) -> str:
        return f"Initial access token …{self.hint} ({self.organisation})"

    @property
    def scope_list(self) -> list[str]:
        return self.scopes.split()

    def is_usable(self, now=None) -> bool:
        now = now or timezone.now()
        return self.revoked_at is None and self.uses < self.max_uses and self.expires_at > now
