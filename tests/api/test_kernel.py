"""The shared API kernel: authentication, problem details, 404/405/415, headers and the OpenAPI document."""

from __future__ import annotations

import json

import pytest
import yaml
from django.core.management import call_command
from rest_framework.test import APIClient

from onboarding import services
from onboarding.models import Organisation
from tests.conftest import register_client

from .conftest import API, assert_problem, bearer_client, mint_token, session_client

pytestmark = pytest.mark.django_db

NEW = {"name": "Nieuw BV", "kind": "private", "kvk_number": "12345678"}


# ---- authentication -----------------------------------------------------------------------


def test_no_credentials_is_401_with_a_bearer_challenge(org):
    response = APIClient().get(f"{API}/organisations/{org.pk}")
    assert_problem(response, 401)
    assert response["WWW-Authenticate"].startswith('Bearer realm="api"')


@pytest.mark.parametrize("token", ["not-a-token", "a" * 5000, "\u00e9\u00e8"])
def test_an_unknown_token_is_401(owner, token):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    response = api.get(f"{API}/organisations")
    assert_problem(response, 401)
    assert "invalid_token" in response["WWW-Authenticate"] or "Bearer" in response["WWW-Authenticate"]


def test_an_unknown_token_is_401_even_beside_a_session(owner):
    api = session_client(owner.user)
    api.credentials(HTTP_AUTHORIZATION="Bearer not-a-token")
    assert_problem(api.get(f"{API}/organisations"), 401)


def test_an_expired_token_is_401(owner, portal_client):
    token = mint_token(portal_client, owner.user, expires_in=-10)
    assert_problem(bearer_client(token).get(f"{API}/organisations"), 401)


def test_a_token_of_a_suspended_organisations_client_is_401(owner, portal_client):
    token = mint_token(portal_client, owner.user)
    services.organisation_suspend(organisation_id=portal_client.organisation_id, reason="test")
    assert_problem(bearer_client(token).get(f"{API}/organisations"), 401)


def test_a_token_for_another_resource_is_401(owner, portal_client):
    token = mint_token(portal_client, owner.user, resource="https://api.example.org/orders")
    assert_problem(bearer_client(token).get(f"{API}/organisations"), 401)


def test_a_token_without_the_portal_scope_is_403(owner, portal_client):
    token = mint_token(portal_client, owner.user, scope="openid")
    body = assert_problem(bearer_client(token).get(f"{API}/organisations"), 403, type_slug="forbidden")
    assert "portal" in body["detail"]


def test_a_token_of_a_deactivated_user_is_401(owner, portal_client):
    token = mint_token(portal_client, owner.user)
    owner.user.is_active = False
    owner.user.save()
    assert_problem(bearer_client(token).get(f"{API}/organisations"), 401)


def test_a_client_credentials_token_has_no_person_and_gets_403(organisation):
    machine = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["portal"]
    ).client
    token = mint_token(machine, None)
    body = assert_problem(bearer_client(token).get(f"{API}/organisations"), 403, type_slug="forbidden")
    assert "client-credentials" in body["detail"]
    response = bearer_client(token).post(f"{API}/organisations", NEW, format="json")
    assert_problem(response, 403, type_slug="forbidden")
    assert not Organisation.objects.filter(name="Nieuw BV").exists()


@pytest.mark.parametrize("with_header", [False, True])
def test_a_token_in_the_query_string_is_refused(owner, portal_client, with_header):
    token = mint_token(portal_client, owner.user)
    api = bearer_client(token) if with_header else session_client(owner.user)
    response = api.get(f"{API}/organisations?access_token={token}")
    body = assert_problem(response, 400, type_slug="invalid-request")
    assert token not in response.content.decode()
    assert body["instance"] == f"{API}/organisations"
    assert 'error="invalid_request"' in response["WWW-Authenticate"]


def test_session_changes_need_the_csrf_token(owner):
    api = session_client(owner.user, enforce_csrf_checks=True)
    body = assert_problem(api.post(f"{API}/organisations", NEW, format="json"), 403, type_slug="forbidden")
    assert "CSRF" in body["detail"]
    assert not Organisation.objects.filter(name="Nieuw BV").exists()
    # With the token from the cookie, as a browser script sends it.
    api.get("/accounts/login/")
    csrf = api.cookies["csrftoken"].value
    response = api.post(f"{API}/organisations", NEW, format="json", HTTP_X_CSRFTOKEN=csrf)
    assert response.status_code == 201, response.content


