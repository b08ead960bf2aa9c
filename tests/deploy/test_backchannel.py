"""AUTHSERVER_BACKCHANNEL_URL: the back channel on a host of its own (deploy/nginx/)."""

from __future__ import annotations

from urllib.parse import urlencode

import pytest

FORM = "application/x-www-form-urlencoded"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
BACK = "https://api.auth.example.org"


@pytest.fixture(autouse=True)
def _backchannel(settings):
    settings.AUTHSERVER_ISSUER = "https://auth.example.org"
    settings.AUTHSERVER_BACKCHANNEL_URL = BACK


def test_discovery_advertises_the_back_channel_endpoints_there(client):
    document = client.get("/.well-known/openid-configuration").json()

    assert document["issuer"] == "https://auth.example.org"
    assert document["token_endpoint"] == f"{BACK}/oauth/token"
    assert document["introspection_endpoint"] == f"{BACK}/oauth/introspect"
    assert document["revocation_endpoint"] == f"{BACK}/oauth/revoke"
    assert document["userinfo_endpoint"] == f"{BACK}/oauth/userinfo"
    # What browsers and relying parties load stays on the issuer's host.
    assert document["authorization_endpoint"] == "https://auth.example.org/oauth/authorize"
    assert document["end_session_endpoint"] == "https://auth.example.org/oauth/logout"
    assert document["jwks_uri"] == "https://auth.example.org/oauth/jwks"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "audience", [f"{BACK}/oauth/token", "https://auth.example.org/oauth/token", "https://auth.example.org"]
)
def test_client_assertions_may_name_the_advertised_token_endpoint(client, cc_jwt, audience):
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, audience)
    response = client.post(
        "/oauth/token",
        urlencode(
            {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        ),
        content_type=FORM,
    )

    assert response.status_code == 200, response.content


@pytest.mark.django_db
def test_another_audience_is_still_refused(client, cc_jwt):
    assertion = cc_jwt.key.assertion(cc_jwt.client_id, "https://elsewhere.example.org/oauth/token")
    response = client.post(
        "/oauth/token",
        urlencode(
            {"grant_type": "client_credentials", "client_assertion_type": ASSERTION_TYPE, "client_assertion": assertion}
        ),
        content_type=FORM,
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
