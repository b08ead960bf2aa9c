"""Every error path answers the protocol's error (RFC 6749 §5.2, RFC 6750 §3.1, RFC 7662 §2.3,
RFC 7009 §2.2.1): JSON with ``error`` and a useful ``error_description``, the right status,
``Cache-Control: no-store``, and never a 500. Authorization-endpoint errors that cannot be
sent back safely are shown to the user and never redirected (RFC 6749 §4.1.2.1)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
import uuid
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
from django.conf import settings
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from clients.models import ClientCredential
from clients.services import client_credential_revoke

from ..conftest import REDIRECT_URI, make_client_key

FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


# ---- helpers ----------------------------------------------------------------------------


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    return verifier, b64url(hashlib.sha256(verifier.encode()).digest())


def token_aud() -> str:
    return f"{settings.AUTHSERVER_ISSUER}/oauth/token"


def post_form(client, path: str, data: dict[str, Any], authorization: str | None = None, query: str = ""):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization else {}
    url = f"{path}?{query}" if query else path
    return client.post(url, urlencode(data, doseq=True), content_type=FORM, **extra)


def assert_oauth_error(response, status: int, error: str, *, mentions: str | None = None) -> dict[str, Any]:
    """The response is the protocol's JSON error with a description, and is not cacheable."""
    assert response.status_code == status, (response.status_code, response.content[:500])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    assert "no-store" in response.get("Cache-Control", ""), response.get("Cache-Control")
    body = json.loads(response.content)
    assert body["error"] == error, body
    description = body.get("error_description")
    assert isinstance(description, str), body
    assert len(description) >= 8, body
    if mentions is not None:
        assert mentions.lower() in description.lower(), body
    assert "access_token" not in body
    return body


def assertion_form(registered, assertion: str, **extra: Any) -> dict[str, Any]:
    return {
        "grant_type": "client_credentials",
        "client_id": registered.client_id,
        "client_assertion_type": ASSERTION_TYPE,
        "client_assertion": assertion,
        **extra,
    }


def unsigned_jwt(header: dict[str, Any], claims: dict[str, Any], sign=None) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    signature = sign(signing_input.encode()) if sign else b""
    return f"{signing_input}.{b64url(signature)}"


def assertion_claims(client_id: str) -> dict[str, Any]:
    now = int(time.time())
    return {
        "iss": client_id,
        "sub": client_id,
        "aud": token_aud(),
        "iat": now,
        "exp": now + 60,
        "jti": uuid.uuid4().hex,
    }


