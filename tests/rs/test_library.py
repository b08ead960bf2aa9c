"""The resource-server library (authserver_rs) against the live server.

Tokens come from /oauth/token (client credentials, RFC 8707 ``resource``), keys from the live
JWKS, answers from the live introspection endpoint, scopes from the live /apis.json. What a
resource server must refuse is refused with RFC 6750's answer, in both modes; a signing-key
rotation on the server is picked up without a new validator.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any
from urllib.parse import urlencode

import jwt
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from rest_framework.decorators import api_view
from rest_framework.parsers import FormParser, JSONParser
from rest_framework.response import Response as DrfResponse
from rest_framework.test import APIRequestFactory
from rest_framework.views import APIView

from authserver import services
from authserver.models import ApiResource, Endpoint
from authserver.oauth.keys import keyring
from authserver.oauth.tokens import sign_jwt
from authserver_rs import (
    InvalidToken,
    IssuerUnavailable,
    ScopePolicy,
    TokenValidator,
    VerifiedToken,
    certificate_thumbprint,
)
from authserver_rs.django import BearerTokenAuthentication, RequiredScopes
from authserver_rs.gateway import AuthRequestApp
from authserver_rs.http import HttpClient, Response
from authserver_rs.wsgi import ENVIRON_KEY, BearerTokenMiddleware

from ..conftest import RegisteredClient, decode_unverified, make_client_key, register_client
from ..factories import OrganisationFactory, ScopeFactory
from ..protocol.test_errors import obtain_code, redeem

TIMEOUT = 10
ORDERS = "https://api.example.org/orders"
PARCELS = "https://api.example.org/parcels"
OIN = "00000001002220647000"


# ---- the world: an API owner with two APIs, a consumer, resource servers -------------------


@pytest.fixture
def api_owner(db):
    return OrganisationFactory(kind="government", oin=OIN, kvk_number="")


@pytest.fixture
def orders_rs(api_owner) -> RegisteredClient:
    """The Orders API's resource server: introspects with a secret of its own (OAUTH-NL)."""
    return register_client(
        api_owner,
        grant_type="client_credentials",
        auth_method="client_secret_basic",
        scopes=[],
        is_resource_server=True,
    )


def _api(owner, *, name: str, audience: str, scopes: list[str], introspectors: list[RegisteredClient]) -> ApiResource:
    api = ApiResource.objects.create(name=name, slug=name.lower(), audience=audience, owner=owner)
    api.introspectors.add(*[registered.client for registered in introspectors])
    for scope in scopes:
        ScopeFactory(name=scope, api=api, risk_level="low")
    return api


@pytest.fixture
def orders_api(api_owner, orders_rs) -> ApiResource:
    api = _api(
        api_owner,
        name="Orders",
        audience=ORDERS,
        scopes=["orders:read", "orders:write"],
        introspectors=[orders_rs],
    )
    read, write = api.scopes.get(name="orders:read"), api.scopes.get(name="orders:write")
    for method, path, scope in [
        ("GET", "/orders", read),
        ("GET", "/orders/{id}", read),
        ("POST", "/orders", write),
    ]:
        Endpoint.objects.create(api=api, method=method, path=path).required_scopes.set([scope])
    return api


@pytest.fixture
def parcels_api(api_owner, orders_rs) -> ApiResource:
    # The same resource server may introspect for Parcels too: the library's own aud check
    # then is what keeps a Parcels token out of the Orders API.
    return _api(api_owner, name="Parcels", audience=PARCELS, scopes=["parcels:read"], introspectors=[orders_rs])


@pytest.fixture
def consumer(organisation, orders_api, parcels_api) -> RegisteredClient:
    """A client of another organisation (KvK number from the factory), granted scopes of both APIs."""
    return register_client(
        organisation,
        grant_type="client_credentials",
        auth_method="client_secret_basic",
        scopes=["orders:read", "orders:write", "parcels:read"],
    )


