"""Protocol tests against the live server, driven over HTTP by a real client library.

Authlib's ``OAuth2Session`` plays the client, ``requests`` plays the browser (login page and
consent screen), and every token is verified the way a relying party or resource server
would: fetch the JWKS, pick the key by ``kid``, check the signature and the claims.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import time
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import jwt
import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session, OAuthError
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from authlib.oidc.discovery import OpenIDProviderMetadata
from joserfc.jwk import ECKey, RSAKey

from authserver.models import ApiResource, SigningKey
from authserver.oauth.keys import keyring
from clients.models import Client

from ..conftest import REDIRECT_URI, ClientKey, RegisteredClient, make_client_key, register_client

TIMEOUT = 10
SIGNED_OUT_URI = "https://rp.example.org/signed-out"
RESOURCE = "https://api.example.org/orders"
PAIRWISE_REDIRECT_URI = "https://other-rp.example.net/callback"


# ---- helpers: keys, JWTs, clients -----------------------------------------------------------


@pytest.fixture
def orders_api(organisation) -> ApiResource:
    """The API RESOURCE names: a resource indicator must be an API's audience (RFC 8707 §2)."""
    return ApiResource.objects.create(name="Orders", slug="orders", audience=RESOURCE, owner=organisation)


def fetch_jwks(issuer: str) -> dict[str, dict[str, Any]]:
    response = requests.get(f"{issuer}/oauth/jwks", timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    return {jwk["kid"]: jwk for jwk in response.json()["keys"]}


def verify_jwt(
    token: str, issuer: str, *, typ: str, audience: str | list[str] | None = None, **options: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Verify ``token`` against the live JWKS, as a relying party would; return (header, claims)."""
    header = jwt.get_unverified_header(token)
    assert header.get("typ") == typ, header
    assert header.get("kid"), "every token names its signing key (RFC 9068 §2.1, OAUTH-NL)"
    jwks = fetch_jwks(issuer)
    assert header["kid"] in jwks, f"kid {header['kid']} is not published in the JWKS"
    jwk = jwks[header["kid"]]
    assert header["alg"] == jwk["alg"], "the token's alg must match the published key's alg"
    key = jwt.PyJWK(jwk, algorithm=jwk["alg"]).key
    claims = jwt.decode(
        token,
        key=key,
        algorithms=[jwk["alg"]],
        issuer=issuer,
        audience=audience,
        options={"verify_aud": audience is not None, "require": ["iss", "exp", "iat"], **options},
    )
    return header, claims


def verify_access_token(token: str, issuer: str, client_id: str, audience: str | None = None) -> dict[str, Any]:
    """RFC 9068 §2: a JWT with typ at+jwt and iss, exp, iat, jti, client_id, sub (plus azp, scope)."""
    _header, claims = verify_jwt(token, issuer, typ="at+jwt", audience=audience)
    for name in ("iss", "exp", "iat", "jti", "client_id", "azp", "sub", "scope"):
        assert name in claims, f"access token lacks {name}: {claims}"
    assert claims["client_id"] == client_id
    assert claims["azp"] == client_id
    assert claims["exp"] > time.time()
    if audience is None:
        assert "aud" not in claims
    return claims


class FreshPrivateKeyJWT(PrivateKeyJWT):
    """Authlib's private_key_jwt with a short-lived assertion and a fresh ``jti`` each time.

    Authlib signs for an hour by default and writes its ``jti`` into the shared ``claims``
    dict; this server allows at most five minutes and accepts a ``jti`` once (RFC 7523 §3).
    """

    def __init__(self, token_endpoint: str, *, alg: str, kid: str) -> None:
        super().__init__(token_endpoint, headers={"kid": kid}, alg=alg)

    def sign(self, auth: Any, token_endpoint: str) -> str:
        self.claims = {"exp": int(time.time()) + 60, "jti": secrets.token_urlsafe(32)}
        return super().sign(auth, token_endpoint)


def joserfc_key(key: ClientKey) -> Any:
    from cryptography.hazmat.primitives import serialization

    pem = key.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return ECKey.import_key(pem) if key.alg == "ES256" else RSAKey.import_key(pem)


def oauth_session(issuer: str, registered: RegisteredClient, **kwargs: Any) -> OAuth2Session:
    """An Authlib client session authenticating the way the client was registered."""
    method = registered.client.token_endpoint_auth_method
    if method == Client.AuthMethod.PRIVATE_KEY_JWT:
        assert registered.key is not None
        auth = FreshPrivateKeyJWT(f"{issuer}/oauth/token", alg=registered.key.alg, kid=registered.key.kid)
        return OAuth2Session(
            registered.client_id,
            joserfc_key(registered.key),
            token_endpoint_auth_method=auth,
            revocation_endpoint_auth_method=auth,
            **kwargs,
        )
    return OAuth2Session(
        registered.client_id,
        registered.secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
        **kwargs,
    )


def introspect(issuer: str, resource_server: RegisteredClient, token: str, **extra: str) -> requests.Response:
    return requests.post(
        f"{issuer}/oauth/introspect",
        data={"token": token, **extra},
        auth=(resource_server.client_id, resource_server.secret),
        timeout=TIMEOUT,
    )


def at_hash(access_token: str) -> str:
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


# ---- helpers: the browser -------------------------------------------------------------------


class FormParser(HTMLParser):
    """The <input> elements of a page, and the text, for a browser without a DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.inputs: list[dict[str, str]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "input":
            self.inputs.append({name: value or "" for name, value in attrs})

    def handle_data(self, data: str) -> None:
        if data.strip():
            self.text.append(" ".join(data.split()))


def parse_page(html: str) -> FormParser:
    parser = FormParser()
    parser.feed(html)
    return parser


def hidden_fields(page: FormParser) -> dict[str, str]:
    return {i["name"]: i.get("value", "") for i in page.inputs if i.get("type") == "hidden" and i.get("name")}


def page_text(page: FormParser) -> str:
    return " ".join(page.text)


def log_in(browser: requests.Session, issuer: str, login_url: str, username: str, password: str) -> requests.Response:
    """Fill in Django's login form: scrape csrfmiddlewaretoken and next, post the credentials."""
    login_page = browser.get(login_url, timeout=TIMEOUT)
    assert login_page.status_code == 200, login_page.text
    fields = hidden_fields(parse_page(login_page.text))
    assert fields.get("csrfmiddlewaretoken"), "the login form carries a CSRF token"
    response = browser.post(
        login_url,
        data={**fields, "username": username, "password": password},
        allow_redirects=False,
        timeout=TIMEOUT,
    )
    assert response.status_code == 302, f"login failed: {response.status_code} {response.text[:500]}"
    return response


class AuthorizationRun:
    """One authorization-code run: the client's secrets (state, nonce, verifier) and results."""

    def __init__(
        self, issuer: str, registered: RegisteredClient, *, scope: str, redirect_uri: str = REDIRECT_URI, **params: str
    ) -> None:
        self.issuer = issuer
        self.registered = registered
        self.redirect_uri = redirect_uri
        self.state = secrets.token_urlsafe(16)
        self.nonce = secrets.token_urlsafe(16)
        self.code_verifier = secrets.token_urlsafe(48)  # 64 characters, RFC 7636 §4.1
        self.session = oauth_session(
            issuer, registered, scope=scope, redirect_uri=redirect_uri, code_challenge_method="S256"
        )
        self.authorization_url, _ = self.session.create_authorization_url(
            f"{issuer}/oauth/authorize",
            state=self.state,
            nonce=self.nonce,
            code_verifier=self.code_verifier,
            **params,
        )
        self.browser = requests.Session()
        self.consent_text = ""
        self.consent_fields: dict[str, str] = {}
        self.callback = ""

    def authorize(self, username: str, password: str) -> dict[str, str]:
        """Browser part: authorization request -> login -> consent -> redirect to the client."""
        assert "code_challenge_method=S256" in self.authorization_url
        response = self.browser.get(self.authorization_url, allow_redirects=False, timeout=TIMEOUT)
        assert response.status_code == 302, response.text[:500]
        login_url = urljoin(self.issuer, response.headers["Location"])
        assert urlsplit(login_url).path == "/accounts/login/"
        after_login = log_in(self.browser, self.issuer, login_url, username, password)
        consent_url = urljoin(self.issuer, after_login.headers["Location"])
        assert urlsplit(consent_url).path == "/oauth/authorize"
        return self.consent(consent_url)

    def consent(self, consent_url: str) -> dict[str, str]:
        consent = self.browser.get(consent_url, allow_redirects=False, timeout=TIMEOUT)
        assert consent.status_code == 200, consent.text[:500]
        assert consent.headers.get("Cache-Control") == "no-store"
        page = parse_page(consent.text)
        self.consent_text = page_text(page)
        self.consent_fields = hidden_fields(page)
        assert "allow" in {i.get("name") for i in page.inputs}, "the consent form has an Allow button"
        response = self.browser.post(
            consent_url, data={**self.consent_fields, "allow": "Allow"}, allow_redirects=False, timeout=TIMEOUT
        )
        assert response.status_code == 302, response.text[:500]
        self.callback = response.headers["Location"]
        assert self.callback.startswith(self.redirect_uri + "?"), self.callback
        return {name: values[0] for name, values in parse_qs(urlsplit(self.callback).query).items()}

    def exchange(self) -> dict[str, Any]:
        """Client part: Authlib exchanges the code, checking state, with the PKCE verifier."""
        return dict(
            self.session.fetch_token(
                f"{self.issuer}/oauth/token",
                authorization_response=self.callback,
                state=self.state,
                code_verifier=self.code_verifier,
            )
        )


def code_flow(
    issuer: str,
    registered: RegisteredClient,
    user: Any,
    password: str,
    scope: str = "openid profile email",
    redirect_uri: str = REDIRECT_URI,
) -> tuple[AuthorizationRun, dict[str, Any]]:
    run = AuthorizationRun(issuer, registered, scope=scope, redirect_uri=redirect_uri)
    params = run.authorize(user.username, password)
    assert params["state"] == run.state
    assert params["iss"] == issuer
    return run, run.exchange()


def verify_id_token(run: AuthorizationRun, token: dict[str, Any], user: Any) -> dict[str, Any]:
    _header, claims = verify_jwt(
        token["id_token"],
        run.issuer,
        typ="JWT",
        audience=run.registered.client_id,
        require=["iss", "aud", "exp", "iat", "sub", "nonce", "jti"],
    )
    assert claims["nonce"] == run.nonce
    assert claims["at_hash"] == at_hash(token["access_token"])
    assert claims["acr"] == "http://eidas.europa.eu/LoA/low"  # password login only
    assert "amr" not in claims, "OIDC-NL: no amr"
    assert claims["exp"] - claims["iat"] <= 300, "ID token lives 5 minutes (STANDARDS.md)"
    assert claims["sub"] not in (user.username, user.email, str(user.pk))
    return claims


# ---- 1. discovery ---------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"])
def test_discovery_describes_the_live_server(issuer, path):
    response = requests.get(f"{issuer}{path}", headers={"Origin": "https://spa.example.org"}, timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    cache_control = {part.strip() for part in response.headers["Cache-Control"].split(",")}
    assert "public" in cache_control
    assert any(part.startswith("max-age=") and int(part.split("=")[1]) > 0 for part in cache_control)
    assert response.headers["Access-Control-Allow-Origin"] == "*"

    metadata = response.json()
    # Authlib validates the document the way a client library would (RFC 8414, OIDC Discovery).
    OpenIDProviderMetadata(metadata).validate()
    assert metadata["issuer"] == issuer
    assert metadata["response_types_supported"] == ["code"]
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert sorted(metadata["grant_types_supported"]) == ["authorization_code", "client_credentials", "refresh_token"]
    assert "private_key_jwt" in metadata["token_endpoint_auth_methods_supported"]
    assert metadata["authorization_response_iss_parameter_supported"] is True
    assert set(metadata["subject_types_supported"]) >= {"public", "pairwise"}
    assert metadata["claims_parameter_supported"] is True

    endpoints = {key: value for key, value in metadata.items() if key.endswith(("_endpoint", "_uri"))}
    assert set(endpoints) >= {
        "authorization_endpoint",
        "token_endpoint",
        "userinfo_endpoint",
        "jwks_uri",
        "introspection_endpoint",
        "revocation_endpoint",
        "end_session_endpoint",
    }
    for key, url in endpoints.items():
        assert url.startswith(issuer + "/"), f"{key} is not under the issuer: {url}"
        answer = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
        assert answer.status_code != 404, f"{key} {url} -> 404"
        assert answer.status_code < 500, f"{key} {url} -> {answer.status_code}"


# ---- 2. JWKS --------------------------------------------------------------------------------


def test_jwks_keys_are_complete_and_cacheable(issuer, cc_basic):
    # Make the server sign once so it has created its keys.
    oauth_session(issuer, cc_basic).fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials")
    response = requests.get(f"{issuer}/oauth/jwks", timeout=TIMEOUT)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/jwk-set+json")
    cache_control = {part.strip() for part in response.headers["Cache-Control"].split(",")}
    assert "public" in cache_control
    assert any(p.startswith("max-age=") for p in cache_control)
    assert response.headers["Access-Control-Allow-Origin"] == "*"
    keys = response.json()["keys"]
    assert keys
    for jwk in keys:
        assert {"kid", "kty", "alg"} <= set(jwk), jwk
        assert jwk["alg"] in ("RS256", "PS256", "ES256")
        assert not {"d", "p", "q", "dp", "dq", "qi", "k"} & set(jwk), "private key material published"
        jwt.PyJWK(jwk)  # each key loads
    assert len({jwk["kid"] for jwk in keys}) == len(keys)


# ---- 3. client credentials ------------------------------------------------------------------


@pytest.mark.parametrize("fixture", ["cc_basic", "cc_post"])
def test_client_credentials_with_a_secret(issuer, request, fixture):
    registered = request.getfixturevalue(fixture)
    session = oauth_session(issuer, registered)
    token = session.fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials", scope="orders:read")
    assert token["token_type"] == "Bearer"
    assert token["scope"] == "orders:read"
    assert "refresh_token" not in token, "OAUTH-NL: no refresh token for client credentials"
    assert 0 < token["expires_in"] <= 6 * 3600
    claims = verify_access_token(token["access_token"], issuer, registered.client_id)
    assert claims["sub"] == registered.client_id
    assert claims["scope"] == "orders:read"


def test_client_credentials_refuses_the_wrong_secret_and_the_wrong_method(issuer, cc_basic, cc_post):
    wrong = OAuth2Session(cc_basic.client_id, "x" * 43, token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(OAuthError) as error:
        wrong.fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials")
    assert error.value.error == "invalid_client"
    # A client registered for client_secret_post may not use Basic (one registered method).
    other_method = OAuth2Session(cc_post.client_id, cc_post.secret, token_endpoint_auth_method="client_secret_basic")
    with pytest.raises(OAuthError) as error:
        other_method.fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials")
    assert error.value.error == "invalid_client"


@pytest.mark.parametrize("alg", ["RS256", "PS256", "ES256"])
def test_client_credentials_with_private_key_jwt(issuer, organisation, orders_api, alg):
    registered = register_client(
        organisation,
        grant_type="client_credentials",
        auth_method="private_key_jwt",
        scopes=["orders:read"],
        key=make_client_key(alg),
    )
    session = oauth_session(issuer, registered)
    token = session.fetch_token(
        f"{issuer}/oauth/token", grant_type="client_credentials", scope="orders:read", resource=RESOURCE
    )
    claims = verify_access_token(token["access_token"], issuer, registered.client_id, audience=RESOURCE)
    assert claims["aud"] == RESOURCE, "RFC 8707: aud is the requested resource"
    assert claims["scope"] == "orders:read"
    # A second request signs a fresh assertion and works too.
    second = session.fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials")
    second_claims = verify_access_token(second["access_token"], issuer, registered.client_id)
    assert second_claims["jti"] != claims["jti"]


def test_private_key_jwt_assertion_is_single_use(issuer, cc_jwt):
    assert cc_jwt.key is not None
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, f"{issuer}/oauth/token")
    data = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    }
    first = requests.post(f"{issuer}/oauth/token", data=data, timeout=TIMEOUT)
    assert first.status_code == 200, first.text
    verify_access_token(first.json()["access_token"], issuer, cc_jwt.client_id)
    replay = requests.post(f"{issuer}/oauth/token", data=data, timeout=TIMEOUT)
    assert replay.status_code in (400, 401)
    assert replay.json()["error"] == "invalid_client"


# ---- 4. authorization code + PKCE + OIDC ----------------------------------------------------


def test_authorization_code_flow_with_pkce_and_id_token(issuer, web_client, user, password, organisation):
    run = AuthorizationRun(issuer, web_client, scope="openid profile email")
    params = run.authorize(user.username, password)

    # OAUTH-NL §3.1.4: what the user is shown before consenting.
    text = run.consent_text
    assert organisation.name in text
    assert Client.RegistrationMode.MANUAL.label in text
    assert "Confidential client" in text
    for description in ("Sign you in", "Share your name", "Share your email address"):
        assert description in text
    assert "60 minutes" in text
    assert "24 hours" in text
    assert run.consent_fields["code_challenge_method"] == "S256"
    assert run.consent_fields["state"] == run.state
    assert run.consent_fields["nonce"] == run.nonce

    # The redirect carries code, state and the RFC 9207 issuer.
    assert set(params) == {"code", "state", "iss"}
    assert params["state"] == run.state
    assert params["iss"] == issuer
    assert len(params["code"]) >= 22  # at least 128 bits

    token = run.exchange()
    assert token["token_type"] == "Bearer"
    assert set(token["scope"].split()) == {"openid", "profile", "email"}
    assert token["refresh_token"]
    id_claims = verify_id_token(run, token, user)
    assert id_claims["sub"] == str(user.subject_id)
    access_claims = verify_access_token(token["access_token"], issuer, web_client.client_id)
    assert access_claims["sub"] == id_claims["sub"]
    assert set(access_claims["scope"].split()) == {"openid", "profile", "email"}
    assert access_claims["exp"] - access_claims["iat"] == 3600

    # The code is single use: a second exchange fails.
    with pytest.raises(OAuthError) as error:
        run.exchange()
    assert error.value.error == "invalid_grant"


def test_authorization_code_flow_with_a_private_key_jwt_client(issuer, organisation, user, password):
    registered = register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="private_key_jwt",
        scopes=["openid", "orders:read"],
        redirect_uris=[REDIRECT_URI],
        key=make_client_key("PS256"),
    )
    run, token = code_flow(issuer, registered, user, password, scope="openid orders:read")
    verify_id_token(run, token, user)
    claims = verify_access_token(token["access_token"], issuer, registered.client_id)
    assert set(claims["scope"].split()) == {"openid", "orders:read"}


def test_authorization_code_requires_the_right_pkce_verifier(issuer, web_client, user, password):
    run = AuthorizationRun(issuer, web_client, scope="openid")
    run.authorize(user.username, password)
    run.code_verifier = secrets.token_urlsafe(48)  # not the one behind the challenge
    with pytest.raises(OAuthError) as error:
        run.exchange()
    assert error.value.error == "invalid_grant"


def test_authorization_request_without_s256_pkce_is_refused(issuer, web_client, user, password):
    browser = requests.Session()
    login = browser.get(f"{issuer}/accounts/login/", timeout=TIMEOUT)
    assert login.status_code == 200
    log_in(browser, issuer, f"{issuer}/accounts/login/?next=/", user.username, password)
    base = {
        "response_type": "code",
        "client_id": web_client.client_id,
        "redirect_uri": REDIRECT_URI,
        "scope": "openid",
        "state": "s" * 22,
        "nonce": "n" * 22,
    }
    verifier = secrets.token_urlsafe(48)
    for extra in ({}, {"code_challenge": verifier, "code_challenge_method": "plain"}):
        response = browser.get(
            f"{issuer}/oauth/authorize?{urlencode({**base, **extra})}", allow_redirects=False, timeout=TIMEOUT
        )
        if response.status_code == 302:
            query = parse_qs(urlsplit(response.headers["Location"]).query)
            assert response.headers["Location"].startswith(REDIRECT_URI)
            assert query["error"] == ["invalid_request"], query
            assert "code" not in query
        else:
            assert response.status_code == 400, response.status_code
            assert 'name="allow"' not in response.text


# ---- 5. userinfo ----------------------------------------------------------------------------


def test_userinfo_with_the_access_token_in_the_header(issuer, web_client, user, password):
    run, token = code_flow(issuer, web_client, user, password, scope="openid profile email")
    id_claims = verify_id_token(run, token, user)
    response = requests.get(
        f"{issuer}/oauth/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    info = response.json()
    assert info["sub"] == id_claims["sub"]
    assert info["email"] == user.email
    assert info["given_name"] == user.first_name
    assert info["family_name"] == user.last_name
    assert info["name"] == user.get_full_name()

    # Without the header, or with the token in the URL (RFC 9700), there is no userinfo.
    assert requests.get(f"{issuer}/oauth/userinfo", timeout=TIMEOUT).status_code == 401
    in_query = requests.get(f"{issuer}/oauth/userinfo", params={"access_token": token["access_token"]}, timeout=TIMEOUT)
    assert in_query.status_code in (400, 401)
    assert "sub" not in in_query.text


def test_userinfo_releases_only_what_the_scopes_allow(issuer, web_client, user, password):
    _run, token = code_flow(issuer, web_client, user, password, scope="openid")
    response = requests.get(
        f"{issuer}/oauth/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=TIMEOUT
    )
    assert response.status_code == 200, response.text
    info = response.json()
    assert info["sub"] == str(user.subject_id)
    assert not {"email", "name", "given_name", "family_name"} & set(info), info


def test_pairwise_subject_differs_from_the_public_one(issuer, organisation, web_client, user, password):
    pairwise = register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "profile"],
        redirect_uris=[PAIRWISE_REDIRECT_URI],
        subject_type="pairwise",
    )
    _public_run, public_token = code_flow(issuer, web_client, user, password, scope="openid")
    public_sub = verify_id_token(_public_run, public_token, user)["sub"]
    assert public_sub == str(user.subject_id)

    run, token = code_flow(issuer, pairwise, user, password, scope="openid", redirect_uri=PAIRWISE_REDIRECT_URI)
    id_claims = verify_id_token(run, token, user)
    pairwise_sub = id_claims["sub"]
    assert pairwise_sub != public_sub
    assert pairwise_sub != str(user.subject_id)
    info = requests.get(
        f"{issuer}/oauth/userinfo", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=TIMEOUT
    ).json()
    assert info["sub"] == pairwise_sub
    access = verify_access_token(token["access_token"], issuer, pairwise.client_id)
    assert access["sub"] == pairwise_sub


# ---- 6. refresh -----------------------------------------------------------------------------


def test_refresh_tokens_rotate_and_reuse_revokes_the_family(issuer, web_client, user, password, resource_server):
    run, first = code_flow(issuer, web_client, user, password, scope="openid profile")
    token_url = f"{issuer}/oauth/token"

    second = dict(run.session.refresh_token(token_url, refresh_token=first["refresh_token"]))
    assert second["refresh_token"] != first["refresh_token"], "refresh tokens rotate (RFC 9700 §4.14.2)"
    assert second["access_token"] != first["access_token"]
    verify_access_token(second["access_token"], issuer, web_client.client_id)
    third = dict(run.session.refresh_token(token_url, refresh_token=second["refresh_token"]))
    assert third["refresh_token"] not in (first["refresh_token"], second["refresh_token"])
    assert set(third["scope"].split()) == {"openid", "profile"}

    # Reusing a rotated refresh token fails ...
    with pytest.raises(OAuthError) as error:
        run.session.refresh_token(token_url, refresh_token=first["refresh_token"])
    assert error.value.error == "invalid_grant"
    # ... and revokes the whole family: the newest refresh token and access token are dead too.
    with pytest.raises(OAuthError) as error:
        run.session.refresh_token(token_url, refresh_token=third["refresh_token"])
    assert error.value.error == "invalid_grant"
    assert introspect(issuer, resource_server, third["access_token"]).json() == {"active": False}
    assert introspect(issuer, resource_server, third["refresh_token"]).json() == {"active": False}


def test_refresh_token_belongs_to_its_client(issuer, web_client, organisation, user, password):
    _run, token = code_flow(issuer, web_client, user, password, scope="openid")
    other = register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
    )
    with pytest.raises(OAuthError) as error:
        oauth_session(issuer, other).refresh_token(f"{issuer}/oauth/token", refresh_token=token["refresh_token"])
    assert error.value.error == "invalid_grant"


