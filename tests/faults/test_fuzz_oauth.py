"""Fuzzing the OAuth endpoints and dynamic registration with hypothesis (issue 8 item 3).

Through the Django test client: form bodies built from the real parameter names with random
values at /oauth/token, /oauth/introspect and /oauth/revoke; random query strings at
/oauth/authorize, signed in and not; random JSON and random RFC 7591 metadata at
/oauth/register. Every answer is below 500; an error at the token, introspection, revocation
and registration endpoints is the protocol's JSON (RFC 6749 §5.2, RFC 7662, RFC 7009,
RFC 7591 §3.2.2) with an ``error`` member; /oauth/authorize redirects only to the registered
redirect URI or to the login page; a refused registration stores nothing.

tests/protocol/test_fuzz.py fuzzes raw form bytes and headers at the three back-channel
endpoints; here the values are typed (numbers, lists, objects, JSON text) and the other
two endpoints are covered.
"""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from authserver.models import Scope
from clients.models import Client, ClientCredential, ClientIntake

from ..conftest import REDIRECT_URI, make_client_key

pytestmark = pytest.mark.django_db

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any Unicode but lone surrogates (they cannot be UTF-8 encoded), NUL included.
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=60)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=12,
)


def _form_value(known: list[str]) -> st.SearchStrategy[str]:
    """A form value: a known good value, random text, or a JSON value spelt as text."""
    return st.one_of(st.sampled_from(known), any_text, json_values.map(json.dumps))


def _basic(registered) -> str:
    return "Basic " + base64.b64encode(f"{registered.client_id}:{registered.secret}".encode()).decode()


def assert_json_error_or_success(response) -> dict[str, Any] | None:
    """Below 500, never cacheable, and a 4xx is a JSON object with a string ``error``."""
    status = response.status_code
    assert status < 500, (status, response.content[:500])
    assert "no-store" in response.get("Cache-Control", ""), (status, response.get("Cache-Control"))
    if status >= 400:
        assert response["Content-Type"].startswith(JSON), (status, response["Content-Type"])
        body = json.loads(response.content)
        assert isinstance(body, dict), body
        assert isinstance(body.get("error"), str), body
        assert body["error"], body
        assert "access_token" not in body
        return body
    return None


# ---- token, introspection, revocation -----------------------------------------------------

BACK_CHANNEL = {
    "/oauth/token": [
        "grant_type",
        "scope",
        "code",
        "redirect_uri",
        "code_verifier",
        "refresh_token",
        "resource",
        "client_id",
        "client_secret",
        "client_assertion",
        "client_assertion_type",
    ],
    "/oauth/introspect": ["token", "token_type_hint", "client_id", "client_secret"],
    "/oauth/revoke": ["token", "token_type_hint", "client_id", "client_secret"],
}


@pytest.fixture
def known(client, cc_basic, web_client, resource_server, resource_server_api) -> dict[str, Any]:
    issued = client.post(
        "/oauth/token", "grant_type=client_credentials", content_type=FORM, HTTP_AUTHORIZATION=_basic(cc_basic)
    )
    assert issued.status_code == 200, issued.content
    values = [
        "client_credentials",
        "authorization_code",
        "refresh_token",
        "access_token",
        "orders:read",
        "openid orders:read",
        REDIRECT_URI,
        resource_server_api.audience,
        "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        cc_basic.client_id,
        web_client.client_id,
        issued.json()["access_token"],
    ]
    return {
        "values": values,
        "callers": {
            "/oauth/token": [_basic(cc_basic), _basic(web_client), None],
            "/oauth/introspect": [_basic(resource_server), _basic(cc_basic), None],
            "/oauth/revoke": [_basic(cc_basic), _basic(resource_server), None],
        },
    }