def authorize_params(registered, **overrides: Any) -> dict[str, Any]:
    _verifier, challenge = pkce_pair()
    params = {
        "response_type": "code",
        "client_id": registered.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid orders:read",
        "state": secrets.token_urlsafe(16),
        "nonce": secrets.token_urlsafe(16),
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    params.update(overrides)
    return {key: value for key, value in params.items() if value is not None}


def obtain_code(client, user, registered, *, scope: str = "openid orders:read", **extra: Any) -> tuple[str, str]:
    """Drive /oauth/authorize (GET, then POST allow) as a logged-in user; return (code, verifier)."""
    client.force_login(user)
    verifier, challenge = pkce_pair()
    params = authorize_params(registered, scope=scope, code_challenge=challenge, **extra)
    page = client.get("/oauth/authorize", params)
    assert page.status_code == 200, page.content[:500]
    answer = client.post("/oauth/authorize", {**params, "allow": "Allow"})
    assert answer.status_code == 302, answer.content[:500]
    location = urlsplit(answer["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = parse_qs(location.query)
    assert query["state"] == [params["state"]]
    return query["code"][0], verifier


def redeem(client, registered, code: str, verifier: str, **extra: Any):
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
        **extra,
    }
    return post_form(client, "/oauth/token", data, basic(registered.client_id, registered.secret))


def assert_error_redirect(response, error: str, state: str | None, *, mentions: str | None = None) -> dict:
    """A redirect to the registered redirect_uri carrying the error (RFC 6749 §4.1.2.1, RFC 9207 iss)."""
    assert response.status_code == 302, (response.status_code, response.content[:500])
    assert "no-store" in response.get("Cache-Control", "")
    location = urlsplit(response["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == REDIRECT_URI
    query = {key: values[0] for key, values in parse_qs(location.query).items()}
    assert query["error"] == error, query
    assert "code" not in query
    assert len(query.get("error_description", "")) >= 10, query
    if mentions is not None:
        assert mentions.lower() in query["error_description"].lower(), query
    if state is None:
        assert "state" not in query
    else:
        assert query["state"] == state
    assert query.get("iss") == settings.AUTHSERVER_ISSUER
    return query


# ---- client authentication: secrets --------------------------------------------------------


@pytest.mark.parametrize("transport", ["basic", "post"])
def test_wrong_secret_is_invalid_client(client, cc_basic, cc_post, transport):
    if transport == "basic":
        response = post_form(
            client,
            "/oauth/token",
            {"grant_type": "client_credentials"},
            basic(cc_basic.client_id, cc_basic.secret + "x"),
        )
    else:
        response = post_form(
            client,
            "/oauth/token",
            {"grant_type": "client_credentials", "client_id": cc_post.client_id, "client_secret": cc_post.secret[:-1]},
        )
    assert_oauth_error(response, 401, "invalid_client", mentions="secret")
    if transport == "basic":
        # RFC 6749 §5.2: 401 with WWW-Authenticate when the client used the Authorization header.
        assert response.has_header("WWW-Authenticate")


def test_unknown_client_is_invalid_client(client, db):
    response = post_form(
        client, "/oauth/token", {"grant_type": "client_credentials"}, basic("no-such-client", secrets.token_urlsafe(32))
    )
    assert_oauth_error(response, 401, "invalid_client", mentions="client")


def test_expired_secret_is_invalid_client(client, cc_basic):
    ClientCredential.objects.filter(client=cc_basic.client, kind=ClientCredential.Kind.SECRET).update(
        expires_at=timezone.now() - timedelta(seconds=1)
    )
    response = post_form(
        client, "/oauth/token", {"grant_type": "client_credentials"}, basic(cc_basic.client_id, cc_basic.secret)
    )
    assert_oauth_error(response, 401, "invalid_client", mentions="expired")


def test_revoked_secret_is_invalid_client(client, cc_basic):
    good = post_form(
        client, "/oauth/token", {"grant_type": "client_credentials"}, basic(cc_basic.client_id, cc_basic.secret)
    )
    assert good.status_code == 200, good.content
    credential = ClientCredential.objects.get(client=cc_basic.client, kind=ClientCredential.Kind.SECRET)
    client_credential_revoke(credential_id=credential.pk)
    response = post_form(
        client, "/oauth/token", {"grant_type": "client_credentials"}, basic(cc_basic.client_id, cc_basic.secret)
    )
    assert_oauth_error(response, 401, "invalid_client", mentions="revoked")


@pytest.mark.parametrize("transport", ["basic", "post"])
def test_secret_sent_to_private_key_jwt_client(client, cc_jwt, transport):
    secret = secrets.token_urlsafe(32)
    if transport == "basic":
        response = post_form(
            client, "/oauth/token", {"grant_type": "client_credentials"}, basic(cc_jwt.client_id, secret)
        )
    else:
        response = post_form(
            client,
            "/oauth/token",
            {"grant_type": "client_credentials", "client_id": cc_jwt.client_id, "client_secret": secret},
        )
    assert_oauth_error(response, 401, "invalid_client", mentions="private_key_jwt")


def test_assertion_sent_to_secret_client(client, cc_basic, client_key):
    assertion = client_key.assertion(cc_basic.client_id, token_aud())
    response = post_form(client, "/oauth/token", assertion_form(cc_basic, assertion))
    assert_oauth_error(response, 401, "invalid_client", mentions="client_secret_basic")


def test_client_with_no_authentication_is_invalid_client(client, cc_basic):
    response = post_form(client, "/oauth/token", {"grant_type": "client_credentials", "client_id": cc_basic.client_id})
    assert_oauth_error(response, 401, "invalid_client")


# ---- client authentication: private_key_jwt (RFC 7523 §3) -------------------------------------


def test_good_assertion_is_accepted(client, cc_jwt):
    """The baseline the failures below deviate from."""
    response = post_form(
        client, "/oauth/token", assertion_form(cc_jwt, cc_jwt.key.assertion(cc_jwt.client_id, token_aud()))
    )
    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"


def test_replayed_assertion_is_refused(client, cc_jwt):
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, token_aud(), jti=secrets.token_urlsafe(24))
    first = post_form(client, "/oauth/token", assertion_form(cc_jwt, assertion))
    assert first.status_code == 200, first.content
    second = post_form(client, "/oauth/token", assertion_form(cc_jwt, assertion))
    assert_oauth_error(second, 401, "invalid_client", mentions="jti")


def test_expired_assertion_is_refused(client, cc_jwt):
    now = int(time.time())
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, token_aud(), iat=now - 600, exp=now - 300)
    response = post_form(client, "/oauth/token", assertion_form(cc_jwt, assertion))
    assert_oauth_error(response, 401, "invalid_client", mentions="expired")


@pytest.mark.parametrize(
    "audience",
    [
        "https://other.example.org/oauth/token",
        "http://localhost:8000/oauth/introspect",
        "",
    ],
)
def test_assertion_with_wrong_audience_is_refused(client, cc_jwt, audience):
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, audience)
    response = post_form(client, "/oauth/token", assertion_form(cc_jwt, assertion))
    assert_oauth_error(response, 401, "invalid_client", mentions="aud")


def test_assertion_with_alg_none_is_refused(client, cc_jwt):
    assertion = unsigned_jwt({"alg": "none", "typ": "JWT", "kid": cc_jwt.key.kid}, assertion_claims(cc_jwt.client_id))
    response = post_form(client, "/oauth/token", assertion_form(cc_jwt, assertion))
    assert_oauth_error(response, 401, "invalid_client", mentions="alg")


@pytest.mark.parametrize("key_material", ["pem", "jwk"])
def test_hs256_assertion_signed_with_the_public_key_is_refused(client, cc_jwt, key_material):
    """The classic key-confusion attack: HMAC with the public key as the secret."""
    from cryptography.hazmat.primitives import serialization

    if key_material == "pem":
        secret = cc_jwt.key.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        secret = json.dumps(cc_jwt.key.public_jwk).encode()
    assertion = unsigned_jwt(
        {"alg": "HS256", "typ": "JWT", "kid": cc_jwt.key.kid},
        assertion_claims(cc_jwt.client_id),
        sign=lambda data: hmac.new(secret, data, hashlib.sha256).digest(),
    )
    response = post_form(client, "/oauth/token", assertion_form(cc_jwt, assertion))
    assert_oauth_error(response, 401, "invalid_client", mentions="alg")


@pytest.mark.parametrize("same_kid", [False, True], ids=["unknown-kid", "registered-kid"])
def test_assertion_signed_by_unregistered_key_is_refused(client, cc_jwt, same_kid):
    stranger = make_client_key("RS256")
    if same_kid:
        stranger.kid = cc_jwt.key.kid
    assertion = stranger.assertion(cc_jwt.client_id, token_aud())
    response = post_form(client, "/oauth/token", assertion_form(cc_jwt, assertion))
    body = assert_oauth_error(response, 401, "invalid_client")
    assert ("signature" if same_kid else "key") in body["error_description"]


@pytest.mark.parametrize(
    "claims",
    [
        {"iss": "someone-else"},
        {"sub": "someone-else"},
        {"jti": "short"},
        {"jti": None},
        {"exp": None},
        {"exp": int(time.time()) + 24 * 3600},
        {"iat": int(time.time()) + 3600},
    ],
    ids=["iss", "sub", "short-jti", "no-jti", "no-exp", "far-exp", "future-iat"],
)
def test_assertion_with_bad_claims_is_refused(client, cc_jwt, claims):
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, token_aud(), **claims)
    response = post_form(client, "/oauth/token", assertion_form(cc_jwt, assertion))
    assert_oauth_error(response, 401, "invalid_client", mentions="client_assertion")


