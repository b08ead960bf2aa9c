"""The issuance policy over HTTP: every refusal with the rule that refused it, resource
indicators choosing the token's audience, lifetime and format, network zones with forged and
trusted X-Forwarded-For, and the catalogue and the token endpoint changing together
(docs/decisions/0009)."""

from __future__ import annotations

from typing import Any

import pytest
import requests
from authlib.integrations.requests_client import OAuth2Session
from django.db import connection
from django.test.utils import CaptureQueriesContext
from oauth2_provider.models import get_access_token_model

from authserver.models import ApiResource, NetworkZone
from onboarding.models import Organisation

from ..conftest import RegisteredClient, decode_unverified, register_client
from ..factories import OrganisationFactory, ScopeFactory
from .test_errors import (
    assert_error_redirect,
    assert_oauth_error,
    authorize_params,
    basic,
    obtain_code,
    post_form,
    redeem,
)

AccessToken = get_access_token_model()
TIMEOUT = 10
ORDERS = "https://api.example.nl/orders"
PARCELS = "https://api.example.nl/parcels"
LEDGER = "https://api.example.nl/ledger"
DIGINETWERK = "198.51.100.0/24"


# ---- fixtures and helpers --------------------------------------------------------------------


@pytest.fixture
def owner(db) -> Organisation:
    return OrganisationFactory(name="API owner", trust_level="high", kind="government", oin="00000001002220647000")


@pytest.fixture
def orders_api(owner) -> ApiResource:
    return ApiResource.objects.create(
        name="Orders", slug="orders", audience=ORDERS, owner=owner, access_token_lifetime=600
    )


@pytest.fixture
def parcels_api(owner) -> ApiResource:
    return ApiResource.objects.create(name="Parcels", slug="parcels", audience=PARCELS, owner=owner)


@pytest.fixture
def ledger_api(owner, resource_server) -> ApiResource:
    api = ApiResource.objects.create(
        name="Ledger", slug="ledger", audience=LEDGER, owner=owner, token_format="opaque", access_token_lifetime=300
    )
    api.introspectors.add(resource_server.client)
    return api


@pytest.fixture
def zones(db) -> dict[str, NetworkZone]:
    return {
        "internet": NetworkZone.objects.create(name="internet", environment="production", cidrs=["0.0.0.0/0", "::/0"]),
        "diginetwerk": NetworkZone.objects.create(name="diginetwerk", environment="production", cidrs=[DIGINETWERK]),
    }


def cc_client(organisation: Organisation, scopes: list[str], **kwargs: Any) -> RegisteredClient:
    return register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=scopes, **kwargs
    )


def token_request(issuer: str, registered: RegisteredClient, headers: dict[str, str] | None = None, **data: Any):
    return requests.post(
        f"{issuer}/oauth/token",
        data={"grant_type": "client_credentials", **data},
        auth=(registered.client_id, registered.secret),
        headers=headers or {},
        timeout=TIMEOUT,
    )


def refused(response, status: int, error: str) -> str:
    """The protocol's JSON error, not cacheable; returns its description."""
    assert response.status_code == status, (response.status_code, response.text)
    assert "no-store" in response.headers.get("Cache-Control", "")
    body = response.json()
    assert body["error"] == error, body
    assert "access_token" not in body
    return body["error_description"]


def session(issuer: str, registered: RegisteredClient) -> OAuth2Session:
    return OAuth2Session(
        registered.client_id,
        registered.secret,
        token_endpoint_auth_method="client_secret_basic",
        token_endpoint=f"{issuer}/oauth/token",
    )


