"""Property tests: whatever arrives at the token, introspection and revocation endpoints, the
answer is never a 500, errors are the protocol's JSON (RFC 6749 §5.2, RFC 7662 §2.3,
RFC 7009 §2.2.1) and nothing is cacheable (RFC 6749 §5.1)."""

from __future__ import annotations

import base64
import json
from typing import Any
from urllib.parse import quote_plus

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ..conftest import REDIRECT_URI

FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

PARAMETER_NAMES = [
    "grant_type",
    "client_id",
    "client_secret",
    "client_assertion",
    "client_assertion_type",
    "scope",
    "code",
    "redirect_uri",
    "code_verifier",
    "refresh_token",
    "token",
    "token_type_hint",
    "resource",
    "audience",
    "username",
    "password",
    "device_code",
    "assertion",
    "state",
    "nonce",
    "claims",
    "response_type",
    "access_token",
    "callback",
    "request",
    "request_uri",
    "subject_token",
]
INTERESTING_VALUES = [
    "",
    " ",
    "\x00",
    "authorization_code",
    "client_credentials",
    "refresh_token",
    "password",
    "implicit",
    "urn:ietf:params:oauth:grant-type:device_code",
    ASSERTION_TYPE,
    "openid",
    "orders:read orders:write",
    "access_token",
    "refresh_token",
    REDIRECT_URI,
    "https://evil.example.com/",
    "eyJhbGciOiJub25lIn0.e30.",
    "eyJhbGciOiJIUzI1NiJ9.eyJpc3MiOiJ4In0.c2ln",
    "a" * 5000,
    "%",
    "%%",
    "%zz",
    "\u202e\ufeff",
    "é",
    "😀",
    "[]",
    "{}",
    "null",
    "0",
    "-1",
    "1e309",
]

GRANT_TYPES = ["client_credentials", "authorization_code", "refresh_token", "password", "implicit", ""]
FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any Unicode including NUL; lone surrogates cannot be UTF-8 encoded, so they are left out.
any_text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=80)
latin1_text = st.text(st.characters(max_codepoint=255), max_size=80)


def _values(known: list[str]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.sampled_from(INTERESTING_VALUES + known),
        any_text,
        st.binary(max_size=60),
    )


def _form_bodies(known: list[str]) -> st.SearchStrategy[bytes]:
    """Form bodies: real and random names, repeated names, text/binary/NUL values, or raw bytes."""
    keys = st.one_of(st.sampled_from(PARAMETER_NAMES), any_text)
    pairs = st.lists(st.tuples(keys, _values(known)), max_size=8)

    def encode(items: list[tuple[str, Any]]) -> bytes:
        parts = []
        for key, value in items:
            encoded = quote_plus(value) if isinstance(value, bytes) else quote_plus(value.encode("utf-8"))
            parts.append(f"{quote_plus(key.encode('utf-8'))}={encoded}")
        return "&".join(parts).encode("ascii")

    grant = st.tuples(st.just("grant_type"), st.sampled_from(GRANT_TYPES) | any_text)
    with_grant = st.tuples(grant, pairs).map(lambda drawn: [drawn[0], *drawn[1]])
    raw = st.binary(max_size=200)
    return st.one_of(pairs.map(encode), with_grant.map(encode), with_grant.map(encode), raw)


def _authorization_headers(known_basic: list[str]) -> st.SearchStrategy[str | None]:
    b64 = lambda data: base64.b64encode(data).decode()  # noqa: E731
    return st.one_of(
        st.none(),
        st.sampled_from(known_basic),
        st.binary(max_size=80).map(lambda data: "Basic " + b64(data)),
        st.tuples(latin1_text, latin1_text).map(lambda pair: "Basic " + b64(f"{pair[0]}:{pair[1]}".encode())),
        latin1_text.map(lambda text: "Basic " + text),
        latin1_text.map(lambda text: "Bearer " + text),
        latin1_text,
    )