@pytest.mark.parametrize(
    "form",
    [
        {"client_assertion": "not-a-jwt"},
        {"client_assertion": "a.b.c"},
        {"client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:saml2-bearer"},
        {"client_assertion": ""},
    ],
    ids=["garbage", "bad-segments", "wrong-type", "empty"],
)
def test_malformed_assertion_is_refused(client, cc_jwt, form):
    data = assertion_form(cc_jwt, cc_jwt.key.assertion(cc_jwt.client_id, token_aud()))
    data.update(form)
    response = post_form(client, "/oauth/token", data)
    assert_oauth_error(response, 401, "invalid_client", mentions="client_assertion")


@pytest.mark.parametrize("combination", ["basic+post", "basic+assertion", "post+assertion"])
def test_two_authentication_methods_are_invalid_request(client, cc_basic, client_key, combination):
    data: dict[str, Any] = {"grant_type": "client_credentials"}
    authorization = None
    if "basic" in combination:
        authorization = basic(cc_basic.client_id, cc_basic.secret)
    if "post" in combination:
        data.update(client_id=cc_basic.client_id, client_secret=cc_basic.secret)
    if "assertion" in combination:
        data.update(
            client_assertion_type=ASSERTION_TYPE, client_assertion=client_key.assertion(cc_basic.client_id, token_aud())
        )
    response = post_form(client, "/oauth/token", data, authorization)
    assert_oauth_error(response, 400, "invalid_request", mentions="one client authentication method")


