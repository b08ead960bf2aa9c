"""What the clients API reads and writes.

Output serializers are read-only views of the models; no credential material beyond what is
public (a public JWK, a jwks_uri, a certificate's thumbprint and subject) ever appears in
them, and a secret only in the one response that issued it. Input serializers check shape
(types, lengths, choices, which fields go together, redirect URI syntax); the services own the
domain rules (the registration policy, key and certificate checks), so the API and the portal
refuse the same things with the same messages.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from .. import policy
from ..dcr_metadata import WEB, redirect_uri_problems
from ..models import Client, ClientCredential, ClientIntake

MESSAGE_MAX_LENGTH = 10_000
URI_MAX_LENGTH = 2048
PEM_MAX_LENGTH = 20_000
MAX_REDIRECT_URIS = 20
MAX_SCOPES = 50
MAX_KEYS = 10
# RFC 6749 §3.3: scope-token = 1*NQCHAR (printable ASCII but space, " and \).
SCOPE_TOKEN = r"^[\x21\x23-\x5B\x5D-\x7E]+$"

SECRET_METHODS = (Client.AuthMethod.CLIENT_SECRET_BASIC, Client.AuthMethod.CLIENT_SECRET_POST)
# DOT stores "authorization-code"; the API speaks RFC 7591's grant type names.
GRANT_TYPE_NAMES = {
    Client.GRANT_AUTHORIZATION_CODE: policy.AUTHORIZATION_CODE,
    Client.GRANT_CLIENT_CREDENTIALS: policy.CLIENT_CREDENTIALS,
}
# Which credential kinds each token endpoint authentication method uses.
KINDS_BY_METHOD: dict[str, tuple[str, ...]] = {
    Client.AuthMethod.PRIVATE_KEY_JWT: (ClientCredential.Kind.PUBLIC_KEY, ClientCredential.Kind.JWKS_URI),
    Client.AuthMethod.CLIENT_SECRET_BASIC: (ClientCredential.Kind.SECRET,),
    Client.AuthMethod.CLIENT_SECRET_POST: (ClientCredential.Kind.SECRET,),
    Client.AuthMethod.TLS_CLIENT_AUTH: (ClientCredential.Kind.CERTIFICATE,),
    Client.AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH: (ClientCredential.Kind.CERTIFICATE,),
    Client.AuthMethod.NONE: (),
}


# ---- output -------------------------------------------------------------------------------


class SpaceSeparatedField(serializers.ListField):
    """A space-separated text column (scopes, redirect URIs) as a JSON array."""

    child = serializers.CharField()

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("read_only", True)
        super().__init__(**kwargs)

    def to_representation(self, data: Any) -> list[str]:
        return str(data or "").split()


class GrantTypeField(serializers.ChoiceField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(choices=list(policy.GRANT_TYPES), read_only=True, **kwargs)

    def to_representation(self, value: Any) -> str:
        return GRANT_TYPE_NAMES.get(value, value)


class CredentialSerializer(serializers.ModelSerializer):
    """A credential as its owners see it: never a secret nor its hash."""

    replaces: serializers.PrimaryKeyRelatedField[ClientCredential] = serializers.PrimaryKeyRelatedField(
        read_only=True, allow_null=True, help_text="The credential this one replaced in a rotation (null if none)."
    )
    public_jwk = serializers.JSONField(read_only=True, help_text="The public key (RFC 7517), for kind public_key.")

    class Meta:
        model = ClientCredential
        fields = [
            "id",
            "kind",
            "status",
            "hint",
            "kid",
            "public_jwk",
            "jwks_uri",
            "thumbprint",
            "subject_dn",
            "replaces",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "hint": {"help_text": "The last characters of a secret, or of a key id or thumbprint, for people."},
            "status": {"help_text": "expiring: in a rotation overlap, still usable until expires_at."},
        }


class IntakeSerializer(serializers.ModelSerializer):
    """The explicit-mode request an administrator reviews, and the decision."""

    requested_scopes = SpaceSeparatedField()
    granted_scopes = SpaceSeparatedField()
    justifications = serializers.DictField(child=serializers.CharField(), read_only=True)

    class Meta:
        model = ClientIntake
        fields = [
            "status",
            "purpose",
            "contact_name",
            "contact_email",
            "requested_scopes",
            "justifications",
            "policy_reason",
            "submitted_at",
            "decided_at",
            "decision_reason",
            "granted_scopes",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "policy_reason": {"help_text": "Why the registration went to review rather than being active at once."},
            "decision_reason": {"help_text": "The administrator's note, or the reason of a rejection."},
        }


class ClientSerializer(serializers.ModelSerializer):
    """A client in a list."""

    grant_type = GrantTypeField(source="authorization_grant_type", help_text="One grant type per client (OAUTH-NL).")
    scopes = SpaceSeparatedField(source="scope", help_text="The scopes granted; none while pending.")

    class Meta:
        model = Client
        fields = [
            "id",
            "client_id",
            "name",
            "status",
            "registration_mode",
            "environment",
            "grant_type",
            "token_endpoint_auth_method",
            "scopes",
            "created",
            "updated",
        ]
        read_only_fields = fields
        extra_kwargs = {
            "id": {"help_text": "The id in this API's paths."},
            "client_id": {"help_text": "The OAuth 2.0 client_id."},
        }


class ClientDetailSerializer(ClientSerializer):
    """A client with what was asked, what was decided, and its credentials."""

    requested_scopes = serializers.SerializerMethodField(help_text="The scopes asked for at registration.")
    redirect_uris = SpaceSeparatedField()
    post_logout_redirect_uris = SpaceSeparatedField()
    contacts = serializers.ListField(child=serializers.CharField(), read_only=True)
    intake = IntakeSerializer(
        read_only=True, allow_null=True, help_text="The review, for clients registered in explicit mode."
    )
    credentials = CredentialSerializer(many=True, read_only=True)

    class Meta(ClientSerializer.Meta):
        fields = [
            *ClientSerializer.Meta.fields,
            "requested_scopes",
            "redirect_uris",
            "post_logout_redirect_uris",
            "software_id",
            "software_version",
            "client_uri",
            "contacts",
            "last_used_at",
            "intake",
            "credentials",
        ]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_requested_scopes(self, client: Client) -> list[str]:
        intake = getattr(client, "intake", None)  # a missing reverse one-to-one is an AttributeError
        return intake.requested if intake is not None else client.scopes


class RegistrationSerializer(ClientDetailSerializer):
    """A client just registered: its status, the policy's reasons, and a secret, once."""

    reasons = serializers.SerializerMethodField(
        help_text="Why the client went to review (explicit mode); empty when it is active at once."
    )
    client_secret = serializers.SerializerMethodField(
        help_text="Only in this response, when the client is active, uses a secret and issue_secret was true. "
        "It is stored as a hash and cannot be shown again."
    )
    client_secret_expires_at = serializers.SerializerMethodField()

    class Meta(ClientDetailSerializer.Meta):
        fields = [*ClientDetailSerializer.Meta.fields, "reasons", "client_secret", "client_secret_expires_at"]
        read_only_fields = fields

    @extend_schema_field(serializers.ListField(child=serializers.CharField()))
    def get_reasons(self, client: Client) -> list[str]:
        return list(self.context.get("reasons", ()))

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_client_secret(self, client: Client) -> str | None:
        return self.context.get("secret")

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_client_secret_expires_at(self, client: Client) -> str | None:
        expires_at = self.context.get("secret_expires_at")
        return serializers.DateTimeField().to_representation(expires_at) if expires_at else None


