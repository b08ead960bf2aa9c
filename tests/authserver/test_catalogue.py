"""The public API catalogue (/apis/, /apis/<slug>/, /apis.json) against the rows the server enforces with."""

from __future__ import annotations

import html
from typing import Any

import pytest
from django.test import Client as Browser
from django.urls import reverse

from authserver.models import ApiResource, Endpoint, NetworkZone, Scope
from tests.factories import OrganisationFactory, ScopeFactory, UserFactory

INDEX = "/apis/"
JSON = "/apis.json"


@pytest.fixture
def browser() -> Browser:
    return Browser()


@pytest.fixture
def catalogue(db) -> dict[str, Any]:
    """An API with endpoints and scopes of every kind of rule, an unpublished API, a scope of no API."""
    owner = OrganisationFactory(name="Gemeente Voorbeeld", kind="government")
    orders = ApiResource.objects.create(
        name="Orders API",
        slug="orders",
        description="Orders placed with the municipality.",
        audience="https://api.example.org/orders",
        owner=owner,
        documentation_url="https://docs.example.org/orders",
    )
    hidden = ApiResource.objects.create(
        name="Secret API", slug="secret", audience="https://api.example.org/secret", owner=owner, published=False
    )
    diginetwerk = NetworkZone.objects.create(name="Diginetwerk", environment="production", cidrs=["10.0.0.0/8"])
    read = ScopeFactory(
        name="orders:read",
        description="Read the organisation's orders",
        risk_level="low",
        open_registration=True,
        api=orders,
    )
    write = ScopeFactory(
        name="orders:write",
        description="Place and change orders",
        risk_level="high",
        min_trust_level="substantial",
        allowed_organisation_kinds=["government", "semi_government"],
        allowed_environments=["production"],
        requires_approval=True,
        api=orders,
    )
    write.allowed_zones.add(diginetwerk)
    ScopeFactory(name="secret:read", description="Hidden", api=hidden)
    profile = ScopeFactory(name="addresses:read", description="Look up addresses", risk_level="low")
    listing = Endpoint.objects.create(api=orders, method="GET", path="/orders", summary="List orders")
    listing.required_scopes.add(read)
    place = Endpoint.objects.create(api=orders, method="POST", path="/orders", summary="Place an order")
    place.required_scopes.add(write, profile)  # a scope of no API may be needed too
    Endpoint.objects.create(api=orders, method="GET", path="/health", summary="Liveness")
    Endpoint.objects.create(api=hidden, method="GET", path="/secrets", summary="Hidden endpoint")
    return {"owner": owner, "orders": orders, "hidden": hidden, "read": read, "write": write, "zone": diginetwerk}


def text_of(response) -> str:
    return html.unescape(response.content.decode())


WRITE_ENTRY = {
    "name": "orders:write",
    "description": "Place and change orders",
    "api": "orders",
    "risk_level": "high",
    "min_trust_level": "substantial",
    "organisation_kinds": ["government", "semi_government"],
    "environments": ["production"],
    "network_zones": [{"name": "Diginetwerk", "environment": "production"}],
    "open_registration": False,
    "requires_approval": True,
}
READ_ENTRY = {
    "name": "orders:read",
    "description": "Read the organisation's orders",
    "api": "orders",
    "risk_level": "low",
    "min_trust_level": "low",
    "organisation_kinds": [],
    "environments": [],
    "network_zones": [],
    "open_registration": True,
    "requires_approval": False,
}
ADDRESSES_ENTRY = {
    "name": "addresses:read",
    "description": "Look up addresses",
    "api": None,
    "risk_level": "low",
    "min_trust_level": "low",
    "organisation_kinds": [],
    "environments": [],
    "network_zones": [],
    "open_registration": False,
    "requires_approval": False,
}


def test_the_json_document_is_the_enforced_data(browser, catalogue, settings):
    settings.AUTHSERVER_ISSUER = "https://auth.example.org"
    settings.AUTHSERVER_CLIENT_CREDENTIALS_TOKEN_LIFETIME = 6 * 3600
    settings.AUTHSERVER_ACCESS_TOKEN_LIFETIME = 3600
    settings.AUTHSERVER_PUBLIC_CLIENT_ACCESS_TOKEN_LIFETIME = 900

    response = browser.get(JSON)

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    defaults = {"client_credentials": 21600, "authorization_code": 3600, "authorization_code_public_client": 900}
    assert response.json() == {
        "issuer": "https://auth.example.org",
        "default_token_format": "jwt",
        "default_access_token_lifetime": defaults,
        "apis": [
            {
                "name": "Orders API",
                "slug": "orders",
                "description": "Orders placed with the municipality.",
                "audience": "https://api.example.org/orders",
                "owner": "Gemeente Voorbeeld",
                "documentation_url": "https://docs.example.org/orders",
                "token_format": "jwt",
                "access_token_lifetime": defaults,
                "endpoints": [
                    {"method": "GET", "path": "/health", "summary": "Liveness", "scopes": []},
                    {"method": "GET", "path": "/orders", "summary": "List orders", "scopes": ["orders:read"]},
                    {
                        "method": "POST",
                        "path": "/orders",
                        "summary": "Place an order",
                        "scopes": ["addresses:read", "orders:write"],
                    },
                ],
                # Its own scopes, and the one of no API that an endpoint needs.
                "scopes": [ADDRESSES_ENTRY, READ_ENTRY, WRITE_ENTRY],
            }
        ],
        "other_scopes": [ADDRESSES_ENTRY],
    }