def test_basic_client_id_differs_from_body_client_id(client, cc_basic, cc_post):
    response = post_form(
        client,
        "/oauth/token",
        {"grant_type": "client_credentials", "client_id": cc_post.client_id},
        basic(cc_basic.client_id, cc_basic.secret),
    )
    assert_oauth_error(response, 400, "invalid_request", mentions="client_id")


# ---- grants and scopes ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "grant_type",
    [
        "password",
        "implicit",
        "token",
        "urn:ietf:params:oauth:grant-type:device_code",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
        "urn:ietf:params:oauth:grant-type:token-exchange",
        "something-else",
    ],
)
def test_unsupported_grant_type(client, cc_basic, grant_type):
    data = {"grant_type": grant_type, "username": "someone", "password": "pw", "device_code": "x"}
    response = post_form(client, "/oauth/token", data, basic(cc_basic.client_id, cc_basic.secret))
    assert_oauth_error(response, 400, "unsupported_grant_type", mentions=grant_type)


@pytest.mark.parametrize("form", [{"scope": "orders:read"}, {"grant_type": ""}])
def test_missing_grant_type_is_invalid_request(client, cc_basic, form):
    response = post_form(client, "/oauth/token", form, basic(cc_basic.client_id, cc_basic.secret))
    assert_oauth_error(response, 400, "invalid_request", mentions="grant_type")


def test_client_credentials_client_may_not_use_authorization_code(client, cc_basic):
    _verifier, _challenge = pkce_pair()
    data = {
        "grant_type": "authorization_code",
        "code": secrets.token_urlsafe(32),
        "redirect_uri": REDIRECT_URI,
        "code_verifier": _verifier,
    }
    response = post_form(client, "/oauth/token", data, basic(cc_basic.client_id, cc_basic.secret))
    assert_oauth_error(response, 400, "unauthorized_client", mentions="authorization_code")


def test_client_credentials_client_may_not_refresh(client, cc_basic):
    data = {"grant_type": "refresh_token", "refresh_token": secrets.token_urlsafe(32)}
    response = post_form(client, "/oauth/token", data, basic(cc_basic.client_id, cc_basic.secret))
    assert_oauth_error(response, 400, "unauthorized_client")


def test_authorization_code_client_may_not_use_client_credentials(client, web_client):
    response = post_form(
        client, "/oauth/token", {"grant_type": "client_credentials"}, basic(web_client.client_id, web_client.secret)
    )
    assert_oauth_error(response, 400, "unauthorized_client", mentions="client_credentials")


@pytest.mark.parametrize("scope", ["orders:write", "orders:read orders:write", "admin"])
def test_scope_the_client_may_not_have(client, cc_post, scope):
    response = post_form(
        client,
        "/oauth/token",
        {
            "grant_type": "client_credentials",
            "scope": scope,
            "client_id": cc_post.client_id,
            "client_secret": cc_post.secret,
        },
    )
    refused = next(s for s in scope.split() if s != "orders:read")
    assert_oauth_error(response, 400, "invalid_scope", mentions=refused)


@pytest.mark.parametrize("scope", ["openid", "openid orders:read", "profile"])
def test_openid_scopes_on_client_credentials(client, organisation, scope):
    from ..conftest import register_client

    registered = register_client(
        organisation,
        grant_type="client_credentials",
        auth_method="client_secret_basic",
        scopes=["openid", "profile", "orders:read"],
    )
    response = post_form(
        client,
        "/oauth/token",
        {"grant_type": "client_credentials", "scope": scope},
        basic(registered.client_id, registered.secret),
    )
    assert_oauth_error(response, 400, "invalid_scope", mentions=scope.split()[0])


def test_openid_scope_on_client_credentials_client_without_it(client, cc_basic):
    response = post_form(
        client,
        "/oauth/token",
        {"grant_type": "client_credentials", "scope": "openid"},
        basic(cc_basic.client_id, cc_basic.secret),
    )
    assert_oauth_error(response, 400, "invalid_scope", mentions="openid")


# ---- authorization code at the token endpoint ------------------------------------------------


