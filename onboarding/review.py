"""What a reviewer sees: the organisation's claims beside what each evidence item says.

Comparison runs against the organisation's claims as they are now (``evidence.compare_claims``),
so a claim edited after the upload still shows up as a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .evidence import compare_claims
from .models import Evidence, KycApplication, Organisation

FIELD_LABELS = {
    "name": "Legal name",
    "oin": "OIN",
    "kvk_number": "KvK number",
    "rsin": "RSIN",
    "eidas_identifier": "eIDAS legal identifier",
    "country": "Country",
}

# Claimed field -> where a document type carries it.
_FOUND_IN: dict[str, dict[str, str]] = {
    "certificate": {"name": "organisation", "oin": "serial_number", "country": "country"},
    "eidas_attestation": {"eidas_identifier": "legal_identifier", "name": "legal_name"},
}


@dataclass
class ComparisonRow:
    field: str
    label: str
    claimed: str
    found: str
    mismatch: bool


@dataclass
class EvidenceComparison:
    evidence: Evidence
    rows: list[ComparisonRow]
    details: list[tuple[str, str]]
    problems: list[str] = field(default_factory=list)

    @property
    def mismatch_count(self) -> int:
        return sum(1 for row in self.rows if row.mismatch)


def claims_of(organisation: Organisation) -> list[tuple[str, str]]:
    """The identifiers the applicant claimed, in the order a reviewer reads them."""
    return [
        ("Legal name", organisation.name),
        ("Kind", organisation.get_kind_display()),
        ("OIN", organisation.oin),
        ("KvK number", organisation.kvk_number),
        ("RSIN", organisation.rsin),
        ("eIDAS legal identifier", organisation.eidas_identifier),
        ("Country", organisation.country),
        ("Contact", " · ".join(v for v in (organisation.contact_name, organisation.contact_email) if v)),
    ]


def _mismatches(evidence: Evidence, organisation: Organisation) -> list[dict[str, str]]:
    extracted = evidence.extracted or {}
    if extracted.get("document"):
        return compare_claims(extracted, organisation)
    return list(evidence.mismatches or [])


def _rows(evidence: Evidence, organisation: Organisation) -> list[ComparisonRow]:
    extracted: dict[str, Any] = evidence.extracted or {}
    mismatches = {m.get("field", ""): m for m in _mismatches(evidence, organisation)}
    rows: list[ComparisonRow] = []
    document = extracted.get("document", evidence.kind)
    if document == "eidas_attestation" and extracted.get("format") != "JSON":
        document = ""  # a PDF attestation: nothing machine-readable to compare
    for claim, key in _FOUND_IN.get(document, {}).items():
        found = str(extracted.get(key) or "")
        if claim == "name" and not found and document == "eidas_attestation":
            continue
        mismatch = mismatches.pop(claim, None)
        rows.append(
            ComparisonRow(
                field=claim,
                label=FIELD_LABELS[claim] + (" (subject serialNumber)" if key == "serial_number" else ""),
                claimed=mismatch["claimed"] if mismatch else str(getattr(organisation, claim, "") or ""),
                found=mismatch["found"] if mismatch else found,
                mismatch=mismatch is not None,
            )
        )
    # Mismatches on fields with no row of their own (a KvK number or RSIN inside the OIN).
    for claim, mismatch in mismatches.items():
        rows.append(
            ComparisonRow(
                field=claim,
                label=FIELD_LABELS.get(claim, claim),
                claimed=str(mismatch.get("claimed", "")),
                found=str(mismatch.get("found", "")),
                mismatch=True,
            )
        )
    return rows


def _certificate_details(extracted: dict[str, Any]) -> tuple[list[tuple[str, str]], list[str]]:
    key = " ".join(str(part) for part in (extracted.get("key_type"), extracted.get("key_size"), "bits") if part)
    if extracted.get("curve"):
        key += f" ({extracted['curve']})"
    if not extracted.get("trust_store_configured"):
        chain = "not checked: no trust store configured"
    elif extracted.get("chains_to_trust_store"):
        chain = "chains to a configured root"
    else:
        chain = "does NOT chain to a configured root"
    details = [
        ("Subject", str(extracted.get("subject", ""))),
        ("Issuer", str(extracted.get("issuer", ""))),
        ("Valid from", str(extracted.get("not_before", ""))),
        ("Valid until", str(extracted.get("not_after", ""))),
        ("Key", key),
        ("Signature algorithm", str(extracted.get("signature_algorithm", ""))),
        ("Trust", chain),
        ("SHA-256 fingerprint", str(extracted.get("fingerprint_sha256", ""))),
    ]
    problems: list[str] = []
    if extracted.get("expired"):
        problems.append("The certificate has expired.")
    if extracted.get("not_yet_valid"):
        problems.append("The certificate is not valid yet.")
    if extracted.get("self_signed"):
        problems.append("The certificate is self-signed.")
    if extracted.get("trust_store_configured") and not extracted.get("chains_to_trust_store"):
        problems.append("The certificate does not chain to a configured trust root.")
    problems.extend(str(w) for w in extracted.get("warnings", []) or [])
    return details, problems


def evidence_comparisons(application: KycApplication) -> list[EvidenceComparison]:
    """One comparison per evidence item, in upload order."""
    organisation = application.organisation
    result: list[EvidenceComparison] = []
    for evidence in application.evidence.select_related("uploaded_by").defer("content"):
        extracted: dict[str, Any] = evidence.extracted or {}
        if extracted.get("document") == "certificate":
            details, problems = _certificate_details(extracted)
        else:
            details = [(k.replace("_", " ").capitalize(), str(v)) for k, v in extracted.items() if k != "document"]
            problems = []
        result.append(
            EvidenceComparison(
                evidence=evidence, rows=_rows(evidence, organisation), details=details, problems=problems
            )
        )
    return result