class CountingHttp(HttpClient):
    """The library's real HTTP client, counting the calls per URL path."""

    def __init__(self) -> None:
        super().__init__(timeout=TIMEOUT)
        self.calls: Counter[str] = Counter()

    def get(self, url: str, **kwargs: Any) -> Response:
        self.calls[url.split("/", 3)[3]] += 1
        return super().get(url, **kwargs)

    def post_form(self, url: str, data: Any, **kwargs: Any) -> Response:
        self.calls[url.split("/", 3)[3]] += 1
        return super().post_form(url, data, **kwargs)


def jwt_validator(issuer: str, **kwargs: Any) -> TokenValidator:
    return TokenValidator(issuer, ORDERS, http=CountingHttp(), **kwargs)


def introspecting_validator(issuer: str, rs: RegisteredClient, **kwargs: Any) -> TokenValidator:
    return TokenValidator(
        issuer,
        ORDERS,
        mode="introspection",
        client_id=rs.client_id,
        client_secret=rs.secret,
        http=CountingHttp(),
        **kwargs,
    )


@pytest.fixture(params=["jwt", "introspection"])
def validator(request, issuer, orders_rs, orders_api) -> TokenValidator:
    if request.param == "jwt":
        return jwt_validator(issuer)
    return introspecting_validator(issuer, orders_rs)


def get_token(issuer: str, registered: RegisteredClient, **form: str) -> str:
    response = requests.post(
        f"{issuer}/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=(registered.client_id, registered.secret),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def orders_token(issuer: str, consumer: RegisteredClient, scope: str = "orders:read") -> str:
    return get_token(issuer, consumer, scope=scope, resource=ORDERS)


def refused(validator: TokenValidator, token: str, **kwargs: Any) -> str:
    """The description of the invalid_token refusal (RFC 6750 §3.1)."""
    with pytest.raises(InvalidToken) as caught:
        validator.verify(token, **kwargs)
    assert caught.value.status == 401
    assert caught.value.error == "invalid_token"
    assert caught.value.challenge("orders").startswith('Bearer realm="orders", error="invalid_token"')
    return caught.value.description


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made_jwt(header: dict[str, Any], claims: dict[str, Any], sign=None) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()) if sign else b'')}"


def server_kid(token: str) -> str:
    return jwt.get_unverified_header(token)["kid"]


# ---- what passes -------------------------------------------------------------------------


def test_a_valid_token_passes(validator, issuer, consumer, organisation):
    token = orders_token(issuer, consumer, scope="orders:read orders:write")

    verified = validator.verify(token)

    assert isinstance(verified, VerifiedToken)
    assert verified.client_id == consumer.client_id
    assert verified.sub == consumer.client_id  # client credentials: the client is the subject
    assert verified.scopes == {"orders:read", "orders:write"}
    assert verified.aud == (ORDERS,)
    assert verified.iss == issuer
    assert verified.exp == decode_unverified(token)["exp"]
    assert verified.via == validator.mode
    if validator.mode == "introspection":
        # The holder's organisation, as introspection tells it (a private one: its KvK number).
        assert verified.organisation["kvk_number"] == organisation.kvk_number
        assert verified.organisation_id == organisation.kvk_number
        assert verified.claims["active"] is True


def test_jwt_mode_verifies_locally_after_the_first_fetch(issuer, consumer, orders_api):
    validator = jwt_validator(issuer)
    for scope in ("orders:read", "orders:write", "orders:read orders:write"):
        validator.verify(orders_token(issuer, consumer, scope=scope))

    # Discovery once, the JWKS once, and nothing per token.
    assert validator.http.calls == {".well-known/openid-configuration": 1, "oauth/jwks": 1}


def test_introspection_with_private_key_jwt(issuer, api_owner, consumer, orders_api):
    rs = register_client(
        api_owner, grant_type="client_credentials", auth_method="private_key_jwt", scopes=[], is_resource_server=True
    )
    orders_api.introspectors.add(rs.client)
    assert rs.key is not None
    pem = rs.key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    validator = TokenValidator(
        issuer, ORDERS, mode="introspection", client_id=rs.client_id, private_key=pem, private_key_id=rs.key.kid
    )
    token = orders_token(issuer, consumer)

    # Twice: each call signs a fresh assertion (the server accepts a jti once, RFC 7523 §3).
    assert validator.verify(token).client_id == consumer.client_id
    assert validator.verify(token).scopes == {"orders:read"}


