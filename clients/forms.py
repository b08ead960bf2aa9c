"""Forms of the portal's client pages (clients/views.py).

Forms check input, field by field, so a bad redirect URI, JWK or certificate is shown next to
its input; the services (clients.services) decide everything else and change state. The key
checks here are the services' own (clients.keys.validate_public_jwk, the certificate rules of
client_credential_add_certificate), run early for the message's sake; the services run them
again.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from cryptography import x509
from django import forms
from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils import timezone

from authserver.errors import DomainError
from authserver.models import Scope

from .dcr_metadata import redirect_uri_problems
from .keys import validate_public_jwk
from .models import Client, ClientCredential

GRANT_TYPE_CHOICES = (
    ("authorization_code", "Authorization code: people sign in and consent (web or native apps)"),
    ("client_credentials", "Client credentials: a system calls an API on its own behalf"),
)
SECRET_METHODS = (Client.AuthMethod.CLIENT_SECRET_BASIC, Client.AuthMethod.CLIENT_SECRET_POST)
KEY_FIELDS = ("jwk", "jwks_uri", "certificate_pem", "subject_dn")
_MAX_REDIRECT_URIS = 20
_MAX_PEM_CHARS = 20_000
_MAX_JWK_CHARS = 20_000


def auth_method_choices() -> list[tuple[str, str]]:
    """The methods this deployment offers; secrets only where it allows them (KP-AC)."""
    labels = {
        Client.AuthMethod.PRIVATE_KEY_JWT: "private_key_jwt: a JWT signed with your own key (RFC 7523; recommended)",
        Client.AuthMethod.TLS_CLIENT_AUTH: "tls_client_auth: mutual TLS, PKIoverheid certificate (RFC 8705)",
        Client.AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH: "self_signed_tls_client_auth: mutual TLS, self-signed",
        Client.AuthMethod.CLIENT_SECRET_BASIC: "client_secret_basic: a client secret in the Authorization header",
        Client.AuthMethod.CLIENT_SECRET_POST: "client_secret_post: a client secret in the request body",
        Client.AuthMethod.NONE: "none: a public client (native or browser app, authorization code with PKCE only)",
    }
    methods = [
        Client.AuthMethod.PRIVATE_KEY_JWT,
        Client.AuthMethod.TLS_CLIENT_AUTH,
        Client.AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH,
    ]
    if settings.AUTHSERVER_CLIENT_SECRETS_ENABLED:
        methods += list(SECRET_METHODS)
    methods.append(Client.AuthMethod.NONE)
    return [(str(method), labels[method]) for method in methods]


def parse_jwk(text: str) -> dict[str, Any]:
    """One public JWK from JSON text (a JWK, or a JWKS holding exactly one key); else ValidationError."""
    if len(text) > _MAX_JWK_CHARS:
        raise ValidationError("That is too long for a public key.", code="too_long")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValidationError(f"This is not valid JSON: {exc.msg} (line {exc.lineno}).", code="json") from exc
    if isinstance(data, dict) and isinstance(data.get("keys"), list):
        if len(data["keys"]) != 1:
            raise ValidationError("Paste one key (a JWK), or a JWKS with exactly one key.", code="keys")
        data = data["keys"][0]
    try:
        return validate_public_jwk(data)
    except DomainError as exc:
        raise ValidationError(f"Not an acceptable key: {exc}.", code="jwk") from exc


def parse_certificate(text: str) -> str:
    """A PEM certificate that is valid now, without private key material; else ValidationError."""
    if len(text) > _MAX_PEM_CHARS:
        raise ValidationError("That is too long for one certificate.", code="too_long")
    if "PRIVATE KEY" in text:
        raise ValidationError("Paste the certificate only, never a private key.", code="private_key")
    try:
        certificate = x509.load_pem_x509_certificate(text.encode())
    except ValueError as exc:
        raise ValidationError(
            "This is not a PEM certificate (-----BEGIN CERTIFICATE----- …).", code="certificate"
        ) from exc
    now = timezone.now()
    if certificate.not_valid_after_utc <= now:
        raise ValidationError(
            f"The certificate expired on {certificate.not_valid_after_utc:%d %B %Y}.", code="certificate_expired"
        )
    if certificate.not_valid_before_utc > now:
        raise ValidationError(
            f"The certificate is not valid before {certificate.not_valid_before_utc:%d %B %Y}.", code="not_yet_valid"
        )
    return text.strip()


class KeyMaterialMixin(forms.Form):
    """The credential a key-based client registers: a JWK, a jwks_uri, a certificate or a subject DN."""

    jwk = forms.CharField(
        label="Public key (JWK)",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text='For private_key_jwt: the public half of your signing key as JSON, e.g. {"kty": "RSA", …}. '
        "RSA at least 2048 bits (RS256/PS256) or EC P-256 (ES256). Never paste a private key.",
    )
    jwks_uri = forms.URLField(
        label="Or: JWKS URI",
        required=False,
        max_length=2048,
        assume_scheme="https",
        help_text="For private_key_jwt: an https address where your public keys are published. "
        "Give a key or a JWKS URI, not both.",
    )
    certificate_pem = forms.CharField(
        label="Client certificate (PEM)",
        required=False,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 6, "spellcheck": "false", "autocomplete": "off"}),
        help_text="For mutual TLS: the certificate your client presents, -----BEGIN CERTIFICATE----- …",
    )
    subject_dn = forms.CharField(
        label="Or: certificate subject DN",
        required=False,
        max_length=1024,
        help_text="For tls_client_auth only: the subject your PKIoverheid certificate carries, "
        "e.g. CN=api.example.nl,O=Gemeente Voorbeeld,serialNumber=00000001…,C=NL.",
    )

    def clean_jwk(self) -> dict[str, Any] | None:
        text = self.cleaned_data.get("jwk", "")
        return parse_jwk(text) if text else None

    def clean_jwks_uri(self) -> str:
        uri = self.cleaned_data.get("jwks_uri", "")
        if uri and urlsplit(uri).scheme.lower() != "https":
            raise ValidationError("A JWKS URI must use https.", code="https")
        if uri and "#" in uri:
            raise ValidationError("A JWKS URI may not have a fragment.", code="fragment")
        return uri

    def clean_certificate_pem(self) -> str:
        text = self.cleaned_data.get("certificate_pem", "")
        return parse_certificate(text) if text else ""

    def clean_key_material(self, auth_method: str) -> None:
        """Check that the material given is what ``auth_method`` needs, exactly one kind of it."""
        given = [name for name in KEY_FIELDS if self.cleaned_data.get(name)]
        # Fields that failed their own check are not in cleaned_data but were still given.
        given += [name for name in KEY_FIELDS if name in self.errors and name not in given]
        needed: tuple[str, ...]
        if auth_method == Client.AuthMethod.PRIVATE_KEY_JWT:
            needed = ("jwk", "jwks_uri")
            missing = "Give the client's public key (JWK) or a JWKS URI."
        elif auth_method == Client.AuthMethod.TLS_CLIENT_AUTH:
            needed = ("certificate_pem", "subject_dn")
            missing = "Give the client's certificate or its subject DN."
        elif auth_method == Client.AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH:
            needed = ("certificate_pem",)
            missing = "Give the client's self-signed certificate."
        else:
            needed = ()
            missing = ""
        for name in given:
            if name not in needed:
                self.add_error(name, f"Not used with {auth_method}; leave it empty.")
        usable = [name for name in given if name in needed]
        if needed and not usable:
            self.add_error(needed[0], missing)
        elif len(usable) > 1:
            # RFC 7591 §2: jwks and jwks_uri never both; one certificate or one DN.
            self.add_error(usable[1], f"Give only one of: {', '.join(str(self.fields[n].label) for n in needed)}.")

    def key_material(self) -> dict[str, Any]:
        """The material as service keyword arguments (jwk, jwks_uri, certificate_pem, subject_dn)."""
        return {name: self.cleaned_data[name] for name in KEY_FIELDS if self.cleaned_data.get(name)}


@dataclass(frozen=True)
class ScopeRow:
    """One row of the scope table: the catalogue entry, its checkbox and its justification field."""

    scope: Scope
    checkbox: Any
    justification: forms.BoundField


class ClientRegistrationForm(KeyMaterialMixin):
    """Register a client for an organisation; clients.services.client_register decides the mode."""

    name = forms.CharField(
        label="Name",
        max_length=255,
        help_text="Shown to people on the consent screen and to the administrators.",
    )
    grant_type = forms.ChoiceField(
        label="Grant type",
        choices=GRANT_TYPE_CHOICES,
        widget=forms.RadioSelect,
        help_text="One grant type per client (OAUTH-NL §3.1.1).",
    )
    auth_method = forms.ChoiceField(
        label="How the client authenticates",
        choices=(),
        initial=Client.AuthMethod.PRIVATE_KEY_JWT,
        widget=forms.RadioSelect,
    )
    application_type = forms.ChoiceField(
        label="Kind of application",
        choices=(
            (Client.ApplicationType.WEB, "Web application or server: https redirect URIs only"),
            (
                Client.ApplicationType.NATIVE,
                "Native (desktop or mobile) app: may also redirect to http://127.0.0.1 or its own scheme",
            ),
        ),
        initial=Client.ApplicationType.WEB,
        widget=forms.RadioSelect,
        help_text="Authorization code only. A native app cannot keep a secret (RFC 8252 §8.5).",
    )
    redirect_uris = forms.CharField(
        label="Redirect URIs",
        required=False,
        widget=forms.Textarea(attrs={"rows": 3, "spellcheck": "false"}),
        help_text="Authorization code only: one per line, matched exactly. https; a native app may also use "
        "http://127.0.0.1:port/… or its own reversed-domain scheme (nl.example.app:/callback).",
    )
    environment = forms.ChoiceField(
        label="Environment", choices=Client.Environment.choices, initial=Client.Environment.TEST
    )
    scopes = forms.MultipleChoiceField(
        label="Scopes", choices=(), widget=forms.CheckboxSelectMultiple, error_messages={"required": "Choose a scope."}
    )
    purpose = forms.CharField(
        label="Purpose",
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="What the client does with the API, for the administrators who review it.",
    )
    contact_name = forms.CharField(label="Contact name", max_length=255, required=False)
    contact_email = forms.EmailField(
        label="Contact email",
        required=False,
        help_text="Who the administrators and the expiry reminders reach about this client.",
    )

    JUSTIFICATION_PREFIX = "justification__"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.catalogue = list(Scope.objects.order_by("name"))
        cast(forms.ChoiceField, self.fields["auth_method"]).choices = auth_method_choices()
        cast(forms.ChoiceField, self.fields["scopes"]).choices = [(scope.name, scope.name) for scope in self.catalogue]
        for scope in self.catalogue:
            self.fields[self.JUSTIFICATION_PREFIX + scope.name] = forms.CharField(
                label=f"Why the client needs {scope.name}",
                required=False,
                max_length=2000,
                widget=forms.Textarea(attrs={"rows": 2}),
            )
        # Rendered in the scope table (scope_rows), not in the list of plain fields.
        self.table_fields = {"scopes", *(self.JUSTIFICATION_PREFIX + scope.name for scope in self.catalogue)}

    def scope_rows(self) -> list[ScopeRow]:
        checkboxes = {widget.data["value"]: widget for widget in self["scopes"]}
        return [
            ScopeRow(
                scope=scope, checkbox=checkboxes[scope.name], justification=self[self.JUSTIFICATION_PREFIX + scope.name]
            )
            for scope in self.catalogue
        ]

    def plain_fields(self, *names: str) -> list[forms.BoundField]:
        return [self[name] for name in names]

    def clean_name(self) -> str:
        name = self.cleaned_data["name"].strip()
        if not name:
            raise ValidationError("Give the client a name.", code="required")
        return name

    def clean_redirect_uris(self) -> list[str]:
        lines = [line.strip() for line in self.cleaned_data.get("redirect_uris", "").splitlines()]
        uris = list(dict.fromkeys(line for line in lines if line))
        if len(uris) > _MAX_REDIRECT_URIS:
            raise ValidationError(f"Register at most {_MAX_REDIRECT_URIS} redirect URIs.", code="too_many")
        return uris

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        grant_type = cleaned.get("grant_type")
        auth_method = cleaned.get("auth_method")
        application_type = cleaned.get("application_type") or Client.ApplicationType.WEB
        uris: list[str] = cleaned.get("redirect_uris") or []
        if grant_type == "client_credentials":
            if uris:
                self.add_error("redirect_uris", "A client-credentials client has no redirect URIs; leave it empty.")
            if auth_method == Client.AuthMethod.NONE:
                self.add_error("auth_method", "A client-credentials client is confidential: choose a key or mTLS.")
            if application_type == Client.ApplicationType.NATIVE:
                self.add_error("application_type", "A client-credentials client is a server, not a native app.")
        elif grant_type == "authorization_code":
            if not uris and "redirect_uris" not in self.errors:
                self.add_error("redirect_uris", "An authorization-code client needs at least one redirect URI.")
            # The rules of RFC 7591 registration and of the model (clients.dcr_metadata).
            for uri in uris:
                for problem in redirect_uri_problems(uri, application_type):
                    self.add_error("redirect_uris", problem)
        if application_type == Client.ApplicationType.NATIVE and auth_method in SECRET_METHODS:
            self.add_error("auth_method", "A native app cannot keep a client secret (RFC 8252 §8.5).")
        if auth_method:
            self.clean_key_material(auth_method)
        return cleaned

    def justifications(self) -> dict[str, str]:
        """Scope name -> why, for the scopes asked for."""
        return {
            name: text
            for name in self.cleaned_data.get("scopes", [])
            if (text := self.cleaned_data.get(self.JUSTIFICATION_PREFIX + name, "").strip())
        }


class CredentialForm(KeyMaterialMixin):
    """Add a credential to, or rotate one of, a key-based client (private_key_jwt or mutual TLS)."""

    def __init__(self, *args: Any, client: Client, rotating: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.client = client
        self.rotating = rotating
        method = client.token_endpoint_auth_method
        keep: tuple[str, ...]
        if method == Client.AuthMethod.PRIVATE_KEY_JWT:
            keep = ("jwk", "jwks_uri")
        elif method == Client.AuthMethod.TLS_CLIENT_AUTH:
            keep = ("certificate_pem", "subject_dn")
        elif method == Client.AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH:
            keep = ("certificate_pem",)
        else:
            keep = ()
        for name in KEY_FIELDS:
            if name not in keep:
                del self.fields[name]

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or self.cleaned_data
        self.clean_key_material(self.client.token_endpoint_auth_method)
        if self.rotating:
            return cleaned
        # RFC 7591 §2: jwks or a jwks_uri, never both (the services' rule, checked here before
        # any jwks_uri is resolved or fetched). A rotation may switch: the old ones only overlap.
        active = self.client.credentials.filter(status=ClientCredential.Status.ACTIVE).exclude(
            expires_at__lte=timezone.now()
        )
        if cleaned.get("jwk") and active.filter(kind=ClientCredential.Kind.JWKS_URI).exists():
            self.add_error("jwk", "This client publishes its keys at a JWKS URI; rotate to a key instead.")
        if cleaned.get("jwks_uri") and active.filter(kind=ClientCredential.Kind.PUBLIC_KEY).exists():
            self.add_error("jwks_uri", "This client has registered keys (JWK); rotate to a JWKS URI instead.")
        return cleaned


class ClientRevokeForm(forms.Form):
    confirm = forms.BooleanField(
        label="I understand: the client, all its credentials and all its tokens stop working at once, for good.",
        error_messages={"required": "Tick the box to confirm."},
    )