class IssuedCredentialSerializer(CredentialSerializer):
    """A credential just issued; for a secret, the only response that carries it."""

    secret = serializers.SerializerMethodField(
        help_text="The client secret, for kind secret only: shown in this response and never again."
    )

    class Meta(CredentialSerializer.Meta):
        fields = [*CredentialSerializer.Meta.fields, "secret"]
        read_only_fields = fields

    @extend_schema_field(serializers.CharField(allow_null=True))
    def get_secret(self, credential: ClientCredential) -> str | None:
        return self.context.get("secret")


class RotationSerializer(serializers.Serializer):
    """The outcome of a rotation: the new credential (with a new secret, once) and those in overlap."""

    credential = IssuedCredentialSerializer(read_only=True)
    overlapping = CredentialSerializer(
        many=True,
        read_only=True,
        help_text="The credentials it replaces: expiring, usable until their expires_at (the overlap).",
    )


# ---- input --------------------------------------------------------------------------------


class RedirectUriField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(max_length=URI_MAX_LENGTH, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        value = super().to_internal_value(data)
        # The rules of RFC 7591 registration (clients.dcr_metadata), for web clients: https only.
        errors = redirect_uri_problems(value, WEB)
        if errors:
            raise serializers.ValidationError(errors, code="invalid_redirect_uri")
        return value


class ScopeNameField(serializers.RegexField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(
            SCOPE_TOKEN,
            max_length=128,
            error_messages={"invalid": "A scope name is printable ASCII without spaces, quotes or backslashes."},
            **kwargs,
        )


class JwksSerializer(serializers.Serializer):
    keys = serializers.ListField(
        child=serializers.DictField(), min_length=1, max_length=MAX_KEYS, help_text="Public JWKs (RFC 7517)."
    )


class ClientRegisterSerializer(serializers.Serializer):
    """What a member asks for; the registration policy decides the mode and the status."""

    name = serializers.CharField(max_length=255)
    grant_type = serializers.ChoiceField(
        choices=list(policy.GRANT_TYPES), help_text="Exactly one: authorization_code or client_credentials."
    )
    token_endpoint_auth_method = serializers.ChoiceField(
        choices=Client.AuthMethod.choices,
        default=Client.AuthMethod.PRIVATE_KEY_JWT,
        help_text="private_key_jwt by default (OAUTH-NL). Secrets only where the deployment allows them; "
        "none only for public authorization-code clients.",
    )
    scopes = serializers.ListField(child=ScopeNameField(), min_length=1, max_length=MAX_SCOPES)
    redirect_uris = serializers.ListField(
        child=RedirectUriField(),
        max_length=MAX_REDIRECT_URIS,
        default=list,
        help_text="https, absolute, no fragment; matched exactly. Required for authorization_code.",
    )
    post_logout_redirect_uris = serializers.ListField(
        child=RedirectUriField(), max_length=MAX_REDIRECT_URIS, default=list
    )
    environment = serializers.ChoiceField(choices=Client.Environment.choices, default=Client.Environment.PRODUCTION)
    purpose = serializers.CharField(
        max_length=MESSAGE_MAX_LENGTH, help_text="What the client is for; the reviewers read it."
    )
    contact_name = serializers.CharField(max_length=255, allow_blank=True, default="")
    contact_email = serializers.EmailField(max_length=254, allow_blank=True, default="")
    justifications = serializers.DictField(
        child=serializers.CharField(max_length=MESSAGE_MAX_LENGTH),
        default=dict,
        help_text="Scope name -> why the client needs it.",
    )
    software_id = serializers.CharField(max_length=255, allow_blank=True, default="")
    software_version = serializers.CharField(max_length=64, allow_blank=True, default="")
    client_uri = serializers.URLField(max_length=URI_MAX_LENGTH, allow_blank=True, default="")
    contacts = serializers.ListField(child=serializers.EmailField(max_length=254), max_length=10, default=list)
    jwks = JwksSerializer(required=False, help_text="private_key_jwt: the client's public keys (RFC 7591 §2).")
    jwks_uri = serializers.CharField(
        max_length=URI_MAX_LENGTH,
        required=False,
        help_text="private_key_jwt: where the client publishes its keys (https). Not together with jwks.",
    )
    certificate_pem = serializers.CharField(
        max_length=PEM_MAX_LENGTH, required=False, help_text="Mutual TLS (RFC 8705): the client certificate, PEM."
    )
    subject_dn = serializers.CharField(
        max_length=1024,
        required=False,
        help_text="tls_client_auth: the subject DN (RFC 4514) the client certificate carries.",
    )
    issue_secret = serializers.BooleanField(
        default=False,
        help_text="client_secret_basic/post: issue a secret now if the client is active at once; it is in the "
        "response, once. A pending client gets its secret after approval (POST .../credentials).",
    )

    def validate_scopes(self, value: list[str]) -> list[str]:
        return list(dict.fromkeys(value))

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        errors: dict[str, list[str]] = {}

        def refuse(field: str, message: str) -> None:
            errors.setdefault(field, []).append(message)

        grant, method = attrs["grant_type"], attrs["token_endpoint_auth_method"]
        if method == Client.AuthMethod.NONE and grant != policy.AUTHORIZATION_CODE:
            refuse("token_endpoint_auth_method", "A client-credentials client is confidential; it cannot use none.")
        if method in SECRET_METHODS and not settings.AUTHSERVER_CLIENT_SECRETS_ENABLED:
            refuse("token_endpoint_auth_method", "This deployment does not allow client secrets; use private_key_jwt.")
        if grant == policy.AUTHORIZATION_CODE and not attrs["redirect_uris"]:
            refuse("redirect_uris", "An authorization-code client needs at least one redirect URI.")
        if grant == policy.CLIENT_CREDENTIALS:
            for field in ("redirect_uris", "post_logout_redirect_uris"):
                if attrs[field]:
                    refuse(field, "A client-credentials client has no redirect URIs.")

        if "jwks" in attrs and "jwks_uri" in attrs:
            refuse("jwks_uri", "Give jwks or jwks_uri, not both (RFC 7591 §2).")
        for field in ("jwks", "jwks_uri"):
            if field in attrs and method != Client.AuthMethod.PRIVATE_KEY_JWT:
                refuse(field, f"Keys are for private_key_jwt clients; this one uses {method}.")
        for field in ("certificate_pem", "subject_dn"):
            if field in attrs and method not in Client.MTLS_METHODS:
                refuse(field, f"A certificate is for mutual-TLS clients; this one uses {method}.")
        if "certificate_pem" in attrs and "subject_dn" in attrs:
            refuse("subject_dn", "Give a certificate or a subject DN, not both.")
        if attrs["issue_secret"] and method not in SECRET_METHODS:
            refuse("issue_secret", f"Only client_secret_basic/post clients get a secret; this one uses {method}.")

        unknown = [name for name in attrs["justifications"] if name not in attrs["scopes"]]
        if unknown:
            refuse("justifications", f"Justify only requested scopes, not {', '.join(sorted(unknown))}.")
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class CredentialCreateSerializer(serializers.Serializer):
    """A new credential of the kind the client's authentication method uses."""

    MATERIAL = {
        ClientCredential.Kind.SECRET: (),
        ClientCredential.Kind.PUBLIC_KEY: ("jwk",),
        ClientCredential.Kind.JWKS_URI: ("jwks_uri",),
        ClientCredential.Kind.CERTIFICATE: ("certificate_pem", "subject_dn"),
    }

    kind = serializers.ChoiceField(
        choices=ClientCredential.Kind.choices,
        help_text="secret (client_secret_basic/post: the first one; later ones by rotation), public_key or "
        "jwks_uri (private_key_jwt), certificate (mutual TLS).",
    )
    jwk = serializers.DictField(required=False, help_text="kind public_key: a public JWK (RSA >= 2048 bits or P-256).")
    jwks_uri = serializers.CharField(max_length=URI_MAX_LENGTH, required=False, help_text="kind jwks_uri: https.")
    certificate_pem = serializers.CharField(
        max_length=PEM_MAX_LENGTH, required=False, help_text="kind certificate: the client certificate, PEM."
    )
    subject_dn = serializers.CharField(
        max_length=1024, required=False, help_text="kind certificate, tls_client_auth: instead of the certificate."
    )
    expires_at = serializers.DateTimeField(
        required=False, help_text="When the credential stops working; a secret's default is the deployment's."
    )

    def validate_expires_at(self, value: datetime) -> datetime:
        if value <= timezone.now():
            raise serializers.ValidationError("The expiry must lie in the future.")
        return value

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        allowed = self.MATERIAL[attrs["kind"]]
        given = [field for field in ("jwk", "jwks_uri", "certificate_pem", "subject_dn") if field in attrs]
        errors = {field: [f"Not used for kind {attrs['kind']}."] for field in given if field not in allowed}
        if allowed and not any(field in attrs for field in allowed):
            errors[allowed[0]] = [f"Kind {attrs['kind']} needs {' or '.join(allowed)}."]
        if len([field for field in given if field in allowed]) > 1:
            errors[allowed[-1]] = [f"Give {' or '.join(allowed)}, not both."]
        if errors:
            raise serializers.ValidationError(errors)
        return attrs


class RotateSerializer(serializers.Serializer):
    """A rotation: secret clients send nothing (or {}); others send the new key or certificate."""

    jwk = serializers.DictField(required=False, help_text="private_key_jwt: the new public JWK.")
    jwks_uri = serializers.CharField(max_length=URI_MAX_LENGTH, required=False, help_text="private_key_jwt: https.")
    certificate_pem = serializers.CharField(max_length=PEM_MAX_LENGTH, required=False, help_text="Mutual TLS.")
    subject_dn = serializers.CharField(max_length=1024, required=False, help_text="tls_client_auth.")
    overlap_seconds = serializers.IntegerField(
        min_value=0,
        max_value=90 * 24 * 3600,
        required=False,
        help_text="How long the old credentials keep working; the deployment's default when absent.",
    )

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        given = [field for field in ("jwk", "jwks_uri", "certificate_pem", "subject_dn") if field in attrs]
        if len(given) > 1:
            raise serializers.ValidationError({given[-1]: [f"Give one of {', '.join(given)}."]})
        return attrs
