"""The admin of the runtime catalogue: APIs, endpoints, scopes, network zones, rate-limit tiers.

Bad input is a form error and stores nothing; every create, change and delete is audited;
all of it is behind the 2FA admin.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.test import Client as Browser
from django.urls import reverse

from authserver.audit import AuditEvent
from authserver.models import ApiResource, Endpoint, NetworkZone, RateLimitTier, Scope
from tests.factories import OrganisationFactory, ScopeFactory

from ..conftest import register_client
from .conftest import make_staff

API_ADD = reverse("admin:authserver_apiresource_add")
ENDPOINT_ADD = reverse("admin:authserver_endpoint_add")
ZONE_ADD = reverse("admin:authserver_networkzone_add")
TIER_ADD = reverse("admin:authserver_ratelimittier_add")
SCOPE_ADD = reverse("admin:authserver_scope_add")


def events(name: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event=name).order_by("pk"))


def form_errors(response) -> dict[str, list[str]]:
    assert response.status_code == 200, response.status_code
    return {field: [str(e) for e in errors] for field, errors in response.context["adminform"].form.errors.items()}


@pytest.fixture
def owner(db):
    return OrganisationFactory(name="Gemeente Voorbeeld", kind="government")


@pytest.fixture
def api(owner) -> ApiResource:
    return ApiResource.objects.create(
        name="Orders API", slug="orders", audience="https://api.example.org/orders", owner=owner
    )


def client_of(organisation, *, environment: str = "production", resource_server: bool = False):
    return register_client(
        organisation,
        grant_type="client_credentials",
        auth_method="private_key_jwt",
        scopes=[],
        environment=environment,
        is_resource_server=resource_server,
    ).client


# --- APIs --------------------------------------------------------------------------------------


def api_data(owner, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "Zaken API",
        "slug": "zaken",
        "description": "Cases",
        "audience": "https://api.example.org/zaken",
        "owner": owner.pk,
        "token_format": "jwt",
        "access_token_lifetime": "",
        "documentation_url": "",
        "introspectors": [],
        "published": "on",
        # The read-only endpoints inline still posts its management form.
        "endpoints-TOTAL_FORMS": "0",
        "endpoints-INITIAL_FORMS": "0",
        "endpoints-MIN_NUM_FORMS": "0",
        "endpoints-MAX_NUM_FORMS": "1000",
        **overrides,
    }


def test_an_api_is_created_audited_changed_and_deleted(admin_browser, owner, staff):
    resource_server = client_of(owner, resource_server=True)

    response = admin_browser.post(API_ADD, api_data(owner, introspectors=[resource_server.pk]))

    assert response.status_code == 302
    api = ApiResource.objects.get(slug="zaken")
    assert list(api.introspectors.all()) == [resource_server]
    [created] = events("api.created")
    assert (created.actor_user, created.organisation, created.target_id) == (staff, owner, str(api.pk))
    assert created.data["changed"]["introspectors"] == [str(resource_server)]
    assert created.data["changed"]["owner"] == str(owner)
    json.dumps(created.data)  # plain JSON, names rather than rows

    change_url = reverse("admin:authserver_apiresource_change", args=[api.pk])
    response = admin_browser.post(change_url, api_data(owner, token_format="opaque", access_token_lifetime="900"))
    assert response.status_code == 302
    api.refresh_from_db()
    assert (api.token_format, api.access_token_lifetime) == ("opaque", 900)
    [changed] = events("api.changed")
    # Recorded under names the audit log's secret filter ("token") lets through.
    assert changed.data["changed"] == {"format": "opaque", "access_lifetime_seconds": 900, "introspectors": []}

    delete_url = reverse("admin:authserver_apiresource_delete", args=[api.pk])
    assert admin_browser.post(delete_url, {"post": "yes"}).status_code == 302
    assert not ApiResource.objects.filter(pk=api.pk).exists()
    [deleted] = events("api.deleted")
    assert (deleted.data["name"], deleted.actor_user) == ("Zaken API", staff)


def test_introspectors_are_limited_to_resource_servers(admin_browser, owner):
    resource_server = client_of(owner, resource_server=True)
    ordinary = client_of(owner)

    page = admin_browser.get(API_ADD)
    choices = {client.pk for client in page.context["adminform"].form.fields["introspectors"].queryset}
    assert choices == {resource_server.pk}

    errors = form_errors(admin_browser.post(API_ADD, api_data(owner, introspectors=[ordinary.pk])))
    assert "Select a valid choice" in " ".join(errors["introspectors"])
    assert not ApiResource.objects.exists()
    assert not events("api.created")


@pytest.mark.parametrize(
    ("audience", "debug", "accepted"),
    [
        ("https://api.example.org/zaken", False, True),
        ("https://api.example.org/zaken?v=1", False, True),
        ("http://api.example.org/zaken", False, False),  # https only in production
        ("http://localhost:8001/zaken", True, True),  # http while DEBUG
        ("https://api.example.org/zaken#part", False, False),  # RFC 8707 §2: no fragment
        ("https://api.example.org/zaken#", False, False),
        ("/zaken", False, False),  # not absolute
        ("urn:example:zaken", False, False),
        ("api.example.org", False, False),
        ("https://api example.org", False, False),
        ("", False, False),
    ],
)
def test_the_audience_is_an_absolute_https_uri_without_a_fragment(
    admin_browser, owner, settings, audience, debug, accepted
):
    settings.DEBUG = debug
    response = admin_browser.post(API_ADD, api_data(owner, audience=audience))
    if accepted:
        assert response.status_code == 302
        assert ApiResource.objects.get().audience == audience
    else:
        errors = form_errors(response)
        assert errors["audience"], errors
        assert not ApiResource.objects.exists()


def test_slug_and_audience_are_unique_and_bad_values_are_form_errors(admin_browser, owner, api):
    errors = form_errors(admin_browser.post(API_ADD, api_data(owner, slug="orders")))
    assert "Api resource with this Slug already exists." in errors["slug"]
    errors = form_errors(admin_browser.post(API_ADD, api_data(owner, audience=api.audience)))
    assert "already exists" in " ".join(errors["audience"])
    errors = form_errors(admin_browser.post(API_ADD, api_data(owner, slug="not a slug")))
    assert errors["slug"]
    errors = form_errors(admin_browser.post(API_ADD, api_data(owner, access_token_lifetime="5")))
    assert "at least 60 seconds" in " ".join(errors["access_token_lifetime"])
    errors = form_errors(admin_browser.post(API_ADD, api_data(owner, documentation_url="javascript:alert(1)")))
    assert errors["documentation_url"]
    assert ApiResource.objects.count() == 1


def test_the_api_page_lists_its_endpoints_read_only(admin_browser, api):
    scope = ScopeFactory(name="orders:read", api=api)
    endpoint = Endpoint.objects.create(api=api, method="GET", path="/orders/{id}", summary="Read one order")
    endpoint.required_scopes.add(scope)

    page = admin_browser.get(reverse("admin:authserver_apiresource_change", args=[api.pk]))

    inline = next(f for f in page.context["inline_admin_formsets"] if f.opts.model is Endpoint)
    assert (inline.has_add_permission, inline.has_change_permission, inline.has_delete_permission) == (
        False,
        False,
        False,
    )
    content = page.content.decode()
    assert "/orders/{id}" in content
    assert "Read one order" in content
    assert "orders:read" in content
    assert 'name="endpoints-0-path"' not in content  # no inputs: a list


def test_deleting_an_api_whose_scopes_remain_is_refused_not_a_500(admin_browser, api):
    ScopeFactory(name="orders:read", api=api)
    response = admin_browser.post(reverse("admin:authserver_apiresource_delete", args=[api.pk]), {"post": "yes"})
    assert response.status_code == 200  # Django's "cannot delete: protected" page
    assert "orders:read" in response.content.decode()
    assert ApiResource.objects.filter(pk=api.pk).exists()
    assert not events("api.deleted")


# --- endpoints -------------------------------------------------------------------------------


def test_an_endpoint_needs_scopes_of_its_own_api(admin_browser, api, owner, staff):
    other = ApiResource.objects.create(
        name="Other API", slug="other", audience="https://other.example.org", owner=owner
    )
    own = ScopeFactory(name="orders:read", api=api)
    shared = ScopeFactory(name="addresses:read")  # of no API
    foreign = ScopeFactory(name="other:read", api=other)
    data = {
        "api": api.pk,
        "method": "GET",
        "path": "/orders",
        "summary": "List",
        "required_scopes": [own.pk, foreign.pk],
    }

    errors = form_errors(admin_browser.post(ENDPOINT_ADD, data))
    assert "Scopes of another API: other:read (of Other API)" in " ".join(errors["required_scopes"])
    errors = form_errors(admin_browser.post(ENDPOINT_ADD, {**data, "path": "orders", "required_scopes": [own.pk]}))
    assert "starts with a slash" in " ".join(errors["path"])
    assert not Endpoint.objects.exists()

    response = admin_browser.post(ENDPOINT_ADD, {**data, "required_scopes": [own.pk, shared.pk]})
    assert response.status_code == 302
    endpoint = Endpoint.objects.get()
    assert {s.name for s in endpoint.required_scopes.all()} == {"orders:read", "addresses:read"}
    [created] = events("api.endpoint.created")
    assert (created.actor_user, created.organisation, created.data["name"]) == (staff, owner, "GET /orders")
    assert sorted(created.data["changed"]["required_scopes"]) == ["addresses:read", "orders:read"]
    # The same operation twice is a form error too.
    errors = form_errors(admin_browser.post(ENDPOINT_ADD, {**data, "required_scopes": [own.pk]}))
    assert errors["__all__"]


# --- the scope catalogue: its API and network zones --------------------------------------------


def test_a_scope_belongs_to_an_api_and_may_be_limited_to_zones(admin_browser, api, staff):
    zone = NetworkZone.objects.create(name="Diginetwerk", environment="production", cidrs=["10.0.0.0/8"])
    data = {
        "name": "orders:write",
        "description": "Place orders",
        "risk_level": "medium",
        "min_trust_level": "substantial",
        "allowed_organisation_kinds": [],
        "allowed_environments": [],
        "api": api.pk,
        "allowed_zones": [zone.pk],
    }

    assert admin_browser.post(SCOPE_ADD, data).status_code == 302

    scope = Scope.objects.get(name="orders:write")
    assert (scope.api, list(scope.allowed_zones.all())) == (api, [zone])
    [created] = events("scope.created")
    assert created.actor_user == staff
    assert created.organisation == api.owner
    assert created.data["changed"]["api"] == "Orders API"
    assert created.data["changed"]["allowed_zones"] == ["Diginetwerk (production)"]


# --- network zones ---------------------------------------------------------------------------


def zone_data(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Diginetwerk",
        "description": "",
        "environment": "production",
        "cidrs": "",
        "clients": [],
        **overrides,
    }


def test_networks_are_validated_and_stored_normalised(admin_browser, staff):
    errors = form_errors(admin_browser.post(ZONE_ADD, zone_data(cidrs="10.0.0.0/8\n10.1.2.3/33\nnot-a-network")))
    assert errors["cidrs"] == [
        "Not a network in CIDR notation: 10.1.2.3/33, not-a-network. Write it like 192.0.2.0/24 or 2001:db8::/32."
    ]
    errors = form_errors(admin_browser.post(ZONE_ADD, zone_data(cidrs=" \n ")))
    assert "at least one network" in errors["cidrs"][0]
    assert not NetworkZone.objects.exists()
    assert not events("network_zone.created")

    response = admin_browser.post(
        ZONE_ADD, zone_data(cidrs="10.1.2.3/8, 192.0.2.7\n2001:DB8:0:0::1/32\n10.0.0.0/8\n198.51.100.0/24")
    )

    assert response.status_code == 302
    zone = NetworkZone.objects.get()
    assert zone.cidrs == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32", "198.51.100.0/24"]
    [created] = events("network_zone.created")
    assert created.actor_user == staff
    assert created.data["changed"]["cidrs"] == zone.cidrs
    # The change form shows them one per line.
    page = admin_browser.get(reverse("admin:authserver_networkzone_change", args=[zone.pk]))
    assert page.context["adminform"].form.initial["cidrs"] == "10.0.0.0/8\n192.0.2.7/32\n2001:db8::/32\n198.51.100.0/24"


def test_a_zone_takes_clients_of_its_own_environment_only(admin_browser, owner):
    production = client_of(owner, environment="production")
    test_client = client_of(owner, environment="test")

    errors = form_errors(
        admin_browser.post(ZONE_ADD, zone_data(cidrs="10.0.0.0/8", clients=[production.pk, test_client.pk]))
    )
    assert "Only clients of the zone's environment (production) may be bound to it" in errors["clients"][0]
    assert test_client.name in errors["clients"][0]
    assert not NetworkZone.objects.exists()

    assert admin_browser.post(ZONE_ADD, zone_data(cidrs="10.0.0.0/8", clients=[production.pk])).status_code == 302
    zone = NetworkZone.objects.get()
    assert list(zone.clients.all()) == [production]
    # The same name in the same environment is refused; in another environment it is a new zone.
    errors = form_errors(admin_browser.post(ZONE_ADD, zone_data(cidrs="10.0.0.0/8")))
    assert errors["__all__"]
    assert admin_browser.post(ZONE_ADD, zone_data(cidrs="10.0.0.0/8", environment="test")).status_code == 302


def test_deleting_zones_from_the_list_is_audited(admin_browser, staff):
    zones = [NetworkZone.objects.create(name=f"Zone {n}", cidrs=["10.0.0.0/8"]) for n in range(2)]
    response = admin_browser.post(
        reverse("admin:authserver_networkzone_changelist"),
        {"action": "delete_selected", ACTION_CHECKBOX_NAME: [z.pk for z in zones], "post": "yes"},
    )
    assert response.status_code == 302
    assert not NetworkZone.objects.exists()
    assert sorted(e.data["name"] for e in events("network_zone.deleted")) == [
        "Zone 0 (production)",
        "Zone 1 (production)",
    ]


# --- rate-limit tiers ------------------------------------------------------------------------


def tier_data(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "Gold",
        "description": "",
        "token_rate": "1200/minute",
        "introspection_rate": "10000/minute",
        "organisation_token_rate": "",
        "clients": [],
        "organisations": [],
        **overrides,
    }


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("token_rate", "lots"),
        ("token_rate", "600/fortnight"),
        ("token_rate", "600 / minute / please"),
        ("token_rate", "0/minute"),
        ("token_rate", "-5/minute"),
        ("token_rate", ""),
        ("introspection_rate", "600/minute,"),
        ("organisation_token_rate", "many/hour"),
    ],
)
def test_a_bad_rate_is_a_form_error(admin_browser, field, value):
    errors = form_errors(admin_browser.post(TIER_ADD, tier_data(**{field: value})))
    assert errors[field], errors
    assert not RateLimitTier.objects.exists()
    assert not events("rate_limit_tier.created")


def test_a_tier_with_good_rates_is_stored_and_audited(admin_browser, owner, staff):
    client = client_of(owner)
    response = admin_browser.post(
        TIER_ADD,
        tier_data(
            token_rate=" 10/second;1000/hour ",
            organisation_token_rate="5000 per hour",
            clients=[client.pk],
            organisations=[owner.pk],
        ),
    )

    assert response.status_code == 302
    tier = RateLimitTier.objects.get()
    assert (tier.token_rate, tier.introspection_rate, tier.organisation_token_rate) == (
        "10/second;1000/hour",
        "10000/minute",
        "5000 per hour",
    )
    assert (list(tier.clients.all()), list(tier.organisations.all())) == ([client], [owner])
    [created] = events("rate_limit_tier.created")
    assert created.actor_user == staff
    assert created.data["changed"]["organisations"] == [str(owner)]
    assert created.data["changed"]["issuance_rate"] == "10/second;1000/hour"
    assert created.data["changed"]["organisation_issuance_rate"] == "5000 per hour"
    listing = admin_browser.get(reverse("admin:authserver_ratelimittier_changelist")).content.decode()
    assert "1 clients, 1 organisations" in listing


# --- 2FA -------------------------------------------------------------------------------------


def test_the_runtime_admin_needs_a_second_factor(api):
    zone = NetworkZone.objects.create(name="Internet", cidrs=["0.0.0.0/0"])
    tier = RateLimitTier.objects.create(name="Default")
    urls = [
        API_ADD,
        ENDPOINT_ADD,
        ZONE_ADD,
        TIER_ADD,
        reverse("admin:authserver_apiresource_changelist"),
        reverse("admin:authserver_apiresource_change", args=[api.pk]),
        reverse("admin:authserver_networkzone_change", args=[zone.pk]),
        reverse("admin:authserver_ratelimittier_change", args=[tier.pk]),
    ]
    browser = Browser()
    browser.force_login(make_staff())  # signed in with a password only
    for url in urls:
        response = browser.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith(reverse("admin:login")), url
    response = browser.post(ZONE_ADD, zone_data(name="Forged", cidrs="10.0.0.0/8"))
    assert response.status_code == 302
    assert not NetworkZone.objects.filter(name="Forged").exists()
    assert not AuditEvent.objects.filter(event__startswith="network_zone.").exists()