@pytest.mark.parametrize("path", list(BACK_CHANNEL))
def test_typed_random_forms_get_a_protocol_answer(client, known, path):
    @FUZZ
    @given(
        fields=st.dictionaries(st.sampled_from(BACK_CHANNEL[path]), _form_value(known["values"]), max_size=6),
        repeated=st.lists(st.tuples(st.sampled_from(BACK_CHANNEL[path]), any_text), max_size=2),
        authorization=st.sampled_from(known["callers"][path]),
        in_query=st.booleans(),
    )
    def check(fields: dict[str, str], repeated: list[tuple[str, str]], authorization: str | None, in_query: bool):
        pairs = list(fields.items()) + repeated
        extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
        url = f"{path}?{urlencode(pairs[:1])}" if in_query and pairs else path
        response = client.post(url, urlencode(pairs), content_type=FORM, **extra)
        assert_json_error_or_success(response)
        if url != path:
            assert response.status_code == 400, response.content  # RFC 6749 §3.2: nothing in the URL

    check()


# ---- authorization endpoint ---------------------------------------------------------------

AUTHORIZE_PARAMETERS = [
    "response_type",
    "client_id",
    "redirect_uri",
    "scope",
    "state",
    "code_challenge",
    "code_challenge_method",
    "nonce",
    "prompt",
    "max_age",
    "claims",
    "acr_values",
    "response_mode",
    "resource",
    "login_hint",
    "ui_locales",
    "request",
    "request_uri",
    "id_token_hint",
]
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGMSstw-cM"


@pytest.mark.parametrize("signed_in", [True, False], ids=["signed-in", "anonymous"])
def test_random_authorization_requests_never_break_or_redirect_elsewhere(client, user, web_client, signed_in):
    if signed_in:
        client.force_login(user)
    good = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid orders:read",
        "state": "s1",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
    }
    known = [*good.values(), "plain", "token", "none", "login consent", "https://evil.example.com/cb", "0", "-1"]

    @FUZZ
    @example(changes={"code_challenge_method": "plain"}, dropped=[], raw="")
    @example(changes={"max_age": "1e309"}, dropped=[], raw="")
    @example(changes={}, dropped=["state", "redirect_uri"], raw="%")
    @given(
        changes=st.dictionaries(st.sampled_from(AUTHORIZE_PARAMETERS), _form_value(known), max_size=4),
        dropped=st.lists(st.sampled_from(list(good)), max_size=3),
        raw=st.sampled_from(["", "%", "&&=", "scope=%zz", "client_id&client_id=x", "state=%00"]),
    )
    def check(changes: dict[str, str], dropped: list[str], raw: str) -> None:
        params = {k: v for k, v in {**good, **changes}.items() if k not in dropped}
        query = "&".join(filter(None, [urlencode(params, quote_via=quote), raw]))
        response = client.get(f"/oauth/authorize?{query}")
        status = response.status_code
        assert status < 500, (status, response.content[:500])
        if 300 <= status < 400:
            location = response["Location"]
            if location.startswith(REDIRECT_URI):
                # RFC 6749 §4.1.2.1: only to the registered URI, with a code or an error.
                answer = parse_qs(urlsplit(location).query)
                assert "code" in answer or "error" in answer, location
            else:
                assert urlsplit(location).netloc in ("", "testserver"), location
                assert urlsplit(location).path.startswith(("/accounts/", "/oauth/")), location

    check()


@pytest.mark.parametrize("query", ["%", "scope=%zz", "state=%E9%%", "client_id=%G0"])
def test_a_query_string_that_is_not_url_encoded_is_shown_as_invalid_request(client, user, web_client, query):
    """Regression (found by the fuzzer above): oauthlib raised ValueError, a 500."""
    client.force_login(user)
    good = urlencode({"response_type": "code", "client_id": web_client.client_id, "redirect_uri": REDIRECT_URI})
    response = client.get(f"/oauth/authorize?{good}&{query}")
    assert response.status_code == 400
    assert "Location" not in response
    assert "invalid_request" in response.content.decode()


# ---- dynamic registration (RFC 7591) ------------------------------------------------------