def test_reused_code_is_invalid_grant_and_revokes_what_it_issued(
    client, user, web_client, resource_server, resource_server_api, django_capture_on_commit_callbacks
):
    code, verifier = obtain_code(client, user, web_client)
    first = redeem(client, web_client, code, verifier)
    assert first.status_code == 200, first.content
    tokens = first.json()
    access, refresh = tokens["access_token"], tokens["refresh_token"]

    def introspect(token: str) -> dict[str, Any]:
        answer = post_form(
            client, "/oauth/introspect", {"token": token}, basic(resource_server.client_id, resource_server.secret)
        )
        assert answer.status_code == 200, answer.content
        return answer.json()

    assert introspect(access)["active"] is True

    with django_capture_on_commit_callbacks(execute=True):  # the request's commit (cached answers dropped)
        second = redeem(client, web_client, code, verifier)
    assert_oauth_error(second, 400, "invalid_grant")

    assert introspect(access) == {"active": False}
    assert introspect(refresh) == {"active": False}
    checksum = hashlib.sha256(access.encode()).hexdigest()
    assert not AccessToken.objects.filter(token_checksum=checksum).exists()
    refreshed = post_form(
        client,
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": refresh},
        basic(web_client.client_id, web_client.secret),
    )
    assert_oauth_error(refreshed, 400, "invalid_grant")


def test_code_of_another_client_is_invalid_grant(client, user, web_client, organisation):
    from ..conftest import register_client

    other = register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "orders:read"],
        redirect_uris=[REDIRECT_URI],
    )
    code, verifier = obtain_code(client, user, web_client)
    response = redeem(client, other, code, verifier)
    assert_oauth_error(response, 400, "invalid_grant")
    # The code was not burnt by the other client's attempt.
    assert redeem(client, web_client, code, verifier).status_code == 200


@pytest.mark.parametrize(
    "verifier",
    [
        "wrong",  # too short: malformed
        secrets.token_urlsafe(48),  # well formed, does not match
        "a" * 129,  # too long
        "é" * 50,  # not unreserved characters
    ],
    ids=["short", "mismatch", "long", "non-ascii"],
)
def test_wrong_pkce_verifier_is_invalid_grant(client, user, web_client, verifier):
    code, _right = obtain_code(client, user, web_client)
    response = redeem(client, web_client, code, verifier)
    assert_oauth_error(response, 400, "invalid_grant")


def test_missing_pkce_verifier_is_refused(client, user, web_client):
    code, _verifier = obtain_code(client, user, web_client)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    response = post_form(client, "/oauth/token", data, basic(web_client.client_id, web_client.secret))
    body = json.loads(response.content)
    assert body["error"] in ("invalid_request", "invalid_grant")
    assert_oauth_error(response, 400, body["error"])


def test_redirect_uri_must_match_the_authorization_request(client, user, web_client):
    code, verifier = obtain_code(client, user, web_client)
    response = redeem(client, web_client, code, verifier, redirect_uri="https://rp.example.org/other")
    body = json.loads(response.content)
    assert body["error"] in ("invalid_request", "invalid_grant")
    assert_oauth_error(response, 400, body["error"])


def test_expired_code_is_invalid_grant(client, user, web_client):
    from oauth2_provider.models import get_grant_model

    code, verifier = obtain_code(client, user, web_client)
    assert get_grant_model().objects.filter(code=code).update(expires=timezone.now() - timedelta(seconds=1)) == 1
    response = redeem(client, web_client, code, verifier)
    assert_oauth_error(response, 400, "invalid_grant")
    assert not AccessToken.objects.filter(application=web_client.client).exists()


def test_unknown_code_is_invalid_grant(client, web_client):
    verifier, _challenge = pkce_pair()
    response = redeem(client, web_client, secrets.token_urlsafe(32), verifier)
    assert_oauth_error(response, 400, "invalid_grant")


def test_unknown_refresh_token_is_invalid_grant(client, web_client):
    response = post_form(
        client,
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": secrets.token_urlsafe(32)},
        basic(web_client.client_id, web_client.secret),
    )
    assert_oauth_error(response, 400, "invalid_grant")


# ---- the authorization endpoint ----------------------------------------------------------------


@pytest.fixture
def logged_in(client, user):
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    ("overrides", "mentions"),
    [
        ({"code_challenge": None, "code_challenge_method": None}, "challenge"),
        ({"code_challenge": None}, "challenge"),
        ({"code_challenge_method": "plain"}, "transform algorithm"),
        ({"code_challenge_method": None}, "transform algorithm"),  # absent method means plain (RFC 7636 §4.3)
        ({"code_challenge": "too-short"}, "code_challenge"),
        ({"code_challenge": "!" * 43}, "code_challenge"),
        ({"code_challenge": "A" * 44}, "code_challenge"),
        ({"nonce": None}, "nonce"),
    ],
    ids=["no-pkce", "no-challenge", "plain", "no-method", "short-challenge", "bad-chars", "long-challenge", "no-nonce"],
)
def test_authorization_request_errors_go_back_to_the_client(logged_in, web_client, overrides, mentions):
    params = authorize_params(web_client, **overrides)
    response = logged_in.get("/oauth/authorize", params)
    assert_error_redirect(response, "invalid_request", params["state"], mentions=mentions)


