"""The JWKS cache (counting fetches), cache headers, bearer headers and the challenge format."""

from __future__ import annotations

from email.message import Message
from typing import Any

import pytest
from jwcrypto.jwk import JWK

from authserver_rs import InvalidRequest, InvalidToken, IssuerUnavailable, MemoryCache, MissingToken, bearer_token
from authserver_rs.documents import CachedDocument, JwksCache, parse_jwks
from authserver_rs.errors import bearer_challenge
from authserver_rs.http import Response, check_url


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def jwk(kid: str, alg: str = "ES256") -> dict[str, Any]:
    key = JWK.generate(kty="EC", crv="P-256") if alg == "ES256" else JWK.generate(kty="RSA", size=2048)
    return {**key.export_public(as_dict=True), "kid": kid, "alg": alg, "use": "sig"}


class Issuer:
    """Serves a JWK Set with a max-age, or fails; counts what it is asked."""

    def __init__(self, *keys: dict[str, Any], max_age: int | None = 3600) -> None:
        self.keys = list(keys)
        self.max_age = max_age
        self.down = False
        self.fetches = 0

    def load(self) -> tuple[Any, int | None]:
        self.fetches += 1
        if self.down:
            raise IssuerUnavailable("down")
        return parse_jwks({"keys": self.keys}), self.max_age


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def keys() -> dict[str, dict[str, Any]]:
    return {kid: jwk(kid) for kid in ("k1", "k2", "k3")}


def cache_for(issuer: Issuer, clock: Clock, **kwargs: Any) -> JwksCache:
    kwargs = {"min_age": 60, "max_age": 86400, "refetch_interval": 30, **kwargs}
    return JwksCache(issuer.load, clock=clock, **kwargs)


def test_the_jwks_is_kept_for_its_max_age(clock, keys):
    issuer = Issuer(keys["k1"], max_age=600)
    cache = cache_for(issuer, clock)

    for _ in range(5):
        cache.key("k1")
    clock.now += 599
    cache.key("k1")
    assert issuer.fetches == 1

    clock.now += 1
    cache.key("k1")
    assert issuer.fetches == 2


@pytest.mark.parametrize(("max_age", "kept"), [(0, 60), (5, 60), (None, 300), (10**9, 86400)])
def test_the_max_age_is_clamped(clock, keys, max_age, kept):
    issuer = Issuer(keys["k1"], max_age=max_age)
    cache = cache_for(issuer, clock)
    cache.key("k1")

    clock.now += kept - 1
    cache.key("k1")
    assert issuer.fetches == 1
    clock.now += 1
    cache.key("k1")
    assert issuer.fetches == 2


def test_an_unknown_kid_refetches_at_most_once_per_interval(clock, keys):
    issuer = Issuer(keys["k1"])
    cache = cache_for(issuer, clock)
    cache.key("k1")
    clock.now += 31
    issuer.keys.append(keys["k2"])  # a rotation on the server

    assert cache.key("k2") is not None  # picked up at once: the last fetch is 31 s old
    assert issuer.fetches == 2
    for kid in ("k3", "invented", "k3"):
        with pytest.raises(InvalidToken, match="does not publish"):
            cache.key(kid)
    assert issuer.fetches == 2  # rate-limited: fetched less than 30 s ago

    issuer.keys.append(keys["k3"])
    clock.now += 29
    with pytest.raises(InvalidToken):
        cache.key("k3")
    clock.now += 1
    assert cache.key("k3") is not None
    assert issuer.fetches == 3
    assert cache.key("k1") is not None
    assert cache.fetches == 3


def test_a_failed_refresh_keeps_the_last_keys_for_a_while(clock, keys):
    issuer = Issuer(keys["k1"], max_age=600)
    cache = cache_for(issuer, clock, max_age=3600)
    cache.key("k1")
    issuer.down = True
    clock.now += 600

    assert cache.key("k1") is not None  # stale, but better than refusing every token
    assert issuer.fetches == 2
    cache.key("k1")
    assert issuer.fetches == 2  # and not retried on every request
    clock.now += 30
    cache.key("k1")
    assert issuer.fetches == 3
    clock.now += 3600  # longer past its expiry than max_age: no longer used
    with pytest.raises(IssuerUnavailable):
        cache.key("k1")


def test_without_any_keys_the_answer_is_503_and_retries_are_spaced(clock):
    issuer = Issuer()
    issuer.down = True
    cache = cache_for(issuer, clock)

    for _ in range(3):
        with pytest.raises(IssuerUnavailable) as caught:
            cache.key("k1")
        assert caught.value.status == 503
    assert issuer.fetches == 1
    clock.now += 5
    issuer.down = False
    issuer.keys = []
    with pytest.raises(InvalidToken):
        cache.key("k1")
    assert issuer.fetches == 2


