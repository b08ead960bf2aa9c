"""Server-side request forgery (RFC 9700 §4.15 "open redirection" at the back end, RFC 7591 §5,
OWASP SSRF): a URL a client chooses must never make this server reach into its own network.

A canary listens on 127.0.0.1; every way an attacker can hand the server a URL (a ``jwks_uri``
in the portal, the REST API or dynamic registration, a stored ``jwks_uri`` at token time, the
``logo_uri``-style metadata, ``request_uri``) is tried against it, and the canary must see no
connection at all.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from authserver.audit import AuditEvent
from clients.models import Client, ClientCredential
from clients.services import client_create
from onboarding.models import Membership

from ..api.conftest import session_client
from ..conftest import REDIRECT_URI, make_client_key
from ..protocol.test_errors import authorize_params, post_form, token_aud
from .conftest import Canary, add_member, browser_for

pytestmark = pytest.mark.django_db

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


@pytest.fixture(autouse=True)
def _no_private_addresses(settings):
    """Production's setting, whatever the environment says (tests elsewhere allow loopback)."""
    settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = False
    settings.AUTHSERVER_OPEN_REGISTRATION_ENABLED = True
    settings.AUTHSERVER_REGISTRATION_RATE_LIMIT = "100000/hour"


def internal_urls(canary: Canary) -> list[str]:
    """The canary and the internal targets an attacker aims at, spelled every way that resolves."""
    port = canary.port
    return [
        canary.url("/jwks.json"),
        f"https://localhost:{port}/jwks.json",
        f"https://[::ffff:127.0.0.1]:{port}/jwks.json",
        f"https://2130706433:{port}/jwks.json",  # 127.0.0.1 as one decimal number
        f"https://0x7f.0.0.1:{port}/jwks.json",
        f"https://127.1:{port}/jwks.json",
        f"https://0.0.0.0:{port}/jwks.json",
        f"http://127.0.0.1:{port}/jwks.json",
        f"https://user@127.0.0.1:{port}/jwks.json",
        "https://169.254.169.254/latest/meta-data/",  # cloud metadata
        "https://[fd00::1]/jwks.json",
        "https://10.0.0.1/jwks.json",
        "https://192.168.1.1/jwks.json",
        "https://100.64.0.1/jwks.json",
        "file:///etc/passwd",
        "gopher://127.0.0.1:6379/_INFO",
    ]


@pytest.fixture
def key_client(organisation) -> Client:
    """A private_key_jwt client without keys yet: the next credential it gets is a jwks_uri."""
    return client_create(
        organisation=organisation,
        name="Key client",
        grant_type="client_credentials",
        scopes=["orders:read"],
        auth_method=Client.AuthMethod.PRIVATE_KEY_JWT,
    )


def stored() -> tuple[int, int, int]:
    return Client.objects.count(), ClientCredential.objects.count(), AuditEvent.objects.count()


def test_the_rest_api_never_fetches_an_internal_jwks_uri(organisation, key_client, canary):
    member = add_member(organisation, Membership.Role.DEVELOPER)
    api = session_client(member)
    url = f"/api/v1/organisations/{organisation.pk}/clients/{key_client.pk}/credentials"
    before = stored()
    for uri in internal_urls(canary):
        response = api.post(url, {"kind": "jwks_uri", "jwks_uri": uri}, format="json")
        assert response.status_code == 400, (uri, response.status_code, response.content[:300])
        assert response["Content-Type"] == "application/problem+json"
    assert stored() == before
    assert canary.connections == []


def test_the_portal_never_fetches_an_internal_jwks_uri(organisation, key_client, canary):
    member = add_member(organisation, Membership.Role.DEVELOPER)
    browser = browser_for(member)
    url = f"/portal/organisations/{organisation.pk}/clients/{key_client.pk}/credentials/"
    before = stored()
    for uri in internal_urls(canary):
        response = browser.post(url, {"add-jwks_uri": uri})
        assert response.status_code == 400, (uri, response.status_code)
    assert stored() == before
    assert canary.connections == []


def registration(**overrides: Any) -> dict[str, Any]:
    body = {
        "client_name": "Open RP",
        "redirect_uris": [REDIRECT_URI],
        "grant_types": ["authorization_code"],
        "response_types": ["code"],
        "token_endpoint_auth_method": "private_key_jwt",
    }
    body.update(overrides)
    return body


def test_dynamic_registration_never_fetches_an_internal_jwks_uri(client, canary):
    before = stored()
    for uri in internal_urls(canary):
        response = client.post(
            "/oauth/register", json.dumps(registration(jwks_uri=uri)), content_type="application/json"
        )
        assert response.status_code == 400, (uri, response.content)
        assert response.json()["error"] in ("invalid_client_metadata", "invalid_redirect_uri"), response.json()
    assert stored() == before
    assert canary.connections == []


def test_urls_in_client_metadata_are_never_fetched(client, canary):
    """``logo_uri``, ``policy_uri``, ``tos_uri``, ``client_uri``, ``sector_identifier_uri`` and
    ``initiate_login_uri`` are shown or ignored, never fetched (RFC 7591 §5)."""
    key = make_client_key()
    body = registration(
        jwks={"keys": [key.public_jwk]},
        **{
            name: canary.url(f"/{name}")
            for name in (
                "logo_uri",
                "policy_uri",
                "tos_uri",
                "client_uri",
                "sector_identifier_uri",
                "initiate_login_uri",
                "backchannel_logout_uri",
                "request_uris",
            )
        },
    )
    body["request_uris"] = [canary.url("/request.jwt")]
    response = client.post("/oauth/register", json.dumps(body), content_type="application/json")
    assert response.status_code in (201, 400), response.content
    assert canary.connections == []


def test_a_request_uri_is_never_fetched(client, user, web_client, canary):
    """``request_uri`` (RFC 9101) is not supported: the parameter is refused or ignored, not fetched."""
    client.force_login(user)
    params = authorize_params(web_client, request_uri=canary.url("/request.jwt"))
    response = client.get("/oauth/authorize", params)
    assert response.status_code in (200, 302, 400)
    assert canary.connections == []


def test_a_stored_jwks_uri_that_now_points_inside_is_not_fetched_at_token_time(client, key_client, canary):
    """A jwks_uri registered while it resolved outside, or written by an operator, is checked
    again at every fetch: a token request cannot make the server call an internal address."""
    ClientCredential.objects.create(client=key_client, kind=ClientCredential.Kind.JWKS_URI, jwks_uri=canary.url("/k"))
    key = make_client_key()
    assertion = key.assertion(key_client.client_id, token_aud())
    response = post_form(
        client,
        "/oauth/token",
        {
            "grant_type": "client_credentials",
            "client_id": key_client.client_id,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
        },
    )
    assert response.status_code == 401, response.content
    assert response.json()["error"] == "invalid_client"
    assert canary.connections == []