# ---- 7. introspection -----------------------------------------------------------------------


def test_introspection_of_an_active_token(issuer, resource_server, resource_server_api, web_client, user, password):
    _run, token = code_flow(issuer, web_client, user, password, scope="openid profile orders:read")
    response = introspect(issuer, resource_server, token["access_token"])
    assert response.status_code == 200, response.text
    assert response.headers["Cache-Control"] == "no-store"
    answer = response.json()
    access_claims = verify_access_token(token["access_token"], issuer, web_client.client_id, audience=RESOURCE)
    assert answer["active"] is True
    assert set(answer["scope"].split()) == {"openid", "profile", "orders:read"}
    assert answer["aud"] == RESOURCE
    assert answer["exp"] == access_claims["exp"]
    assert answer["client_id"] == web_client.client_id
    assert answer["sub"] == access_claims["sub"] == str(user.subject_id)
    assert answer["iss"] == issuer
    assert answer["token_type"] == "Bearer"

    refresh = introspect(issuer, resource_server, token["refresh_token"], token_type_hint="refresh_token").json()
    assert refresh["active"] is True
    assert refresh["client_id"] == web_client.client_id


def test_introspection_of_a_client_credentials_token_with_resource(issuer, resource_server, cc_jwt, orders_api):
    orders_api.introspectors.add(resource_server.client)
    token = oauth_session(issuer, cc_jwt).fetch_token(
        f"{issuer}/oauth/token", grant_type="client_credentials", resource=RESOURCE
    )
    answer = introspect(issuer, resource_server, token["access_token"]).json()
    assert answer["active"] is True
    assert answer["client_id"] == cc_jwt.client_id
    assert answer["sub"] == cc_jwt.client_id
    assert answer["aud"] == RESOURCE
    assert answer["scope"] == "orders:read"


