"""Reading evidence: X.509 certificates (PKIoverheid), KvK extracts (PDF) and eIDAS attestations.

Each reader returns what it found as a JSON-safe dict (stored on Evidence.extracted) or raises a
django ValidationError whose message is safe to show; ``compare_claims`` sets what was found
beside what the organisation claimed. Nothing here touches the database.
"""

from __future__ import annotations

import json
import re
import unicodedata
from datetime import datetime
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.x509.oid import NameOID
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, ValidationError
from django.utils import timezone

from .identifiers import validate_eidas_identifier

# NCSC TLS guidelines (2025): RSA keys below 3072 bits are "phase out".
MIN_RSA_BITS = 3072
# How far a chain is followed before it is given up as a loop or an attack.
MAX_CHAIN_DEPTH = 8
# Identifiers the applicant claims; a certificate or attestation that names a different one is
# refused (services.evidence_attach). Names and countries are only shown as mismatches.
IDENTIFIER_FIELDS = ("oin", "kvk_number", "rsin", "eidas_identifier")
# Where an eIDAS attestation in JSON may carry the legal person's identifier and name.
_EIDAS_IDENTIFIER_KEYS = ("legal_identifier", "legalIdentifier", "LegalPersonIdentifier", "eidas_identifier")
_EIDAS_NAME_KEYS = ("legal_name", "legalName", "LegalName", "name")
# Active content a reviewer's PDF viewer should never be handed (best effort: raw bytes only).
_PDF_ACTIVE_CONTENT = (b"/JavaScript", b"/Launch")

MALFORMED_CERTIFICATE = "This is not a readable X.509 certificate (PEM or DER); the file may be damaged or truncated."


def max_upload_bytes() -> int:
    return int(settings.ONBOARDING_MAX_UPLOAD_BYTES)


def check_size(content: bytes) -> None:
    """Refuse an empty file or one above ONBOARDING_MAX_UPLOAD_BYTES."""
    if not content:
        raise ValidationError("The file is empty.", code="empty")
    limit = max_upload_bytes()
    if len(content) > limit:
        raise ValidationError(
            f"The file is {len(content):,} bytes; the limit is {limit:,} bytes ({limit / 1024 / 1024:.0f} MiB).",
            code="too_large",
        )


# --- certificates ---------------------------------------------------------------------------


def _name_attribute(name: x509.Name, oid: x509.ObjectIdentifier) -> str:
    return ", ".join(str(attribute.value) for attribute in name.get_attributes_for_oid(oid))


def _key_description(key: Any) -> tuple[str, int | None, str]:
    """Key type, size in bits and curve name (for EC)."""
    if isinstance(key, rsa.RSAPublicKey):
        return "RSA", key.key_size, ""
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "EC", key.key_size, key.curve.name
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "Ed25519", 256, ""
    if isinstance(key, ed448.Ed448PublicKey):
        return "Ed448", 456, ""
    if isinstance(key, dsa.DSAPublicKey):
        return "DSA", key.key_size, ""
    return type(key).__name__, None, ""


def _load_certificates(content: bytes) -> tuple[list[x509.Certificate], str]:
    """The certificates in a PEM bundle (leaf first) or one DER certificate, and the format."""
    if b"-----BEGIN" in content:
        try:
            return x509.load_pem_x509_certificates(content), "PEM"
        except ValueError as exc:
            raise ValidationError(MALFORMED_CERTIFICATE, code="malformed_certificate") from exc
    try:
        return [x509.load_der_x509_certificate(content)], "DER"
    except ValueError as exc:
        raise ValidationError(MALFORMED_CERTIFICATE, code="malformed_certificate") from exc


def load_trust_store(path: str | Path | None = None) -> list[x509.Certificate]:
    """The configured roots (ONBOARDING_TRUST_STORE: a PEM bundle, or a directory of PEM files)."""
    configured = path if path is not None else settings.ONBOARDING_TRUST_STORE
    if not configured:
        return []
    location = Path(configured)
    files = sorted(p for p in location.iterdir() if p.suffix in (".pem", ".crt")) if location.is_dir() else [location]
    roots: list[x509.Certificate] = []
    for file in files:
        try:
            roots.extend(x509.load_pem_x509_certificates(file.read_bytes()))
        except (OSError, ValueError) as exc:
            raise ImproperlyConfigured(f"ONBOARDING_TRUST_STORE: cannot read PEM certificates from {file}") from exc
    return roots


def _is_ca(certificate: x509.Certificate) -> bool:
    try:
        return bool(certificate.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _issued_by(child: x509.Certificate, issuer: x509.Certificate) -> bool:
    if child.issuer != issuer.subject:
        return False
    try:
        child.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature, UnsupportedAlgorithm):
        return False
    return True


