"""Layer 1: the people and organisations that use the server.

The foundation keeps Organisation to what the runtime needs (identity, status, trust level);
the onboarding issue completes it with KYC, memberships and the review lifecycle.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from django.contrib.auth.models import AbstractUser
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from .identifiers import validate_eidas_identifier, validate_kvk_number, validate_oin, validate_rsin


class User(AbstractUser):
    """A person: an end user who signs in, an organisation member, or staff.

    ``subject_id`` is the stable, meaningless identifier behind OIDC ``sub`` (OIDC-NL forbids
    BSN, RSIN or KvK numbers as ``sub``; the database key is not exposed either).
    """

    subject_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # Set by portal sign-up; only such accounts are ever activated by an emailed link.
    self_registered = models.BooleanField(default=False, editable=False)
    email_verified_at = models.DateTimeField(null=True, blank=True, editable=False)

    @property
    def email_verified(self) -> bool:
        return self.email_verified_at is not None

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

    name = models.CharField("legal name", max_length=255)
    kind = models.CharField(max_length=32, choices=Kind.choices, default=Kind.PRIVATE)
    oin = models.CharField("OIN", max_length=20, blank=True, default="", validators=[validate_oin])
    kvk_number = models.CharField("KvK number", max_length=8, blank=True, default="", validators=[validate_kvk_number])
    rsin = models.CharField("RSIN", max_length=9, blank=True, default="", validators=[validate_rsin])
    eidas_identifier = models.CharField(
        "eIDAS legal identifier", max_length=210, blank=True, default="", validators=[validate_eidas_identifier]
    )
    country = models.CharField(max_length=2, default="NL", help_text="ISO 3166-1 alpha-2")
    contact_name = models.CharField(max_length=255, blank=True, default="")
    contact_email = models.EmailField(blank=True, default="")
    contact_phone = models.CharField(max_length=32, blank=True, default="")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    trust_level = models.CharField(max_length=16, choices=TrustLevel.choices, default=TrustLevel.LOW)
    next_review_at = models.DateTimeField(null=True, blank=True)
    # When the reminder before next_review_at went out; cleared when a review sets a new date.
    review_reminder_sent_at = models.DateTimeField(null=True, blank=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(fields=["oin"], condition=~models.Q(oin=""), name="organisation_oin_unique"),
            models.UniqueConstraint(
                fields=["kvk_number"], condition=~models.Q(kvk_number=""), name="organisation_kvk_unique"
            ),
            models.UniqueConstraint(
                fields=["eidas_identifier"], condition=~models.Q(eidas_identifier=""), name="organisation_eidas_unique"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def identifier(self) -> str:
        """The identifier other parties know it by: OIN, else KvK number, else eIDAS."""
        return self.oin or self.kvk_number or self.eidas_identifier

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.kind == self.Kind.GOVERNMENT and not self.oin:
            errors["oin"] = "A government organisation must have an OIN."
        if self.kind == self.Kind.FOREIGN and not self.eidas_identifier:
            errors["eidas_identifier"] = "A foreign (EU) organisation needs its eIDAS legal identifier."
        if self.kind in (self.Kind.PRIVATE, self.Kind.SEMI_GOVERNMENT) and not (self.kvk_number or self.oin):
            errors["kvk_number"] = "A Dutch organisation needs a KvK number (or an OIN)."
        if errors:
            raise ValidationError(errors)

    def transition_to(self, status: str) -> None:
        """Move to ``status`` or raise InvalidTransition; the caller saves."""
        from authserver.errors import InvalidTransition

        if status not in self.TRANSITIONS[self.status]:
            raise InvalidTransition(f"organisation cannot go from {self.status} to {status}")
        self.status = status


class Membership(models.Model):
    """A person's place in an organisation. A person may belong to several organisations."""

    class Role(models.TextChoices):
        OWNER = "owner", "Owner"
        ADMIN = "admin", "Administrator"
        DEVELOPER = "developer", "Developer"

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="memberships")
    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=Role.choices, default=Role.DEVELOPER)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["user", "organisation"], condition=models.Q(ended_at__isnull=True), name="one_live_membership"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} · {self.organisation} ({self.role})"

    def is_live(self, now: datetime | None = None) -> bool:
        """Not ended and not past its expiry."""
        now = now or timezone.now()
        return self.ended_at is None and (self.expires_at is None or self.expires_at > now)


class Invitation(models.Model):
    """A single-use, expiring invitation; only the hash of its token is stored."""

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=16, choices=Membership.Role.choices, default=Membership.Role.DEVELOPER)
    token_hash = models.CharField(max_length=64, unique=True, editable=False)
    invited_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    revoked_at = models.DateTimeField(null=True, blank=True)
    # Set by the lifecycle job once expires_at passed unused (onboarding.services.invitations_expire).
    expired_at = models.DateTimeField(null=True, blank=True, editable=False)

    def __str__(self) -> str:
        return f"{self.email} → {self.organisation}"

    def is_open(self, now: datetime | None = None) -> bool:
        """Usable: not accepted, revoked or expired."""
        now = now or timezone.now()
        return (
            self.accepted_at is None and self.revoked_at is None and self.expired_at is None and self.expires_at > now
        )