def test_missing_state_is_invalid_request(logged_in, web_client):
    params = authorize_params(web_client, state=None)
    response = logged_in.get("/oauth/authorize", params)
    assert_error_redirect(response, "invalid_request", None, mentions="state")


def test_scope_not_granted_at_authorize_is_invalid_scope(logged_in, web_client):
    params = authorize_params(web_client, scope="openid orders:write")
    response = logged_in.get("/oauth/authorize", params)
    assert_error_redirect(response, "invalid_scope", params["state"], mentions="orders:write")


@pytest.mark.parametrize("response_type", ["token", "id_token", "code id_token", "code token"])
def test_implicit_and_hybrid_response_types_are_refused(logged_in, web_client, response_type):
    params = authorize_params(web_client, response_type=response_type)
    response = logged_in.get("/oauth/authorize", params)
    assert "#" not in response.get("Location", "")  # never a fragment (implicit) response
    assert_error_redirect(response, "unsupported_response_type", params["state"])


def test_user_denies_consent_is_access_denied(logged_in, web_client):
    params = authorize_params(web_client)
    assert logged_in.get("/oauth/authorize", params).status_code == 200
    response = logged_in.post("/oauth/authorize", params)  # no "allow"
    assert response.status_code == 302
    query = {key: values[0] for key, values in parse_qs(urlsplit(response["Location"]).query).items()}
    assert query["error"] == "access_denied"
    assert query["state"] == params["state"]
    assert query.get("iss") == settings.AUTHSERVER_ISSUER  # RFC 9207 §2: error responses too
    assert "code" not in query
    assert "no-store" in response["Cache-Control"]


def test_client_credentials_client_at_authorize_is_refused(logged_in, organisation):
    from ..conftest import register_client

    cc = register_client(
        organisation,
        grant_type="client_credentials",
        auth_method="client_secret_basic",
        scopes=["orders:read"],
        redirect_uris=[REDIRECT_URI],
    )
    params = authorize_params(cc, scope="orders:read", nonce=None)
    response = logged_in.get("/oauth/authorize", params)
    query = assert_error_redirect(response, "unauthorized_client", params["state"])
    assert "client_credentials" in query["error_description"]


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example.com/callback",
        REDIRECT_URI + "/",
        REDIRECT_URI + "?next=1",
        REDIRECT_URI.upper(),
        "https://rp.example.org/callback#frag",
        "http://rp.example.org/callback",
    ],
)
def test_unregistered_redirect_uri_is_an_error_page_never_a_redirect(logged_in, web_client, redirect_uri):
    params = authorize_params(web_client, redirect_uri=redirect_uri)
    response = logged_in.get("/oauth/authorize", params)
    assert response.status_code == 400, (response.status_code, response.get("Location"))
    assert not response.has_header("Location")
    assert "no-store" in response["Cache-Control"]
    page = response.content.decode()
    assert "redirect" in page.lower()
    assert "evil.example.com" not in response.get("Location", "")
    # The POST (consent) path refuses it too, and never hands out a code.
    posted = logged_in.post("/oauth/authorize", {**params, "allow": "Allow"})
    assert posted.status_code == 400, (posted.status_code, posted.get("Location"))
    assert not posted.has_header("Location")


@pytest.mark.parametrize("client_id", ["no-such-client", None])
def test_unknown_or_missing_client_at_authorize_is_an_error_page(logged_in, web_client, client_id):
    params = authorize_params(web_client, client_id=client_id)
    response = logged_in.get("/oauth/authorize", params)
    assert response.status_code == 400
    assert not response.has_header("Location")
    assert "no-store" in response["Cache-Control"]


def test_missing_redirect_uri_is_an_error_page(logged_in, web_client):
    """OAUTH-NL: redirect_uri is required; without it there is nowhere safe to send the error."""
    params = authorize_params(web_client, redirect_uri=None)
    response = logged_in.get("/oauth/authorize", params)
    assert response.status_code == 400
    assert not response.has_header("Location")


# ---- request shape at the token endpoint ------------------------------------------------------


def test_token_endpoint_refuses_query_string_parameters(client, cc_basic):
    response = post_form(
        client,
        "/oauth/token",
        {"scope": "orders:read"},
        basic(cc_basic.client_id, cc_basic.secret),
        query="grant_type=client_credentials",
    )
    assert_oauth_error(response, 400, "invalid_request", mentions="query")