def test_only_public_signing_keys_of_allowed_algorithms_are_used(keys):
    rsa = jwk("rsa", "RS256")
    private = {**JWK.generate(kty="EC", crv="P-256").export_private(as_dict=True), "kid": "private", "alg": "ES256"}
    document = {
        "keys": [
            keys["k1"],
            rsa,
            {**rsa, "kid": "ps", "alg": "PS256"},
            {**keys["k2"], "alg": None},  # no alg: refused (OAUTH-NL: every key has one)
            {**keys["k3"], "use": "enc"},
            {"kty": "oct", "k": "c2VjcmV0", "kid": "hmac", "alg": "HS256"},
            {**rsa, "kid": "none", "alg": "none"},
            private,
            {**keys["k1"], "kid": ""},
            {**keys["k1"], "kid": "wrong-alg-for-key", "alg": "RS256"},
            "not a key",
        ]
    }

    parsed = parse_jwks(document)

    assert set(parsed) == {"k1", "rsa", "ps"}
    assert parsed["ps"].algorithm_name == "PS256"
    assert set(parse_jwks(document, ["RS256"])) == {"rsa"}
    with pytest.raises(IssuerUnavailable):
        parse_jwks({"keys": "nope"})


def test_cached_documents_validate_their_bounds():
    with pytest.raises(ValueError):
        CachedDocument(lambda: (None, None), name="x", min_age=100, max_age=10)


def response(cache_control: str | None) -> Response:
    headers = Message()
    if cache_control is not None:
        headers["Cache-Control"] = cache_control
    return Response(status=200, body=b"{}", headers=headers)


@pytest.mark.parametrize(
    ("header", "max_age"),
    [
        ("public, max-age=3600", 3600),
        ("max-age=0", 0),
        ('max-age="60"', 60),
        ("no-store", 0),
        ("max-age=600, no-cache", 0),
        ("max-age=abc", None),
        ("public", None),
        (None, None),
    ],
)
def test_cache_control_max_age(header, max_age):
    assert response(header).max_age() == max_age


def test_memory_cache_expires_and_stays_bounded(clock):
    cache = MemoryCache(max_entries=2, clock=clock)
    cache.set("a", 1, 10)
    cache.set("b", 2, 10)
    assert cache.get("a") == 1  # a is now the most recently used
    cache.set("c", 3, 10)
    assert (cache.get("a"), cache.get("b"), cache.get("c")) == (1, None, 3)
    clock.now += 10
    assert cache.get("a") is None


@pytest.mark.parametrize(
    ("header", "outcome"),
    [
        ("Bearer abc.def-ghi_jkl~mno+pqr/stu==", "abc.def-ghi_jkl~mno+pqr/stu=="),
        ("bearer  abc ", "abc"),
        ("BEARER abc", "abc"),
        (None, MissingToken),
        ("", MissingToken),
        ("Basic dXNlcjpwYXNz", MissingToken),
        ("DPoP abc", MissingToken),
        ("Bearer", InvalidRequest),
        ("Bearer ", InvalidRequest),
        ("Bearer a b", InvalidRequest),
        ("Bearer a,b", InvalidRequest),
        ('Bearer "abc"', InvalidRequest),
        ("Bearer abc=def", InvalidRequest),
    ],
)
def test_bearer_header_parsing(header, outcome):
    if isinstance(outcome, str):
        assert bearer_token(header) == outcome
    else:
        with pytest.raises(outcome):
            bearer_token(header)


def test_challenges_follow_rfc_6750():
    assert bearer_challenge("orders") == 'Bearer realm="orders"'
    assert MissingToken("no token").challenge("orders") == 'Bearer realm="orders"'  # no error code (§3.1)
    assert InvalidToken('bad "quoted" \\ token\r\n').challenge('a"b') == (
        'Bearer realm="a\'b", error="invalid_token", error_description="bad \'quoted\' / token\'\'"'
    )
    assert IssuerUnavailable("down").challenge("x") is None
    assert ("Retry-After", "5") in IssuerUnavailable("down").headers("x")


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://auth.example.org", True),
        ("http://localhost:8000", True),
        ("http://127.0.0.1:8000/oauth/jwks", True),
        ("http://[::1]:8000", True),
        ("http://auth.example.org", False),
        ("file:///etc/passwd", False),
        ("ftp://auth.example.org", False),
        ("https://", False),
    ],
)
def test_only_https_or_loopback_urls_are_called(url, allowed):
    if allowed:
        assert check_url(url) == url
    else:
        with pytest.raises(ValueError):
            check_url(url)
    assert check_url("http://auth.example.org", allow_insecure_http=True)
