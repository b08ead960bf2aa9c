"""Validation of client public keys (RFC 7517 JWKs) for private_key_jwt."""

from __future__ import annotations

from typing import Any

from jwcrypto.common import JWException
from jwcrypto.jwk import JWK

from authserver.errors import DomainError

MIN_RSA_BITS = 2048
_PRIVATE_MEMBERS = {"d", "p", "q", "dp", "dq", "qi", "oth", "k"}
ALLOWED = {"RSA": ("RS256", "PS256"), "EC": ("ES256",)}


def validate_public_jwk(jwk: Any) -> dict[str, Any]:
    """Return the public JWK with a kid (RFC 7638 thumbprint if absent), or raise DomainError."""
    if not isinstance(jwk, dict):
        raise DomainError("a key must be a JSON object (JWK)")
    if _PRIVATE_MEMBERS & set(jwk):
        raise DomainError("that JWK contains private key material; register the public key only")
    kty = jwk.get("kty")
    if kty not in ALLOWED:
        raise DomainError("key type must be RSA or EC (P-256)")
    if "alg" in jwk and jwk["alg"] not in ALLOWED[kty]:
        raise DomainError(f"alg {jwk['alg']!r} is not allowed for {kty} keys; use {' or '.join(ALLOWED[kty])}")
    try:
        key = JWK(**jwk)
        # jwcrypto builds the key lazily: an impossible modulus or point fails only here.
        op_key = key.get_op_key("verify")
    except (JWException, ValueError, TypeError) as exc:
        raise DomainError(f"malformed JWK: {exc}") from exc
    if kty == "RSA":
        bits = op_key.key_size
        if bits < MIN_RSA_BITS:
            raise DomainError(f"RSA keys must be at least {MIN_RSA_BITS} bits; this one has {bits}")
    elif jwk.get("crv") != "P-256":
        raise DomainError("EC keys must use curve P-256 (ES256)")
    public = key.export_public(as_dict=True)
    public["kid"] = jwk.get("kid") or key.thumbprint()
    if "alg" in jwk:
        public["alg"] = jwk["alg"]
    public["use"] = "sig"
    return public