def test_an_opaque_tokens_api_is_served_by_introspection(issuer, orders_rs, consumer, orders_api):
    orders_api.token_format = ApiResource.TokenFormat.OPAQUE
    orders_api.save()
    token = orders_token(issuer, consumer)
    assert token.count(".") != 2

    assert introspecting_validator(issuer, orders_rs).verify(token).client_id == consumer.client_id
    assert "not a JWT" in refused(jwt_validator(issuer), token)


# ---- what fails -------------------------------------------------------------------------


def test_an_expired_token_fails(validator, issuer, consumer, orders_api, time_machine):
    orders_api.access_token_lifetime = 60
    orders_api.save()
    time_machine.move_to(datetime.now(tz=UTC).replace(microsecond=0), tick=False)
    token = orders_token(issuer, consumer)
    assert validator.verify(token)

    time_machine.shift(timedelta(seconds=60 + validator.clock_skew + 1))

    description = refused(validator, token)
    assert "expired" in description or "not active" in description


def test_a_token_for_another_api_fails(validator, issuer, consumer):
    token = get_token(issuer, consumer, scope="parcels:read", resource=PARCELS)
    assert decode_unverified(token)["aud"] == PARCELS

    # The resource server introspects for Parcels too, so the server says active: the
    # library's own audience check refuses it.
    assert "not for this API" in refused(validator, token)


def test_a_token_without_an_audience_fails(issuer, organisation, orders_api):
    # A scope of no API: the token has no aud at all, so it is for no API, ours neither.
    ScopeFactory(name="misc:read", api=None, risk_level="low")
    misc = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["misc:read"]
    )
    token = get_token(issuer, misc, scope="misc:read")
    assert "aud" not in decode_unverified(token)

    assert "aud" in refused(jwt_validator(issuer), token)


def test_a_token_signed_with_another_key_under_the_servers_kid_fails(issuer, consumer, orders_api):
    genuine = orders_token(issuer, consumer)
    forged = jwt.encode(
        decode_unverified(genuine),
        rsa.generate_private_key(public_exponent=65537, key_size=2048),
        algorithm="RS256",
        headers={"kid": server_kid(genuine), "typ": "at+jwt"},
    )

    assert "signature does not verify" in refused(jwt_validator(issuer), forged)


def test_alg_none_fails_before_any_key_is_fetched(issuer, consumer, orders_api):
    genuine = orders_token(issuer, consumer)
    claims = decode_unverified(genuine)
    validator = jwt_validator(issuer)

    for alg in ("none", "None", "NONE"):
        token = hand_made_jwt({"alg": alg, "typ": "at+jwt", "kid": server_kid(genuine)}, claims)
        assert "algorithm" in refused(validator, token)
    assert validator.http.calls == {}


def test_hs256_signed_with_the_servers_public_key_fails(issuer, consumer, orders_api):
    """Algorithm confusion (RFC 8725 §2.1): the public key, known to all, as an HMAC secret."""
    genuine = orders_token(issuer, consumer)
    kid = server_kid(genuine)
    public_jwk = keyring.public_jwk(kid)
    assert public_jwk is not None
    public_pem = jwt.PyJWK(public_jwk).key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    secrets_tried = [public_pem, json.dumps(public_jwk).encode(), public_jwk["n"].encode()]
    validator = jwt_validator(issuer)

    for secret in secrets_tried:
        token = hand_made_jwt(
            {"alg": "HS256", "typ": "at+jwt", "kid": kid},
            decode_unverified(genuine),
            sign=lambda data, secret=secret: hmac.new(secret, data, hashlib.sha256).digest(),
        )
        assert "algorithm 'HS256' is not accepted" in refused(validator, token)


