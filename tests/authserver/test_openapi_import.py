"""OpenAPI import (authserver.catalogue.api_import_openapi): the service, the command and the admin page."""

from __future__ import annotations

import json
from io import StringIO
from typing import Any

import pytest
import yaml
from django.contrib.messages import get_messages
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command
from django.test import Client as Browser
from django.urls import reverse

from authserver.audit import AuditEvent
from authserver.catalogue import api_import_openapi
from authserver.errors import DomainError
from authserver.models import ApiResource, Endpoint, Scope
from tests.admin.conftest import make_staff, verified_client
from tests.factories import OrganisationFactory, ScopeFactory

# A realistic OpenAPI 3.0 document in YAML: two OAuth 2.0 flows, an API key scheme, a
# top-level requirement most operations inherit, operations with their own, a public one.
ORDERS_30_YAML = """
openapi: 3.0.3
info:
  title: Orders API
  version: 1.4.0
  x-audience: municipalities
servers:
  - url: https://api.example.org/orders/v1
security:
  - oauth: [orders:read]
paths:
  /orders:
    summary: The orders of the caller's organisation
    parameters:
      - {name: page, in: query, schema: {type: integer}}
    get:
      summary: List orders
      operationId: listOrders
      responses: {"200": {description: OK}}
    post:
      summary: Place an order
      security:
        - oauth: [orders:write]
          apiKey: []
      requestBody:
        content: {application/json: {schema: {$ref: "#/components/schemas/Order"}}}
      responses: {"201": {description: Created}}
  /orders/{id}:
    parameters:
      - {name: id, in: path, required: true, schema: {type: string}}
    get:
      description: |
        Read one order.
        Includes its lines and status.
      responses: {"200": {description: OK}}
    delete:
      summary: Cancel an order
      security:
        - oauth: [orders:write, orders:cancel]
      responses: {"204": {description: Cancelled}}
    x-internal: true
  /health:
    get:
      summary: Liveness
      security: []
      responses: {"200": {description: OK}}
components:
  schemas:
    Order: {type: object, properties: {id: {type: string}}}
  securitySchemes:
    oauth:
      type: oauth2
      flows:
        clientCredentials:
          tokenUrl: https://auth.example.org/oauth/token
          scopes:
            orders:read: Read the organisation's orders
            orders:write: Place and change orders
        authorizationCode:
          authorizationUrl: https://auth.example.org/oauth/authorize
          tokenUrl: https://auth.example.org/oauth/token
          scopes:
            orders:read: Read the organisation's orders
            orders:cancel: Cancel orders
    apiKey:
      type: apiKey
      in: header
      name: X-Api-Key
"""

# A realistic OpenAPI 3.1 document in JSON: OpenID Connect and OAuth 2.0 schemes, a scheme
# given by reference, webhooks, no top-level security.
CASES_31: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Zaken API", "version": "2.0.0"},
    "jsonSchemaDialect": "https://spec.openapis.org/oas/3.1/dialect/base",
    "paths": {
        "/zaken": {
            "get": {
                "summary": "Zaken zoeken",
                "security": [{"oidc": ["openid", "zaken:lezen"]}],
                "responses": {"200": {"description": "OK"}},
            },
            "post": {
                "summary": "Zaak aanmaken",
                "security": [{"oauth": ["zaken:schrijven"]}, {"mtls": []}],
                "responses": {"201": {"description": "Aangemaakt"}},
            },
        },
        "/zaken/{uuid}": {
            "patch": {"summary": "Zaak bijwerken", "security": [{"oauth": ["zaken:schrijven"]}], "responses": {}},
            "head": {"summary": "Bestaat de zaak?", "responses": {}},
        },
    },
    "webhooks": {"zaakGewijzigd": {"post": {"summary": "Notificatie", "responses": {}}}},
    "components": {
        "securitySchemes": {
            "oidc": {
                "type": "openIdConnect",
                "openIdConnectUrl": "https://auth.example.org/.well-known/openid-configuration",
            },
            "oauth": {"$ref": "#/components/securitySchemes/oauthFlows"},
            "oauthFlows": {
                "type": "oauth2",
                "flows": {
                    "clientCredentials": {
                        "tokenUrl": "https://auth.example.org/oauth/token",
                        "scopes": {"zaken:schrijven": "Zaken aanmaken en wijzigen"},
                    }
                },
            },
            "mtls": {"type": "mutualTLS"},
        }
    },
}


