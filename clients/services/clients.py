"""Client registration services (STYLE.md §1): create clients, issue and revoke credentials."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model, revoke_access_token

from authserver import mtls
from authserver.audit import audit_record
from authserver.errors import DomainError
from authserver.oauth.client_auth import generate_client_secret, hash_client_secret
from onboarding.models import Organisation

from .. import jwks_uri as remote
from ..keys import validate_public_jwk
from ..models import Client, ClientCredential

GRANT_TYPES = {
    "authorization_code": Client.GRANT_AUTHORIZATION_CODE,
    "client_credentials": Client.GRANT_CLIENT_CREDENTIALS,
}


@dataclass(frozen=True)
class IssuedSecret:
    """A secret as issued: the clear value exists only here, once."""

    credential: ClientCredential
    secret: str


def _validation_message(exc: ValidationError) -> str:
    if hasattr(exc, "message_dict"):
        return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in exc.message_dict.items())
    return " ".join(exc.messages)


# A client in one of these states gets no new credential: it can never use one again.
CREDENTIAL_FINAL_STATUSES = (Client.Status.REVOKED, Client.Status.REJECTED, Client.Status.EXPIRED)


def _refuse_final(client: Client) -> None:
    if client.status in CREDENTIAL_FINAL_STATUSES:
        raise DomainError(f"client {client.client_id} is {client.status}; it gets no new credential")


@transaction.atomic
def client_create(
    *,
    organisation: Organisation,
    name: str,
    grant_type: str,
    scopes: list[str] | None = None,
    redirect_uris: list[str] | None = None,
    post_logout_redirect_uris: list[str] | None = None,
    auth_method: str | None = None,
    client_id: str | None = None,
    registration_mode: str = Client.RegistrationMode.MANUAL,
    environment: str = Client.Environment.PRODUCTION,
    is_resource_server: bool = False,
    subject_type: str = Client.SubjectType.PUBLIC,
    status: str = Client.Status.ACTIVE,
    metadata: dict[str, Any] | None = None,
    actor: Any = None,
) -> Client:
    """Register a client with one grant type (OAUTH-NL §3.1.1). Defaults to private_key_jwt."""
    if grant_type not in GRANT_TYPES:
        raise DomainError(f"grant type must be one of {', '.join(GRANT_TYPES)} (one per client)")
    auth_method = auth_method or Client.AuthMethod.PRIVATE_KEY_JWT
    if auth_method not in Client.AuthMethod.values:
        raise DomainError(f"auth method must be one of {', '.join(Client.AuthMethod.values)}")
    if auth_method in (Client.AuthMethod.CLIENT_SECRET_BASIC, Client.AuthMethod.CLIENT_SECRET_POST) and (
        not settings.AUTHSERVER_CLIENT_SECRETS_ENABLED
    ):
        raise DomainError("this deployment does not allow client secrets (AUTHSERVER_CLIENT_SECRETS_ENABLED)")
    if client_id is not None and Client.objects.filter(client_id=client_id).exists():
        raise DomainError(f"client id {client_id!r} is taken")
    client = Client(
        organisation=organisation,
        name=name,
        authorization_grant_type=GRANT_TYPES[grant_type],
        client_type=Client.CLIENT_PUBLIC if auth_method == Client.AuthMethod.NONE else Client.CLIENT_CONFIDENTIAL,
        token_endpoint_auth_method=auth_method,
        scope=" ".join(dict.fromkeys(scopes or [])),
        redirect_uris=" ".join(redirect_uris or []),
        post_logout_redirect_uris=" ".join(post_logout_redirect_uris or []),
        registration_mode=registration_mode,
        environment=environment,
        is_resource_server=is_resource_server,
        subject_type=subject_type,
        status=status,
        # RFC 7591 metadata and provenance: software_id, software_version, client_uri, contacts,
        # software_statement_issuer, allowlist_entry, created_by.
        **(metadata or {}),
    )
    if client_id is not None:
        client.client_id = client_id
    try:
        client.full_clean(exclude=["user"])
    except ValidationError as exc:
        raise DomainError(_validation_message(exc)) from exc
    client.save()
    audit_record(
        "client.created",
        actor=actor,
        target=client,
        organisation=organisation,
        data={
            "grant_type": grant_type,
            "auth_method": auth_method,
            "scopes": client.scopes,
            "mode": registration_mode,
            "status": status,
        },
    )
    return client


@transaction.atomic
def client_credential_issue_secret(
    *, client: Client, secret: str | None = None, expires_at: datetime | None = None, actor: Any = None
) -> IssuedSecret:
    """Issue a client secret; only its keyed hash is stored, the clear value is returned once."""
    _refuse_final(client)
    if not client.uses_client_secret:
        raise DomainError(
            f"client {client.client_id} authenticates with {client.token_endpoint_auth_method}, not a secret"
        )
    if not settings.AUTHSERVER_CLIENT_SECRETS_ENABLED:
        # The token endpoint refuses secrets then (validator), so a new one could never work.
        raise DomainError("this deployment does not allow client secrets (AUTHSERVER_CLIENT_SECRETS_ENABLED)")
    if secret is not None and len(secret) < 32:
        raise DomainError("a given client secret must be at least 32 characters (high entropy)")
    secret = secret or generate_client_secret()
    if expires_at is None:
        expires_at = timezone.now() + timedelta(days=settings.AUTHSERVER_CLIENT_SECRET_LIFETIME_DAYS)
    credential = ClientCredential.objects.create(
        client=client,
        kind=ClientCredential.Kind.SECRET,
        secret_hash=hash_client_secret(secret),
        hint=secret[-4:],
        expires_at=expires_at,
    )
    audit_record(
        "client.credential.issued",
        actor=actor,
        target=credential,
        organisation=client.organisation,
        data={"client_id": client.client_id, "kind": "secret"},
    )
    return IssuedSecret(credential=credential, secret=secret)


@transaction.atomic
def client_credential_add_public_key(
    *, client: Client, jwk: dict[str, Any], expires_at: datetime | None = None, actor: Any = None
) -> ClientCredential:
    """Register a public key for private_key_jwt (RFC 7523); private members are refused."""
    _refuse_final(client)
    if client.token_endpoint_auth_method != Client.AuthMethod.PRIVATE_KEY_JWT:
        raise DomainError(f"client {client.client_id} does not authenticate with private_key_jwt")
    public = validate_public_jwk(jwk)
    if _key_kinds_conflict(client, ClientCredential.Kind.PUBLIC_KEY):
        raise DomainError("the client publishes its keys at a jwks_uri; jwks and jwks_uri are never both used")
    if ClientCredential.objects.filter(
        client=client,
        kind=ClientCredential.Kind.PUBLIC_KEY,
        kid=public["kid"],
        status__in=ClientCredential.USABLE_STATUSES,
    ).exists():
        raise DomainError(f"the client has a usable key with kid {public['kid']!r} already")
    credential = ClientCredential.objects.create(
        client=client,
        kind=ClientCredential.Kind.PUBLIC_KEY,
        public_jwk=public,
        kid=public["kid"],
        hint=public["kid"][-8:],
        expires_at=expires_at,
    )
    audit_record(
        "client.credential.issued",
        actor=actor,
        target=credential,
        organisation=client.organisation,
        data={"client_id": client.client_id, "kind": "public_key", "kid": public["kid"]},
    )
    return credential


def _canonical_dn(subject_dn: str) -> str:
    try:
        name = x509.Name.from_rfc4514_string(subject_dn.strip())
    except ValueError as exc:
        raise DomainError("the subject DN is not an RFC 4514 distinguished name (CN=...,O=...,C=NL)") from exc
    if not len(name):
        raise DomainError("the subject DN is empty")
    return name.rfc4514_string()


@transaction.atomic
def client_credential_add_certificate(
    *,
    client: Client,
    certificate_pem: str | bytes | None = None,
    subject_dn: str | None = None,
    expires_at: datetime | None = None,
    actor: Any = None,
) -> ClientCredential:
    """Register what a mutual-TLS client (RFC 8705 §2) must present.

    ``self_signed_tls_client_auth``: the certificate itself; the one presented must have the
    same x5t#S256 thumbprint. ``tls_client_auth``: the subject DN (RFC 8705 §2.1.2,
    ``tls_client_auth_subject_dn``) or the certificate; the one presented must chain to the
    proxy's trust store and carry that DN, or be that certificate.
    """
    _refuse_final(client)
    if not client.uses_mtls:
        raise DomainError(f"client {client.client_id} does not authenticate with mutual TLS")
    if bool(certificate_pem) == bool(subject_dn):
        raise DomainError("give either a certificate or a subject DN")
    if subject_dn and client.token_endpoint_auth_method != Client.AuthMethod.TLS_CLIENT_AUTH:
        raise DomainError("self_signed_tls_client_auth registers a certificate, not a subject DN")
    fields: dict[str, Any] = {}
    if certificate_pem:
        pem = certificate_pem.encode() if isinstance(certificate_pem, str) else certificate_pem
        if b"PRIVATE KEY" in pem:
            raise DomainError("register the certificate only, never a private key")
        try:
            certificate = x509.load_pem_x509_certificate(pem)
        except ValueError as exc:
            raise DomainError(f"not a PEM certificate: {exc}") from exc
        if certificate.not_valid_after_utc <= timezone.now():
            raise DomainError("the certificate has expired")
        print_ = mtls.thumbprint(certificate)
        if ClientCredential.objects.filter(
            client=client,
            kind=ClientCredential.Kind.CERTIFICATE,
            thumbprint=print_,
            status__in=ClientCredential.USABLE_STATUSES,
        ).exists():
            raise DomainError("the client has this certificate registered already")
        pem_text = certificate.public_bytes(serialization.Encoding.PEM).decode("ascii")
        fields = {"certificate_pem": pem_text, "thumbprint": print_, "hint": print_[-8:]}
        expires_at = expires_at or certificate.not_valid_after_utc
        data = {"thumbprint": print_, "subject_dn": mtls.subject_dn(certificate)}
    else:
        dn = _canonical_dn(subject_dn or "")
        fields = {"subject_dn": dn, "hint": dn[:8]}
        data = {"subject_dn": dn}
    credential = ClientCredential.objects.create(
        client=client, kind=ClientCredential.Kind.CERTIFICATE, expires_at=expires_at, **fields
    )
    audit_record(
        "client.credential.issued",
        actor=actor,
        target=credential,
        organisation=client.organisation,
        data={"client_id": client.client_id, "kind": "certificate", **data},
    )
    return credential


@transaction.atomic
def client_credential_revoke(*, credential_id: int, actor: Any = None) -> ClientCredential:
    """Revoke one credential at once; it stops working on the next request."""
    credential = (
        ClientCredential.objects.select_for_update().select_related("client__organisation").get(pk=credential_id)
    )
    credential.transition_to(ClientCredential.Status.REVOKED)
    credential.revoked_at = timezone.now()
    credential.save(update_fields=["status", "revoked_at"])
    audit_record(
        "client.credential.revoked",
        actor=actor,
        target=credential,
        organisation=credential.client.organisation,
        data={"client_id": credential.client.client_id, "kind": credential.kind},
    )
    return credential


@transaction.atomic
def client_revoke(*, client_id: int, actor: Any = None) -> Client:
    """Revoke a client: its credentials and every token it holds stop working at once."""
    client = (
        Client.objects.select_for_update(no_key=True, of=("self",)).select_related("organisation").get(pk=client_id)
    )
    client.transition_to(Client.Status.REVOKED)
    client.save(update_fields=["status", "updated"])
    now = timezone.now()
    client.credentials.filter(status__in=(*ClientCredential.USABLE_STATUSES, ClientCredential.Status.EXPIRED)).update(
        status=ClientCredential.Status.REVOKED, revoked_at=now
    )
    for token in get_access_token_model().objects.filter(application=client):
        revoke_access_token(token)
    get_refresh_token_model().objects.filter(application=client, revoked__isnull=True).update(revoked=now)
    audit_record("client.revoked", actor=actor, target=client, organisation=client.organisation)
    return client


def _revoke_client_tokens(client: Client) -> int:
    """Revoke every access and refresh token of a client and drop its pending codes; returns how many."""
    from oauth2_provider.models import get_grant_model

    now = timezone.now()
    access_tokens = list(get_access_token_model().objects.filter(application=client))
    for token in access_tokens:
        revoke_access_token(token)
    refreshed = get_refresh_token_model().objects.filter(application=client, revoked__isnull=True).update(revoked=now)
    get_grant_model().objects.filter(application=client).delete()
    return len(access_tokens) + refreshed


@transaction.atomic
def client_suspend(*, client_id: int, actor: Any = None, reason: str = "") -> Client:
    """Suspend an active client: it gets no tokens and the ones it holds are revoked. Credentials stay."""
    client = (
        Client.objects.select_for_update(no_key=True, of=("self",)).select_related("organisation").get(pk=client_id)
    )
    client.transition_to(Client.Status.SUSPENDED)
    client.save(update_fields=["status", "updated"])
    revoked = _revoke_client_tokens(client)
    audit_record(
        "client.suspended",
        actor=actor,
        target=client,
        organisation=client.organisation,
        data={"client_id": client.client_id, "reason": reason, "revoked_count": revoked},
    )
    return client


@transaction.atomic
def clients_deactivate_for_organisation(
    *, organisation_id: int, actor: Any = None, reason: str = "", revoke: bool = False
) -> int:
    """An organisation stopped being active: suspend its active clients (``revoke``: revoke all of them).

    Called from clients.receivers on onboarding's organisation_deactivated signal. Nothing here
    runs on reactivation, so a suspended client stays suspended until someone restores it.
    """
    statuses = (Client.Status.ACTIVE, Client.Status.SUSPENDED) if revoke else (Client.Status.ACTIVE,)
    client_ids = list(
        Client.objects.filter(organisation_id=organisation_id, status__in=statuses)
        .order_by("pk")
        .values_list("pk", flat=True)
    )
    for client_id in client_ids:
        if revoke:
            client_revoke(client_id=client_id, actor=actor)
        else:
            client_suspend(client_id=client_id, actor=actor, reason=reason)
    return len(client_ids)


def expires_in_days(days: int | None) -> datetime | None:
    return timezone.now() + timedelta(days=days) if days else None


@transaction.atomic
def client_reinstate(*, client_id: int, actor: Any, reason: str = "") -> Client:
    """Make a suspended client active again; its credentials work again, its revoked tokens do not."""
    client = (
        Client.objects.select_for_update(no_key=True, of=("self",)).select_related("organisation").get(pk=client_id)
    )
    if client.status == Client.Status.SUSPENDED and not client.organisation.is_active:
        raise DomainError(f"the organisation is {client.organisation.status}; reinstate the organisation first")
    client.transition_to(Client.Status.ACTIVE)
    client.save(update_fields=["status", "updated"])
    audit_record(
        "client.reinstated",
        actor=actor,
        target=client,
        organisation=client.organisation,
        data={"client_id": client.client_id, "reason": reason},
    )
    return client


# ---- jwks_uri (RFC 7591 §2) ------------------------------------------------------------------

_OTHER_KEY_KIND: dict[str, str] = {
    ClientCredential.Kind.PUBLIC_KEY: ClientCredential.Kind.JWKS_URI,
    ClientCredential.Kind.JWKS_URI: ClientCredential.Kind.PUBLIC_KEY,
}


def _key_kinds_conflict(client: Client, kind: str) -> bool:
    """RFC 7591 §2: keys come as ``jwks`` or as ``jwks_uri``, never both.

    True when adding a credential of ``kind`` would make both kinds usable outside a rotation:
    the client has an *active* credential of the other kind. An ``expiring`` one is a rotation
    overlap (docs/decisions/0004), so a rotation from jwks to jwks_uri (or back) marks the old
    credentials expiring first and then adds the new kind.
    """
    other = _OTHER_KEY_KIND.get(kind)
    if other is None:
        return False
    return (
        ClientCredential.objects.filter(client=client, kind=other, status=ClientCredential.Status.ACTIVE)
        .exclude(expires_at__lte=timezone.now())
        .exists()
    )


def client_credential_add_jwks_uri(
    *, client: Client, jwks_uri: str, expires_at: datetime | None = None, actor: Any = None
) -> ClientCredential:
    """Register a jwks_uri for private_key_jwt: SSRF-checked and fetched once; it must serve a valid key."""
    _refuse_final(client)
    if client.token_endpoint_auth_method != Client.AuthMethod.PRIVATE_KEY_JWT:
        raise DomainError(f"client {client.client_id} does not authenticate with private_key_jwt")
    target = remote.check_uri(jwks_uri)
    _refuse_jwks_uri(client, target.uri)
    # The fetch happens outside the transaction: no row lock is held while a remote server answers.
    fetched = remote.fetch_target(target)
    with transaction.atomic():
        # Serialises with rotations and other adds (same lock as client_credential_rotate), not
        # with token requests, which hold only a key-share lock on the client row.
        client = Client.objects.select_for_update(no_key=True).select_related("organisation").get(pk=client.pk)
        _refuse_jwks_uri(client, target.uri)
        credential = ClientCredential.objects.create(
            client=client,
            kind=ClientCredential.Kind.JWKS_URI,
            jwks_uri=target.uri,
            hint=target.host[-8:],
            expires_at=expires_at,
        )
        audit_record(
            "client.credential.issued",
            actor=actor,
            target=credential,
            organisation=client.organisation,
            data={
                "client_id": client.client_id,
                "kind": "jwks_uri",
                "jwks_uri": target.redacted,
                "kids": [key["kid"] for key in fetched.keys],
            },
        )
    remote.remember(target.uri, fetched)
    return credential


def _refuse_jwks_uri(client: Client, uri: str) -> None:
    if _key_kinds_conflict(client, ClientCredential.Kind.JWKS_URI):
        raise DomainError(
            "the client has keys registered as jwks; jwks and jwks_uri are never both used (RFC 7591 §2): "
            "rotate or revoke those keys first"
        )
    if ClientCredential.objects.filter(
        client=client, kind=ClientCredential.Kind.JWKS_URI, jwks_uri=uri, status__in=ClientCredential.USABLE_STATUSES
    ).exists():
        raise DomainError("the client has this jwks_uri registered already")