content_types = st.one_of(
    st.just(FORM),
    st.just(FORM),
    st.just(FORM),
    st.sampled_from(
        [
            f"{FORM}; charset=utf-8",
            f"{FORM}; charset=latin-1",
            f"{FORM}; charset=utf-16",
            f"{FORM}; charset=bogus",
            f"{FORM};charset=",
            "application/json",
            "multipart/form-data; boundary=x",
            "text/plain",
            "",
        ]
    ),
)


def assert_protocol_answer(response) -> None:
    status = response.status_code
    assert status < 500, (status, response.content[:300])
    assert "no-store" in response.get("Cache-Control", ""), (status, response.get("Cache-Control"))
    if 400 <= status < 500:
        assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
        body = json.loads(response.content)
        assert isinstance(body, dict)
        assert isinstance(body.get("error"), str), body
        assert body["error"], body
        assert "access_token" not in body
    elif status == 200 and response.content:
        json.loads(response.content)


def _post(client, path: str, body: bytes, content_type: str, authorization: str | None):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    return client.generic("POST", path, body, content_type=content_type, **extra)


def _basic(registered) -> str:
    return "Basic " + base64.b64encode(f"{registered.client_id}:{registered.secret}".encode()).decode()


@pytest.fixture
def known(client, cc_basic, cc_jwt, web_client, resource_server) -> dict[str, list[str]]:
    """Real client ids and credentials, so the fuzzer also gets past client authentication."""
    clients = [cc_basic, cc_jwt, web_client, resource_server]
    values = [c.client_id for c in clients] + [c.secret for c in clients if c.secret]
    values.append(cc_jwt.key.assertion(cc_jwt.client_id, "http://localhost:8000/oauth/token"))
    # A live access token, so introspection and revocation also meet a token that exists.
    issued = client.post(
        "/oauth/token", "grant_type=client_credentials", content_type=FORM, HTTP_AUTHORIZATION=_basic(cc_basic)
    )
    assert issued.status_code == 200, issued.content
    values.append(issued.json()["access_token"])
    return {"values": values, "basic": [_basic(c) for c in clients if c.secret]}


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_random_form_bodies_never_break_the_endpoint(client, known, path):
    @FUZZ
    @given(
        body=_form_bodies(known["values"]),
        content_type=content_types,
        authorization=_authorization_headers(known["basic"]),
    )
    def check(body: bytes, content_type: str, authorization: str | None) -> None:
        assert_protocol_answer(_post(client, path, body, content_type, authorization))

    check()


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
def test_random_bodies_from_an_authenticated_client(client, known, cc_basic, resource_server, path):
    """Past client authentication: the grant, token and hint handling see the random input."""
    caller = resource_server if path == "/oauth/introspect" else cc_basic
    # The token endpoint always gets a grant_type, the others always a token: both go deeper.
    leading = "grant_type" if path == "/oauth/token" else "token"
    leading_values = st.sampled_from(GRANT_TYPES) if path == "/oauth/token" else _values(known["values"])

    @FUZZ
    @given(
        first=leading_values,
        extra=st.dictionaries(st.sampled_from(PARAMETER_NAMES), _values(known["values"]), max_size=6),
        query=st.one_of(st.none(), st.dictionaries(st.sampled_from(PARAMETER_NAMES), any_text, max_size=2)),
    )
    def check(first: Any, extra: dict[str, Any], query: dict[str, str] | None) -> None:
        fields = {leading: first, **extra}
        body = "&".join(
            f"{quote_plus(k)}={quote_plus(v if isinstance(v, bytes) else v.encode())}" for k, v in fields.items()
        ).encode()
        url = path
        if query:
            url += "?" + "&".join(f"{quote_plus(k)}={quote_plus(v.encode())}" for k, v in query.items())
        response = _post(client, url, body, FORM, _basic(caller))
        assert_protocol_answer(response)
        if query:
            assert response.status_code == 400  # RFC 6749 §3.2: nothing in the URL

    check()
