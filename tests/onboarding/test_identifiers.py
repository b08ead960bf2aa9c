"""Identifier validators (STANDARDS.md, identifiers for onboarding): OIN, KvK number, RSIN, eIDAS."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError

from onboarding.identifiers import (
    passes_eleven_test,
    validate_eidas_identifier,
    validate_kvk_number,
    validate_oin,
    validate_rsin,
)


@pytest.mark.parametrize(
    "oin",
    [
        "00000001002220647000",  # RSIN 002220647 + 000 (the STANDARDS.md example)
        "00000003123456780000",  # KvK number 12345678 + 0000
        "00000004003214340000",  # SubOIN
        "00000099123456780000",  # test prefix
        "00000008123456789000",  # foreign organisation
    ],
)
def test_good_oins_pass(oin):
    validate_oin(oin)


@pytest.mark.parametrize(
    ("oin", "code"),
    [
        ("12345678002220647000", "oin_prefix"),  # unknown prefix
        ("00000005002220647000", "oin_prefix"),  # 5 is not issued
        ("00000001002220647001", "oin_suffix"),  # the suffix is zeros
        ("00000001002220647100", "oin_suffix"),
        ("0000000100222064700", "oin_format"),  # 19 digits
        ("000000010022206470000", "oin_format"),  # 21 digits
        ("0000000100222064700A", "oin_format"),
        ("", "oin_format"),
        ("00000001123456789000", "oin_rsin"),  # the RSIN inside fails the 11-test
        ("00000003123456789000", "oin_kvk"),  # a KvK-based OIN ends in 0000
    ],
)
def test_bad_oins_are_refused_with_a_reason(oin, code):
    with pytest.raises(ValidationError) as caught:
        validate_oin(oin)

    assert caught.value.code == code


@pytest.mark.parametrize("number", ["12345678", "00000001", "90000001"])
def test_kvk_numbers_are_eight_digits(number):
    validate_kvk_number(number)


@pytest.mark.parametrize("number", ["1234567", "123456789", "1234567a", " 12345678", ""])
def test_a_kvk_number_of_another_length_or_with_letters_is_refused(number):
    with pytest.raises(ValidationError, match="exactly 8 digits"):
        validate_kvk_number(number)


@pytest.mark.parametrize("rsin", ["002220647", "111222333", "123456782"])
def test_rsins_that_pass_the_eleven_test(rsin):
    assert passes_eleven_test(rsin)
    validate_rsin(rsin)


@pytest.mark.parametrize("rsin", ["123456789", "002220648", "111222334"])
def test_an_rsin_failing_the_eleven_test_is_refused(rsin):
    with pytest.raises(ValidationError) as caught:
        validate_rsin(rsin)

    assert caught.value.code == "rsin_checksum"


@pytest.mark.parametrize("rsin", ["00222064", "0022206470", "abcdefghi"])
def test_an_rsin_is_nine_digits(rsin):
    with pytest.raises(ValidationError) as caught:
        validate_rsin(rsin)

    assert caught.value.code == "rsin_format"


def test_the_eleven_test_weights_and_the_all_zero_number():
    # 9*0 + 8*0 + 7*2 + 6*2 + 5*2 + 4*0 + 3*6 + 2*4 - 1*7 = 55 = 5 * 11
    assert passes_eleven_test("002220647")
    assert not passes_eleven_test("000000000")  # sums to zero: no number


@pytest.mark.parametrize("identifier", ["NL/DE/123456789", "DE/NL/HRB123456", "BE/NL/0203.201.340", "FR/NL/FR-552:100"])
def test_eidas_legal_identifiers(identifier):
    validate_eidas_identifier(identifier)


@pytest.mark.parametrize(
    "identifier",
    ["123456789", "NL-DE-123456789", "nl/de/123", "NLD/DE/123", "NL/DE/", "NL/DE/has space", "NL/DE/" + "9" * 201],
)
def test_malformed_eidas_identifiers_are_refused(identifier):
    with pytest.raises(ValidationError, match="eIDAS legal identifier"):
        validate_eidas_identifier(identifier)
