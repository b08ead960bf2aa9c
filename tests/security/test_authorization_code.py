"""Attacks on the authorization code flow (RFC 9700 §4.1-§4.5, §4.14; RFC 6819 §4.4.1).

Authorization code injection and replay, PKCE downgrade, open redirectors (``redirect_uri``,
``post_logout_redirect_uri``, sign-in ``next``) and mix-up (RFC 9207 ``iss``). Each test plays
the attacker and fails when the defence it names is taken away.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.test import Client as Browser
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model

from ..conftest import REDIRECT_URI, RegisteredClient, register_client
from ..factories import PASSWORD
from ..protocol.test_errors import (
    assert_oauth_error,
    authorize_params,
    basic,
    obtain_code,
    pkce_pair,
    post_form,
    redeem,
)

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()
Grant = get_grant_model()
RefreshToken = get_refresh_token_model()
SECOND_REDIRECT_URI = "https://rp.example.org/other-callback"
SIGNED_OUT_URI = "https://rp.example.org/signed-out"


def query_of(location: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(location).query).items()}


def access_token_alive(token: str) -> bool:
    checksum = hashlib.sha256(token.encode()).hexdigest()
    return AccessToken.objects.filter(token_checksum=checksum).exists()


def refresh(client: Browser, registered: RegisteredClient, refresh_token: str):
    return post_form(
        client,
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        basic(registered.client_id, registered.secret),
    )


@pytest.fixture
def two_uri_client(organisation) -> RegisteredClient:
    """A client with two registered redirect URIs: a code must still go back to its own."""
    return register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "orders:read"],
        redirect_uris=[REDIRECT_URI, SECOND_REDIRECT_URI],
    )


# ---- authorization code injection (RFC 9700 §4.5) --------------------------------------------


def test_a_stolen_code_is_useless_without_the_victims_pkce_verifier(client, user, web_client):
    """The attacker injects a victim's code into their own session with the same client: the
    client redeems it with the verifier of the attacker's session, which does not match."""
    victim_code, _victim_verifier = obtain_code(client, user, web_client)
    attacker_verifier, _challenge = pkce_pair()
    response = redeem(client, web_client, victim_code, attacker_verifier)
    assert_oauth_error(response, 400, "invalid_grant")
    assert not AccessToken.objects.filter(application=web_client.client).exists()


def test_a_stolen_code_is_useless_at_another_client(client, user, web_client, attacker_client):
    """The code is bound to the client it was issued to, even with the right verifier and the
    same redirect URI registered at the attacker's client (RFC 6749 §4.1.3)."""
    code, verifier = obtain_code(client, user, web_client)
    response = redeem(client, attacker_client, code, verifier)
    assert_oauth_error(response, 400, "invalid_grant")
    assert not AccessToken.objects.filter(application=attacker_client.client).exists()


def test_a_code_is_bound_to_the_redirect_uri_of_its_request(client, user, two_uri_client):
    """Another URI registered for the same client is not good enough (RFC 6749 §4.1.3)."""
    code, verifier = obtain_code(client, user, two_uri_client)
    auth = basic(two_uri_client.client_id, two_uri_client.secret)
    without_uri = {"grant_type": "authorization_code", "code": code, "code_verifier": verifier}
    for response in (
        redeem(client, two_uri_client, code, verifier, redirect_uri=SECOND_REDIRECT_URI),
        post_form(client, "/oauth/token", without_uri, auth),
    ):
        assert response.status_code == 400, response.content
        assert response.json()["error"] in ("invalid_grant", "invalid_request")
    assert not AccessToken.objects.filter(application=two_uri_client.client).exists()
    assert redeem(client, two_uri_client, code, verifier).status_code == 200