def test_an_api_with_its_own_token_format_and_lifetime(browser, catalogue, settings):
    settings.AUTHSERVER_PUBLIC_CLIENT_ACCESS_TOKEN_LIFETIME = 900
    ApiResource.objects.filter(pk=catalogue["orders"].pk).update(token_format="opaque", access_token_lifetime=600)

    [api] = browser.get(JSON).json()["apis"]

    assert api["token_format"] == "opaque"
    assert api["access_token_lifetime"] == {
        "client_credentials": 600,
        "authorization_code": 600,
        "authorization_code_public_client": 600,
    }
    page = text_of(browser.get(reverse("catalogue-api", args=["orders"])))
    assert "Opaque (introspect it)" in page
    assert "Client credentials: 10 minutes" in page

    # A public client's token never outlives the public-client lifetime (as issued).
    ApiResource.objects.filter(pk=catalogue["orders"].pk).update(access_token_lifetime=7200)
    [api] = browser.get(JSON).json()["apis"]
    assert api["access_token_lifetime"] == {
        "client_credentials": 7200,
        "authorization_code": 7200,
        "authorization_code_public_client": 900,
    }


def test_the_index_page_lists_published_apis_and_the_other_scopes(browser, catalogue):
    response = browser.get(INDEX)

    assert response.status_code == 200
    page = text_of(response)
    assert '<a href="/apis/orders/">Orders API</a>' in page
    assert "https://api.example.org/orders" in page
    assert "Gemeente Voorbeeld" in page
    assert "JWT (RFC 9068)" in page
    assert '<a href="/apis.json"' in page
    other = page[page.index("Other scopes") :]
    assert "addresses:read" in other
    assert "Look up addresses" in other
    assert "orders:read" not in other  # it belongs to an API
    # The server's lifetimes when an API sets none (STANDARDS.md).
    assert "Client credentials: 6 hours" in page
    assert "Authorization code: 1 hour" in page
    assert "Authorization code, public client: 15 minutes" in page


def test_the_api_page_shows_endpoints_the_scopes_each_needs_and_who_may_get_them(browser, catalogue):
    response = browser.get(reverse("catalogue-api", args=["orders"]))

    assert response.status_code == 200
    page = text_of(response)
    assert "Orders placed with the municipality." in page
    assert '<a href="https://docs.example.org/orders" rel="noopener noreferrer">' in page
    endpoints = page[page.index('id="endpoints-heading"') : page.index('id="scopes-heading"')]
    for text in ("<code>POST</code>", "<code>/orders</code>", "Place an order", "<code>GET</code>", "/health"):
        assert text in endpoints
    assert '<a href="#scope-orders:write"><code>orders:write</code></a>' in endpoints
    assert '<a href="#scope-addresses:read"><code>addresses:read</code></a>' in endpoints

    write = page[page.index('id="scope-orders:write"') :]
    write = write[: write.index("</section>")]
    for text in (
        "Place and change orders",
        "<dt>Risk level</dt><dd>High</dd>",
        "<dt>Minimum trust level</dt><dd>Substantial",
        "<dt>Organisation kinds</dt><dd>Government, Semi-government</dd>",
        "<dt>Environments</dt><dd>Production</dd>",
        "<dt>Network zones</dt><dd>Diginetwerk (production)</dd>",
        "<dt>Open registration</dt><dd>No: only a reviewed or pre-approved client may get it</dd>",
        "<dt>Explicit approval</dt><dd>Yes: an administrator reviews every client that asks for it</dd>",
    ):
        assert text in write, text
    read = page[page.index('id="scope-orders:read"') :]
    read = read[: read.index("</section>")]
    for text in (
        "<dt>Risk level</dt><dd>Low</dd>",
        "<dt>Organisation kinds</dt><dd>Every kind</dd>",
        "<dt>Environments</dt><dd>Every environment</dd>",
        "<dt>Network zones</dt><dd>Any network</dd>",
        "<dt>Open registration</dt><dd>Yes: a client registered without review may get it</dd>",
        "<dt>Explicit approval</dt><dd>No</dd>",
    ):
        assert text in read, text
    assert "Secret API" not in page
    assert "secret:read" not in page


