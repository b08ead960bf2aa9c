"""Validators for Dutch and EU organisation identifiers (STANDARDS.md, identifiers)."""

from __future__ import annotations

import re

from django.core.exceptions import ValidationError

# OIN prefixes (Logius, OIN stelsel): what the main number is.
OIN_PREFIXES = {
    "00000001": "RSIN",
    "00000002": "fiscal number",
    "00000003": "KvK number",
    "00000004": "SubOIN",
    "00000006": "Logius-issued",
    "00000007": "BRIN",
    "00000008": "foreign organisation",
    "00000009": "UZI",
    "00000010": "TRR-BD",
    "00000099": "test",
}
_EIDAS = re.compile(r"^[A-Z]{2}/[A-Z]{2}/[A-Za-z0-9+\-_.:]{1,200}$")


def passes_eleven_test(number: str) -> bool:
    """RSIN/BSN 11-test: weights 9..2 and -1; the sum is divisible by 11 (and not zero)."""
    if not re.fullmatch(r"\d{9}", number):
        return False
    weights = [9, 8, 7, 6, 5, 4, 3, 2, -1]
    total = sum(int(digit) * weight for digit, weight in zip(number, weights, strict=True))
    return total % 11 == 0 and total != 0


def validate_oin(value: str) -> None:
    """OIN: 20 digits = prefix (8) + main number (8 or 9) + zero suffix (4 or 3)."""
    if not re.fullmatch(r"\d{20}", value or ""):
        raise ValidationError("An OIN is exactly 20 digits.", code="oin_format")
    prefix = value[:8]
    if prefix not in OIN_PREFIXES:
        raise ValidationError(f"OIN prefix {prefix} is not a known prefix.", code="oin_prefix")
    if not value.endswith("000"):
        raise ValidationError("An OIN ends in a zero suffix (000 or 0000).", code="oin_suffix")
    if prefix == "00000001" and not passes_eleven_test(value[8:17]):
        raise ValidationError("The RSIN inside this OIN fails the 11-test.", code="oin_rsin")
    if prefix == "00000003" and not value.endswith("0000"):
        raise ValidationError("A KvK-based OIN is the prefix, the 8-digit KvK number and 0000.", code="oin_kvk")


def validate_kvk_number(value: str) -> None:
    """KvK number: exactly 8 digits, no check digit."""
    if not re.fullmatch(r"\d{8}", value or ""):
        raise ValidationError("A KvK number is exactly 8 digits.", code="kvk_format")


def validate_rsin(value: str) -> None:
    if not re.fullmatch(r"\d{9}", value or ""):
        raise ValidationError("An RSIN is exactly 9 digits.", code="rsin_format")
    if not passes_eleven_test(value):
        raise ValidationError("This RSIN fails the 11-test.", code="rsin_checksum")


def validate_eidas_identifier(value: str) -> None:
    """eIDAS legal person identifier: origin country / destination country / identifier."""
    if not _EIDAS.fullmatch(value or ""):
        raise ValidationError(
            "An eIDAS legal identifier looks like NL/DE/123456789 (two country codes and an identifier).",
            code="eidas_format",
        )