def _valid_at(certificate: x509.Certificate, now: datetime) -> bool:
    return certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc


def chains_to(
    leaf: x509.Certificate, *, intermediates: list[x509.Certificate], roots: list[x509.Certificate], now: datetime
) -> bool:
    """Whether signatures lead from ``leaf`` through valid CA certificates to one of ``roots``.

    Deliberately small: names and signatures, CA basic constraints and validity of the issuers.
    The leaf's own validity is reported separately (``expired``), so a reviewer sees both.
    """
    if any(leaf == root for root in roots):
        return True
    current, pool = leaf, list(intermediates)
    for _depth in range(MAX_CHAIN_DEPTH):
        if any(_issued_by(current, root) and _valid_at(root, now) for root in roots):
            return True
        issuer = next((c for c in pool if _is_ca(c) and _valid_at(c, now) and _issued_by(current, c)), None)
        if issuer is None:
            return False
        pool.remove(issuer)
        current = issuer
    return False


def parse_certificate(
    content: bytes, *, now: datetime | None = None, trust_store: list[x509.Certificate] | None = None
) -> dict[str, Any]:
    """Read a PEM (optionally with its chain, leaf first) or DER certificate.

    Returns subject organisation (O), serialNumber (the OIN in PKIoverheid), CN, C, issuer,
    validity, key type and size, flags (``rsa_below_3072``, ``expired``, ``not_yet_valid``) and
    whether it chains to the configured trust store. Raises ValidationError when unreadable.
    """
    now = now or timezone.now()
    certificates, encoding = _load_certificates(content.strip() if b"-----BEGIN" in content else content)
    leaf, intermediates = certificates[0], certificates[1:]
    try:
        subject, issuer = leaf.subject, leaf.issuer
        key_type, key_size, curve = _key_description(leaf.public_key())
        not_before, not_after = leaf.not_valid_before_utc, leaf.not_valid_after_utc
        signature_algorithm = getattr(leaf.signature_algorithm_oid, "_name", leaf.signature_algorithm_oid.dotted_string)
        extracted: dict[str, Any] = {
            "document": "certificate",
            "format": encoding,
            "subject": subject.rfc4514_string(),
            "organisation": _name_attribute(subject, NameOID.ORGANIZATION_NAME),
            "serial_number": _name_attribute(subject, NameOID.SERIAL_NUMBER),
            "common_name": _name_attribute(subject, NameOID.COMMON_NAME),
            "country": _name_attribute(subject, NameOID.COUNTRY_NAME),
            "issuer": issuer.rfc4514_string(),
            "issuer_organisation": _name_attribute(issuer, NameOID.ORGANIZATION_NAME),
            "certificate_serial": format(leaf.serial_number, "x"),
            "fingerprint_sha256": leaf.fingerprint(hashes.SHA256()).hex(),
            "not_before": not_before.isoformat(),
            "not_after": not_after.isoformat(),
            "key_type": key_type,
            "key_size": key_size,
            "curve": curve,
            "signature_algorithm": signature_algorithm,
        }
    except (ValueError, UnsupportedAlgorithm) as exc:
        # cryptography parses lazily: a damaged field surfaces only when it is read.
        raise ValidationError(MALFORMED_CERTIFICATE, code="malformed_certificate") from exc
    roots = load_trust_store() if trust_store is None else trust_store
    warnings: list[str] = []
    rsa_below_3072 = key_type == "RSA" and (key_size or 0) < MIN_RSA_BITS
    if rsa_below_3072:
        warnings.append(f"RSA key of {key_size} bits; NCSC asks for at least {MIN_RSA_BITS}.")
    if key_type in ("DSA",) or (key_type == "EC" and curve not in ("secp256r1", "secp384r1")):
        warnings.append(f"{key_type} {curve or key_size} is not an NCSC-recommended key.")
    if "sha1" in signature_algorithm.lower() or "md5" in signature_algorithm.lower():
        warnings.append(f"Signed with {signature_algorithm}, which is no longer safe.")
    extracted.update(
        {
            "rsa_below_3072": rsa_below_3072,
            "expired": now > not_after,
            "not_yet_valid": now < not_before,
            "self_signed": _issued_by(leaf, leaf),
            "trust_store_configured": bool(roots),
            "chains_to_trust_store": bool(roots) and chains_to(leaf, intermediates=intermediates, roots=roots, now=now),
            "chain_length": len(certificates),
            "warnings": warnings,
        }
    )
    return extracted


# --- PDF and eIDAS attestations -------------------------------------------------------------


