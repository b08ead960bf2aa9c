"""Attacks on client authentication and on signed registration documents (RFC 7523 §3,
RFC 7591 §2.3, RFC 8725; RFC 9700 §2.5, RFC 6819 §4.3.x).

A client assertion replayed (at the same or another endpoint), addressed to another server,
signed with ``alg: none``, HMAC-signed with the client's public key, or carrying its own key
(``jwk``, ``jku``, ``x5u``, ``x5c`` headers); the same tricks on software statements.
The server verifies with keys it already holds and fetches nothing an attacker names.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from django.conf import settings

from authserver.audit import AuditEvent
from clients.models import Client, ClientCredential

from ..conftest import REDIRECT_URI, ClientKey, make_client_key
from ..protocol.test_errors import assert_oauth_error, post_form, token_aud

pytestmark = pytest.mark.django_db

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
STATEMENT_ISSUER = "https://registry.example.nl"


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_for(client_id: str, **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_aud(),
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }
    claims.update(overrides)
    return claims


def token_with(client, registered, assertion: str, path: str = "/oauth/token", **extra: str):
    form = {
        "client_id": registered.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }
    if path == "/oauth/token":
        form.setdefault("grant_type", "client_credentials")
    return post_form(client, path, form)


def public_pem(key: ClientKey) -> bytes:
    return key.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def unsigned(header: dict[str, Any], claims: dict[str, Any]) -> str:
    return f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}."


def hmac_signed(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    import hashlib
    import hmac

    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(signature)}"


def forged_variants(key: ClientKey, claims: dict[str, Any]) -> dict[str, str]:
    """Every way to sign without the private key, naming the registered key's kid."""
    attacker = make_client_key("RS256")
    attacker_jwk = attacker.public_jwk
    modulus = base64.urlsafe_b64decode(key.public_jwk["n"] + "==")
    return {
        "alg-none": unsigned({"alg": "none", "kid": key.kid, "typ": "JWT"}, claims),
        "alg-None": unsigned({"alg": "None", "kid": key.kid}, claims),
        "no-alg": unsigned({"kid": key.kid}, claims),
        "hs256-public-pem": hmac_signed({"alg": "HS256", "kid": key.kid}, claims, public_pem(key)),
        "hs256-jwk-json": hmac_signed(
            {"alg": "HS256", "kid": key.kid}, claims, json.dumps(key.public_jwk, sort_keys=True).encode()
        ),
        "hs256-modulus": hmac_signed({"alg": "HS256", "kid": key.kid}, claims, modulus),
        "hs512-public-pem": hmac_signed({"alg": "HS512", "kid": key.kid}, claims, public_pem(key)),
        # The attacker's own key, shipped in the header and named with the victim's kid.
        "embedded-jwk": jwt.encode(
            claims, attacker.private_key, algorithm="RS256", headers={"kid": key.kid, "jwk": attacker_jwk}
        ),
        "jku": jwt.encode(
            claims,
            attacker.private_key,
            algorithm="RS256",
            headers={"kid": key.kid, "jku": "https://attacker.example/jwks.json"},
        ),
        "x5u": jwt.encode(
            claims,
            attacker.private_key,
            algorithm="RS256",
            headers={"kid": key.kid, "x5u": "https://attacker.example/cert.pem"},
        ),
        "signature-stripped": jwt.encode(claims, key.private_key, algorithm="RS256", headers={"kid": key.kid}).rsplit(
            ".", 1
        )[0]
        + ".",
        "es256-by-attacker": jwt.encode(
            claims, make_client_key("ES256").private_key, algorithm="ES256", headers={"kid": key.kid}
        ),
    }


# ---- client assertions (private_key_jwt) ----------------------------------------------------------


def test_an_assertion_works_once_across_every_endpoint(client, cc_jwt, resource_server):
    """The jti replay cache is one for all endpoints: an assertion seen at the token endpoint is
    refused at revocation and at the token endpoint again (RFC 7523 §3 item 7)."""
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, settings.AUTHSERVER_ISSUER)
    first = token_with(client, cc_jwt, assertion)
    assert first.status_code == 200, first.content
    token = first.json()["access_token"]
    replayed = token_with(client, cc_jwt, assertion, path="/oauth/revoke", token=token)
    assert_oauth_error(replayed, 401, "invalid_client", mentions="jti")
    assert_oauth_error(token_with(client, cc_jwt, assertion), 401, "invalid_client", mentions="jti")
    # The token is still there: the replayed revocation did nothing.
    fresh = cc_jwt.key.assertion(cc_jwt.client_id, settings.AUTHSERVER_ISSUER)
    assert token_with(client, cc_jwt, fresh, path="/oauth/revoke", token=token).status_code == 200


def test_a_new_assertion_reusing_a_jti_is_refused(client, cc_jwt):
    jti = uuid.uuid4().hex
    assert token_with(client, cc_jwt, cc_jwt.key.assertion(cc_jwt.client_id, token_aud(), jti=jti)).status_code == 200
    again = cc_jwt.key.assertion(cc_jwt.client_id, token_aud(), jti=jti, iat=int(time.time()) + 1)
    assert_oauth_error(token_with(client, cc_jwt, again), 401, "invalid_client", mentions="jti")


@pytest.mark.parametrize(
    "audience",
    [
        "https://other-as.example.org/oauth/token",
        ["https://other-as.example.org/oauth/token"],
        "https://other-as.example.org",
        "oauth/token",
    ],
)
def test_an_assertion_made_for_another_server_is_refused(client, cc_jwt, audience):
    """A malicious server that received the client's assertion cannot spend it here."""
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, audience)
    assert_oauth_error(token_with(client, cc_jwt, assertion), 401, "invalid_client", mentions="aud")