def test_a_token_signed_by_a_key_never_in_the_jwks_fails_and_refetches_rarely(
    issuer, consumer, orders_api, time_machine
):
    time_machine.move_to(datetime.now(tz=UTC).replace(microsecond=0), tick=False)
    claims = decode_unverified(orders_token(issuer, consumer))
    validator = jwt_validator(issuer)
    validator.verify(orders_token(issuer, consumer))  # the JWKS is fetched and fresh
    strangers = [make_client_key("RS256"), make_client_key("ES256")]

    tokens = [
        jwt.encode(claims, key.private_key, algorithm=key.alg, headers={"kid": key.kid, "typ": "at+jwt"})
        for key in strangers
    ]

    for token in tokens * 3:
        assert "key the issuer does not publish" in refused(validator, token)
    # Fetched moments ago: an unknown kid does not make it ask again within the refetch interval.
    assert validator.http.calls["oauth/jwks"] == 1
    time_machine.shift(timedelta(seconds=validator.jwks.refetch_interval))
    for token in tokens * 3:
        assert "key the issuer does not publish" in refused(validator, token)
    # Then one look (for a rotated key), and again none, however many kids are invented.
    assert validator.http.calls["oauth/jwks"] == 2


def test_a_token_of_another_type_or_issuer_fails(issuer, consumer, orders_api):
    claims = decode_unverified(orders_token(issuer, consumer))
    validator = jwt_validator(issuer)

    # The server's own key, but an ID-token style typ (RFC 9068 §4: at+jwt only).
    assert "at+jwt" in refused(validator, sign_jwt(claims, alg="RS256", typ="JWT"))
    other_issuer = {**claims, "iss": "https://evil.example.org"}
    assert "not issued by" in refused(validator, sign_jwt(other_issuer, alg="RS256", typ="at+jwt"))
    no_client = {key: value for key, value in claims.items() if key not in ("client_id", "azp")}
    assert "names no client" in refused(validator, sign_jwt(no_client, alg="RS256", typ="at+jwt"))
    not_yet = {**claims, "nbf": int(time.time()) + 3600}
    assert "not valid yet" in refused(validator, sign_jwt(not_yet, alg="RS256", typ="at+jwt"))
    assert "not a JWT" in refused(validator, "not-a-jwt")


def test_a_revoked_token_fails_at_once_in_introspection_mode(issuer, orders_rs, consumer, orders_api):
    validator = introspecting_validator(issuer, orders_rs)
    token = orders_token(issuer, consumer)
    assert validator.verify(token)

    revoked = requests.post(
        f"{issuer}/oauth/revoke",
        data={"token": token, "token_type_hint": "access_token"},
        auth=(consumer.client_id, consumer.secret),
        timeout=TIMEOUT,
    )
    assert revoked.status_code == 200, revoked.text

    assert "not active" in refused(validator, token)


def test_introspection_answers_are_cached_at_most_half_the_remaining_lifetime(
    issuer, orders_rs, consumer, orders_api, time_machine
):
    orders_api.access_token_lifetime = 100
    orders_api.save()
    time_machine.move_to(datetime.now(tz=UTC).replace(microsecond=0), tick=False)
    validator = introspecting_validator(issuer, orders_rs, introspection_cache_seconds=3600)
    token = orders_token(issuer, consumer)

    validator.verify(token)
    time_machine.shift(timedelta(seconds=49))
    validator.verify(token)
    assert validator.http.calls["oauth/introspect"] == 1  # cached: 50 s, half of 100

    time_machine.shift(timedelta(seconds=2))
    validator.verify(token)
    assert validator.http.calls["oauth/introspect"] == 2


def test_introspection_cache_bounds_how_long_a_revocation_goes_unseen(
    issuer, orders_rs, consumer, orders_api, time_machine
):
    time_machine.move_to(datetime.now(tz=UTC).replace(microsecond=0), tick=False)
    validator = introspecting_validator(issuer, orders_rs, introspection_cache_seconds=30)
    token = orders_token(issuer, consumer)
    validator.verify(token)
    requests.post(
        f"{issuer}/oauth/revoke", data={"token": token}, auth=(consumer.client_id, consumer.secret), timeout=TIMEOUT
    )

    validator.verify(token)  # the documented trade-off: the cached answer, for at most 30 s
    time_machine.shift(timedelta(seconds=31))

    assert "not active" in refused(validator, token)
    assert validator.http.calls["oauth/introspect"] == 2


