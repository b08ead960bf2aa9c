"""Client authentication: hashed secrets (RFC 6749 §2.3.1) and private_key_jwt (RFC 7523).

Secrets are high-entropy values we generate, so they are stored as a keyed SHA-256
(HMAC with AUTHSERVER_SECRET_PEPPER) and looked up by that hash: a check costs
microseconds, where PBKDF2 costs 245 ms (docs/decisions/0003-client-secret-hash.md).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

import jwt
from django.conf import settings
from django.core.cache import cache
from oauthlib.oauth2.rfc6749 import errors

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
# OAUTH-NL: RS256 must, PS256 should, ES256 optional; nothing weaker, never "none" or HMAC.
ASSERTION_ALGORITHMS = ("RS256", "PS256", "ES256")
_KEY_TYPES = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC"}
MIN_JTI_LENGTH = 22  # 128 bits in base64url
SECRET_BYTES = 32


class ClientAuthError(Exception):
    """Client authentication failed; the message is the error_description."""


class ReplayCacheUnavailableError(errors.OAuth2Error):
    """The jti replay cache is unreachable, so no client assertion is accepted: a 503 with
    RFC 6749 §4.1.2.1's ``temporarily_unavailable`` that the client may retry, not a 401."""

    error = "temporarily_unavailable"
    status_code = 503
    description = "Client assertions cannot be checked for replay right now; try again shortly."
    retry_after = 10

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


def generate_client_secret() -> str:
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_client_secret(secret: str) -> str:
    return hmac.new(settings.AUTHSERVER_SECRET_PEPPER.encode(), secret.encode(), hashlib.sha256).hexdigest()


@dataclass(frozen=True)
class AssertionClaims:
    client_id: str
    jti: str
    exp: int
    alg: str
    kid: str | None


def peek_assertion(assertion: str) -> AssertionClaims:
    """Read the claims that select the client and key, before anything is trusted."""
    try:
        header = jwt.get_unverified_header(assertion)
        claims = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise ClientAuthError("client_assertion is not a well-formed JWT") from exc
    alg = header.get("alg")
    if alg not in ASSERTION_ALGORITHMS:
        raise ClientAuthError(f"client_assertion alg must be one of {', '.join(ASSERTION_ALGORITHMS)}")
    issuer, subject = claims.get("iss"), claims.get("sub")
    if not isinstance(issuer, str) or not issuer or issuer != subject:
        raise ClientAuthError("client_assertion iss and sub must both be the client_id")
    jti = claims.get("jti")
    if not isinstance(jti, str) or not MIN_JTI_LENGTH <= len(jti) <= 255:
        raise ClientAuthError(f"client_assertion jti must be a string of {MIN_JTI_LENGTH} to 255 characters")
    exp = claims.get("exp")
    if not isinstance(exp, int):
        raise ClientAuthError("client_assertion exp is required")
    kid = header.get("kid")
    return AssertionClaims(client_id=issuer, jti=jti, exp=exp, alg=alg, kid=kid if isinstance(kid, str) else None)


def _verification_keys(jwks: list[dict[str, Any]], peeked: AssertionClaims) -> list[Any]:
    keys = []
    for jwk in jwks:
        if peeked.kid is not None and jwk.get("kid") != peeked.kid:
            continue
        if jwk.get("kty") != _KEY_TYPES[peeked.alg] or jwk.get("alg", peeked.alg) != peeked.alg:
            continue
        if peeked.alg == "ES256" and jwk.get("crv") != "P-256":
            continue
        try:
            keys.append(jwt.PyJWK(jwk, algorithm=peeked.alg).key)
        except jwt.PyJWTError:
            continue
    return keys


def verify_assertion(
    assertion: str, *, peeked: AssertionClaims, jwks: list[dict[str, Any]], audiences: list[str]
) -> None:
    """Verify signature, audience, times and single use of a client assertion (RFC 7523 §3)."""
    keys = _verification_keys(jwks, peeked)
    if not keys:
        raise ClientAuthError("no registered key of the client matches the client_assertion kid and alg")
    skew = settings.AUTHSERVER_CLOCK_SKEW_SECONDS
    claims: dict[str, Any] | None = None
    last_error: Exception | None = None
    for key in keys:
        try:
            claims = jwt.decode(
                assertion,
                key=key,
                algorithms=[peeked.alg],
                audience=audiences,
                issuer=peeked.client_id,
                leeway=skew,
                options={"require": ["iss", "sub", "aud", "exp", "jti"]},
            )
            break
        except jwt.InvalidSignatureError as exc:
            last_error = exc
            continue
        except jwt.ExpiredSignatureError as exc:
            raise ClientAuthError("client_assertion has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise ClientAuthError("client_assertion aud must be this server's token endpoint or issuer") from exc
        except jwt.ImmatureSignatureError as exc:
            raise ClientAuthError("client_assertion is not valid yet (nbf/iat in the future)") from exc
        except jwt.PyJWTError as exc:
            raise ClientAuthError(f"client_assertion is invalid: {exc}") from exc
    if claims is None:
        raise ClientAuthError("client_assertion signature does not verify") from last_error
    now = int(time.time())
    max_lifetime = settings.AUTHSERVER_CLIENT_ASSERTION_MAX_LIFETIME
    if peeked.exp > now + max_lifetime + skew:
        raise ClientAuthError(f"client_assertion exp is more than {max_lifetime} seconds ahead")
    iat = claims.get("iat")
    if iat is not None and (not isinstance(iat, int) or iat > now + skew):
        raise ClientAuthError("client_assertion iat is invalid or in the future")
    # RFC 7523 §3 item 7: a jti is accepted once. The entry outlives the assertion itself.
    replay_key = "client-assertion-jti:" + hashlib.sha256(f"{peeked.client_id}\0{peeked.jti}".encode()).hexdigest()
    try:
        first_use = cache.add(replay_key, 1, timeout=max(peeked.exp - now + skew, 1))
    except Exception as exc:  # the cache backend's own errors (Redis unreachable)
        # Fail closed: an assertion whose jti cannot be recorded could be replayed unseen.
        raise ReplayCacheUnavailableError() from exc
    if not first_use:
        raise ClientAuthError("client_assertion jti has been used before")