def test_token_endpoint_refuses_secret_in_query_string(client, cc_post):
    response = post_form(
        client,
        "/oauth/token",
        {"grant_type": "client_credentials"},
        query=urlencode({"client_id": cc_post.client_id, "client_secret": cc_post.secret}),
    )
    assert_oauth_error(response, 400, "invalid_request", mentions="query")


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize("method", ["get", "put", "delete", "patch"])
def test_non_post_methods_are_405_json(client, db, path, method):
    response = getattr(client, method)(path)
    assert_oauth_error(response, 405, "invalid_request", mentions="POST")
    assert response["Allow"] == "POST"


@pytest.mark.parametrize("path", ["/oauth/token", "/oauth/introspect", "/oauth/revoke"])
@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("application/json", json.dumps({"grant_type": "client_credentials", "token": "x"})),
        ("text/plain", "grant_type=client_credentials"),
        ("multipart/form-data; boundary=xyz", "--xyz--"),
        ("", "grant_type=client_credentials"),
    ],
    ids=["json", "text", "multipart", "none"],
)
def test_non_form_bodies_are_invalid_request(client, cc_basic, path, content_type, body):
    response = client.post(
        path, body, content_type=content_type, HTTP_AUTHORIZATION=basic(cc_basic.client_id, cc_basic.secret)
    )
    assert_oauth_error(response, 400, "invalid_request", mentions="application/x-www-form-urlencoded")


def test_form_content_type_with_charset_is_accepted(client, cc_basic):
    response = client.post(
        "/oauth/token",
        "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded; charset=UTF-8",
        HTTP_AUTHORIZATION=basic(cc_basic.client_id, cc_basic.secret),
    )
    assert response.status_code == 200, response.content


@pytest.mark.parametrize(
    "authorization",
    [
        "Basic",
        "Basic !!!not-base64!!!",
        "Basic " + base64.b64encode(b"no-colon").decode(),
        "Basic " + base64.b64encode(b"\xff\xfe:\xff").decode(),
        "Bearer some-token",
        "Digest username=x",
    ],
)
def test_malformed_authorization_header_is_a_client_error(client, db, authorization):
    response = post_form(client, "/oauth/token", {"grant_type": "client_credentials"}, authorization)
    body = json.loads(response.content)
    assert body["error"] in ("invalid_client", "invalid_request")
    assert_oauth_error(response, 401 if body["error"] == "invalid_client" else 400, body["error"])


# ---- userinfo (RFC 6750) --------------------------------------------------------------------------


def _user_access_token(client, user, web_client) -> str:
    code, verifier = obtain_code(client, user, web_client)
    response = redeem(client, web_client, code, verifier)
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


def test_userinfo_refuses_access_token_in_query_string(client, user, web_client):
    access = _user_access_token(client, user, web_client)
    client.logout()
    response = client.get("/oauth/userinfo", {"access_token": access})
    assert_oauth_error(response, 400, "invalid_request", mentions="Authorization header")
    # Even together with a good header, a token in the URL is refused.
    response = client.get("/oauth/userinfo", {"access_token": access}, HTTP_AUTHORIZATION=f"Bearer {access}")
    assert_oauth_error(response, 400, "invalid_request", mentions="Authorization header")
    # The header alone works.
    good = client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert good.status_code == 200, good.content
    assert "no-store" in good["Cache-Control"]


def test_userinfo_refuses_access_token_in_form_body(client, user, web_client):
    access = _user_access_token(client, user, web_client)
    response = post_form(client, "/oauth/userinfo", {"access_token": access})
    assert_oauth_error(response, 400, "invalid_request", mentions="Authorization header")


@pytest.mark.parametrize("authorization", [None, "Bearer not-a-token", "Bearer ", "Basic dXNlcjpwYXNz"])
def test_userinfo_without_a_valid_token_is_401(client, db, authorization):
    extra = {"HTTP_AUTHORIZATION": authorization} if authorization is not None else {}
    response = client.get("/oauth/userinfo", **extra)
    assert response.status_code == 401, (response.status_code, response.content[:300])
    assert "no-store" in response["Cache-Control"]
    assert response["WWW-Authenticate"].startswith("Bearer")


def test_userinfo_with_client_credentials_token_is_refused(client, cc_basic):
    response = post_form(
        client, "/oauth/token", {"grant_type": "client_credentials"}, basic(cc_basic.client_id, cc_basic.secret)
    )
    access = response.json()["access_token"]
    answer = client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {access}")
    assert answer.status_code in (401, 403), (answer.status_code, answer.content[:300])
    assert "no-store" in answer["Cache-Control"]


