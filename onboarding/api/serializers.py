"""What the onboarding API reads and writes.

Output serializers are read-only views of the models. Input serializers check shape only
(types, lengths, choices); the services own every domain rule (identifier checks, duplicates,
which status allows what), so the API and the portal refuse the same things with the same
messages.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from rest_framework import serializers

from ..models import Evidence, Invitation, KycApplication, KycMessage, Membership, Organisation

# Generous bounds for free text: the services validate the exact formats.
IDENTIFIER_MAX_LENGTH = 255
MESSAGE_MAX_LENGTH = 10_000


# ---- organisations ----------------------------------------------------------------------


class OrganisationSerializer(serializers.ModelSerializer):
    my_role = serializers.ChoiceField(
        choices=Membership.Role.choices,
        read_only=True,
        allow_null=True,
        help_text="Your role in this organisation.",
    )

    class Meta:
        model = Organisation
        fields = [
            "id",
            "name",
            "kind",
            "oin",
            "kvk_number",
            "rsin",
            "eidas_identifier",
            "country",
            "contact_name",
            "contact_email",
            "contact_phone",
            "status",
            "trust_level",
            "next_review_at",
            "created_at",
            "updated_at",
            "my_role",
        ]
        read_only_fields = fields


class OrganisationWriteSerializer(serializers.Serializer):
    """The fields a representative fills in; status and trust level are the reviewers' to set."""

    name = serializers.CharField(max_length=255, help_text="The legal name.")
    kind = serializers.ChoiceField(choices=Organisation.Kind.choices)
    oin = serializers.CharField(
        max_length=IDENTIFIER_MAX_LENGTH,
        allow_blank=True,
        required=False,
        help_text="OIN: 20 digits, a known prefix and a zero suffix. Required for government organisations.",
    )
    kvk_number = serializers.CharField(
        max_length=IDENTIFIER_MAX_LENGTH, allow_blank=True, required=False, help_text="KvK number: 8 digits."
    )
    rsin = serializers.CharField(
        max_length=IDENTIFIER_MAX_LENGTH, allow_blank=True, required=False, help_text="RSIN: 9 digits, 11-test."
    )
    eidas_identifier = serializers.CharField(
        max_length=IDENTIFIER_MAX_LENGTH,
        allow_blank=True,
        required=False,
        help_text="eIDAS legal identifier (e.g. NL/DE/123456789), for EU organisations.",
    )
    country = serializers.CharField(min_length=2, max_length=2, required=False, help_text="ISO 3166-1 alpha-2.")
    contact_name = serializers.CharField(max_length=255, allow_blank=True, required=False)
    contact_email = serializers.EmailField(max_length=254, allow_blank=True, required=False)
    contact_phone = serializers.CharField(max_length=32, allow_blank=True, required=False)

    def validate_country(self, value: str) -> str:
        return value.upper()


# ---- members and invitations ------------------------------------------------------------


class MemberSerializer(serializers.ModelSerializer):
    username = serializers.CharField(source="user.username", read_only=True)
    email = serializers.EmailField(source="user.email", read_only=True)
    name = serializers.SerializerMethodField()

    class Meta:
        model = Membership
        fields = ["id", "username", "email", "name", "role", "created_at", "expires_at"]
        read_only_fields = fields

    def get_name(self, membership: Membership) -> str:
        return membership.user.get_full_name()


class InvitationCreateSerializer(serializers.Serializer):
    email = serializers.EmailField(max_length=254)
    role = serializers.ChoiceField(choices=Membership.Role.choices, default=Membership.Role.DEVELOPER)


class InvitationSerializer(serializers.ModelSerializer):
    """An invitation as its inviter sees it: never the token, which only the invitee's email carries."""

    class Meta:
        model = Invitation
        fields = ["id", "email", "role", "created_at", "expires_at"]
        read_only_fields = fields


class InvitationAcceptSerializer(serializers.Serializer):
    token = serializers.CharField(max_length=512, help_text="The token from the invitation email.")


class MyMembershipSerializer(serializers.ModelSerializer):
    """The membership an accepted invitation gave you."""

    organisation: serializers.PrimaryKeyRelatedField[Organisation] = serializers.PrimaryKeyRelatedField(read_only=True)
    organisation_name = serializers.CharField(source="organisation.name", read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "organisation", "organisation_name", "role", "created_at", "expires_at"]
        read_only_fields = fields


# ---- applications, evidence, messages ---------------------------------------------------


class ApplicationSerializer(serializers.ModelSerializer):
    organisation: serializers.PrimaryKeyRelatedField[Organisation] = serializers.PrimaryKeyRelatedField(read_only=True)

    class Meta:
        model = KycApplication
        fields = [
            "id",
            "organisation",
            "status",
            "requested_trust_level",
            "motivation",
            "created_at",
            "updated_at",
            "submitted_at",
            "decided_at",
            "decision_reason",
        ]
        read_only_fields = fields


class ApplicationWriteSerializer(serializers.Serializer):
    requested_trust_level = serializers.ChoiceField(choices=Organisation.TrustLevel.choices, required=False)
    motivation = serializers.CharField(max_length=MESSAGE_MAX_LENGTH, allow_blank=True, required=False)


class EvidenceSerializer(serializers.ModelSerializer):
    extracted = serializers.JSONField(read_only=True, help_text="What was read from the document.")
    mismatches = serializers.JSONField(
        read_only=True,
        help_text="Where the document disagrees with what the organisation claims: field, claimed, found.",
    )

    class Meta:
        model = Evidence
        fields = [
            "id",
            "kind",
            "filename",
            "content_type",
            "size",
            "sha256",
            "extracted",
            "mismatches",
            "valid_until",
            "uploaded_at",
        ]
        read_only_fields = fields


class EvidenceUploadSerializer(serializers.Serializer):
    kind = serializers.ChoiceField(choices=Evidence.Kind.choices)
    file = serializers.FileField(
        max_length=255,
        allow_empty_file=False,
        help_text="A certificate (PEM or DER), a KvK extract (PDF) or an eIDAS attestation (JSON or PDF).",
    )

    def validate_file(self, value: Any) -> Any:
        # Refused before it is read into memory; the service checks the bytes again.
        limit = int(settings.ONBOARDING_MAX_UPLOAD_BYTES)
        if value.size is not None and value.size > limit:
            raise serializers.ValidationError(
                f"The file is {value.size:,} bytes; the limit is {limit:,} bytes.", code="too_large"
            )
        return value


class MessageSerializer(serializers.ModelSerializer):
    author_name = serializers.SerializerMethodField(help_text="Reviewers appear as 'Reviewer'.")

    class Meta:
        model = KycMessage
        fields = ["id", "from_reviewer", "author_name", "body", "created_at"]
        read_only_fields = fields

    def get_author_name(self, message: KycMessage) -> str:
        if message.from_reviewer or message.author is None:
            return "Reviewer" if message.from_reviewer else ""
        return message.author.get_full_name() or message.author.get_username()


class MessageCreateSerializer(serializers.Serializer):
    body = serializers.CharField(max_length=MESSAGE_MAX_LENGTH)