def test_unpublished_apis_and_their_scopes_are_hidden(browser, catalogue):
    assert browser.get(reverse("catalogue-api", args=["secret"])).status_code == 404
    assert browser.get(reverse("catalogue-api", args=["nope"])).status_code == 404
    index = text_of(browser.get(INDEX))
    document = browser.get(JSON).json()
    for shown in (index, str(document)):
        assert "Secret API" not in shown
        assert "secret:read" not in shown
        assert "/secrets" not in shown
    # Published again: shown at once.
    ApiResource.objects.filter(slug="secret").update(published=True)
    assert browser.get(reverse("catalogue-api", args=["secret"])).status_code == 200
    assert [api["slug"] for api in browser.get(JSON).json()["apis"]] == ["orders", "secret"]


def test_a_changed_minimum_trust_level_shows_at_once_in_the_page_and_the_json(browser, catalogue):
    def shown() -> tuple[str, str]:
        [api] = browser.get(JSON).json()["apis"]
        level = {scope["name"]: scope["min_trust_level"] for scope in api["scopes"]}["orders:read"]
        page = text_of(browser.get(reverse("catalogue-api", args=["orders"])))
        read = page[page.index('id="scope-orders:read"') :]
        label = read[read.index("<dt>Minimum trust level</dt><dd>") :].split("<dd>")[1].split(" ")[0]
        return level, label

    assert shown() == ("low", "Low")
    scope = Scope.objects.get(name="orders:read")
    scope.min_trust_level = "high"
    scope.save()
    assert shown() == ("high", "High")
    # A scope moved to no API joins the other scopes.
    Scope.objects.filter(name="orders:write").update(api=None)
    document = browser.get(JSON).json()
    assert [s["name"] for s in document["other_scopes"]] == ["addresses:read", "orders:write"]


def test_the_catalogue_is_an_open_cacheable_document(browser, catalogue):
    for url in (INDEX, reverse("catalogue-api", args=["orders"]), JSON):
        response = browser.get(url, HTTP_ORIGIN="https://portal.example.net")
        assert response.status_code == 200, url
        assert response["Cache-Control"] == "public, max-age=300", url
        assert response["Access-Control-Allow-Origin"] == "*", url
        assert "Set-Cookie" not in response, url
        assert "Content-Security-Policy" in response, url
        assert response["X-Content-Type-Options"] == "nosniff"
        assert browser.head(url).status_code == 200

    refused = browser.post(JSON)
    assert refused.status_code == 405
    assert refused["Allow"] == "GET, HEAD"
    assert refused.json() == {"error": "invalid_request", "error_description": "Use GET."}
    for url in (INDEX, reverse("catalogue-api", args=["orders"])):
        page_refused = browser.post(url)
        assert page_refused.status_code == 405
        assert page_refused["Allow"] == "GET, HEAD"


def test_a_signed_in_visitor_gets_the_same_page_as_anyone(browser, catalogue):
    """A shared cache may keep the page: nothing of the visitor may be in it."""
    anonymous = browser.get(INDEX).content
    user = UserFactory(username="anne")
    signed_in = Browser()
    signed_in.force_login(user)

    response = signed_in.get(INDEX)

    assert response.content == anonymous
    assert "anne" not in response.content.decode()
    assert "csrfmiddlewaretoken" not in response.content.decode()
    assert "Set-Cookie" not in response


def test_the_catalogue_costs_a_fixed_number_of_queries(browser, catalogue, django_assert_max_num_queries):
    for n in range(5):  # more APIs, endpoints and scopes: not more queries
        api = ApiResource.objects.create(
            name=f"API {n}", slug=f"api-{n}", audience=f"https://api.example.org/{n}", owner=catalogue["owner"]
        )
        scope = ScopeFactory(name=f"api{n}:read", api=api)
        scope.allowed_zones.add(catalogue["zone"])
        endpoint = Endpoint.objects.create(api=api, method="GET", path=f"/things/{n}")
        endpoint.required_scopes.add(scope, catalogue["read"])
    with django_assert_max_num_queries(8):
        assert len(browser.get(JSON).json()["apis"]) == 6
    with django_assert_max_num_queries(8):
        assert browser.get(INDEX).status_code == 200


def test_an_empty_catalogue(browser, db):
    assert browser.get(JSON).json()["apis"] == []
    page = text_of(browser.get(INDEX))
    assert "No APIs are published yet." in page
    assert "None: every scope belongs to an API." in page


def test_every_page_links_the_catalogue(browser, db):
    assert '<a href="/apis/">API catalogue</a>' in browser.get("/").content.decode()
