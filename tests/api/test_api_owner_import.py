"""/api/v1/organisations/{id}/apis and .../apis/{slug}/openapi: API owners import their OpenAPI documents."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from rest_framework.test import APIClient

from authserver.audit import AuditEvent
from authserver.models import ApiResource, Endpoint, Scope
from onboarding.models import Membership, Organisation
from tests.factories import OrganisationFactory, ScopeFactory

from .conftest import API, Member, assert_problem, field_errors, session_client

pytestmark = pytest.mark.django_db

TOKEN_URL = "https://auth.example.org/oauth/token"
DOCUMENT: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Orders", "version": "1.0.0"},
    "components": {
        "securitySchemes": {
            "oauth2": {
                "type": "oauth2",
                "flows": {
                    "clientCredentials": {
                        "tokenUrl": TOKEN_URL,
                        "scopes": {"orders:read": "Read orders", "orders:write": "Place orders"},
                    }
                },
            }
        }
    },
    "security": [{"oauth2": ["orders:read"]}],
    "paths": {
        "/orders": {
            "get": {"summary": "List orders"},
            "post": {"summary": "Place an order", "security": [{"oauth2": ["orders:write"]}]},
        },
        "/orders/{id}": {"get": {"summary": "One order"}},
    },
}
YAML_DOCUMENT = f"""\
openapi: 3.0.3
info: {{title: Orders, version: 1.0.0}}
components:
  securitySchemes:
    oauth2:
      type: oauth2
      flows:
        clientCredentials:
          tokenUrl: {TOKEN_URL}
          scopes:
            orders:read: Read orders
paths:
  /orders:
    get:
      summary: List orders
      security:
        - oauth2: [orders:read]
