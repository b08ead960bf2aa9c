"""Security headers and CORS on every endpoint family (ADR /core/transport/security-headers).

Each family of authserver/endpoints.py gets one representative request; every response,
errors and redirects included, carries the headers ADR asks for, and CORS answers only the
allow-listed origins on the OAuth/OIDC endpoints and everyone on the open documents.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from urllib.parse import urlencode

import pytest

from authserver.endpoints import CORS_ALLOW_LIST, NO_STORE, OPEN_DOCUMENTS, endpoint_family

from ..conftest import REDIRECT_URI

FORM = "application/x-www-form-urlencoded"
ALLOWED = "https://spa.example.nl"
OTHER = "https://evil.example"

# family -> (method, path): one request per endpoint family.
REQUESTS = {
    "home": ("GET", "/"),
    "discovery": ("GET", "/.well-known/openid-configuration"),
    "jwks": ("GET", "/oauth/jwks"),
    "authorize": ("GET", "/oauth/authorize?client_id=nobody&response_type=code"),
    "token": ("POST", "/oauth/token"),
    "introspect": ("POST", "/oauth/introspect"),
    "revoke": ("POST", "/oauth/revoke"),
    "userinfo": ("GET", "/oauth/userinfo"),
    "logout": ("GET", "/oauth/logout"),
    "oauth": ("GET", "/oauth/unknown"),
    "accounts": ("GET", "/accounts/login/"),
    "portal": ("GET", "/portal/"),
    "admin": ("GET", "/admin/"),
    "api": ("GET", "/api/no-such-thing"),
    "health": ("GET", "/healthz"),
    "metrics": ("GET", "/metrics"),
    "other": ("GET", "/no-such-page"),
}
FAMILIES = pytest.mark.parametrize(("family", "request_line"), list(REQUESTS.items()), ids=list(REQUESTS))


@pytest.fixture(autouse=True)
def _transport(settings):
    settings.SECURE_HSTS_SECONDS = 31536000
    settings.AUTHSERVER_CORS_ALLOWED_ORIGINS = [ALLOWED]


def send(client, request_line: tuple[str, str], **extra):
    method, path = request_line
    if method == "POST":
        return client.post(path, "", content_type=FORM, secure=True, **extra)
    return client.get(path, secure=True, **extra)


def test_every_family_has_a_representative():
    assert {endpoint_family(path.split("?")[0]) for _, path in REQUESTS.values()} == set(REQUESTS)


@pytest.mark.django_db
@FAMILIES
def test_security_headers_on_every_family(client, family, request_line):
    response = send(client, request_line)

    assert response.status_code < 500, response.content
    assert response["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Request-ID"]
    policy = response["Content-Security-Policy"]
    assert "frame-ancestors 'none'" in policy
    if response["Content-Type"].startswith("text/html"):
        assert policy.startswith("default-src 'self'")
        assert "script-src 'self';" in policy
        assert "form-action 'self'" in policy
    else:
        assert policy.startswith("default-src 'none'")


@pytest.mark.django_db
@FAMILIES
def test_cache_control_by_family(client, family, request_line):
    response = send(client, request_line)

    cache_control = response.get("Cache-Control", "")
    if family in NO_STORE:
        assert "no-store" in cache_control
    elif family in OPEN_DOCUMENTS:
        assert cache_control.startswith("public, max-age=")


@pytest.mark.django_db
@FAMILIES
def test_cors_by_family(client, family, request_line):
    allowed = send(client, request_line, HTTP_ORIGIN=ALLOWED)
    other = send(client, request_line, HTTP_ORIGIN=OTHER)

    if family in OPEN_DOCUMENTS:
        assert allowed["Access-Control-Allow-Origin"] == "*"
        assert other["Access-Control-Allow-Origin"] == "*"
    elif family in CORS_ALLOW_LIST:
        assert allowed["Access-Control-Allow-Origin"] == ALLOWED
        assert "Origin" in allowed["Vary"]
        assert "WWW-Authenticate" in allowed["Access-Control-Expose-Headers"]
        assert "Access-Control-Allow-Origin" not in other
        assert "Origin" in other["Vary"]
    else:
        assert "Access-Control-Allow-Origin" not in allowed
        assert "Access-Control-Allow-Origin" not in other


@pytest.mark.django_db
@FAMILIES
def test_preflight_by_family(client, family, request_line):
    method, path = request_line
    preflight = {"HTTP_ORIGIN": ALLOWED, "HTTP_ACCESS_CONTROL_REQUEST_METHOD": method}
    response = client.options(path, secure=True, **preflight)

    if family in CORS_ALLOW_LIST or family in OPEN_DOCUMENTS:
        assert response.status_code == 204
        assert response["Access-Control-Allow-Origin"] == ("*" if family in OPEN_DOCUMENTS else ALLOWED)
        assert method in response["Access-Control-Allow-Methods"]
        assert response["Access-Control-Max-Age"] == "600"
        assert "Authorization" in response["Access-Control-Allow-Headers"]
        # A preflight is a response like any other: the security headers are there too.
        assert response["X-Frame-Options"] == "DENY"
        assert response["Strict-Transport-Security"]
    else:
        assert "Access-Control-Allow-Origin" not in response


@pytest.mark.django_db
@pytest.mark.parametrize("family", sorted(CORS_ALLOW_LIST))
def test_preflight_from_an_origin_off_the_list_gets_no_cors(client, family):
    path = next(path for fam, (_, path) in REQUESTS.items() if fam == family)
    response = client.options(path, HTTP_ORIGIN=OTHER, HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST")

    assert response.status_code == 204
    assert "Access-Control-Allow-Origin" not in response
    assert "Access-Control-Allow-Methods" not in response


@pytest.mark.django_db
def test_cors_on_a_successful_token_response(client, cc_basic):
    credentials = base64.b64encode(f"{cc_basic.client_id}:{cc_basic.secret}".encode()).decode()
    response = client.post(
        "/oauth/token",
        urlencode({"grant_type": "client_credentials"}),
        content_type=FORM,
        HTTP_AUTHORIZATION=f"Basic {credentials}",
        HTTP_ORIGIN=ALLOWED,
    )

    assert response.status_code == 200
    assert response["Access-Control-Allow-Origin"] == ALLOWED
    assert response["Cache-Control"] == "no-store"


# ---- CSP form-action: the forms that send the browser on to a client ------------------


def authorize_query(client_id: str) -> str:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return urlencode(
        {
            "client_id": client_id,
            "response_type": "code",
            "redirect_uri": REDIRECT_URI,
            "scope": "openid",
            "state": secrets.token_urlsafe(16),
            "nonce": secrets.token_urlsafe(16),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )


@pytest.mark.django_db
def test_the_consent_page_may_post_on_to_the_clients_redirect_uri(client, user, web_client):
    client.force_login(user)
    response = client.get(f"/oauth/authorize?{authorize_query(web_client.client_id)}")

    assert response.status_code == 200
    assert b"authorizationForm" in response.content
    assert response["Content-Security-Policy"].endswith("form-action 'self' https://rp.example.org")


@pytest.mark.django_db
def test_the_sign_in_page_on_the_way_to_authorize_may_end_at_the_client(client, web_client):
    next_url = f"/oauth/authorize?{authorize_query(web_client.client_id)}"
    response = client.get("/accounts/login/", {"next": next_url})

    assert response["Content-Security-Policy"].endswith("form-action 'self' https://rp.example.org")


@pytest.mark.django_db
def test_an_unregistered_redirect_uri_is_not_added_to_form_action(client, web_client):
    next_url = f"/oauth/authorize?{authorize_query(web_client.client_id)}".replace("rp.example.org", "evil.example")
    response = client.get("/accounts/login/", {"next": next_url})

    assert response["Content-Security-Policy"].endswith("form-action 'self'")


@pytest.mark.django_db
def test_the_logout_confirmation_may_post_on_to_the_post_logout_redirect_uri(client, user, web_client):
    client.force_login(user)
    response = client.get(
        "/oauth/logout",
        {"client_id": web_client.client_id, "post_logout_redirect_uri": "https://rp.example.org/signed-out"},
    )

    assert response.status_code == 200
    assert response["Content-Security-Policy"].endswith("form-action 'self' https://rp.example.org")


@pytest.mark.django_db
def test_a_view_may_set_its_own_policy(rf):
    from django.http import HttpResponse

    from authserver.middleware import SecurityHeadersMiddleware

    def view(request):
        response = HttpResponse("<p>docs</p>")
        response["Content-Security-Policy"] = "default-src 'self' https://cdn.example"
        return response

    response = SecurityHeadersMiddleware(view)(rf.get("/api/docs"))

    assert response["Content-Security-Policy"] == "default-src 'self' https://cdn.example"
    assert response["Cache-Control"] == "no-store"