@pytest.fixture
def owner(db):
    return OrganisationFactory(name="Gemeente Voorbeeld", kind="government")


@pytest.fixture
def api(owner) -> ApiResource:
    return ApiResource.objects.create(
        name="Orders API", slug="orders", audience="https://api.example.org/orders", owner=owner
    )


def operations(api: ApiResource) -> dict[str, tuple[str, list[str]]]:
    """ "METHOD /path" -> (summary, sorted scope names): the endpoints as stored."""
    return {
        f"{e.method} {e.path}": (e.summary, sorted(s.name for s in e.required_scopes.all()))
        for e in Endpoint.objects.filter(api=api).prefetch_related("required_scopes")
    }


def snapshot() -> tuple[list[Any], list[Any], list[Any]]:
    """Everything an import may write, ids included."""
    endpoints = list(Endpoint.objects.order_by("pk").values("pk", "api", "method", "path", "summary"))
    links = list(Endpoint.required_scopes.through.objects.order_by("pk").values("endpoint", "scope"))
    scopes = list(Scope.objects.order_by("pk").values("pk", "name", "description", "risk_level", "api", "updated_at"))
    return endpoints, links, scopes


def imported_events() -> list[AuditEvent]:
    return list(AuditEvent.objects.filter(event="api.openapi_imported").order_by("pk"))


# --- the service -----------------------------------------------------------------------------


def test_a_yaml_openapi_30_document_fills_the_endpoints_and_creates_its_scopes(api, owner):
    result = api_import_openapi(api=api, document=ORDERS_30_YAML, actor=None)

    assert operations(api) == {
        "GET /orders": ("List orders", ["orders:read"]),  # the top-level requirement
        "POST /orders": ("Place an order", ["orders:write"]),  # its own; the API key adds no scope
        "GET /orders/{id}": ("Read one order.", ["orders:read"]),  # summary from the description's first line
        "DELETE /orders/{id}": ("Cancel an order", ["orders:cancel", "orders:write"]),
        "GET /health": ("Liveness", []),  # security: [] means no scopes
    }
    assert sorted(result.created) == sorted(operations(api))
    assert (result.updated, result.unchanged, result.removed) == ([], [], [])
    assert result.scopes_created == ["orders:read", "orders:write", "orders:cancel"]
    scopes = {s.name: s for s in Scope.objects.all()}
    assert {name: (s.api, s.risk_level, s.description) for name, s in scopes.items()} == {
        "orders:read": (api, "medium", "Read the organisation's orders"),
        "orders:write": (api, "medium", "Place and change orders"),
        "orders:cancel": (api, "medium", "Cancel orders"),
    }
    [event] = imported_events()
    assert event.actor_label == "system"
    assert event.organisation == owner
    assert (event.target_type, event.target_id) == ("authserver.apiresource", str(api.pk))
    assert event.data["counts"] == {
        "created": 5,
        "updated": 0,
        "unchanged": 0,
        "removed": 0,
        "scopes_created": 3,
        "scopes_claimed": 0,
    }
    assert event.data["changed"] is True


def test_a_json_openapi_31_document_with_openid_connect_and_a_referenced_scheme(api):
    result = api_import_openapi(api=api, document=json.dumps(CASES_31), actor=None)

    assert operations(api) == {
        "GET /zaken": ("Zaken zoeken", ["zaken:lezen"]),
        "POST /zaken": ("Zaak aanmaken", ["zaken:schrijven"]),  # a mutual-TLS alternative lifts no scope
        "PATCH /zaken/{uuid}": ("Zaak bijwerken", ["zaken:schrijven"]),
        "HEAD /zaken/{uuid}": ("Bestaat de zaak?", []),  # no requirement anywhere: no scopes
    }
    # openid is the server's own (OIDC) scope, not a catalogue scope; webhooks are not endpoints.
    assert result.scopes_ignored == ["openid"]
    assert not Scope.objects.filter(name="openid").exists()
    assert dict(Scope.objects.values_list("name", "description")) == {
        "zaken:lezen": "",  # an OpenID Connect scheme describes no scopes
        "zaken:schrijven": "Zaken aanmaken en wijzigen",
    }
    # Already parsed documents are taken as they are.
    again = api_import_openapi(api=api, document=CASES_31, actor=None)
    assert not again.changed