def test_a_users_token_passes_and_a_refresh_token_does_not(client, user, issuer, orders_rs, orders_api, web_client):
    code, verifier = obtain_code(client, user, web_client, scope="openid orders:read")
    tokens = redeem(client, web_client, code, verifier).json()
    validator = introspecting_validator(issuer, orders_rs)

    verified = validator.verify(tokens["access_token"])
    assert verified.client_id == web_client.client_id
    assert verified.sub not in (None, web_client.client_id, user.username)  # the user's subject identifier
    # The server calls a refresh token active (RFC 7662 token_type refresh_token): no bearer token.
    assert "not an access token" in refused(validator, tokens["refresh_token"])


def test_introspection_with_wrong_credentials_is_503_not_invalid_token(issuer, orders_rs, consumer, orders_api):
    validator = TokenValidator(
        issuer, ORDERS, mode="introspection", client_id=orders_rs.client_id, client_secret="wrong"
    )
    token = orders_token(issuer, consumer)

    with pytest.raises(IssuerUnavailable) as caught:
        validator.verify(token)
    assert caught.value.status == 503
    assert caught.value.challenge("orders") is None


# ---- certificate-bound tokens (RFC 8705) ------------------------------------------------------


def self_signed_certificate() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"client-{uuid.uuid4().hex[:8]}")])
    now = datetime.now(tz=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=1))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM)


def test_a_certificate_bound_token_needs_its_certificate(issuer, consumer, orders_api):
    pem = self_signed_certificate()
    thumbprint = certificate_thumbprint(pem)
    der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
    assert thumbprint == b64url(hashlib.sha256(der).digest())
    assert certificate_thumbprint(der) == certificate_thumbprint(pem.decode()) == thumbprint
    claims = {**decode_unverified(orders_token(issuer, consumer)), "cnf": {"x5t#S256": thumbprint}}
    bound = sign_jwt(claims, alg="RS256", typ="at+jwt")
    validator = jwt_validator(issuer)

    assert validator.verify(bound, client_certificate_thumbprint=thumbprint).client_id == consumer.client_id
    assert "mutual TLS" in refused(validator, bound)
    other = certificate_thumbprint(self_signed_certificate())
    assert "another client certificate" in refused(validator, bound, client_certificate_thumbprint=other)
    dpop = sign_jwt({**claims, "cnf": {"jkt": thumbprint}}, alg="RS256", typ="at+jwt")
    assert "cannot check" in refused(validator, dpop, client_certificate_thumbprint=thumbprint)


# ---- key rotation on the server -------------------------------------------------------------


def test_a_signing_key_rotation_is_picked_up_without_a_restart(issuer, consumer, orders_api, time_machine):
    time_machine.move_to(datetime.now(tz=UTC).replace(microsecond=0), tick=False)
    validator = jwt_validator(issuer)
    before = orders_token(issuer, consumer)
    validator.verify(before)

    # The rotation the periodic job does: a new key is created and activated, the old one
    # retired (still published while its tokens live).
    upcoming = services.signing_key_create(alg="RS256")
    services.signing_key_activate(key_id=upcoming.pk)
    keyring.clear()
    after = orders_token(issuer, consumer)
    assert server_kid(after) == upcoming.kid != server_kid(before)

    # Moments after its last fetch the validator does not ask again (rate limit) ...
    assert "does not publish" in refused(validator, after)
    assert validator.http.calls["oauth/jwks"] == 1
    # ... and once the refetch interval has passed, an unknown kid makes it look again,
    # long before the cached JWKS expires (max-age: an hour).
    time_machine.shift(timedelta(seconds=validator.jwks.refetch_interval))

    assert validator.verify(after).client_id == consumer.client_id
    assert validator.verify(before).client_id == consumer.client_id  # the retired key is still published
    assert validator.http.calls["oauth/jwks"] == 2


