"""RFC 7591 / RFC 7592: dynamic registration, and a client managing its own registration.

The endpoint (clients/dcr.py) checks the request and the metadata (clients/dcr_metadata.py);
these services change state, each in one transaction, audited. Registration goes through
``client_register`` (the policy decides the mode) and issues the credentials the metadata
names in the same transaction, so a refusal anywhere stores nothing.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from jwcrypto.jwk import JWK

from authserver.audit import audit_record
from authserver.errors import DomainError
from authserver.oauth.client_auth import hash_client_secret

from .. import policy
from ..dcr_metadata import INVALID_METADATA, INVALID_REDIRECT_URI, ClientMetadata
from ..models import Client, ClientCredential, ClientIntake
from . import clients as client_services
from .clients import (
    IssuedSecret,
    client_credential_add_jwks_uri,
    client_credential_issue_secret,
    client_credential_revoke,
    client_revoke,
)
from .registration import Registration, RegistrationRefused, client_register, generate_token

# Who may still manage their registration: the others' registration access token is dead.
_MANAGEABLE = (Client.Status.ACTIVE, Client.Status.PENDING, Client.Status.SUSPENDED, Client.Status.EXPIRED)
# A pending client waits for an administrator's decision on what it asked; it is not changed meanwhile.
_UPDATABLE = (Client.Status.ACTIVE,)


@dataclass(frozen=True)
class DynamicRegistration:
    registration: Registration
    # The clear secret, returned once in the 201 response, when the client uses one.
    secret: IssuedSecret | None = None

    @property
    def client(self) -> Client:
        return self.registration.client


def _refused_from(exc: DomainError) -> RegistrationRefused:
    message = str(exc)
    error = INVALID_REDIRECT_URI if message.startswith("redirect_uris") else INVALID_METADATA
    return RegistrationRefused(error, [message])


def _credential_expiry(client: Client) -> datetime | None:
    """Open clients get short-lived credentials (DESIGN.md step 2); others the usual lifetime."""
    if client.registration_mode == Client.RegistrationMode.OPEN:
        return timezone.now() + timedelta(days=settings.AUTHSERVER_OPEN_CREDENTIAL_LIFETIME_DAYS)
    return None


def _client_fields(metadata: ClientMetadata, software_statement_issuer: str) -> dict[str, Any]:
    return {
        "software_version": metadata.software_version,
        "client_uri": metadata.client_uri,
        "contacts": list(metadata.contacts),
        "software_statement_issuer": software_statement_issuer,
        "algorithm": metadata.id_token_signed_response_alg,
        "application_type": metadata.application_type,
    }


@transaction.atomic
def client_register_dynamic(
    *, metadata: ClientMetadata, initial_access_token: str | None = None, software_statement_issuer: str = ""
) -> DynamicRegistration:
    """RFC 7591 §3: register through the policy and issue the named credentials; all or nothing."""
    try:
        registration = client_register(
            channel=policy.DYNAMIC,
            name=metadata.client_name,
            grant_type=metadata.grant_type,
            scopes=list(metadata.scopes or ()),
            redirect_uris=list(metadata.redirect_uris),
            post_logout_redirect_uris=list(metadata.post_logout_redirect_uris),
            auth_method=metadata.token_endpoint_auth_method,
            initial_access_token=initial_access_token,
            software_id=metadata.software_id,
            metadata=_client_fields(metadata, software_statement_issuer),
            subject_type=metadata.subject_type,
            actor=None,
        )
        client = registration.client
        expires_at = _credential_expiry(client)
        secret = None
        if metadata.uses_secret:
            secret = client_credential_issue_secret(client=client, expires_at=expires_at)
        for jwk in metadata.jwks:
            client_services.client_credential_add_public_key(client=client, jwk=jwk, expires_at=expires_at)
        if metadata.jwks_uri:
            # SSRF-checked and fetched once (clients/jwks_uri.py): it must serve a valid key.
            client_credential_add_jwks_uri(client=client, jwks_uri=metadata.jwks_uri, expires_at=expires_at)
    except RegistrationRefused:
        raise
    except DomainError as exc:
        raise _refused_from(exc) from exc
    return DynamicRegistration(registration=registration, secret=secret)


def client_for_registration_token(client_id: str, token: str | None) -> Client | None:
    """The client this RFC 7592 registration access token manages; None for any mismatch.

    Unknown client, wrong or old token, revoked or rejected client: all the same None, so the
    caller cannot tell whether a client exists (RFC 7592 §3).
    """
    presented = hash_client_secret(token) if token else ""
    client = Client.objects.select_related("organisation").filter(client_id=client_id[:100]).first()
    expected = client.registration_token_hash if client is not None else ""
    if not expected or not presented:
        hmac.compare_digest("0" * 64, presented or "1" * 64)  # same work either way
        return None
    if not hmac.compare_digest(expected, presented):
        return None
    assert client is not None
    if client.status not in _MANAGEABLE:
        return None
    return client


def _redirect_targets(uris: list[str] | tuple[str, ...]) -> set[tuple[str, str]]:
    targets = set()
    for uri in uris:
        parts = urlsplit(uri)
        targets.add((parts.scheme.lower(), (parts.hostname or "").lower()))
    return targets


def _public_key_thumbprint(jwk: dict[str, Any]) -> str:
    return JWK(**{k: v for k, v in jwk.items() if k not in ("alg", "use", "kid")}).thumbprint()


def _sync_keys(client: Client, metadata: ClientMetadata, actor: Any) -> list[str]:
    """Make the client's usable keys what the metadata lists (RFC 7592 §2.2: a full replacement)."""
    changes: list[str] = []
    usable = list(
        client.credentials.select_for_update().filter(
            kind__in=(ClientCredential.Kind.PUBLIC_KEY, ClientCredential.Kind.JWKS_URI),
            status__in=ClientCredential.USABLE_STATUSES,
        )
    )
    wanted = {jwk["kid"]: jwk for jwk in metadata.jwks}
    kept_kids: set[str] = set()
    for credential in usable:
        if credential.kind == ClientCredential.Kind.JWKS_URI:
            if credential.jwks_uri == metadata.jwks_uri:
                continue
        elif (
            credential.kid in wanted
            and credential.public_jwk is not None
            and _public_key_thumbprint(credential.public_jwk) == _public_key_thumbprint(wanted[credential.kid])
        ):
            kept_kids.add(credential.kid)
            continue
        client_credential_revoke(credential_id=credential.pk, actor=actor)
        changes.append("jwks_uri" if credential.kind == ClientCredential.Kind.JWKS_URI else "jwks")
    expires_at = _credential_expiry(client)
    for kid, jwk in wanted.items():
        if kid not in kept_kids:
            client_services.client_credential_add_public_key(client=client, jwk=jwk, expires_at=expires_at)
            changes.append("jwks")
    if metadata.jwks_uri and not any(
        c.kind == ClientCredential.Kind.JWKS_URI and c.jwks_uri == metadata.jwks_uri for c in usable
    ):
        client_credential_add_jwks_uri(client=client, jwks_uri=metadata.jwks_uri, expires_at=expires_at, actor=actor)
        changes.append("jwks_uri")
    return sorted(set(changes))