class KycApplication(models.Model):
    """An organisation's application to be approved (KYC), with one transition table."""

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        SUBMITTED = "submitted", "Submitted"
        IN_REVIEW = "in_review", "In review"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"
        CHANGES_REQUESTED = "changes_requested", "Changes requested"
        EXPIRED = "expired", "Expired"

    TRANSITIONS: dict[str, set[str]] = {
        Status.DRAFT: {Status.SUBMITTED, Status.EXPIRED},
        Status.SUBMITTED: {Status.IN_REVIEW},
        Status.IN_REVIEW: {Status.APPROVED, Status.REJECTED, Status.CHANGES_REQUESTED},
        Status.CHANGES_REQUESTED: {Status.SUBMITTED},
        Status.APPROVED: set(),
        Status.REJECTED: set(),
        Status.EXPIRED: set(),
    }
    # The applicant may change the application and its evidence only in these.
    EDITABLE_STATUSES = (Status.DRAFT, Status.CHANGES_REQUESTED)
    # Not decided yet: an organisation has at most one open application at a time.
    OPEN_STATUSES = (Status.DRAFT, Status.SUBMITTED, Status.IN_REVIEW, Status.CHANGES_REQUESTED)

    organisation = models.ForeignKey(Organisation, on_delete=models.CASCADE, related_name="applications")
    status = models.CharField(max_length=24, choices=Status.choices, default=Status.DRAFT)
    requested_trust_level = models.CharField(
        max_length=16, choices=Organisation.TrustLevel.choices, default=Organisation.TrustLevel.SUBSTANTIAL
    )
    motivation = models.TextField(blank=True, default="", help_text="Why the organisation needs API access")
    created_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    submitted_at = models.DateTimeField(null=True, blank=True)
    reviewer = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    decided_at = models.DateTimeField(null=True, blank=True)
    decision_reason = models.TextField(blank=True, default="")

    class Meta:
        ordering = ["-created_at"]
        verbose_name = "KYC application"
        verbose_name_plural = "KYC applications"

    def __str__(self) -> str:
        return f"KYC {self.organisation} ({self.get_status_display()})"

    @property
    def approvals_required(self) -> int:
        """Trust level high needs two different reviewers (four eyes); the others one."""
        return 2 if self.requested_trust_level == Organisation.TrustLevel.HIGH else 1

    def transition_to(self, status: str) -> None:
        from authserver.errors import InvalidTransition

        if status not in self.TRANSITIONS[self.status]:
            raise InvalidTransition(f"application cannot go from {self.status} to {status}")
        self.status = status


class KycMessage(models.Model):
    """The conversation on an application: a reviewer's question, the applicant's answer."""

    application = models.ForeignKey(KycApplication, on_delete=models.CASCADE, related_name="messages")
    author = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    from_reviewer = models.BooleanField(default=False)
    body = models.TextField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{'Reviewer' if self.from_reviewer else 'Applicant'} on {self.created_at:%Y-%m-%d %H:%M}"


class KycApproval(models.Model):
    """One admin's approval; trust level high needs two from different admins (four eyes)."""

    application = models.ForeignKey(KycApplication, on_delete=models.CASCADE, related_name="approvals")
    reviewer = models.ForeignKey(User, on_delete=models.PROTECT, related_name="+")
    note = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["application", "reviewer"], name="one_approval_per_reviewer"),
        ]

    def __str__(self) -> str:
        return f"Approval by {self.reviewer} of {self.application_id}"


class Evidence(models.Model):
    """A document attached to an application, with what was extracted from it."""

    class Kind(models.TextChoices):
        CERTIFICATE = "certificate", "X.509 certificate (PKIoverheid)"
        KVK_EXTRACT = "kvk_extract", "KvK extract (PDF)"
        EIDAS_ATTESTATION = "eidas_attestation", "eIDAS attestation"

    application = models.ForeignKey(KycApplication, on_delete=models.CASCADE, related_name="evidence")
    kind = models.CharField(max_length=24, choices=Kind.choices)
    filename = models.CharField(max_length=255)
    content_type = models.CharField(max_length=100)
    content = models.BinaryField(editable=False)
    sha256 = models.CharField(max_length=64, editable=False)
    size = models.PositiveIntegerField()
    # What was read from the document (certificate subject, serialNumber, validity, key, chain).
    extracted = models.JSONField(default=dict, blank=True)
    # Where the document disagrees with what the applicant claimed, field by field.
    mismatches = models.JSONField(default=list, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    uploaded_by = models.ForeignKey(User, null=True, on_delete=models.SET_NULL, related_name="+")
    uploaded_at = models.DateTimeField(auto_now_add=True)
    # When the warning that the certificate nears valid_until went out (sent once).
    expiry_warning_sent_at = models.DateTimeField(null=True, blank=True, editable=False)

    class Meta:
        ordering = ["uploaded_at"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.filename}"