def test_the_jwks_is_fetched_again_when_its_max_age_has_passed(issuer, consumer, orders_api, settings, time_machine):
    settings.AUTHSERVER_JWKS_MAX_AGE = 120
    time_machine.move_to(datetime.now(tz=UTC).replace(microsecond=0), tick=False)
    validator = jwt_validator(issuer)
    token = orders_token(issuer, consumer)
    validator.verify(token)
    time_machine.shift(timedelta(seconds=119))
    validator.verify(token)
    assert validator.http.calls["oauth/jwks"] == 1

    time_machine.shift(timedelta(seconds=2))
    validator.verify(token)
    assert validator.http.calls["oauth/jwks"] == 2


# ---- the adapters: WSGI middleware, DRF, the nginx auth_request app --------------------------


def demo_app(environ, start_response):
    token = environ[ENVIRON_KEY]
    body = json.dumps({"client_id": token.client_id if token else None}).encode()
    start_response("200 OK", [("Content-Type", "application/json")])
    return [body]


def call(app, method: str, path: str, *, token: str | None = None, query: str = "", form: dict | None = None, **h):
    body = urlencode(form).encode() if form is not None else b""
    environ: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "QUERY_STRING": query,
        "CONTENT_TYPE": "application/x-www-form-urlencoded" if form is not None else "",
        "CONTENT_LENGTH": str(len(body)),
        "wsgi.input": BytesIO(body),
        **{"HTTP_" + name.upper(): value for name, value in h.items()},
    }
    if token is not None:
        environ["HTTP_AUTHORIZATION"] = f"Bearer {token}"
    answer: dict[str, Any] = {}

    def start_response(status, headers):
        answer["status"] = int(status.split()[0])
        answer["headers"] = dict(headers)

    answer["body"] = b"".join(app(environ, start_response))
    return answer


@pytest.fixture
def catalogue_policy(issuer, orders_api) -> ScopePolicy:
    return ScopePolicy.from_server(issuer, audience=ORDERS, public=["GET /healthz"])


def test_the_scope_policy_comes_from_the_live_catalogue(catalogue_policy):
    assert catalogue_policy.match("GET", "/orders/42").scopes == ("orders:read",)
    assert catalogue_policy.match("POST", "/orders").scopes == ("orders:write",)
    assert catalogue_policy.match("DELETE", "/orders/42") is None
    assert catalogue_policy.match("GET", "/healthz").public


def test_a_catalogue_change_is_enforced_once_its_max_age_has_passed(issuer, orders_api, time_machine):
    time_machine.move_to(datetime.now(tz=UTC).replace(microsecond=0), tick=False)
    policy = ScopePolicy.from_server(issuer, audience=ORDERS)
    assert policy.match("GET", "/orders/7").scopes == ("orders:read",)

    orders_api.endpoints.get(method="GET", path="/orders/{id}").required_scopes.set(
        [orders_api.scopes.get(name="orders:write")]
    )
    time_machine.shift(timedelta(seconds=299))  # /apis.json is served with max-age=300
    assert policy.match("GET", "/orders/7").scopes == ("orders:read",)
    time_machine.shift(timedelta(seconds=1))

    assert policy.match("GET", "/orders/7").scopes == ("orders:write",)


def test_an_unreachable_issuer_is_503_not_401():
    validator = TokenValidator("http://127.0.0.1:9", ORDERS, timeout=2)
    app = BearerTokenMiddleware(demo_app, validator, realm="orders")

    key = make_client_key("ES256")
    token = jwt.encode({"iss": "x"}, key.private_key, algorithm="ES256", headers={"kid": key.kid, "typ": "at+jwt"})

    answer = call(app, "GET", "/orders", token=token)

    assert answer["status"] == 503
    assert answer["headers"]["Retry-After"] == "5"
    assert "WWW-Authenticate" not in answer["headers"]
    assert json.loads(answer["body"])["status"] == 503


