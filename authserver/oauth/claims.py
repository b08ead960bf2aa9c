"""OpenID Connect claims: subject identifiers, standard claims and acr."""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings

# Claims we can release, by the scope that releases them (OIDC Core §5.4).
SCOPE_CLAIMS = {
    "profile": ("name", "given_name", "family_name", "preferred_username"),
    "email": ("email", "email_verified"),
}
SUPPORTED_CLAIMS = (
    "sub",
    "iss",
    "aud",
    "exp",
    "iat",
    "auth_time",
    "nonce",
    "acr",
    "azp",
    "at_hash",
    "c_hash",
    "name",
    "given_name",
    "family_name",
    "preferred_username",
    "email",
    "email_verified",
)
# eIDAS levels of assurance as acr values (OIDC-NL).
ACR_LOW = "http://eidas.europa.eu/LoA/low"
ACR_SUBSTANTIAL = "http://eidas.europa.eu/LoA/substantial"
ACR_VALUES = (ACR_LOW, ACR_SUBSTANTIAL)


def sector_identifier(client: Any) -> str:
    """OIDC Core §8.1: the host of the client's redirect URIs is its sector."""
    hosts = {urlsplit(uri).hostname or "" for uri in client.redirect_uris.split()}
    return sorted(hosts)[0] if hosts else client.client_id


def subject_for(user: Any, client: Any) -> str:
    """``sub``: a public stable id, or a pairwise id per sector (OIDC-NL: never BSN/RSIN/KvK)."""
    if client is not None and client.subject_type == "pairwise":
        digest = hmac.new(
            settings.AUTHSERVER_PAIRWISE_SALT.encode(),
            f"{sector_identifier(client)}\0{user.subject_id}".encode(),
            hashlib.sha256,
        ).digest()
        return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return str(user.subject_id)


def user_claims(user: Any, client: Any) -> dict[str, Any]:
    name = user.get_full_name()
    return {
        "sub": subject_for(user, client),
        "name": name or None,
        "given_name": user.first_name or None,
        "family_name": user.last_name or None,
        "preferred_username": user.get_username(),
        "email": user.email or None,
        "email_verified": user.email_verified_at is not None,
    }


def claims_for(
    user: Any, client: Any, *, scopes: list[str], requested: dict[str, Any] | None, target: str
) -> dict[str, Any]:
    """Claims released by the granted scopes plus those asked by the ``claims`` parameter
    (OIDC Core §5.5, which OIDC-NL makes mandatory), within what we support."""
    available = user_claims(user, client)
    released = {"sub"}
    for scope in scopes or []:
        released.update(SCOPE_CLAIMS.get(scope, ()))
    if isinstance(requested, dict) and isinstance(requested.get(target), dict):
        # Only claims the granted scopes release anyway: the claims parameter never widens what
        # the user consented to (the consent screen lists scopes).
        scope_released = {name for scope in scopes or [] for name in SCOPE_CLAIMS.get(scope, ())}
        released.update(name for name in requested[target] if name in available and name in scope_released)
    return {name: available[name] for name in released if available.get(name) is not None}


def acr_for(user: Any) -> str:
    return ACR_SUBSTANTIAL if getattr(user, "is_verified", lambda: False)() else ACR_LOW