def introspect(issuer: str, resource_server: RegisteredClient, token: str) -> dict[str, Any]:
    response = requests.post(
        f"{issuer}/oauth/introspect",
        data={"token": token},
        auth=(resource_server.client_id, resource_server.secret),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


# ---- each refusal, with the rule that refused it -----------------------------------------------


def _trust(org, orders_api, parcels_api, zones):
    ScopeFactory(name="persons:read", min_trust_level="high")
    return cc_client(org, ["persons:read"]), {"scope": "persons:read"}


def _kind(org, orders_api, parcels_api, zones):
    ScopeFactory(name="gov:read", allowed_organisation_kinds=["government"])
    return cc_client(org, ["gov:read"]), {"scope": "gov:read"}


def _environment(org, orders_api, parcels_api, zones):
    ScopeFactory(name="sandbox:read", allowed_environments=["test", "development"])
    return cc_client(org, ["sandbox:read"]), {"scope": "sandbox:read"}


def _zone(org, orders_api, parcels_api, zones):
    ScopeFactory(name="closed:read").allowed_zones.add(zones["diginetwerk"])
    return cc_client(org, ["closed:read"]), {"scope": "closed:read"}


def _not_granted(org, orders_api, parcels_api, zones):
    ScopeFactory(name="orders:read", api=orders_api)
    ScopeFactory(name="orders:write", api=orders_api)
    return cc_client(org, ["orders:read"]), {"scope": "orders:read orders:write"}


def _other_api(org, orders_api, parcels_api, zones):
    ScopeFactory(name="orders:read", api=orders_api)
    ScopeFactory(name="parcels:read", api=parcels_api)
    return cc_client(org, ["orders:read", "parcels:read"]), {"scope": "orders:read parcels:read", "resource": ORDERS}


def _unknown_resource(org, orders_api, parcels_api, zones):
    ScopeFactory(name="orders:read", api=orders_api)
    return cc_client(org, ["orders:read"]), {"scope": "orders:read", "resource": "https://api.example.nl/unknown"}


def _two_apis(org, orders_api, parcels_api, zones):
    ScopeFactory(name="orders:read", api=orders_api)
    ScopeFactory(name="parcels:read", api=parcels_api)
    return cc_client(org, ["orders:read", "parcels:read"]), {"scope": "orders:read parcels:read"}


REFUSALS = [
    (
        "trust level",
        _trust,
        "invalid_scope",
        "scope 'persons:read': needs trust level high; the organisation has substantial",
    ),
    ("organisation kind", _kind, "invalid_scope", "scope 'gov:read': not for private organisations (only government)"),
    ("environment", _environment, "invalid_scope", "scope 'sandbox:read': not in the production environment"),
    (
        "network zone",
        _zone,
        "invalid_scope",
        "scope 'closed:read': not from network zone internet (only from diginetwerk)",
    ),
    ("not granted", _not_granted, "invalid_scope", "scope 'orders:write': not granted to this client"),
    (
        "other API",
        _other_api,
        "invalid_scope",
        "scope 'parcels:read': belongs to API Parcels, not to the requested resource",
    ),
    ("unknown resource", _unknown_resource, "invalid_target", "Unknown resource https://api.example.nl/unknown"),
    ("scopes of two APIs", _two_apis, "invalid_target", "several APIs: Orders (orders:read); Parcels (parcels:read)"),
]


@pytest.mark.parametrize(("case", "setup", "error", "description"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_each_refusal_says_which_rule_refused(
    issuer, organisation, orders_api, parcels_api, zones, case, setup, error, description
):
    registered, data = setup(organisation, orders_api, parcels_api, zones)
    stored = AccessToken.objects.count()
    said = refused(token_request(issuer, registered, **data), 400, error)
    assert description in said, said
    assert AccessToken.objects.count() == stored  # a refused request stores nothing


def test_a_refused_scope_fails_the_whole_request(issuer, organisation):
    """RFC 6749 §5.2: invalid_scope, not a token with fewer scopes than asked for."""
    ScopeFactory(name="weather:read")
    ScopeFactory(name="persons:read", min_trust_level="high")
    registered = cc_client(organisation, ["weather:read", "persons:read"])
    refused(token_request(issuer, registered, scope="weather:read persons:read"), 400, "invalid_scope")
    granted = session(issuer, registered).fetch_token(grant_type="client_credentials", scope="weather:read")
    assert granted["scope"] == "weather:read"


def test_scopes_outside_the_catalogue_follow_the_client_grant(issuer, organisation):
    """Decision 0009: the catalogue may be incomplete while older clients migrate."""
    registered = cc_client(organisation, ["legacy:read"])
    assert session(issuer, registered).fetch_token(grant_type="client_credentials")["scope"] == "legacy:read"
    refused(token_request(issuer, registered, scope="legacy:write"), 400, "invalid_scope")


# ---- resource indicators: audience, lifetime, format -----------------------------------------------


def test_the_resource_sets_audience_and_lifetime(issuer, organisation, orders_api):
    ScopeFactory(name="orders:read", api=orders_api)
    ScopeFactory(name="weather:read")  # no API: rides along
    registered = cc_client(organisation, ["orders:read", "weather:read"])
    token = session(issuer, registered).fetch_token(
        grant_type="client_credentials", scope="orders:read weather:read", resource=ORDERS
    )
    assert token["expires_in"] == 600, "the API's lifetime, not the 6 h of client credentials"
    claims = decode_unverified(token["access_token"])
    assert claims["aud"] == ORDERS
    assert claims["exp"] - claims["iat"] == 600
    stored = AccessToken.objects.get(application=registered.client)
    assert stored.resource == [ORDERS]


def test_scopes_of_one_api_choose_it_without_a_resource(issuer, organisation, orders_api, settings):
    ScopeFactory(name="orders:read", api=orders_api)
    registered = cc_client(organisation, ["orders:read"])
    token = session(issuer, registered).fetch_token(grant_type="client_credentials", scope="orders:read")
    assert decode_unverified(token["access_token"])["aud"] == ORDERS
    assert token["expires_in"] == 600


def test_scopes_of_no_api_get_no_audience_and_the_server_lifetime(issuer, organisation, settings):
    ScopeFactory(name="weather:read")
    registered = cc_client(organisation, ["weather:read"])
    token = session(issuer, registered).fetch_token(grant_type="client_credentials")
    assert "aud" not in decode_unverified(token["access_token"])
    assert token["expires_in"] == settings.AUTHSERVER_CLIENT_CREDENTIALS_TOKEN_LIFETIME


def test_without_a_scope_the_resource_picks_the_granted_scopes_of_its_api(
    issuer, organisation, orders_api, parcels_api
):
    ScopeFactory(name="orders:read", api=orders_api)
    ScopeFactory(name="parcels:read", api=parcels_api)
    registered = cc_client(organisation, ["orders:read", "parcels:read"])
    token = session(issuer, registered).fetch_token(grant_type="client_credentials", resource=PARCELS)
    assert token["scope"] == "parcels:read"
    assert decode_unverified(token["access_token"])["aud"] == PARCELS
    # Without the resource the defaults span two APIs: name one (RFC 8707).
    refused(token_request(issuer, registered), 400, "invalid_target")


def test_an_opaque_api_gets_a_random_token_its_resource_server_introspects(
    issuer, organisation, ledger_api, resource_server
):
    ScopeFactory(name="ledger:read", api=ledger_api)
    registered = cc_client(organisation, ["ledger:read"])
    token = session(issuer, registered).fetch_token(grant_type="client_credentials", resource=LEDGER)
    access = token["access_token"]
    assert "." not in access, "opaque: not a JWT"
    assert len(access) >= 43, "at least 256 bits"
    assert token["expires_in"] == 300
    answer = introspect(issuer, resource_server, access)
    assert answer["active"] is True
    assert answer["aud"] == LEDGER
    assert answer["scope"] == "ledger:read"
    assert answer["client_id"] == registered.client_id
    assert answer["exp"] - answer["iat"] in (299, 300, 301)


def test_several_resources_of_one_format(issuer, organisation, orders_api, parcels_api):
    ScopeFactory(name="orders:read", api=orders_api)
    ScopeFactory(name="parcels:read", api=parcels_api)
    registered = cc_client(organisation, ["orders:read", "parcels:read"])
    response = token_request(issuer, registered, scope="orders:read parcels:read", resource=[ORDERS, PARCELS])
    assert response.status_code == 200, response.text
    claims = decode_unverified(response.json()["access_token"])
    assert sorted(claims["aud"]) == [ORDERS, PARCELS]
    assert response.json()["expires_in"] == 600, "the shortest of the APIs' lifetimes"


def test_several_resources_of_different_formats_are_refused(issuer, organisation, orders_api, ledger_api):
    ScopeFactory(name="orders:read", api=orders_api)
    ScopeFactory(name="ledger:read", api=ledger_api)
    registered = cc_client(organisation, ["orders:read", "ledger:read"])
    said = refused(token_request(issuer, registered, resource=[ORDERS, LEDGER]), 400, "invalid_target")
    assert "different token formats" in said


# ---- network zones: the caller's address ---------------------------------------------------------


@pytest.fixture
def bound(organisation, zones) -> RegisteredClient:
    registered = cc_client(organisation, ["orders:read"])
    zones["diginetwerk"].clients.add(registered.client)
    return registered


def test_a_forged_forwarded_for_from_an_untrusted_peer_is_ignored(issuer, settings, bound):
    settings.AUTHSERVER_TRUSTED_PROXIES = []
    response = token_request(issuer, bound, headers={"X-Forwarded-For": "198.51.100.7"})
    said = refused(response, 401, "invalid_client")
    assert said == "Requests from 127.0.0.1 are outside the client's network zones (diginetwerk)."


def test_forwarded_for_from_a_trusted_proxy_is_honoured(issuer, settings, bound):
    settings.AUTHSERVER_TRUSTED_PROXIES = ["127.0.0.1"]
    inside = token_request(issuer, bound, headers={"X-Forwarded-For": "198.51.100.7"})
    assert inside.status_code == 200, inside.text

    outside = token_request(issuer, bound, headers={"X-Forwarded-For": "203.0.113.9"})
    assert refused(outside, 401, "invalid_client") == (
        "Requests from 203.0.113.9 are outside the client's network zones (diginetwerk)."
    )
    # What the caller wrote left of the proxy's entry proves nothing.
    forged = token_request(issuer, bound, headers={"X-Forwarded-For": "198.51.100.7, 203.0.113.9"})
    assert "203.0.113.9" in refused(forged, 401, "invalid_client")
    # No header from the proxy: the proxy's own address, outside the zone.
    assert "127.0.0.1" in refused(token_request(issuer, bound), 401, "invalid_client")


def test_a_zone_holding_the_socket_address_lets_a_bound_client_in(issuer, settings, bound, zones):
    settings.AUTHSERVER_TRUSTED_PROXIES = []
    zones["diginetwerk"].cidrs = [DIGINETWERK, "127.0.0.0/8"]
    zones["diginetwerk"].save()
    assert token_request(issuer, bound).status_code == 200


def test_scope_zones_follow_the_forwarded_address_from_a_trusted_proxy(issuer, settings, organisation, zones):
    settings.AUTHSERVER_TRUSTED_PROXIES = ["127.0.0.1"]
    ScopeFactory(name="closed:read").allowed_zones.add(zones["diginetwerk"])
    registered = cc_client(organisation, ["closed:read"])
    granted = token_request(issuer, registered, headers={"X-Forwarded-For": "198.51.100.7"})
    assert granted.status_code == 200, granted.text
    said = refused(token_request(issuer, registered, headers={"X-Forwarded-For": "203.0.113.9"}), 400, "invalid_scope")
    assert "scope 'closed:read': not from network zone internet (only from diginetwerk)" in said


def test_zones_of_another_environment_do_not_count(issuer, settings, organisation, zones):
    settings.AUTHSERVER_TRUSTED_PROXIES = []
    NetworkZone.objects.create(name="loopback", environment="test", cidrs=["127.0.0.0/8"])
    registered = cc_client(organisation, ["orders:read"])  # production
    zones["diginetwerk"].clients.add(registered.client)
    refused(token_request(issuer, registered), 401, "invalid_client")


# ---- the authorization code flow: at the authorization request and again at the token endpoint ---


@pytest.fixture
def web(organisation) -> RegisteredClient:
    from ..conftest import REDIRECT_URI

    return register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "orders:read", "persons:read"],
        redirect_uris=[REDIRECT_URI],
    )


def test_the_authorization_request_refuses_a_bound_client_outside_its_zones(client, user, web, zones):
    zones["diginetwerk"].clients.add(web.client)
    client.force_login(user)
    params = authorize_params(web)
    response = client.get("/oauth/authorize", params, REMOTE_ADDR="203.0.113.9")
    query = assert_error_redirect(response, "access_denied", params["state"])
    assert (
        query["error_description"] == "Requests from 203.0.113.9 are outside the client's network zones (diginetwerk)."
    )
    inside = client.get("/oauth/authorize", authorize_params(web), REMOTE_ADDR="198.51.100.7")
    assert inside.status_code == 200  # the consent page


def test_the_authorization_request_applies_the_policy(client, user, web):
    ScopeFactory(name="persons:read", min_trust_level="high")
    client.force_login(user)
    params = authorize_params(web, scope="openid persons:read")
    response = client.get("/oauth/authorize", params)
    assert_error_redirect(
        response, "invalid_scope", params["state"], mentions="needs trust level high; the organisation has substantial"
    )


def test_the_token_endpoint_decides_again(client, user, web, orders_api, organisation):
    ScopeFactory(name="orders:read", api=orders_api, min_trust_level="substantial")
    code, verifier = obtain_code(client, user, web, scope="openid orders:read")
    organisation.trust_level = "low"  # a review lowered it after consent
    organisation.save()
    response = redeem(client, web, code, verifier)
    assert_oauth_error(
        response,
        400,
        "invalid_scope",
        mentions="scope 'orders:read': needs trust level substantial; the organisation has low",
    )
    assert not AccessToken.objects.filter(application=web.client).exists()


def test_the_authorization_code_token_gets_the_api_audience(client, user, web, orders_api):
    ScopeFactory(name="orders:read", api=orders_api)
    code, verifier = obtain_code(client, user, web, scope="openid orders:read", resource=ORDERS)
    response = redeem(client, web, code, verifier)
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["expires_in"] == 600
    assert decode_unverified(body["access_token"])["aud"] == ORDERS


def test_the_consent_shows_the_api_and_its_token_lifetime(client, user, web, orders_api):
    """OAUTH-NL §3.1.4: the resources and the duration the token will have."""
    ScopeFactory(name="orders:read", api=orders_api)
    client.force_login(user)
    page = client.get("/oauth/authorize", authorize_params(web, scope="openid orders:read"))
    assert page.status_code == 200, page.content[:500]
    html = page.content.decode()
    assert f"<code>{ORDERS}</code>" in html
    assert "Access for 10 minutes at a time" in html


def test_a_refresh_decides_again(client, user, web, orders_api):
    scope = ScopeFactory(name="orders:read", api=orders_api)
    code, verifier = obtain_code(client, user, web, scope="openid orders:read")
    tokens = redeem(client, web, code, verifier).json()
    refresh = {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}
    renewed = post_form(client, "/oauth/token", refresh, basic(web.client_id, web.secret))
    assert renewed.status_code == 200, renewed.content
    assert decode_unverified(renewed.json()["access_token"])["aud"] == ORDERS

    scope.min_trust_level = "high"
    scope.save()
    again = {"grant_type": "refresh_token", "refresh_token": renewed.json()["refresh_token"]}
    response = post_form(client, "/oauth/token", again, basic(web.client_id, web.secret))
    assert_oauth_error(response, 400, "invalid_scope", mentions="needs trust level high")


# ---- acceptance: the catalogue and the token endpoint change together ---------------------------


def test_changing_a_scopes_minimum_trust_level_changes_what_the_token_endpoint_grants(issuer, organisation, orders_api):
    scope = ScopeFactory(name="orders:read", api=orders_api, min_trust_level="low")
    registered = cc_client(organisation, ["orders:read"])  # a substantial organisation

    def published_level() -> str:
        document = requests.get(f"{issuer}/apis.json", timeout=TIMEOUT).json()
        (api,) = [api for api in document["apis"] if api["audience"] == ORDERS]
        (entry,) = [entry for entry in api["scopes"] if entry["name"] == "orders:read"]
        return entry["min_trust_level"]

    assert token_request(issuer, registered, scope="orders:read").status_code == 200
    assert published_level() == "low"

    scope.min_trust_level = "high"
    scope.save()
    said = refused(token_request(issuer, registered, scope="orders:read"), 400, "invalid_scope")
    assert "needs trust level high; the organisation has substantial" in said
    assert published_level() == "high"

    scope.min_trust_level = "substantial"
    scope.save()
    assert token_request(issuer, registered, scope="orders:read").status_code == 200
    assert published_level() == "substantial"


# ---- the hot path's query count ------------------------------------------------------------------


def test_client_credentials_token_request_query_count(client, django_assert_num_queries, organisation, orders_api):
    """The catalogue facts come from the cache: only the client, its secret and the new token."""
    ScopeFactory(name="orders:read", api=orders_api, min_trust_level="substantial")
    registered = cc_client(organisation, ["orders:read"])
    auth = basic(registered.client_id, registered.secret)
    data = {"grant_type": "client_credentials", "scope": "orders:read", "resource": ORDERS}
    assert post_form(client, "/oauth/token", data, auth).status_code == 200  # warms the caches

    with django_assert_num_queries(QUERIES_PER_TOKEN):
        response = post_form(client, "/oauth/token", data, auth)
    assert response.status_code == 200, response.content

    # Cold copies cost one query each: the client with its organisation, its credentials, its
    # rate-limit tiers (its own, then its organisation's), its network zones, the scope rules, the API.
    from authserver.oauth import issuance

    issuance.invalidate()
    with CaptureQueriesContext(connection) as cold:
        assert post_form(client, "/oauth/token", data, auth).status_code == 200
    queries = [q["sql"] for q in cold.captured_queries]
    assert len(queries) == QUERIES_PER_TOKEN + 7, queries
    for table in (
        "clients_client",
        "clients_clientcredential",
        "authserver_networkzone",
        "authserver_scope",
        "authserver_apiresource",
    ):
        assert sum(f'FROM "{table}"' in sql for sql in queries) == 1, (table, queries)


# Warm: the token's INSERT and nothing else. The client with its organisation, its secrets,
# the catalogue and the rate-limit tier are process-local copies (authserver/hotcache.py), and a
# client-credentials token is written without a transaction or savepoint of its own.
QUERIES_PER_TOKEN = 1