def test_importing_the_same_document_twice_changes_nothing(api):
    first = api_import_openapi(api=api, document=ORDERS_30_YAML, actor=None)
    before = snapshot()

    second = api_import_openapi(api=api, document=ORDERS_30_YAML.encode(), actor=None)

    assert snapshot() == before
    assert not second.changed
    assert sorted(second.unchanged) == sorted(first.created)
    assert second.created == second.updated == second.removed == second.scopes_created == []
    assert imported_events()[-1].data["changed"] is False


def test_a_new_version_updates_endpoints_and_removes_those_no_longer_in_it(api):
    api_import_openapi(api=api, document=ORDERS_30_YAML, actor=None)
    document = yaml.safe_load(ORDERS_30_YAML)
    del document["paths"]["/health"]
    del document["paths"]["/orders/{id}"]["delete"]
    document["paths"]["/orders"]["get"]["summary"] = "List the orders"
    document["paths"]["/orders/{id}"]["get"]["security"] = [{"oauth": ["orders:read", "orders:write"]}]
    # An admin refined a scope the first import created: a later import leaves it be.
    Scope.objects.filter(name="orders:read").update(description="Read orders", risk_level="low")

    result = api_import_openapi(api=api, document=document, actor=None)

    assert sorted(result.removed) == ["DELETE /orders/{id}", "GET /health"]
    assert sorted(result.updated) == ["GET /orders", "GET /orders/{id}"]
    assert result.unchanged == ["POST /orders"]
    assert operations(api) == {
        "GET /orders": ("List the orders", ["orders:read"]),
        "POST /orders": ("Place an order", ["orders:write"]),
        "GET /orders/{id}": ("Read one order.", ["orders:read", "orders:write"]),
    }
    assert Scope.objects.filter(name="orders:read", description="Read orders", risk_level="low").exists()
    # orders:cancel stays in the catalogue: clients may hold it; the admin removes it if wanted.
    assert Scope.objects.filter(name="orders:cancel", api=api).exists()
    event = imported_events()[-1]
    assert event.data["removed"] == result.removed
    assert event.data["counts"]["removed"] == 2


def test_endpoints_of_other_apis_are_left_alone(api, owner):
    other = ApiResource.objects.create(name="Other", slug="other", audience="https://other.example.org", owner=owner)
    kept = Endpoint.objects.create(api=other, method="GET", path="/orders", summary="Not ours")

    api_import_openapi(api=api, document=ORDERS_30_YAML, actor=None)

    kept.refresh_from_db()
    assert kept.summary == "Not ours"
    assert Endpoint.objects.filter(api=other).count() == 1


def with_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """The 3.0 document with values set (or deleted) at "/"-separated places: "paths|/health|get"."""
    document = yaml.safe_load(ORDERS_30_YAML)
    for place, value in changes.items():
        *parents, last = place.split("|")
        node = document
        for part in parents:
            node = node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value
    return document


_DELETE = object()

BAD_DOCUMENTS: list[tuple[str, Any, str]] = [
    ("empty", "   \n", "The document is empty."),
    ("invalid JSON", '{"openapi": "3.0.3", "paths": {', "The document is not valid JSON"),
    ("invalid YAML", "openapi: 3.0.3\npaths:\n  /a: [unclosed\n", "The document is not valid YAML"),
    ("not UTF-8", "openapi: 3.0.3\ninfo: {title: caf\xe9}\n".encode("latin-1"), "not UTF-8"),
    ("a list", "[1, 2]", "its top level is not a mapping"),
    ("a scalar", "just words", "its top level is not a mapping"),
    ("Swagger 2.0", {"swagger": "2.0", "paths": {"/a": {"get": {}}}}, "swagger: 2.0; convert it to OpenAPI 3"),
    ("OpenAPI 4", with_changes({"openapi": "4.0.0"}), "Not an OpenAPI 3.0 or 3.1 document (openapi: 4.0.0)"),
    ("no version", with_changes({"openapi": _DELETE}), "it has no openapi field"),
    ("no paths", with_changes({"paths": _DELETE}), "The document has no paths"),
    ("empty paths", with_changes({"paths": {}}), "The document has no paths"),
    ("paths without operations", with_changes({"paths": {"/a": {"summary": "x"}}}), "have no operations"),
    ("bad method", with_changes({"paths|/health": {"fetch": {}}}), "'fetch': not a method the catalogue knows"),
    ("TRACE", with_changes({"paths": {"/a": {"trace": {}}}}), "'trace': not a method the catalogue knows"),
    ("relative path", with_changes({"paths": {"orders": {"get": {}}}}), "does not start with a slash"),
    ("path item reference", with_changes({"paths": {"/a": {"$ref": "other.yaml#/a"}}}), "bundle the document"),
    ("operation not a mapping", with_changes({"paths": {"/a": {"get": "list"}}}), "GET /a is not an operation"),
    (
        "unknown scheme",
        with_changes({"paths|/health|get|security": [{"bearer": []}]}),
        "GET /health: the security scheme bearer is not defined",
    ),
    (
        "security not a list",
        with_changes({"paths|/health|get|security": {"oauth": []}}),
        "GET /health: security is not a list",
    ),
    (
        "bad scope name",
        with_changes({"paths|/health|get|security": [{"oauth": ['orders "all"']}]}),
        "is not a scope name",
    ),
    (
        "external scheme reference",
        with_changes({"components|securitySchemes|oauth": {"$ref": "https://example.org/schemes.yaml#/oauth"}}),
        "only references within the document",
    ),
    (
        "dangling scheme reference",
        with_changes({"components|securitySchemes|oauth": {"$ref": "#/components/securitySchemes/nope"}}),
        "points at nothing",
    ),
    ("scheme without type", with_changes({"components|securitySchemes|apiKey": {"in": "header"}}), "has no type"),
    (
        "alternative scopes",
        with_changes({"paths|/health|get|security": [{"oauth": ["orders:read"]}, {"oauth": ["orders:write"]}]}),
        "GET /health: its security requirements offer different scopes as alternatives ([orders:read] or "
        "[orders:write])",
    ),
]


