"""RFC 7591 §2.3 software statements: signed JWTs that vouch for a client's metadata.

A statement counts only when a trusted issuer signed it. The trusted issuers are
``settings.AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS``: a JSON object mapping each issuer to
its JWKS, either inline (``{"keys": [...]}``) or as the path of a JWKS file. Statements are
signed RS256, PS256 or ES256 (OAUTH-NL's algorithms); nothing weaker, never ``none``.

What the caller gets back are the statement's metadata claims; RFC 7591 §3.1.1 says they
take precedence over the same members sent in the clear, and the registration endpoint
(clients/dcr.py) merges them so. Errors carry the RFC 7591 §3.2.2 code:
``unapproved_software_statement`` for an issuer we do not trust, and
``invalid_software_statement`` for anything malformed, forged, expired or not yet valid.
"""

from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import jwt
from django.conf import settings

logger = logging.getLogger(__name__)

INVALID = "invalid_software_statement"
UNAPPROVED = "unapproved_software_statement"
ALGORITHMS = ("RS256", "PS256", "ES256")
_KEY_TYPES = {"RS256": "RSA", "PS256": "RSA", "ES256": "EC"}
MAX_LENGTH = 16 * 1024
# JWT claims about the statement itself, and members only this server sets: never metadata.
NOT_METADATA = frozenset(
    {
        "iss",
        "sub",
        "aud",
        "exp",
        "nbf",
        "iat",
        "jti",
        "software_statement",
        "client_id",
        "client_secret",
        "client_id_issued_at",
        "client_secret_expires_at",
        "registration_access_token",
        "registration_client_uri",
    }
)


class SoftwareStatementError(Exception):
    """A software statement was refused; ``error`` is the RFC 7591 §3.2.2 code."""

    def __init__(self, error: str, description: str):
        self.error = error
        self.description = description
        super().__init__(description)


@dataclass(frozen=True)
class SoftwareStatement:
    issuer: str
    claims: dict[str, Any]

    @property
    def metadata(self) -> dict[str, Any]:
        """The client metadata the statement asserts (RFC 7591 §2.3)."""
        return {name: value for name, value in self.claims.items() if name not in NOT_METADATA}


@lru_cache(maxsize=32)
def _read_jwks_file(path: str, _mtime: float) -> dict[str, Any]:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def issuer_jwks(issuer: str) -> list[dict[str, Any]] | None:
    """The public keys of a trusted issuer; None when the issuer is not trusted."""
    configured = settings.AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS or {}
    if issuer not in configured:
        return None
    source = configured[issuer]
    try:
        jwks = _read_jwks_file(source, os.stat(source).st_mtime) if isinstance(source, str) else source
        keys = jwks["keys"]
        if not isinstance(keys, list) or not all(isinstance(key, dict) for key in keys):
            raise TypeError("keys must be a list of JWK objects")
    except (OSError, ValueError, TypeError, KeyError) as exc:
        # The deployment's mistake, not the client's: log it for the operator, refuse clearly.
        logger.error("software statement issuer %s: cannot load its JWKS: %s", issuer, exc)
        raise SoftwareStatementError(
            UNAPPROVED, f"the keys of issuer {issuer!r} are not available on this server; statement not verified"
        ) from exc
    return keys


def _candidate_keys(jwks: list[dict[str, Any]], alg: str, kid: str | None) -> list[Any]:
    keys = []
    for jwk in jwks:
        if kid is not None and jwk.get("kid") != kid:
            continue
        if jwk.get("kty") != _KEY_TYPES[alg] or jwk.get("alg", alg) != alg:
            continue
        if alg == "ES256" and jwk.get("crv") != "P-256":
            continue
        try:
            keys.append(jwt.PyJWK(jwk, algorithm=alg).key)
        except jwt.PyJWTError:
            continue
    return keys


def verify_software_statement(statement: Any) -> SoftwareStatement:
    """Verify a software statement (RFC 7591 §2.3, §3.1.1); raise SoftwareStatementError."""
    if not isinstance(statement, str) or not statement:
        raise SoftwareStatementError(INVALID, "software_statement must be a JWT string")
    if len(statement) > MAX_LENGTH:
        raise SoftwareStatementError(INVALID, f"software_statement is longer than {MAX_LENGTH} characters")
    try:
        header = jwt.get_unverified_header(statement)
        unverified = jwt.decode(statement, options={"verify_signature": False})
    except jwt.PyJWTError as exc:
        raise SoftwareStatementError(INVALID, "software_statement is not a well-formed signed JWT") from exc
    alg = header.get("alg")
    if alg not in ALGORITHMS:
        raise SoftwareStatementError(INVALID, f"software_statement must be signed with {', '.join(ALGORITHMS)}")
    issuer = unverified.get("iss")
    if not isinstance(issuer, str) or not issuer:
        raise SoftwareStatementError(INVALID, "software_statement has no iss claim (RFC 7591 §2.3)")
    jwks = issuer_jwks(issuer)
    if jwks is None:
        raise SoftwareStatementError(UNAPPROVED, f"software statements from {issuer!r} are not accepted here")
    kid = header.get("kid")
    keys = _candidate_keys(jwks, alg, kid if isinstance(kid, str) else None)
    if not keys:
        raise SoftwareStatementError(INVALID, f"no key of issuer {issuer!r} matches the statement's kid and alg")

    skew = settings.AUTHSERVER_CLOCK_SKEW_SECONDS
    # A statement addressed to audiences must name this server; one without aud is for any.
    audience = settings.AUTHSERVER_ISSUER if "aud" in unverified else None
    claims: dict[str, Any] | None = None
    for key in keys:
        try:
            claims = jwt.decode(
                statement,
                key=key,
                algorithms=[alg],
                issuer=issuer,
                audience=audience,
                leeway=skew,
                options={"require": ["iss", "iat"]},
            )
            break
        except jwt.InvalidSignatureError:
            continue
        except jwt.ExpiredSignatureError as exc:
            raise SoftwareStatementError(INVALID, "software_statement has expired") from exc
        except jwt.ImmatureSignatureError as exc:
            raise SoftwareStatementError(INVALID, "software_statement is not valid yet (iat or nbf ahead)") from exc
        except jwt.InvalidAudienceError as exc:
            raise SoftwareStatementError(INVALID, "software_statement is meant for another audience") from exc
        except jwt.PyJWTError as exc:
            raise SoftwareStatementError(INVALID, f"software_statement is invalid: {exc}") from exc
    if claims is None:
        raise SoftwareStatementError(INVALID, "software_statement signature does not verify")
    iat = claims["iat"]
    if not isinstance(iat, int) or iat > time.time() + skew:
        raise SoftwareStatementError(INVALID, "software_statement iat is invalid or in the future")
    return SoftwareStatement(issuer=issuer, claims=claims)