def test_introspection_of_unknown_tokens_is_inactive(issuer, resource_server):
    for token in ("not-a-token", secrets.token_urlsafe(32), "eyJhbGciOiJub25lIn0.e30."):
        response = introspect(issuer, resource_server, token)
        assert response.status_code == 200
        assert response.json() == {"active": False}


def test_introspection_is_for_resource_servers_only(issuer, cc_basic, resource_server, resource_server_api):
    token = oauth_session(issuer, cc_basic).fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials")
    url = f"{issuer}/oauth/introspect"
    data = {"token": token["access_token"]}

    not_a_resource_server = requests.post(url, data=data, auth=(cc_basic.client_id, cc_basic.secret), timeout=TIMEOUT)
    assert not_a_resource_server.status_code == 403
    assert "active" not in not_a_resource_server.json()

    anonymous = requests.post(url, data=data, timeout=TIMEOUT)
    assert anonymous.status_code == 401
    assert anonymous.json()["error"] == "invalid_client"
    assert "WWW-Authenticate" in anonymous.headers

    wrong_secret = requests.post(url, data=data, auth=(resource_server.client_id, "x" * 43), timeout=TIMEOUT)
    assert wrong_secret.status_code == 401
    assert "active" not in wrong_secret.json()

    unknown_client = requests.post(url, data=data, auth=("no-such-client", "x" * 43), timeout=TIMEOUT)
    assert unknown_client.status_code == 401

    assert introspect(issuer, resource_server, token["access_token"]).json()["active"] is True