def test_a_code_expires_quickly(client, user, web_client, time_machine):
    time_machine.move_to(timezone.now(), tick=False)
    code, verifier = obtain_code(client, user, web_client)
    time_machine.shift(timedelta(seconds=settings.AUTHSERVER_AUTHORIZATION_CODE_LIFETIME + 1))
    assert_oauth_error(redeem(client, web_client, code, verifier), 400, "invalid_grant")
    assert not AccessToken.objects.filter(application=web_client.client).exists()


def test_codes_carry_at_least_128_bits_and_never_repeat(client, user, web_client):
    codes = {obtain_code(client, user, web_client)[0] for _ in range(5)}
    assert len(codes) == 5
    for code in codes:
        alphabet = 64 if set(code) - set("0123456789abcdefABCDEF") else 16
        assert len(code) * math.log2(alphabet) >= 128, code


# ---- replay (RFC 6749 §4.1.2, RFC 9700 §4.14) -------------------------------------------------


def test_a_replayed_code_kills_the_whole_family_even_after_a_refresh(client, user, web_client):
    """The attacker replays a code after the client already refreshed: the rotated refresh
    token and the access token it brought die too, not only the first pair."""
    code, verifier = obtain_code(client, user, web_client)
    first = redeem(client, web_client, code, verifier)
    assert first.status_code == 200, first.content
    rotated = refresh(client, web_client, first.json()["refresh_token"])
    assert rotated.status_code == 200, rotated.content
    new_access, new_refresh = rotated.json()["access_token"], rotated.json()["refresh_token"]
    assert access_token_alive(new_access)

    replay = redeem(client, web_client, code, verifier)
    assert_oauth_error(replay, 400, "invalid_grant")
    assert "access_token" not in replay.json()
    assert not access_token_alive(new_access)
    assert_oauth_error(refresh(client, web_client, new_refresh), 400, "invalid_grant")
    userinfo = client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {new_access}")
    assert userinfo.status_code == 401


# ---- PKCE downgrade (RFC 9700 §2.1.1, §4.8) -----------------------------------------------------


def test_the_challenge_itself_is_not_a_verifier(client, user, web_client):
    """A ``plain`` downgrade at the token endpoint: sending the S256 challenge as the verifier
    (what a plain transform would accept) is refused, whatever method the request names."""
    client.force_login(user)
    verifier, challenge = pkce_pair()
    params = authorize_params(web_client, code_challenge=challenge)
    assert client.get("/oauth/authorize", params).status_code == 200
    code = query_of(client.post("/oauth/authorize", {**params, "allow": "Allow"})["Location"])["code"]
    for extra in ({}, {"code_challenge_method": "plain"}):
        response = redeem(client, web_client, code, challenge, **extra)
        assert_oauth_error(response, 400, "invalid_grant")
    assert redeem(client, web_client, code, verifier).status_code == 200


@pytest.mark.parametrize(
    "downgrade",
    [
        {"code_challenge_method": "plain"},
        {"code_challenge_method": None},
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge": None},
    ],
    ids=["plain", "no-method", "no-pkce", "no-challenge"],
)
def test_an_authorization_request_without_s256_pkce_gets_no_code(client, user, web_client, downgrade):
    """RFC 9700 §2.1.1: PKCE on every request, S256 only; a missing method means plain."""
    client.force_login(user)
    params = authorize_params(web_client, **downgrade)
    for response in (
        client.get("/oauth/authorize", params),
        client.post("/oauth/authorize", {**params, "allow": "Allow"}),
    ):
        query = query_of(response.get("Location", ""))
        assert "code" not in query, query
        assert query.get("error") == "invalid_request", (response.status_code, query)
    assert not Grant.objects.exists()


@pytest.mark.parametrize(
    "tampered",
    [
        {"code_challenge_method": "plain"},
        {"code_challenge_method": ""},
        {"code_challenge": "", "code_challenge_method": ""},
    ],
    ids=["plain", "no-method", "no-challenge"],
)
def test_a_tampered_consent_form_cannot_downgrade_pkce(client, user, web_client, tampered):
    """The consent page was for an S256 request; its POST, edited by the attacker, asks for
    plain or no PKCE: no code is issued."""
    client.force_login(user)
    params = authorize_params(web_client)
    assert client.get("/oauth/authorize", params).status_code == 200
    response = client.post("/oauth/authorize", {**params, **tampered, "allow": "Allow"})
    assert "code" not in query_of(response.get("Location", "")), response.get("Location")
    assert not Grant.objects.filter(application=web_client.client).exists()