@pytest.mark.parametrize(
    ("document", "message"), [case[1:] for case in BAD_DOCUMENTS], ids=[case[0] for case in BAD_DOCUMENTS]
)
def test_a_bad_document_is_refused_with_a_clear_message_and_nothing_is_stored(api, document, message):
    api_import_openapi(api=api, document=json.dumps(CASES_31), actor=None)  # a state to keep
    before = snapshot()
    events_before = AuditEvent.objects.count()

    with pytest.raises(DomainError) as refused:
        api_import_openapi(api=api, document=document, actor=None)

    assert message in str(refused.value)
    assert snapshot() == before
    assert AuditEvent.objects.count() == events_before


def test_a_scope_of_another_api_is_refused_and_nothing_is_stored(api, owner):
    other = ApiResource.objects.create(
        name="Invoices API", slug="invoices", audience="https://api.example.org/invoices", owner=owner
    )
    ScopeFactory(name="orders:write", api=other)
    before = snapshot()

    with pytest.raises(DomainError) as refused:
        api_import_openapi(api=api, document=ORDERS_30_YAML, actor=None)

    assert "Scopes of another API: orders:write (of Invoices API)" in str(refused.value)
    assert snapshot() == before
    assert not imported_events()


def test_a_catalogue_scope_of_no_api_is_refused_unless_claimed(api):
    legacy = ScopeFactory(name="orders:read", description="Read orders", risk_level="low")
    before = snapshot()

    with pytest.raises(DomainError) as refused:
        api_import_openapi(api=api, document=ORDERS_30_YAML, actor=None)
    assert "belong to no API: orders:read" in str(refused.value)
    assert snapshot() == before

    result = api_import_openapi(api=api, document=ORDERS_30_YAML, actor=None, claim_scopes=True)
    legacy.refresh_from_db()
    assert (legacy.api, legacy.description, legacy.risk_level) == (api, "Read orders", "low")  # only claimed
    assert result.scopes_claimed == ["orders:read"]
    assert "orders:read" not in result.scopes_created
    assert imported_events()[-1].data["scopes_claimed"] == ["orders:read"]


# --- the command -----------------------------------------------------------------------------


def test_the_command_imports_a_file_and_reports_what_it_did(api, tmp_path):
    path = tmp_path / "orders.yaml"
    path.write_text(ORDERS_30_YAML)
    out = StringIO()

    call_command("importopenapi", "orders", str(path), stdout=out)

    assert "Orders API: 5 endpoints created, 0 updated, 0 unchanged, 0 removed; 3 scopes created." in out.getvalue()
    assert Endpoint.objects.filter(api=api).count() == 5
    again = StringIO()
    call_command("importopenapi", "orders", str(path), stdout=again)
    assert "0 endpoints created, 0 updated, 5 unchanged, 0 removed; 0 scopes created." in again.getvalue()