# ---- 8. revocation --------------------------------------------------------------------------


def test_revoking_an_access_token(issuer, resource_server, resource_server_api, cc_basic):
    session = oauth_session(issuer, cc_basic)
    token = session.fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials")
    assert introspect(issuer, resource_server, token["access_token"]).json()["active"] is True

    anonymous = requests.post(f"{issuer}/oauth/revoke", data={"token": token["access_token"]}, timeout=TIMEOUT)
    assert anonymous.status_code == 401
    assert introspect(issuer, resource_server, token["access_token"]).json()["active"] is True

    response = session.revoke_token(
        f"{issuer}/oauth/revoke", token=token["access_token"], token_type_hint="access_token"
    )
    assert response.status_code == 200, response.text
    assert introspect(issuer, resource_server, token["access_token"]).json() == {"active": False}


def test_revoking_a_refresh_token(issuer, resource_server, web_client, user, password):
    run, token = code_flow(issuer, web_client, user, password, scope="openid")
    response = run.session.revoke_token(
        f"{issuer}/oauth/revoke", token=token["refresh_token"], token_type_hint="refresh_token"
    )
    assert response.status_code == 200, response.text
    assert introspect(issuer, resource_server, token["refresh_token"]).json() == {"active": False}
    with pytest.raises(OAuthError) as error:
        run.session.refresh_token(f"{issuer}/oauth/token", refresh_token=token["refresh_token"])
    assert error.value.error == "invalid_grant"


