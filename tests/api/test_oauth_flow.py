"""A real access token: the representative signs in and consents, the client gets a token, calls the API."""

from __future__ import annotations

import pytest
import requests

from tests.conftest import REDIRECT_URI, RegisteredClient, register_client
from tests.factories import OrganisationFactory
from tests.protocol.test_flows import TIMEOUT, code_flow


@pytest.fixture
def portal_app(db) -> RegisteredClient:
    return register_client(
        OrganisationFactory(name="Operator"),
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "portal"],
        redirect_uris=[REDIRECT_URI],
    )


def test_an_authorization_code_token_acts_for_its_person(issuer, portal_app, org, owner, outsider, password):
    _run, token = code_flow(issuer, portal_app, owner.user, password, scope="openid portal")
    headers = {"Authorization": f"Bearer {token['access_token']}"}

    listed = requests.get(f"{issuer}/api/v1/organisations", headers=headers, timeout=TIMEOUT)
    assert listed.status_code == 200, listed.text
    assert listed.headers["Cache-Control"] == "no-store"
    assert [item["id"] for item in listed.json()["results"]] == [org.pk]

    created = requests.post(
        f"{issuer}/api/v1/organisations/{org.pk}/applications",
        json={"motivation": "Through the API."},
        headers=headers,
        timeout=TIMEOUT,
    )
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "draft"

    # The same token cannot reach another organisation, nor travel in the query string.
    other = requests.get(
        f"{issuer}/api/v1/organisations/{outsider.membership.organisation_id}", headers=headers, timeout=TIMEOUT
    )
    assert other.status_code == 404
    assert other.headers["Content-Type"] == "application/problem+json"
    in_query = requests.get(f"{issuer}/api/v1/organisations?access_token={token['access_token']}", timeout=TIMEOUT)
    assert in_query.status_code == 400
    assert token["access_token"] not in in_query.text


def test_a_token_without_the_portal_scope_is_forbidden(issuer, portal_app, org, owner, password):
    _run, token = code_flow(issuer, portal_app, owner.user, password, scope="openid")
    response = requests.get(
        f"{issuer}/api/v1/organisations", headers={"Authorization": f"Bearer {token['access_token']}"}, timeout=TIMEOUT
    )
    assert response.status_code == 403
    assert response.json()["type"].endswith("/api/problems/forbidden")
