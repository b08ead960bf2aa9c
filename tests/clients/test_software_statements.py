"""RFC 7591 §2.3 software statements: only a trusted issuer's valid signature counts."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from typing import Any

import jwt
import pytest
import time_machine
from django.utils import timezone

from clients.software_statements import (
    INVALID,
    UNAPPROVED,
    SoftwareStatementError,
    verify_software_statement,
)

from ..conftest import ClientKey, make_client_key

ISSUER = "https://registry.example.nl"


@pytest.fixture
def rs256() -> ClientKey:
    return make_client_key("RS256")


@pytest.fixture
def trusted(settings, rs256) -> ClientKey:
    settings.AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS = {ISSUER: {"keys": [rs256.public_jwk]}}
    return rs256


def statement(key: ClientKey, alg: str | None = None, headers: dict[str, Any] | None = None, **claims: Any) -> str:
    now = int(time.time())
    payload = {"iss": ISSUER, "iat": now, "exp": now + 600, "software_id": "nl.example.rp", **claims}
    payload = {name: value for name, value in payload.items() if value is not None}
    return jwt.encode(payload, key.private_key, algorithm=alg or key.alg, headers={"kid": key.kid, **(headers or {})})


def refused(value: Any) -> SoftwareStatementError:
    with pytest.raises(SoftwareStatementError) as caught:
        verify_software_statement(value)
    return caught.value


def test_a_trusted_statement_gives_its_metadata_without_jwt_claims(trusted):
    verified = verify_software_statement(
        statement(trusted, client_name="Vouched", redirect_uris=["https://rp.example.org/cb"], jti="abc")
    )

    assert verified.issuer == ISSUER
    assert verified.metadata == {
        "software_id": "nl.example.rp",
        "client_name": "Vouched",
        "redirect_uris": ["https://rp.example.org/cb"],
    }


@pytest.mark.parametrize("alg", ["PS256", "ES256"])
def test_other_allowed_algorithms_from_a_jwks_file(settings, tmp_path, alg):
    key = make_client_key("ES256" if alg == "ES256" else "RS256")
    public = {**key.public_jwk, "alg": alg}
    path = tmp_path / "registry.jwks"
    path.write_text(json.dumps({"keys": [public]}))
    settings.AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS = {ISSUER: str(path)}

    assert verify_software_statement(statement(key, alg=alg)).issuer == ISSUER


def test_an_untrusted_issuer_is_unapproved(trusted):
    error = refused(statement(trusted, iss="https://elsewhere.example.com"))
    assert error.error == UNAPPROVED
    assert "elsewhere.example.com" in error.description


def test_no_issuers_configured_means_every_statement_is_unapproved(settings, rs256):
    settings.AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS = {}
    assert refused(statement(rs256)).error == UNAPPROVED


def test_a_forged_signature_is_invalid(trusted):
    forger = make_client_key("RS256")
    forger.kid = trusted.kid
    error = refused(statement(forger))
    assert error.error == INVALID
    assert "signature" in error.description


def test_a_key_the_issuer_does_not_have_is_invalid(trusted):
    assert refused(statement(make_client_key("RS256"))).error == INVALID


@pytest.mark.parametrize(
    ("claims", "mentions"),
    [
        ({"exp": int(time.time()) - 3600, "iat": int(time.time()) - 7200}, "expired"),
        ({"iat": None}, "iat"),
        ({"iat": int(time.time()) + 3600}, ""),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"iss": None}, "iss"),
        ({"aud": "https://other-server.example.com"}, "audience"),
    ],
)
def test_times_issuer_and_audience_are_checked(trusted, claims, mentions):
    error = refused(statement(trusted, **claims))
    assert error.error == INVALID
    assert mentions in error.description


def test_an_audience_naming_this_server_is_accepted(trusted, settings):
    assert verify_software_statement(statement(trusted, aud=[settings.AUTHSERVER_ISSUER])).issuer == ISSUER


def test_expiry_follows_the_clock(trusted):
    value = statement(trusted)
    with time_machine.travel(timezone.now() + timedelta(minutes=11)):
        assert refused(value).error == INVALID
    assert verify_software_statement(value).issuer == ISSUER


def test_weak_or_unsigned_algorithms_are_invalid(trusted):
    hmac_signed = jwt.encode({"iss": ISSUER, "iat": int(time.time())}, "a shared secret of enough length!", "HS256")
    unsigned = jwt.encode({"iss": ISSUER, "iat": int(time.time())}, None, algorithm="none")
    for value in (hmac_signed, unsigned):
        error = refused(value)
        assert error.error == INVALID
        assert "RS256" in error.description


@pytest.mark.parametrize("value", ["", "not-a-jwt", "a.b.c", 42, None, {"iss": ISSUER}, "x" * 20000])
def test_malformed_statements_are_invalid(trusted, value):
    assert refused(value).error == INVALID


def test_an_unreadable_jwks_file_is_the_servers_problem_not_a_crash(settings, rs256, tmp_path, caplog):
    settings.AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS = {ISSUER: str(tmp_path / "missing.jwks")}
    error = refused(statement(rs256))
    assert error.error == UNAPPROVED
    assert "not available" in error.description
    assert any("cannot load its JWKS" in record.getMessage() for record in caplog.records)