def test_a_client_cannot_revoke_another_clients_token(issuer, resource_server, resource_server_api, cc_basic, cc_post):
    token = oauth_session(issuer, cc_basic).fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials")
    oauth_session(issuer, cc_post).revoke_token(f"{issuer}/oauth/revoke", token=token["access_token"])
    assert introspect(issuer, resource_server, token["access_token"]).json()["active"] is True


# ---- 9. signing key rotation ----------------------------------------------------------------


def test_signing_key_rotation_keeps_old_tokens_verifiable(issuer, cc_basic):
    from authserver.services import signing_key_rotate

    session = oauth_session(issuer, cc_basic)
    old = session.fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials")
    old_kid = jwt.get_unverified_header(old["access_token"])["kid"]
    verify_access_token(old["access_token"], issuer, cc_basic.client_id)

    new_active = signing_key_rotate(alg="RS256")
    keyring.clear()
    assert new_active.kid != old_kid
    assert SigningKey.objects.get(kid=old_kid).status == SigningKey.Status.RETIRED

    jwks = fetch_jwks(issuer)
    assert old_kid in jwks, "a retired key stays published"
    assert new_active.kid in jwks
    assert len([jwk for jwk in jwks.values() if jwk["alg"] == "RS256"]) == 3  # retired, active, next
    verify_access_token(old["access_token"], issuer, cc_basic.client_id)

    new = session.fetch_token(f"{issuer}/oauth/token", grant_type="client_credentials")
    new_kid = jwt.get_unverified_header(new["access_token"])["kid"]
    assert new_kid == new_active.kid != old_kid
    verify_access_token(new["access_token"], issuer, cc_basic.client_id)