def test_a_missing_verifier_is_refused_and_issues_nothing(client, user, web_client):
    code, _verifier = obtain_code(client, user, web_client)
    data = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI}
    response = post_form(client, "/oauth/token", data, basic(web_client.client_id, web_client.secret))
    assert response.status_code == 400
    assert response.json()["error"] in ("invalid_request", "invalid_grant")
    assert not AccessToken.objects.filter(application=web_client.client).exists()


# ---- open redirectors (RFC 9700 §4.1, §4.11; RFC 6819 §4.2.4) -----------------------------------

EVIL_REDIRECTS = [
    "https://evil.example.com/callback",
    "https://rp.example.org.evil.example.com/callback",
    "https://rp.example.org/callback.evil.example.com",
    "https://rp.example.org@evil.example.com/callback",
    "https://evil.example.com@rp.example.org/callback",
    "https://rp.example.org/callback/../../evil",
    "https://rp.example.org/callback/",
    "https://rp.example.org/callbackx",
    "https://rp.example.org/callback?redirect=https://evil.example.com",
    "https://rp.example.org/callback#@evil.example.com",
    "https://rp.example.org:8443/callback",
    "https://rp.example.org:443/callback",
    "http://rp.example.org/callback",
    "HTTPS://rp.example.org/callback",
    "https://RP.example.org/callback",
    "https://rp.example.org/Callback",
    "https://rp.example.org/callback%2f..%2fevil",
    "//evil.example.com/callback",
    "https://rp.example.org\\@evil.example.com/callback",
]


@pytest.mark.parametrize("redirect_uri", EVIL_REDIRECTS)
def test_no_variant_of_the_registered_redirect_uri_gets_a_redirect(client, user, web_client, redirect_uri):
    """Exact string matching (OAUTH-NL, RFC 9700 §4.1.3): the error is shown, never sent."""
    client.force_login(user)
    params = authorize_params(web_client, redirect_uri=redirect_uri)
    for response in (
        client.get("/oauth/authorize", params),
        client.post("/oauth/authorize", {**params, "allow": "Allow"}),
    ):
        assert response.status_code == 400, (response.status_code, response.get("Location"))
        assert not response.has_header("Location")
    assert not Grant.objects.exists()


def test_a_consent_form_edited_to_another_redirect_uri_sends_nothing_there(client, user, web_client):
    client.force_login(user)
    params = authorize_params(web_client)
    assert client.get("/oauth/authorize", params).status_code == 200
    response = client.post("/oauth/authorize", {**params, "redirect_uri": "https://evil.example.com/cb", "allow": "1"})
    assert "evil.example.com" not in response.get("Location", "")
    assert not Grant.objects.exists()


@pytest.mark.parametrize(
    "target",
    [
        "https://evil.example.com/signed-out",
        "https://rp.example.org.evil.example.com/signed-out",
        "https://rp.example.org@evil.example.com/signed-out",
        "https://rp.example.org/signed-out.evil",
        "https://rp.example.org:8443/signed-out",
        "http://rp.example.org/signed-out",
        "https://rp.example.org/signed-out?next=https://evil.example.com",
        "//evil.example.com/signed-out",
    ],
)
def test_logout_never_redirects_to_an_unregistered_post_logout_redirect_uri(client, user, web_client, target):
    client.force_login(user)
    query = {"client_id": web_client.client_id, "post_logout_redirect_uri": target, "state": "s"}
    asked = client.get("/oauth/logout", query)
    assert asked.status_code == 400, (asked.status_code, asked.get("Location"))
    assert not asked.has_header("Location")
    # The confirmation form edited to point elsewhere: validated again on POST.
    posted = client.post("/oauth/logout", {**query, "allow": "Logout"})
    assert "evil" not in posted.get("Location", ""), posted.get("Location")
    assert "8443" not in posted.get("Location", "")
    assert not posted.get("Location", "").startswith("http://")
    # The registered one works, so the refusals above are about the target alone.
    good = client.post("/oauth/logout", {**query, "post_logout_redirect_uri": SIGNED_OUT_URI, "allow": "Logout"})
    assert good.status_code == 302
    assert good["Location"].startswith(SIGNED_OUT_URI)