def test_wsgi_middleware_answers_as_rfc_6750_says(validator, issuer, consumer, catalogue_policy):
    app = BearerTokenMiddleware(demo_app, validator, catalogue_policy, realm="orders")
    read_only = orders_token(issuer, consumer)

    ok = call(app, "GET", "/orders/42", token=read_only)
    assert ok["status"] == 200
    assert json.loads(ok["body"]) == {"client_id": consumer.client_id}
    assert call(app, "GET", "/healthz")["status"] == 200  # public: no token needed

    # No token: 401 with a bare challenge, no error code (RFC 6750 §3.1).
    anonymous = call(app, "GET", "/orders")
    assert anonymous["status"] == 401
    assert anonymous["headers"]["WWW-Authenticate"] == 'Bearer realm="orders"'
    assert anonymous["headers"]["Cache-Control"] == "no-store"

    # A bad token: 401 invalid_token.
    bad = call(app, "GET", "/orders", token=read_only[:-4] + "AAAA")
    assert bad["status"] == 401
    assert bad["headers"]["WWW-Authenticate"].startswith(
        'Bearer realm="orders", error="invalid_token", error_description='
    )
    assert json.loads(bad["body"])["error"] == "invalid_token"

    # The wrong scope: 403 insufficient_scope naming the scope the endpoint needs.
    denied = call(app, "POST", "/orders", token=read_only)
    assert denied["status"] == 403
    challenge = denied["headers"]["WWW-Authenticate"]
    assert 'error="insufficient_scope"' in challenge
    assert challenge.endswith('scope="orders:write"')
    assert json.loads(denied["body"])["scope"] == "orders:write"
    # An endpoint nobody documented is closed.
    assert call(app, "DELETE", "/orders/42", token=read_only)["status"] == 403

    # A token in the query string or a form body: 400 invalid_request, even with a good header.
    for query in (f"access_token={read_only}", "a=1&access_token="):
        in_query = call(app, "GET", "/orders", token=read_only, query=query)
        assert in_query["status"] == 400
        assert 'error="invalid_request"' in in_query["headers"]["WWW-Authenticate"]
    in_form = call(app, "POST", "/orders", form={"access_token": read_only, "item": "x"})
    assert in_form["status"] == 400

    # A malformed header: 400 invalid_request; another scheme: 401 asking for Bearer.
    for header in ("Bearer", "Bearer a b", 'Bearer "quoted"'):
        assert call(app, "GET", "/orders", authorization=header)["status"] == 400
    basic_auth = call(app, "GET", "/orders", authorization="Basic dXNlcjpwYXNz")
    assert basic_auth["status"] == 401
    assert "error=" not in basic_auth["headers"]["WWW-Authenticate"]


def test_the_wsgi_app_still_reads_a_form_body(issuer, consumer, catalogue_policy):
    seen: dict[str, bytes] = {}

    def app(environ, start_response):
        seen["body"] = environ["wsgi.input"].read(int(environ["CONTENT_LENGTH"]))
        start_response("201 Created", [])
        return [b""]

    token = orders_token(issuer, consumer, scope="orders:write")
    answer = call(
        BearerTokenMiddleware(app, jwt_validator(issuer), catalogue_policy),
        "POST",
        "/orders",
        token=token,
        form={"item": "x"},
    )

    assert answer["status"] == 201
    assert seen["body"] == b"item=x"


def test_the_gateway_app_hands_nginx_the_identity(issuer, orders_rs, consumer, catalogue_policy, organisation):
    app = AuthRequestApp(introspecting_validator(issuer, orders_rs), catalogue_policy, realm="orders")
    token = orders_token(issuer, consumer)

    def ask(method: str, uri: str, **headers: str):
        return call(app, "GET", "/_auth", x_original_method=method, x_original_uri=uri, **headers)

    ok = ask("GET", "/orders/42?expand=lines", authorization=f"Bearer {token}")
    assert ok["status"] == 204
    assert ok["headers"]["X-Client-Id"] == consumer.client_id
    assert ok["headers"]["X-Organisation-Id"] == organisation.kvk_number
    assert ok["headers"]["X-Scopes"] == "orders:read"
    assert ok["headers"]["X-Auth-Status"] == "204"

    denied = ask("POST", "/orders", authorization=f"Bearer {token}")
    assert denied["status"] == 403
    assert 'scope="orders:write"' in denied["headers"]["WWW-Authenticate"]
    assert ask("GET", "/orders")["status"] == 401
    # nginx passes only 401/403 back: the 400 travels in X-Auth-Status.
    in_query = ask("GET", f"/orders?access_token={token}", authorization=f"Bearer {token}")
    assert (in_query["status"], in_query["headers"]["X-Auth-Status"]) == (401, "400")
    assert 'error="invalid_request"' in in_query["headers"]["WWW-Authenticate"]
    # Encoded dot segments never reach a template parameter.
    assert ask("GET", "/orders/%2E%2E", authorization=f"Bearer {token}")["status"] == 403