def _check_secret(client: Client, presented_secret: str | None) -> None:
    """RFC 7592 §2.2: a client_secret in the request must be the one currently issued."""
    if presented_secret is None:
        return
    digest = hash_client_secret(presented_secret) if isinstance(presented_secret, str) else ""
    secrets = client.credentials.filter(
        kind=ClientCredential.Kind.SECRET, status__in=ClientCredential.USABLE_STATUSES
    ).values_list("secret_hash", flat=True)
    if not any(hmac.compare_digest(stored, digest) for stored in secrets):
        raise RegistrationRefused(INVALID_METADATA, ["client_secret is not the client's current secret"])


@transaction.atomic
def client_registration_update(
    *,
    client_id: int,
    metadata: ClientMetadata,
    software_statement_issuer: str = "",
    presented_secret: str | None = None,
    actor: Any = None,
) -> tuple[Client, str]:
    """RFC 7592 §2.2: replace the metadata within what the client has; rotate the registration token.

    Not through the policy again, so nothing may grow: the grant type and authentication
    method stay, scopes may only shrink (open clients keep their low-risk scopes, whitelisted
    ones their bounds), redirect URIs stay on the schemes and hosts the client already has.
    An absent ``scope`` keeps the current scopes. Returns the client and the new token.
    """
    client = (
        Client.objects.select_for_update(no_key=True, of=("self",)).select_related("organisation").get(pk=client_id)
    )
    if client.status not in _UPDATABLE:
        why = (
            "under review; update it after the decision, or delete it" if client.status == "pending" else client.status
        )
        raise RegistrationRefused("access_denied", [f"the client is {why}; it cannot be updated now"])
    reasons: list[str] = []
    redirect_reasons: list[str] = []
    current_grant = {v: k for k, v in client_services.GRANT_TYPES.items()}[client.authorization_grant_type]
    if metadata.grant_type != current_grant:
        reasons.append(f"the grant type stays {current_grant}; register a new client for another one")
    if metadata.token_endpoint_auth_method != client.token_endpoint_auth_method:
        reasons.append(
            f"token_endpoint_auth_method stays {client.token_endpoint_auth_method}; register a new client to change it"
        )
    _check_secret(client, presented_secret)
    if client.software_statement_issuer and software_statement_issuer != client.software_statement_issuer:
        raise RegistrationRefused(
            "invalid_software_statement",
            [
                f"the client was registered with a software statement from {client.software_statement_issuer!r}; "
                "send a current one from that issuer"
            ],
        )

    held = client.scopes
    scopes = list(metadata.scopes) if metadata.scopes is not None else held
    beyond = [s for s in scopes if s not in held]
    if beyond:
        reasons.append(f"scopes {' '.join(beyond)} go beyond what the client has; ask for them with a new registration")

    targets = _redirect_targets(client.redirect_uris.split())
    if client.allowlist_entry is not None:
        targets |= {("https", host) for host in client.allowlist_entry.allowed_redirect_hosts or ()}
    new_targets = sorted(f"{s}://{h}" for s, h in _redirect_targets(metadata.redirect_uris) - targets)
    if new_targets:
        redirect_reasons.append(
            f"redirect URIs at {' '.join(new_targets)} are new to this client; register a new client for them"
        )
    if reasons or redirect_reasons:
        error = INVALID_METADATA if reasons else INVALID_REDIRECT_URI
        raise RegistrationRefused(error, reasons + redirect_reasons)

    before = _snapshot(client)
    client.name = metadata.client_name
    client.redirect_uris = " ".join(metadata.redirect_uris)
    client.post_logout_redirect_uris = " ".join(metadata.post_logout_redirect_uris)
    client.software_id = metadata.software_id
    client.subject_type = metadata.subject_type
    for name, value in _client_fields(metadata, software_statement_issuer).items():
        setattr(client, name, value)
    client.scope = " ".join(scopes)
    try:
        client.full_clean(exclude=["user"])
    except ValidationError as exc:
        raise _refused_from(DomainError(client_services._validation_message(exc))) from exc
    after = _snapshot(client)
    changed = sorted(name for name in after if after[name] != before[name])
    try:
        changed += _sync_keys(client, metadata, actor)
    except DomainError as exc:
        if isinstance(exc, RegistrationRefused):
            raise
        raise _refused_from(exc) from exc

    token = generate_token()
    client.registration_token_hash = hash_client_secret(token)
    client.save()
    audit_record(
        "client.registration.updated",
        actor=actor,
        target=client,
        organisation=client.organisation,
        data={"client_id": client.client_id, "changed": changed, "registration_token_rotated": True},
    )
    return client, token