"""


@pytest.fixture
def orders(organisation) -> ApiResource:
    return ApiResource.objects.create(
        name="Orders", slug="orders", audience="https://api.example.org/orders", owner=organisation
    )


@pytest.fixture
def api_owner(make_member, organisation) -> Member:
    return make_member(organisation, Membership.Role.OWNER)


def import_url(organisation: Organisation, slug: str = "orders") -> str:
    return f"{API}/organisations/{organisation.pk}/apis/{slug}/openapi"


def post_document(api: APIClient, url: str, document: Any = None) -> Any:
    return api.post(url, json.dumps(DOCUMENT if document is None else document), content_type="application/json")


def endpoints(api: ApiResource) -> dict[str, list[str]]:
    return {
        f"{endpoint.method} {endpoint.path}": sorted(scope.name for scope in endpoint.required_scopes.all())
        for endpoint in Endpoint.objects.filter(api=api).prefetch_related("required_scopes")
    }


def test_an_owner_imports_a_document_and_the_catalogue_shows_it(caller, api_owner, organisation, orders):
    response = post_document(caller(api_owner.user), import_url(organisation))

    assert response.status_code == 200, response.content
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["api"] == "orders"
    assert body["changed"] is True
    assert sorted(body["created"]) == ["GET /orders", "GET /orders/{id}", "POST /orders"]
    assert body["updated"] == body["unchanged"] == body["removed"] == []
    assert sorted(body["scopes_created"]) == ["orders:read", "orders:write"]
    assert "3 endpoints created" in body["summary"]
    assert endpoints(orders) == {
        "GET /orders": ["orders:read"],
        "POST /orders": ["orders:write"],
        "GET /orders/{id}": ["orders:read"],
    }
    assert Scope.objects.get(name="orders:write").api == orders
    event = AuditEvent.objects.get(event="api.openapi_imported")
    assert event.actor_user_id == api_owner.user.pk
    assert event.organisation_id == organisation.pk

    catalogue = APIClient().get("/apis.json").json()
    (entry,) = [api for api in catalogue["apis"] if api["slug"] == "orders"]
    assert {(e["method"], e["path"], tuple(e["scopes"])) for e in entry["endpoints"]} == {
        ("GET", "/orders", ("orders:read",)),
        ("POST", "/orders", ("orders:write",)),
        ("GET", "/orders/{id}", ("orders:read",)),
    }

    listed = caller(api_owner.user).get(f"{API}/organisations/{organisation.pk}/apis")
    assert listed.status_code == 200, listed.content
    (api,) = listed.json()["results"]
    assert api == {
        "name": "Orders",
        "slug": "orders",
        "description": "",
        "audience": "https://api.example.org/orders",
        "token_format": "jwt",
        "access_token_lifetime": None,
        "documentation_url": "",
        "published": True,
        "endpoint_count": 3,
    }


def test_importing_the_same_document_twice_changes_nothing(api_owner, organisation, orders):
    api = session_client(api_owner.user)
    assert post_document(api, import_url(organisation)).status_code == 200
    before = endpoints(orders)

    again = post_document(api, import_url(organisation))

    assert again.status_code == 200, again.content
    body = again.json()
    assert body["changed"] is False
    assert sorted(body["unchanged"]) == ["GET /orders", "GET /orders/{id}", "POST /orders"]
    assert body["created"] == body["updated"] == body["removed"] == body["scopes_created"] == []
    assert endpoints(orders) == before


def test_a_changed_document_updates_and_removes_endpoints(api_owner, organisation, orders):
    api = session_client(api_owner.user)
    assert post_document(api, import_url(organisation)).status_code == 200
    document = copy.deepcopy(DOCUMENT)
    del document["paths"]["/orders/{id}"]
    document["paths"]["/orders"]["get"]["summary"] = "All orders"

    body = post_document(api, import_url(organisation), document).json()

    assert body["updated"] == ["GET /orders"]
    assert body["removed"] == ["GET /orders/{id}"]
    assert set(endpoints(orders)) == {"GET /orders", "POST /orders"}


@pytest.mark.parametrize("content_type", ["application/yaml", "application/vnd.oai.openapi+yaml"])
def test_a_yaml_document_is_imported(api_owner, organisation, orders, content_type):
    response = session_client(api_owner.user).post(import_url(organisation), YAML_DOCUMENT, content_type=content_type)

    assert response.status_code == 200, response.content
    assert response.json()["created"] == ["GET /orders"]
    assert endpoints(orders) == {"GET /orders": ["orders:read"]}


def test_an_admin_may_import(make_member, organisation, orders):
    admin = make_member(organisation, Membership.Role.ADMIN)
    assert post_document(session_client(admin.user), import_url(organisation)).status_code == 200


def test_a_developer_gets_403_and_nothing_changes(caller, make_member, organisation, orders):
    developer = make_member(organisation, Membership.Role.DEVELOPER)

    response = post_document(caller(developer.user), import_url(organisation))

    body = assert_problem(response, 403, type_slug="forbidden")
    assert "owners or administrators" in body["detail"]
    assert not Endpoint.objects.exists()
    assert not Scope.objects.filter(name__startswith="orders:").exists()
    # Developers still see the organisation's APIs.
    listed = session_client(developer.user).get(f"{API}/organisations/{organisation.pk}/apis")
    assert [api["slug"] for api in listed.json()["results"]] == ["orders"]


def test_another_organisations_member_gets_404(make_member, organisation, orders):
    stranger = make_member(OrganisationFactory(name="Elders BV"), Membership.Role.OWNER)
    api = session_client(stranger.user)

    assert_problem(post_document(api, import_url(organisation)), 404)
    assert_problem(api.get(f"{API}/organisations/{organisation.pk}/apis"), 404)
    assert not Endpoint.objects.exists()
    assert not AuditEvent.objects.filter(event="api.openapi_imported").exists()


def test_an_api_of_another_organisation_is_404_to_an_owner(api_owner, organisation):
    elsewhere = ApiResource.objects.create(
        name="Elders", slug="elders", audience="https://api.example.org/elders", owner=OrganisationFactory()
    )
    api = session_client(api_owner.user)

    assert_problem(post_document(api, import_url(organisation, "elders")), 404)
    assert_problem(post_document(api, import_url(organisation, "no-such-api")), 404)
    assert not Endpoint.objects.filter(api=elsewhere).exists()
    assert api.get(f"{API}/organisations/{organisation.pk}/apis").json()["results"] == []


def test_an_ended_membership_gets_404(api_owner, organisation, orders):
    from django.utils import timezone

    api_owner.membership.ended_at = timezone.now()
    api_owner.membership.save()

    assert_problem(post_document(session_client(api_owner.user), import_url(organisation)), 404)


def test_a_suspended_organisation_imports_nothing(api_owner, organisation, orders):
    organisation.status = Organisation.Status.SUSPENDED
    organisation.save()

    body = assert_problem(
        post_document(session_client(api_owner.user), import_url(organisation)), 409, type_slug="conflict"
    )
    assert "suspended" in body["detail"]
    assert not Endpoint.objects.exists()


def _with_scopes(*scopes: str) -> dict[str, Any]:
    document = copy.deepcopy(DOCUMENT)
    document["paths"]["/orders"]["post"]["security"] = [{"oauth2": list(scopes)}]
    return document


@pytest.mark.parametrize(
    ("make_document", "message"),
    [
        (lambda: {"swagger": "2.0", "paths": {}}, "convert it to OpenAPI 3"),
        (lambda: {"openapi": "3.1.0", "info": {}}, "no paths"),
        (lambda: [DOCUMENT], "not a mapping"),
        (lambda: _with_scopes("bad scope"), "is not a scope name"),
        (lambda: {**DOCUMENT, "paths": {"/orders": {"get": {"security": [{"apiKey": []}]}}}}, "not defined"),
        (lambda: _with_scopes("persons:read"), "Scopes of another API"),
        (lambda: _with_scopes("legacy:read"), "belong to no API"),
    ],
)
def test_a_refused_document_is_a_400_and_changes_nothing(api_owner, organisation, orders, make_document, message):
    api = session_client(api_owner.user)
    assert post_document(api, import_url(organisation)).status_code == 200  # the state to keep
    persons = ApiResource.objects.create(
        name="Persons", slug="persons", audience="https://api.example.org/persons", owner=OrganisationFactory()
    )
    ScopeFactory(name="persons:read", api=persons)
    ScopeFactory(name="legacy:read")  # a catalogue scope of no API: only administrators may claim it
    before = endpoints(orders)
    scopes_before = set(Scope.objects.values_list("name", "api_id"))
    audits_before = AuditEvent.objects.count()

    response = post_document(api, import_url(organisation), make_document())

    body = assert_problem(response, 400, type_slug="validation-error")
    assert message in body["detail"], body
    assert message in field_errors(body)[""][0]
    assert endpoints(orders) == before
    assert set(Scope.objects.values_list("name", "api_id")) == scopes_before
    assert Scope.objects.get(name="legacy:read").api is None
    assert AuditEvent.objects.count() == audits_before


@pytest.mark.parametrize(
    ("body", "content_type"),
    [('{"openapi": ', "application/json"), ("openapi: [3.1\n  : :", "application/yaml")],
)
def test_an_unreadable_body_is_a_400_problem(api_owner, organisation, orders, body, content_type):
    response = session_client(api_owner.user).post(import_url(organisation), body, content_type=content_type)

    assert_problem(response, 400, type_slug="invalid-request")
    assert not Endpoint.objects.exists()


def test_other_content_types_are_415(api_owner, organisation, orders):
    response = session_client(api_owner.user).post(
        import_url(organisation), "<openapi/>", content_type="application/xml"
    )

    body = assert_problem(response, 415)
    assert "application/yaml" in body["detail"]
    assert not Endpoint.objects.exists()


def test_a_document_over_the_limit_is_refused(api_owner, organisation, orders, monkeypatch):
    monkeypatch.setattr("authserver.api.catalogue.MAX_DOCUMENT_BYTES", 100)

    response = post_document(session_client(api_owner.user), import_url(organisation))

    body = assert_problem(response, 400, type_slug="validation-error")
    assert "larger than" in body["detail"]
    assert not Endpoint.objects.exists()


def test_the_operations_are_in_the_schema():
    document = APIClient().get("/api/schema?format=json").json()
    listing = document["paths"]["/api/v1/organisations/{organisation_id}/apis"]["get"]
    upload = document["paths"]["/api/v1/organisations/{organisation_id}/apis/{slug}/openapi"]["post"]
    for operation in (listing, upload):
        assert {"oauth2": ["portal"]} in operation["security"]
        assert "application/problem+json" in operation["responses"]["403"]["content"]
    assert set(upload["requestBody"]["content"]) == {
        "application/json",
        "application/yaml",
        "application/vnd.oai.openapi+yaml",
    }
    assert "application/problem+json" in upload["responses"]["400"]["content"]
