"""JWT access tokens (RFC 9068) and ID token signing with the database keys."""

from __future__ import annotations

import secrets
import time
from typing import Any

import jwt
from django.conf import settings

from authserver.policy import OPAQUE

from .claims import subject_for
from .keys import keyring


def sign_jwt(claims: dict[str, Any], *, alg: str, typ: str) -> str:
    kid, private_key = keyring.signing_key(alg)
    return jwt.encode(claims, private_key, algorithm=alg, headers={"kid": kid, "typ": typ})


def id_token_algorithm(client: Any) -> str:
    return getattr(client, "algorithm", "") or settings.AUTHSERVER_ID_TOKEN_SIGNING_ALG


def default_access_token_lifetime(request: Any) -> int:
    """STANDARDS.md lifetimes: 6 h client credentials, 15 min public clients, 1 h otherwise."""
    if request.grant_type == "client_credentials":
        return settings.AUTHSERVER_CLIENT_CREDENTIALS_TOKEN_LIFETIME
    client = request.client
    if client is not None and client.is_public:
        return settings.AUTHSERVER_PUBLIC_CLIENT_ACCESS_TOKEN_LIFETIME
    return settings.AUTHSERVER_ACCESS_TOKEN_LIFETIME


def access_token_lifetime(request: Any) -> int:
    """The API's lifetime when the token is for an API that sets one (RFC 8707 resource),
    else the server's for the grant; a public client's token never outlives the public-client
    lifetime (docs/decisions/0009). oauthlib asks this before generating the token."""
    if request.client is None:
        return default_access_token_lifetime(request)
    lifetime = _validator().issuance_for_token(request).access_token_lifetime
    if request.client.is_public:
        lifetime = min(lifetime, settings.AUTHSERVER_PUBLIC_CLIENT_ACCESS_TOKEN_LIFETIME)
    return lifetime


def generate_access_token(request: Any, refresh_token: bool = False) -> str:
    """A signed JWT (OAUTH-NL, RFC 9068 §2.2), or a random string for an API whose tokens are
    opaque (its resource servers introspect them); only the token's hash is stored."""
    now = int(time.time())
    client = request.client
    decision = _validator().issuance_for_token(request) if client is not None else None
    bound = getattr(request, "client_certificate_thumbprint", None)
    # A certificate-bound token (RFC 8705 §3) stays a JWT: its cnf claim is the binding, and
    # an opaque token has nowhere to keep it.
    if decision is not None and decision.token_format == OPAQUE and not bound:
        request.access_token_exp = now + int(request.expires_in)  # stored as the token's expiry
        return secrets.token_urlsafe(32)
    user = request.user if request.grant_type != "client_credentials" else None
    claims: dict[str, Any] = {
        "iss": settings.AUTHSERVER_ISSUER,
        "exp": now + int(request.expires_in),
        "iat": now,
        "jti": secrets.token_urlsafe(16),
        "client_id": client.client_id,
        "azp": client.client_id,
        # RFC 9068 §2.2: sub is the resource owner, or the client itself without one.
        "sub": subject_for(user, client) if user is not None else client.client_id,
        "scope": " ".join(request.scopes or []),
    }
    if bound:
        # RFC 8705 §3.1: bound to the certificate the client authenticated with (mutual TLS).
        claims["cnf"] = {"x5t#S256": bound}
    resources = getattr(request, "resource", None) or []
    if resources:
        claims["aud"] = resources[0] if len(resources) == 1 else list(resources)
    request.access_token_exp = claims["exp"]  # stored as the token's expiry, to the second
    return sign_jwt(claims, alg=settings.AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG, typ="at+jwt")


_validator_instance = None


def _validator() -> Any:
    global _validator_instance
    if _validator_instance is None:
        from .validator import Validator

        _validator_instance = Validator()
    return _validator_instance