def _snapshot(client: Client) -> dict[str, Any]:
    """The metadata an update may change, to audit which fields it did change."""
    return {
        "name": client.name,
        "redirect_uris": client.redirect_uris,
        "post_logout_redirect_uris": client.post_logout_redirect_uris,
        "scope": client.scope,
        "software_id": client.software_id,
        "subject_type": client.subject_type,
        "software_version": client.software_version,
        "client_uri": client.client_uri,
        "contacts": list(client.contacts or []),
        "software_statement_issuer": client.software_statement_issuer,
        "algorithm": client.algorithm,
    }


@transaction.atomic
def client_registration_delete(*, client_id: int, actor: Any = None) -> Client:
    """RFC 7592 §2.3: the client ends its registration; it is revoked and its token dies."""
    client = Client.objects.select_for_update(no_key=True).get(pk=client_id)
    intake = ClientIntake.objects.select_for_update().filter(client=client).first()
    withdrawn = intake is not None and intake.status == ClientIntake.Status.PENDING
    if intake is not None and withdrawn:
        # Withdrawn before anyone decided: close it so it leaves the admins' queue.
        intake.transition_to(ClientIntake.Status.REJECTED)
        intake.decided_at = timezone.now()
        intake.decision_reason = "Withdrawn by the client (RFC 7592 delete)."
        intake.save(update_fields=["status", "decided_at", "decision_reason"])
    client = client_revoke(client_id=client.pk, actor=actor)
    client.registration_token_hash = ""
    client.save(update_fields=["registration_token_hash"])
    audit_record(
        "client.registration.deleted",
        actor=actor,
        target=client,
        organisation=client.organisation,
        data={"client_id": client.client_id, "intake_withdrawn": withdrawn},
    )
    return client