METADATA_MEMBERS = [
    "redirect_uris",
    "post_logout_redirect_uris",
    "grant_types",
    "response_types",
    "application_type",
    "token_endpoint_auth_method",
    "client_name",
    "client_uri",
    "logo_uri",
    "contacts",
    "scope",
    "jwks",
    "jwks_uri",
    "software_id",
    "software_version",
    "software_statement",
    "id_token_signed_response_alg",
    "subject_type",
    "tos_uri",
    "policy_uri",
]


@pytest.fixture
def open_registration(settings, db) -> dict[str, Any]:
    settings.AUTHSERVER_OPEN_REGISTRATION_ENABLED = True
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = True
    settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = False
    settings.AUTHSERVER_REGISTRATION_RATE_LIMIT = "100000/hour"
    Scope.objects.create(name="catalogue:read", risk_level=Scope.RiskLevel.LOW, open_registration=True)
    Scope.objects.create(name="orders:read", risk_level=Scope.RiskLevel.MEDIUM)
    key = make_client_key()
    return {
        "client_name": "Fuzzed RP",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "private_key_jwt",
        "jwks": {"keys": [key.public_jwk]},
        "scope": "catalogue:read",
    }


def stored() -> tuple[int, int, int]:
    return Client.objects.count(), ClientCredential.objects.count(), ClientIntake.objects.count()


def register(client, body: bytes, content_type: str = JSON):
    response = client.generic("POST", "/oauth/register", body, content_type=content_type)
    return response, assert_json_error_or_success(response)


def test_random_json_bodies_are_refused_and_store_nothing(client, open_registration):
    @FUZZ
    @example(body=b"")
    @example(body=b"\xff\xfe")
    @example(body=b'{"redirect_uris": "https://rp.example.org/callback"')
    @given(
        body=st.one_of(
            json_values.map(lambda value: json.dumps(value).encode()),
            st.binary(max_size=80),
            any_text.map(lambda text: text.encode()),
        )
    )
    def check(body: bytes) -> None:
        before = stored()
        response, error = register(client, body)
        if response.status_code >= 400:
            assert stored() == before, (response.status_code, error)

    check()


def test_random_metadata_of_real_members_is_answered_in_rfc7591_and_refusals_store_nothing(client, open_registration):
    valid = open_registration
    uri_values = st.sampled_from(
        [REDIRECT_URI, "http://rp.example.org/cb", "https://127.0.0.1/cb", "javascript:alert(1)", "", "https://"]
    )
    member_value = st.one_of(json_values, uri_values, st.lists(uri_values | any_text, max_size=3))

    @FUZZ
    @example(changes={"jwks": {"keys": [{}]}}, dropped=[], extra={})
    @example(changes={"jwks": {"keys": "x"}}, dropped=[], extra={})
    @example(changes={"redirect_uris": [None]}, dropped=[], extra={})
    @example(changes={"scope": 0}, dropped=[], extra={})
    @given(
        changes=st.dictionaries(st.sampled_from(METADATA_MEMBERS), member_value, max_size=4),
        dropped=st.lists(st.sampled_from(list(valid)), max_size=3),
        extra=st.dictionaries(any_text, json_values, max_size=2),
    )
    def check(changes: dict[str, Any], dropped: list[str], extra: dict[str, Any]) -> None:
        body = {k: v for k, v in {**valid, **changes}.items() if k not in dropped}
        body = {**extra, **body}
        before = stored()
        response, error = register(client, json.dumps(body).encode())
        if error is not None:
            assert error["error"] in (
                "invalid_request",
                "invalid_client_metadata",
                "invalid_redirect_uri",
                "invalid_software_statement",
                "unapproved_software_statement",
                "invalid_token",
                "access_denied",
            ), error
            assert stored() == before, (response.status_code, error)
        else:
            assert response.status_code == 201, response.status_code
            assert stored()[0] == before[0] + 1

    check()


def test_the_unchanged_valid_metadata_registers(client, open_registration):
    """The fuzzer's starting point is a registration that succeeds, so changes are what it tests."""
    response, error = register(client, json.dumps(open_registration).encode())
    assert response.status_code == 201, error