def test_the_command_refuses_bad_input_with_a_message(api, tmp_path):
    bad = tmp_path / "swagger.json"
    bad.write_text(json.dumps({"swagger": "2.0", "paths": {}}))
    good = tmp_path / "orders.yaml"
    good.write_text(ORDERS_30_YAML)

    with pytest.raises(CommandError, match=r"Nothing imported: Not an OpenAPI 3\.0 or 3\.1 document"):
        call_command("importopenapi", "orders", str(bad))
    with pytest.raises(CommandError, match="No API with the slug 'nope'"):
        call_command("importopenapi", "nope", str(good))
    with pytest.raises(CommandError, match=r"Cannot read .*missing\.yaml"):
        call_command("importopenapi", "orders", str(tmp_path / "missing.yaml"))
    ScopeFactory(name="orders:read")
    with pytest.raises(CommandError, match="belong to no API"):
        call_command("importopenapi", "orders", str(good))
    call_command("importopenapi", "orders", str(good), "--claim-scopes", stdout=StringIO())
    assert Scope.objects.get(name="orders:read").api == api
    assert Endpoint.objects.filter(api=api).count() == 5


# --- the admin page --------------------------------------------------------------------------


def import_url(api: ApiResource) -> str:
    return reverse("admin:authserver_apiresource_import_openapi", args=[api.pk])


def upload(content: str | bytes, name: str = "openapi.yaml") -> SimpleUploadedFile:
    data = content.encode() if isinstance(content, str) else content
    return SimpleUploadedFile(name, data, content_type="application/yaml")


def test_an_admin_uploads_a_document_on_the_api_page(api):
    staff = make_staff()
    browser = verified_client(staff)
    change_url = reverse("admin:authserver_apiresource_change", args=[api.pk])
    assert import_url(api) in browser.get(change_url).content.decode()  # the button
    page = browser.get(import_url(api))
    assert page.status_code == 200
    assert 'enctype="multipart/form-data"' in page.content.decode()

    response = browser.post(import_url(api), {"document": upload(ORDERS_30_YAML)})

    assert response.status_code == 302
    assert response["Location"] == change_url
    [message] = [str(m) for m in get_messages(response.wsgi_request)]
    assert message.startswith("Imported into Orders API: 5 endpoints created")
    assert Endpoint.objects.filter(api=api).count() == 5
    [event] = imported_events()
    assert event.actor_user == staff
    # The change page lists the endpoints, read-only.
    listing = browser.get(change_url).content.decode()
    assert "/orders/{id}" in listing
    assert "orders:cancel, orders:write" in listing


def test_a_bad_upload_is_a_form_error_and_stores_nothing(api):
    browser = verified_client(make_staff())
    ScopeFactory(name="orders:read")
    for data, error in (
        ({}, "Choose the OpenAPI document to import."),
        ({"document": upload("openapi: 3.0.3\npaths: {}\n")}, "Nothing was imported: The document has no paths"),
        ({"document": upload("{not json", name="openapi.json")}, "Nothing was imported: The document is not valid"),
        ({"document": upload(ORDERS_30_YAML)}, "belong to no API: orders:read"),
    ):
        response = browser.post(import_url(api), data)
        assert response.status_code == 200
        assert error in " ".join(response.context["form"].errors["document"])
        assert not Endpoint.objects.exists()
    assert not imported_events()
    # Ticking the box claims the scope.
    response = browser.post(import_url(api), {"document": upload(ORDERS_30_YAML), "claim_scopes": "on"})
    assert response.status_code == 302
    assert Scope.objects.get(name="orders:read").api == api


def test_the_changelist_action_leads_to_the_import_page_for_one_api(api, owner):
    browser = verified_client(make_staff())
    other = ApiResource.objects.create(name="Other", slug="other", audience="https://other.example.org", owner=owner)
    changelist = reverse("admin:authserver_apiresource_changelist")

    one = browser.post(changelist, {"action": "import_openapi", "_selected_action": [api.pk]})
    assert one.status_code == 302
    assert one["Location"] == import_url(api)

    both = browser.post(changelist, {"action": "import_openapi", "_selected_action": [api.pk, other.pk]}, follow=True)
    assert "Select exactly one API" in both.content.decode()


def test_the_import_page_needs_a_second_factor(api):
    browser = Browser()
    browser.force_login(make_staff())  # a password only
    for response in (browser.get(import_url(api)), browser.post(import_url(api), {"document": upload(ORDERS_30_YAML)})):
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    assert not Endpoint.objects.exists()