def check_pdf(content: bytes) -> dict[str, Any]:
    """A whole PDF within the size limit (magic ``%PDF-``, an ``%%EOF`` marker), without active content."""
    check_size(content)
    if not content.startswith(b"%PDF-"):
        raise ValidationError("The file is not a PDF document.", code="not_pdf")
    if b"%%EOF" not in content[-1024:]:
        raise ValidationError("The PDF is incomplete (no end-of-file marker); it may be truncated.", code="truncated")
    if any(marker in content for marker in _PDF_ACTIVE_CONTENT):
        raise ValidationError("The PDF contains scripts or actions; upload a plain document.", code="active_content")
    version = content[5:8].decode("ascii", errors="replace")
    return {"format": "PDF", "pdf_version": version, "size": len(content)}


def parse_kvk_extract(content: bytes) -> dict[str, Any]:
    return {"document": "kvk_extract", **check_pdf(content)}


def _first(data: dict[str, Any], keys: tuple[str, ...]) -> str:
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    return ""


def parse_eidas_attestation(content: bytes) -> dict[str, Any]:
    """A PDF (kept for the reviewer) or a JSON object naming the legal person's eIDAS identifier."""
    check_size(content)
    if content.startswith(b"%PDF-"):
        return {"document": "eidas_attestation", **check_pdf(content)}
    try:
        data = json.loads(content.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValidationError("An eIDAS attestation is a JSON or PDF document.", code="not_attestation") from exc
    if not isinstance(data, dict):
        raise ValidationError("An eIDAS attestation in JSON is an object.", code="not_attestation")
    identifier = _first(data, _EIDAS_IDENTIFIER_KEYS)
    if not identifier:
        raise ValidationError(
            "The attestation names no legal identifier (expected a 'legal_identifier' member).", code="no_identifier"
        )
    try:
        validate_eidas_identifier(identifier)
    except ValidationError as exc:
        raise ValidationError(f"The attestation's legal identifier is not valid: {exc.messages[0]}") from exc
    return {
        "document": "eidas_attestation",
        "format": "JSON",
        "legal_identifier": identifier,
        "legal_name": _first(data, _EIDAS_NAME_KEYS),
        "size": len(content),
    }


# --- claimed against found ------------------------------------------------------------------


def _normalised_name(name: str) -> str:
    """Case, accents, punctuation and spacing do not make two legal names differ ("B.V." = "BV")."""
    decomposed = unicodedata.normalize("NFKD", name)
    letters = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^\w\s]", "", letters.casefold()).split())


def _mismatch(field: str, claimed: str, found: str) -> dict[str, str]:
    return {"field": field, "claimed": claimed, "found": found}


def compare_claims(extracted: dict[str, Any], organisation: Any) -> list[dict[str, str]]:
    """Where a document disagrees with the organisation's claims: ``{"field", "claimed", "found"}``."""
    mismatches: list[dict[str, str]] = []
    document = extracted.get("document")
    if document == "certificate":
        serial = extracted.get("serial_number", "")
        if organisation.oin:
            if serial != organisation.oin:
                mismatches.append(_mismatch("oin", organisation.oin, serial))
        elif serial.startswith("00000003") and organisation.kvk_number:
            # An OIN built on the KvK number: prefix 00000003, the 8 digits, 0000.
            if serial[8:16] != organisation.kvk_number:
                mismatches.append(_mismatch("kvk_number", organisation.kvk_number, serial[8:16]))
        elif serial.startswith("00000001") and organisation.rsin:
            if serial[8:17] != organisation.rsin:
                mismatches.append(_mismatch("rsin", organisation.rsin, serial[8:17]))
        elif serial:
            # The certificate carries an OIN the organisation did not claim: show it, do not refuse.
            mismatches.append(_mismatch("oin", "", serial))
        name = extracted.get("organisation", "")
        if _normalised_name(name) != _normalised_name(organisation.name):
            mismatches.append(_mismatch("name", organisation.name, name))
        country = extracted.get("country", "")
        if country and country.upper() != (organisation.country or "").upper():
            mismatches.append(_mismatch("country", organisation.country, country))
    elif document == "eidas_attestation" and extracted.get("format") == "JSON":
        identifier = extracted.get("legal_identifier", "")
        if identifier != organisation.eidas_identifier:
            mismatches.append(_mismatch("eidas_identifier", organisation.eidas_identifier, identifier))
        name = extracted.get("legal_name", "")
        if name and _normalised_name(name) != _normalised_name(organisation.name):
            mismatches.append(_mismatch("name", organisation.name, name))
    return mismatches


def refusing_mismatches(mismatches: list[dict[str, str]]) -> list[dict[str, str]]:
    """The mismatches that refuse a document: a different identifier than the one claimed."""
    return [m for m in mismatches if m["field"] in IDENTIFIER_FIELDS and m["claimed"] and m["found"]]