# ---- 10. RP-initiated logout ----------------------------------------------------------------


def test_rp_initiated_logout(issuer, web_client, user, password, resource_server):
    run, token = code_flow(issuer, web_client, user, password, scope="openid")
    logout_state = secrets.token_urlsafe(16)
    query = urlencode(
        {"id_token_hint": token["id_token"], "post_logout_redirect_uri": SIGNED_OUT_URI, "state": logout_state}
    )
    prompt = run.browser.get(f"{issuer}/oauth/logout?{query}", allow_redirects=False, timeout=TIMEOUT)
    assert prompt.status_code == 200, prompt.text[:500]
    assert prompt.headers["Cache-Control"] == "no-store"
    fields = hidden_fields(parse_page(prompt.text))
    assert fields["post_logout_redirect_uri"] == SIGNED_OUT_URI
    assert fields["id_token_hint"] == token["id_token"]

    response = run.browser.post(
        f"{issuer}/oauth/logout", data={**fields, "allow": "Logout"}, allow_redirects=False, timeout=TIMEOUT
    )
    assert response.status_code == 302, response.text[:500]
    location = urlsplit(response.headers["Location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == SIGNED_OUT_URI
    assert parse_qs(location.query)["state"] == [logout_state]

    # The OP session is over: a new authorization request goes to the login page again.
    again = AuthorizationRun(issuer, web_client, scope="openid")
    relogin = run.browser.get(again.authorization_url, allow_redirects=False, timeout=TIMEOUT)
    assert relogin.status_code == 302
    assert urlsplit(relogin.headers["Location"]).path == "/accounts/login/"
    # And the tokens of that session are gone.
    assert introspect(issuer, resource_server, token["access_token"]).json() == {"active": False}


def test_logout_refuses_an_unregistered_post_logout_redirect_uri(issuer, web_client, user, password):
    run, token = code_flow(issuer, web_client, user, password, scope="openid")
    query = urlencode(
        {"id_token_hint": token["id_token"], "post_logout_redirect_uri": "https://evil.example.com/signed-out"}
    )
    response = run.browser.get(f"{issuer}/oauth/logout?{query}", allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 400
    assert "evil.example.com" not in response.headers.get("Location", "")
    # The user is still signed in: the next authorization request goes straight to consent.
    again = AuthorizationRun(issuer, web_client, scope="openid")
    consent = run.browser.get(again.authorization_url, allow_redirects=False, timeout=TIMEOUT)
    assert consent.status_code == 200
