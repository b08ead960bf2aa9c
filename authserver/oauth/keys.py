"""Signing keys: generation, encryption at rest, and the in-process keyring.

Private keys are stored as Fernet tokens under the key-encryption key(s) in
AUTHSERVER_KEY_ENCRYPTION_KEYS (MultiFernet: the first encrypts, all decrypt, so the KEK
itself can rotate). The keyring caches decrypted keys per process for a few seconds: a
rotation promotes a ``next`` key that has been published for a week, so a process that
signs with the previous active key for a few more seconds still signs with a published key.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

from cryptography.fernet import Fernet, MultiFernet
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings
from jwcrypto.jwk import JWK

RSA_KEY_SIZE = 3072  # NCSC: RSA >= 3072
KEYRING_TTL_SECONDS = 10.0

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def generate_private_key(alg: str) -> PrivateKey:
    if alg in ("RS256", "PS256"):
        return rsa.generate_private_key(public_exponent=65537, key_size=RSA_KEY_SIZE)
    if alg == "ES256":
        return ec.generate_private_key(ec.SECP256R1())
    raise ValueError(f"unsupported signing algorithm: {alg}")


def _fernet() -> MultiFernet:
    return MultiFernet([Fernet(key.encode()) for key in settings.AUTHSERVER_KEY_ENCRYPTION_KEYS])


def encrypt_private_key(private_key: PrivateKey) -> bytes:
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return _fernet().encrypt(pem)


def decrypt_private_key(token: bytes) -> PrivateKey:
    pem = _fernet().decrypt(bytes(token))
    key = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey)
    return key


def public_jwk_for(private_key: PrivateKey, alg: str) -> dict[str, Any]:
    """The public JWK with kid, kty, alg and use (OAUTH-NL: kid/kty/alg).

    The kid is the algorithm and the RFC 7638 thumbprint: unique, readable in logs, and it
    never starts with "-" (a thumbprint can, which a command line would take for an option).
    """
    jwk = JWK.from_pyca(private_key.public_key())
    public = jwk.export_public(as_dict=True)
    public["kid"] = f"{alg.lower()}-{jwk.thumbprint()}"
    public["alg"] = alg
    public["use"] = "sig"
    return public


@dataclass
class _Snapshot:
    loaded_at: float
    signing: dict[str, tuple[str, PrivateKey]] = field(default_factory=dict)
    published: list[dict[str, Any]] = field(default_factory=list)


class Keyring:
    """Per-process cache of the active signing keys and the published JWKS."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._snapshot: _Snapshot | None = None
        # Decrypted private keys by kid: a reload re-reads the rows (status changes count
        # within KEYRING_TTL_SECONDS) but decrypts and parses only keys it has not seen;
        # parsing an RSA-3072 key costs milliseconds, every 10 seconds in every process.
        self._decrypted: dict[str, PrivateKey] = {}

    def clear(self) -> None:
        with self._lock:
            self._snapshot = None
            self._decrypted = {}

    def _load(self) -> _Snapshot:
        from authserver import services
        from authserver.selectors import published_signing_keys

        snapshot = _Snapshot(loaded_at=time.monotonic())
        keys = list(published_signing_keys())
        missing = {
            settings.AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG,
            settings.AUTHSERVER_ID_TOKEN_SIGNING_ALG,
        } - {key.alg for key in keys if key.status == key.Status.ACTIVE}
        if missing:
            # A fresh installation signs on its first request: create what is missing.
            for alg in sorted(missing):
                services.signing_key_ensure_active(alg=alg)
            keys = list(published_signing_keys())
        decrypted: dict[str, PrivateKey] = {}
        for key in keys:
            snapshot.published.append(key.public_jwk)
            if key.status == key.Status.ACTIVE:
                private = self._decrypted.get(key.kid) or decrypt_private_key(key.private_key_encrypted)
                decrypted[key.kid] = private
                snapshot.signing[key.alg] = (key.kid, private)
        self._decrypted = decrypted
        return snapshot

    def snapshot(self) -> _Snapshot:
        current = self._snapshot
        if current is None or time.monotonic() - current.loaded_at > KEYRING_TTL_SECONDS:
            with self._lock:
                current = self._snapshot
                if current is None or time.monotonic() - current.loaded_at > KEYRING_TTL_SECONDS:
                    current = self._snapshot = self._load()
        return current

    def signing_key(self, alg: str) -> tuple[str, PrivateKey]:
        snapshot = self.snapshot()
        if alg not in snapshot.signing:
            from authserver import services

            services.signing_key_ensure_active(alg=alg)
            self.clear()
            snapshot = self.snapshot()
        return snapshot.signing[alg]

    def jwks(self) -> dict[str, Any]:
        return {"keys": list(self.snapshot().published)}

    def public_jwk(self, kid: str) -> dict[str, Any] | None:
        for jwk in self.snapshot().published:
            if jwk["kid"] == kid:
                return jwk
        return None


keyring = Keyring()