def test_bearer_requests_need_no_csrf_token(owner, portal_client):
    api = APIClient(enforce_csrf_checks=True)
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {mint_token(portal_client, owner.user)}")
    assert api.post(f"{API}/organisations", NEW, format="json").status_code == 201


# ---- content types ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content_type", "body"),
    [
        ("text/plain", "name=Nieuw"),
        ("application/xml", "<organisation><name>Nieuw</name></organisation>"),
        ("text/xml", "<organisation/>"),
        ("application/x-www-form-urlencoded", "name=Nieuw&kind=private"),
        ("multipart/form-data; boundary=xyz", "--xyz--"),
        ("application/json-patch+json", "[]"),
        ("", '{"name": "Nieuw"}'),
    ],
)
def test_unexpected_content_types_are_415(owner, org, content_type, body):
    api = session_client(owner.user)
    for method, url in [
        ("post", f"{API}/organisations"),
        ("patch", f"{API}/organisations/{org.pk}"),
        ("post", f"{API}/organisations/{org.pk}/invitations"),
        ("post", f"{API}/invitations/accept"),
    ]:
        response = api.generic(method.upper(), url, body, content_type=content_type)
        problem = assert_problem(response, 415)
        assert "application/json" in problem["detail"]
    assert Organisation.objects.count() == 1


def test_415_applies_to_actions_that_read_no_body(owner, draft):
    response = session_client(owner.user).post(
        f"{API}/applications/{draft.pk}/submit", "<submit/>", content_type="application/xml"
    )
    assert_problem(response, 415)
    draft.refresh_from_db()
    assert draft.status == "draft"


def test_json_with_a_charset_is_fine(owner):
    response = session_client(owner.user).post(
        f"{API}/organisations", json.dumps(NEW), content_type="application/json; charset=utf-8"
    )
    assert response.status_code == 201


# ---- 404, 405, headers --------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    ["/api/v1/nothing", "/api/v1/organisations/", "/api/v1/organisations/abc", "/api/v2/organisations", "/api/"],
)
def test_unknown_paths_are_404_problems(owner, path):
    assert_problem(session_client(owner.user).get(path), 404)


def test_unknown_paths_are_404_without_credentials():
    assert_problem(APIClient().post("/api/v1/nothing", {}, format="json"), 404)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("put", "/organisations/{org}"),
        ("delete", "/organisations/{org}"),
        ("delete", "/organisations"),
        ("get", "/invitations/accept"),
        ("patch", "/organisations/{org}/members"),
        ("get", "/organisations/{org}/invitations"),
    ],
)
def test_unsupported_methods_are_405_problems(owner, org, method, path):
    response = getattr(session_client(owner.user), method)(API + path.format(org=org.pk), {}, format="json")
    body = assert_problem(response, 405)
    assert body["title"] == "Method Not Allowed"
    assert response["Allow"]
    assert method.upper() not in response["Allow"]


def test_every_response_is_no_store_with_the_api_version(caller, owner, org):
    for response in (
        caller(owner.user).get(f"{API}/organisations"),
        caller(owner.user).get(f"{API}/organisations/{org.pk + 99}"),
        APIClient().get(f"{API}/organisations"),
    ):
        assert response["Cache-Control"] == "no-store"
        assert response["API-Version"] == "1.0.0"
        assert response["X-Content-Type-Options"] == "nosniff"


def test_a_page_past_the_end_is_a_404_problem(owner):
    response = session_client(owner.user).get(f"{API}/organisations?page=99")
    assert_problem(response, 404)
    response = session_client(owner.user).get(f"{API}/organisations?page=1&page_size=1000")
    assert response.status_code == 200


def test_an_unexpected_error_is_a_500_problem_without_internals(owner, org, monkeypatch):
    def broken(**kwargs):
        raise RuntimeError("secret internals: password=hunter2")

    monkeypatch.setattr(services, "organisation_update", broken)
    response = session_client(owner.user).patch(f"{API}/organisations/{org.pk}", {"name": "x"}, format="json")
    body = assert_problem(response, 500)
    assert "hunter2" not in response.content.decode()
    assert "RuntimeError" not in response.content.decode()
    assert body["title"] == "Internal Server Error"