def test_a_long_lived_assertion_is_refused(client, cc_jwt):
    """A captured assertion is worth little: its lifetime is capped (RFC 7523 §3 item 4)."""
    far = int(time.time()) + settings.AUTHSERVER_CLIENT_ASSERTION_MAX_LIFETIME + 3600
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, token_aud(), exp=far)
    assert_oauth_error(token_with(client, cc_jwt, assertion), 401, "invalid_client", mentions="exp")


def test_forged_assertions_are_refused_and_fetch_nothing(client, cc_jwt, canary):
    claims = claims_for(cc_jwt.client_id)
    variants = forged_variants(cc_jwt.key, claims)
    variants["jku-canary"] = jwt.encode(
        claims,
        make_client_key("RS256").private_key,
        algorithm="RS256",
        headers={"kid": cc_jwt.key.kid, "jku": canary.url("/jwks.json"), "x5u": canary.url("/cert.pem")},
    )
    for name, assertion in variants.items():
        response = token_with(client, cc_jwt, assertion)
        assert response.status_code == 401, (name, response.content)
        assert response.json()["error"] == "invalid_client", name
    assert canary.connections == []
    # The genuine key still works: the refusals are the forgeries' own.
    assert token_with(client, cc_jwt, cc_jwt.key.assertion(cc_jwt.client_id, token_aud())).status_code == 200


def test_an_assertion_naming_another_client_authenticates_nobody(client, cc_jwt, organisation):
    """iss/sub of one client, signed by another client's key: the key must be the named client's."""
    from ..conftest import register_client

    other = register_client(
        organisation, grant_type="client_credentials", auth_method="private_key_jwt", scopes=["orders:read"]
    )
    assertion = other.key.assertion(cc_jwt.client_id, token_aud())
    assert_oauth_error(token_with(client, cc_jwt, assertion), 401, "invalid_client")
    spoofed = jwt.encode(
        claims_for(cc_jwt.client_id), other.key.private_key, algorithm="RS256", headers={"kid": cc_jwt.key.kid}
    )
    assert_oauth_error(token_with(client, cc_jwt, spoofed), 401, "invalid_client")


# ---- software statements (RFC 7591 §2.3) -------------------------------------------------------------


@pytest.fixture
def trusted_issuer(settings) -> ClientKey:
    key = make_client_key("RS256")
    settings.AUTHSERVER_SOFTWARE_STATEMENT_ISSUERS = {STATEMENT_ISSUER: {"keys": [key.public_jwk]}}
    settings.AUTHSERVER_OPEN_REGISTRATION_ENABLED = True
    settings.AUTHSERVER_REGISTRATION_RATE_LIMIT = "100000/hour"
    return key


def statement_claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": STATEMENT_ISSUER,
        "iat": now,
        "exp": now + 600,
        "software_id": "nl.example.vouched",
        "client_name": "Vouched for",
        **overrides,
    }


def registration(statement: str) -> dict[str, Any]:
    key = make_client_key()
    return {
        "client_name": "Self-declared",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.public_jwk]},
        "software_statement": statement,
    }


def stored() -> tuple[int, int, int]:
    return Client.objects.count(), ClientCredential.objects.count(), AuditEvent.objects.count()


def test_forged_software_statements_are_refused_store_nothing_and_fetch_nothing(client, trusted_issuer, canary):
    claims = statement_claims()
    variants = forged_variants(trusted_issuer, claims)
    variants["jku-canary"] = jwt.encode(
        claims,
        make_client_key("RS256").private_key,
        algorithm="RS256",
        headers={"kid": trusted_issuer.kid, "jku": canary.url("/jwks.json"), "x5u": canary.url("/cert.pem")},
    )
    before = stored()
    for name, statement in variants.items():
        response = client.post("/oauth/register", json.dumps(registration(statement)), content_type="application/json")
        assert response.status_code == 400, (name, response.content)
        assert response.json()["error"] == "invalid_software_statement", (name, response.json())
    assert stored() == before
    assert canary.connections == []
    # The trusted issuer's own signature is accepted, and its claims win over the request's.
    genuine = jwt.encode(claims, trusted_issuer.private_key, algorithm="RS256", headers={"kid": trusted_issuer.kid})
    response = client.post("/oauth/register", json.dumps(registration(genuine)), content_type="application/json")
    assert response.status_code == 201, response.content
    assert response.json()["client_name"] == "Vouched for"


def test_a_statement_signed_by_the_trusted_key_but_pointing_at_other_keys_fetches_nothing(
    client, trusted_issuer, canary
):
    """``jku``/``x5u`` are ignored, not followed: verification uses the configured JWKS only."""
    statement = jwt.encode(
        statement_claims(),
        trusted_issuer.private_key,
        algorithm="RS256",
        headers={"kid": trusted_issuer.kid, "jku": canary.url("/jwks.json"), "x5u": canary.url("/cert.pem")},
    )
    response = client.post("/oauth/register", json.dumps(registration(statement)), content_type="application/json")
    assert response.status_code == 201, response.content
    assert canary.connections == []


def test_a_self_issued_statement_from_an_untrusted_issuer_is_unapproved(client, trusted_issuer):
    attacker = make_client_key("RS256")
    claims = statement_claims(iss="https://attacker.example", software_id="nl.example.vouched")
    statement = jwt.encode(claims, attacker.private_key, algorithm="RS256", headers={"kid": attacker.kid})
    before = stored()
    response = client.post("/oauth/register", json.dumps(registration(statement)), content_type="application/json")
    assert response.status_code == 400
    assert response.json()["error"] == "unapproved_software_statement"
    assert stored() == before