class OrdersView(APIView):
    parser_classes = [FormParser, JSONParser]

    def get(self, request, pk=None):
        return DrfResponse({"client_id": request.auth.client_id, "user": str(request.user)})

    def post(self, request, pk=None):
        return DrfResponse({"created": request.data.get("item")}, status=201)


@pytest.fixture
def drf_settings(settings, issuer, orders_rs, orders_api):
    settings.AUTHSERVER_RS = {
        "issuer": issuer,
        "audience": ORDERS,
        "mode": "introspection",
        "client_id": orders_rs.client_id,
        "client_secret": orders_rs.secret,
        "realm": "orders",
        "catalogue": True,
    }
    return settings


def drf_call(view, method: str, path: str, *, token: str | None = None, query: str = "", data: dict | None = None):
    factory = APIRequestFactory()
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    url = f"{path}?{query}" if query else path
    form = urlencode(data or {})
    request = factory.generic(method, url, form, content_type="application/x-www-form-urlencoded", **headers)
    response = view(request)
    response.render()
    return response


def test_drf_classes_from_the_settings(drf_settings, issuer, consumer):
    view = OrdersView.as_view(authentication_classes=[BearerTokenAuthentication], permission_classes=[RequiredScopes])
    read_only = orders_token(issuer, consumer)

    ok = drf_call(view, "GET", "/orders/42", token=read_only)
    assert ok.status_code == 200, ok.content
    assert ok.data == {"client_id": consumer.client_id, "user": consumer.client_id}

    anonymous = drf_call(view, "GET", "/orders")
    assert anonymous.status_code == 401
    assert anonymous["WWW-Authenticate"] == 'Bearer realm="orders"'

    bad = drf_call(view, "GET", "/orders", token="garbage")
    assert bad.status_code == 401
    assert bad["WWW-Authenticate"].startswith('Bearer realm="orders", error="invalid_token"')

    denied = drf_call(view, "POST", "/orders", token=read_only, data={"item": "x"})
    assert denied.status_code == 403
    assert denied["WWW-Authenticate"] == (
        'Bearer realm="orders", error="insufficient_scope", '
        'error_description="POST /orders needs the scope orders:write; the token lacks orders:write.", '
        'scope="orders:write"'
    )

    in_query = drf_call(view, "GET", "/orders", token=read_only, query=f"access_token={read_only}")
    assert in_query.status_code == 400
    assert 'error="invalid_request"' in in_query["WWW-Authenticate"]
    in_form = drf_call(view, "POST", "/orders", data={"access_token": read_only})
    assert in_form.status_code == 400

    writer = orders_token(issuer, consumer, scope="orders:write")
    created = drf_call(view, "POST", "/orders", token=writer, data={"item": "x"})
    assert (created.status_code, created.data) == (201, {"created": "x"})


def test_drf_required_scopes_on_the_view(issuer, consumer, orders_api):
    class Authentication(BearerTokenAuthentication):
        validator = jwt_validator(issuer)
        realm = "orders"

    @api_view(["GET", "POST"])
    def handler(request):
        return DrfResponse({"ok": True})

    handler.cls.authentication_classes = [Authentication]
    handler.cls.permission_classes = [RequiredScopes]
    handler.cls.required_scopes = {"GET": ["orders:read"]}
    view = handler.cls.as_view()
    token = orders_token(issuer, consumer)

    assert drf_call(view, "GET", "/anything", token=token).status_code == 200
    post = drf_call(view, "POST", "/anything", token=token)
    assert post.status_code == 403  # no scopes configured for POST: refused, not open
    assert 'error="insufficient_scope"' in post["WWW-Authenticate"]