# ---- introspection (RFC 7662) and revocation (RFC 7009) ------------------------------------------


@pytest.fixture
def cc_token(client, cc_basic) -> str:
    response = post_form(
        client, "/oauth/token", {"grant_type": "client_credentials"}, basic(cc_basic.client_id, cc_basic.secret)
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


@pytest.mark.parametrize("path", ["/oauth/introspect", "/oauth/revoke"])
def test_introspection_and_revocation_without_credentials_are_401(client, cc_token, path):
    response = post_form(client, path, {"token": cc_token})
    assert_oauth_error(response, 401, "invalid_client")
    assert response.has_header("WWW-Authenticate")


@pytest.mark.parametrize("path", ["/oauth/introspect", "/oauth/revoke"])
def test_introspection_and_revocation_with_wrong_secret_are_401(client, cc_token, resource_server, path):
    response = post_form(
        client, path, {"token": cc_token}, basic(resource_server.client_id, resource_server.secret + "x")
    )
    assert_oauth_error(response, 401, "invalid_client", mentions="secret")


def test_revocation_with_client_id_only_is_401(client, cc_token, cc_basic):
    response = post_form(client, "/oauth/revoke", {"token": cc_token, "client_id": cc_basic.client_id})
    assert_oauth_error(response, 401, "invalid_client")


def test_introspection_by_a_client_that_is_not_a_resource_server_is_403(client, cc_token, cc_post):
    response = post_form(
        client,
        "/oauth/introspect",
        {"token": cc_token, "client_id": cc_post.client_id, "client_secret": cc_post.secret},
    )
    assert_oauth_error(response, 403, "unauthorized_client", mentions="resource server")


def test_introspection_with_two_auth_methods_is_invalid_request(client, cc_token, resource_server):
    response = post_form(
        client,
        "/oauth/introspect",
        {"token": cc_token, "client_id": resource_server.client_id, "client_secret": resource_server.secret},
        basic(resource_server.client_id, resource_server.secret),
    )
    assert_oauth_error(response, 400, "invalid_request")


def test_introspection_without_token_is_invalid_request(client, resource_server):
    response = post_form(
        client,
        "/oauth/introspect",
        {"token_type_hint": "access_token"},
        basic(resource_server.client_id, resource_server.secret),
    )
    assert_oauth_error(response, 400, "invalid_request", mentions="token")


def test_introspection_of_unknown_token_is_inactive_not_an_error(client, resource_server):
    response = post_form(
        client, "/oauth/introspect", {"token": "nonsense"}, basic(resource_server.client_id, resource_server.secret)
    )
    assert response.status_code == 200
    assert response.json() == {"active": False}
    assert "no-store" in response["Cache-Control"]


def test_revocation_without_token_is_invalid_request(client, cc_basic):
    response = post_form(
        client, "/oauth/revoke", {"token_type_hint": "access_token"}, basic(cc_basic.client_id, cc_basic.secret)
    )
    assert_oauth_error(response, 400, "invalid_request", mentions="token")


def test_revocation_with_unsupported_token_type_hint(client, cc_basic, cc_token):
    response = post_form(
        client,
        "/oauth/revoke",
        {"token": cc_token, "token_type_hint": "id_token"},
        basic(cc_basic.client_id, cc_basic.secret),
    )
    # RFC 7009 §2.2.1: unsupported_token_type for a hint the server does not know ... or ignored.
    if response.status_code == 400:
        assert_oauth_error(response, 400, "unsupported_token_type")
    else:
        assert response.status_code == 200
        assert "no-store" in response["Cache-Control"]


def test_revocation_of_another_clients_token_does_nothing(
    client, cc_token, cc_post, resource_server, resource_server_api
):
    response = post_form(
        client, "/oauth/revoke", {"token": cc_token, "client_id": cc_post.client_id, "client_secret": cc_post.secret}
    )
    assert response.status_code == 200  # RFC 7009 §2.2: no information about the token
    assert "no-store" in response["Cache-Control"]
    active = post_form(
        client, "/oauth/introspect", {"token": cc_token}, basic(resource_server.client_id, resource_server.secret)
    )
    assert active.json()["active"] is True


@pytest.mark.parametrize("path", ["/oauth/introspect", "/oauth/revoke"])
def test_introspection_and_revocation_refuse_query_strings(client, cc_token, resource_server, path):
    response = post_form(
        client,
        path,
        {"token_type_hint": "access_token"},
        basic(resource_server.client_id, resource_server.secret),
        query=urlencode({"token": cc_token}),
    )
    assert_oauth_error(response, 400, "invalid_request", mentions="query")