@pytest.mark.parametrize(
    "next_url",
    [
        "https://evil.example.com/",
        "//evil.example.com/",
        "/\\evil.example.com/",
        "https:evil.example.com",
        "\\\\evil.example.com",
        "javascript:alert(1)",
    ],
)
@pytest.mark.parametrize("login_path", ["/accounts/login/", "/accounts/signup/"])
def test_sign_in_and_sign_up_never_follow_an_offsite_next(client, user, next_url, login_path):
    if login_path == "/accounts/login/":
        response = client.post(f"{login_path}?next={next_url}", {"username": user.username, "password": PASSWORD})
        assert response.status_code == 302
        assert response["Location"] == settings.LOGIN_REDIRECT_URL
    else:
        client.force_login(user)
        response = client.get(login_path, {"next": next_url})
        assert response.status_code == 302
        assert response["Location"] == settings.LOGIN_REDIRECT_URL


# ---- mix-up (RFC 9207, RFC 9700 §4.4) -------------------------------------------------------------


def test_every_authorization_response_names_its_issuer(client, user, web_client):
    """Success and every error that is redirected carry ``iss``, the issuer of discovery, not
    one derived from the request's Host header."""
    issuer = settings.AUTHSERVER_ISSUER
    discovery = client.get("/.well-known/openid-configuration").json()
    assert discovery["issuer"] == issuer
    assert discovery["authorization_response_iss_parameter_supported"] is True

    client.force_login(user)
    responses: list[Any] = []
    params = authorize_params(web_client)
    client.get("/oauth/authorize", params, HTTP_HOST="localhost")
    responses.append(client.post("/oauth/authorize", {**params, "allow": "Allow"}, HTTP_HOST="localhost"))
    denied = authorize_params(web_client)
    client.get("/oauth/authorize", denied)
    responses.append(client.post("/oauth/authorize", denied))
    responses.append(client.get("/oauth/authorize", authorize_params(web_client, scope="openid orders:write")))
    responses.append(client.get("/oauth/authorize", authorize_params(web_client, code_challenge_method="plain")))
    responses.append(client.get("/oauth/authorize", authorize_params(web_client, response_type="token")))
    seen = []
    for response in responses:
        assert response.status_code == 302, response.content[:300]
        query = query_of(response["Location"])
        assert query.get("iss") == issuer, query
        seen.append("code" if "code" in query else query["error"])
    assert seen == ["code", "access_denied", "invalid_scope", "invalid_request", "unsupported_response_type"]


def test_the_state_comes_back_unchanged_and_is_required(client, user, web_client):
    """CSRF against the client's redirect endpoint (RFC 6749 §10.12): state is required and
    echoed exactly, so the client can bind the response to its own request."""
    client.force_login(user)
    state = secrets.token_urlsafe(24) + "&x=<y>"
    params = authorize_params(web_client, state=state)
    client.get("/oauth/authorize", params)
    answer = client.post("/oauth/authorize", {**params, "allow": "Allow"})
    assert query_of(answer["Location"])["state"] == state
    missing = client.get("/oauth/authorize", authorize_params(web_client, state=None))
    assert query_of(missing["Location"])["error"] == "invalid_request"
    assert "code" not in query_of(missing["Location"])
