"""Test certificates made with `cryptography`: a self-signed root and leaves shaped like PKIoverheid's.

Key generation is the slow part (RSA 3072 takes about a second), so keys come from a pool
shared by the whole test process; every certificate is freshly signed.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

OIN = "00000001002220647000"
ORGANISATION_NAME = "Gemeente Voorbeeld"


@cache
def private_key(kind: str, index: int = 0) -> Any:
    """``kind``: rsa2048, rsa3072 or p256; ``index`` tells keys of one kind apart."""
    if kind == "p256":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(kind.removeprefix("rsa")))


@dataclass
class Issued:
    certificate: x509.Certificate
    key: Any

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


def _name(**attributes: str) -> x509.Name:
    oids = {"C": NameOID.COUNTRY_NAME, "O": NameOID.ORGANIZATION_NAME, "CN": NameOID.COMMON_NAME}
    oids["serialNumber"] = NameOID.SERIAL_NUMBER
    return x509.Name([x509.NameAttribute(oids[key], value) for key, value in attributes.items() if value])


def make_root(*, name: str = "Test Root CA", key: str = "rsa3072", key_index: int = 9) -> Issued:
    root_key = private_key(key, key_index)
    subject = _name(C="NL", O="Test PKI", CN=name)
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(root_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=3650))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(root_key, hashes.SHA256())
    )
    return Issued(certificate=certificate, key=root_key)


def make_leaf(
    *,
    oin: str = OIN,
    organisation: str = ORGANISATION_NAME,
    key: str = "rsa3072",
    issuer: Issued | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    country: str = "NL",
) -> Issued:
    """An organisation certificate: O and serialNumber (the OIN) in the subject; self-signed without ``issuer``."""
    leaf_key = private_key(key)
    now = datetime.now(UTC)
    subject = _name(C=country, O=organisation, serialNumber=oin, CN=f"{organisation} services")
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.certificate.subject if issuer else subject)
        .public_key(leaf_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=30))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(issuer.key if issuer else leaf_key, hashes.SHA256())
    )
    return Issued(certificate=certificate, key=leaf_key)