# ---- OpenAPI ------------------------------------------------------------------------------


def test_the_schema_validates_without_warnings():
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", "/dev/null")


def test_the_schema_endpoints():
    client = APIClient()
    as_json = client.get("/api/schema?format=json")
    assert as_json.status_code == 200
    assert as_json["Access-Control-Allow-Origin"] == "*"
    document = json.loads(as_json.content)
    assert document["openapi"].startswith("3.")
    operations = {
        (method.upper(), path) for path, item in document["paths"].items() for method in item if method != "parameters"
    }
    assert {
        ("GET", "/api/v1/organisations"),
        ("POST", "/api/v1/organisations"),
        ("GET", "/api/v1/organisations/{organisation_id}"),
        ("PATCH", "/api/v1/organisations/{organisation_id}"),
        ("GET", "/api/v1/organisations/{organisation_id}/members"),
        ("DELETE", "/api/v1/organisations/{organisation_id}/members/{membership_id}"),
        ("POST", "/api/v1/organisations/{organisation_id}/invitations"),
        ("GET", "/api/v1/organisations/{organisation_id}/applications"),
        ("POST", "/api/v1/organisations/{organisation_id}/applications"),
        ("GET", "/api/v1/applications/{application_id}"),
        ("PATCH", "/api/v1/applications/{application_id}"),
        ("POST", "/api/v1/applications/{application_id}/submit"),
        ("GET", "/api/v1/applications/{application_id}/evidence"),
        ("POST", "/api/v1/applications/{application_id}/evidence"),
        ("GET", "/api/v1/applications/{application_id}/messages"),
        ("POST", "/api/v1/applications/{application_id}/messages"),
        ("POST", "/api/v1/invitations/accept"),
    } <= operations  # the onboarding operations; tests/api/test_clients.py checks the clients ones
    for path, item in document["paths"].items():
        for method, operation in item.items():
            # OAUTH-NL §4: every endpoint documents its scopes; errors are problem details.
            assert {"oauth2": ["portal"]} in operation["security"], (method, path)
            assert "application/problem+json" in operation["responses"]["401"]["content"]
    upload = document["paths"]["/api/v1/applications/{application_id}/evidence"]["post"]["requestBody"]
    assert list(upload["content"]) == ["multipart/form-data"]
    as_yaml = client.get("/api/schema")
    assert as_yaml.status_code == 200
    assert yaml.safe_load(as_yaml.content)["paths"].keys() == document["paths"].keys()
    assert client.get("/api/v1/openapi.json").json()["paths"].keys() == document["paths"].keys()


def test_the_docs_page_needs_no_network():
    response = APIClient().get("/api/docs", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/html")
    page = response.content.decode()
    assert "/api/v1/organisations/{organisation_id}/members" in page
    assert "/api/schema" in page
    assert "<script" not in page
    assert "cdn" not in page.lower()


def test_problem_types_resolve_to_pages():
    response = APIClient().get("/api/problems/validation-error")
    assert response.status_code == 200
    assert "nothing was stored" in response.content.decode()
    assert_problem(APIClient().get("/api/problems/unknown"), 404)


# ---- no input causes a 500 ----------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [b"[" * 100_000 + b"]" * 100_000, b"\xff\xfe{}", b'{"name": NaN}', b'{"name": "x"', b""],
)
def test_unreadable_json_is_a_400_problem(owner, body):
    response = session_client(owner.user).generic("POST", f"{API}/organisations", body, content_type="application/json")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert Organisation.objects.count() == 1


def test_a_malformed_multipart_body_is_a_400_problem(owner, draft):
    response = session_client(owner.user).generic(
        "POST", f"{API}/applications/{draft.pk}/evidence", b"garbage", content_type="multipart/form-data; boundary=zz"
    )
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"


def test_an_unsatisfiable_accept_header_is_a_406_problem(owner):
    response = session_client(owner.user).get(f"{API}/organisations", HTTP_ACCEPT="text/html")
    assert_problem(response, 406)


def test_options_and_head(owner):
    api = session_client(owner.user)
    options = api.options(f"{API}/organisations")
    assert options.status_code == 200
    assert "actions" not in options.json()
    assert options["Cache-Control"] == "no-store"
    head = api.head(f"{API}/organisations")
    assert head.status_code == 200
    assert head.content == b""
