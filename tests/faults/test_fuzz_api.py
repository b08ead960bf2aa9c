"""Fuzzing the REST API against its own OpenAPI document (schemathesis, issue 8 item 3).

Every operation of /api/schema is driven in-process through the WSGI application, as an owner
of an active organisation with a ``portal`` bearer token. Each answer must be documented in
the schema (status code, content type, body; errors as RFC 9457 problem details), never a 5xx,
and a refused request (4xx) must leave every onboarding, clients and catalogue table as it was.

Half of the generated integer path identifiers are swapped for the ids of real rows the
caller may reach (the choice follows the generated value, so hypothesis still shrinks), so
bodies reach the services instead of stopping at a 404.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from django.apps import apps
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from clients.services import client_credential_issue_secret
from onboarding import services as onboarding_services
from onboarding.models import Membership
from tests.api.conftest import assert_problem, bearer_client, mint_token
from tests.conftest import REDIRECT_URI, register_client
from tests.factories import OrganisationFactory, UserFactory

# The tables an API request may write; the audit log is left out on purpose (it is append-only
# and may record refusals), as are sessions and DOT's token tables (the caller's own token).
WATCHED_APPS = ("onboarding", "clients", "authserver")
UNWATCHED_MODELS = {"auditevent", "signingkey"}

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def _in_process_wsgi() -> Iterator[None]:
    """Serve requests inside the test's transaction, as Django's own test client does.

    A bare WSGIHandler closes the database connection at the start and end of every request
    (close_old_connections), which would end the test's transaction."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


@pytest.fixture
def world(db, _in_process_wsgi) -> dict[str, Any]:
    """An owner of an active organisation with a client, a credential and a draft application."""
    organisation = OrganisationFactory(name="Fuzz BV")
    owner = UserFactory()
    membership = Membership.objects.create(user=owner, organisation=organisation, role=Membership.Role.OWNER)
    developer = UserFactory()
    Membership.objects.create(user=developer, organisation=organisation, role=Membership.Role.DEVELOPER)
    machine = register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
    )
    credential = client_credential_issue_secret(client=machine.client).credential
    application = onboarding_services.kyc_application_create(
        organisation_id=organisation.pk, actor=owner, motivation="Fuzzing."
    )
    operator = OrganisationFactory(name="Operator")
    portal = register_client(
        operator,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "portal"],
        redirect_uris=[REDIRECT_URI],
    ).client
    return {
        "token": mint_token(portal, owner),
        "ids": {
            "organisation_id": organisation.pk,
            "client_pk": machine.client.pk,
            "credential_id": credential.pk,
            "application_id": application.pk,
            "membership_id": membership.pk,
        },
    }


@pytest.fixture
def api_schema(world) -> Any:
    return schemathesis.openapi.from_wsgi("/api/schema?format=json", WSGIHandler())


schema = schemathesis.pytest.from_fixture("api_schema")


def row_counts() -> dict[str, int]:
    return {
        model._meta.label: model._default_manager.count()
        for app_label in WATCHED_APPS
        for model in apps.get_app_config(app_label).get_models()
        if model._meta.model_name not in UNWATCHED_MODELS
    }


@schema.parametrize()
@settings(
    max_examples=15,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_every_operation_answers_as_documented_and_a_refusal_stores_nothing(case, world):
    for name, value in list(case.path_parameters.items() if case.path_parameters else []):
        if name in world["ids"] and isinstance(value, int) and value % 2 == 0:
            case.path_parameters[name] = world["ids"][name]
    before = row_counts()
    response = case.call(headers={"Authorization": f"Bearer {world['token']}"})
    case.validate_response(response, checks=CHECKS)
    if response.status_code >= 400:
        content_type = response.headers.get("content-type", [""])[0]
        assert content_type.startswith("application/problem+json"), (response.status_code, content_type)
        assert row_counts() == before, (response.status_code, response.text[:500])


@pytest.mark.parametrize("segment", ["a%0Ab", "%0A", "x%0D%0Ay"])
def test_a_path_with_a_line_break_is_a_problem_details_404(world, segment):
    """Regression (found by the fuzzer above): the catch-all's "." did not match a newline,
    so Django's HTML 404 answered instead of a problem."""
    api = bearer_client(world["token"])
    response = api.get(f"/api/v1/applications/{segment}/messages")
    assert_problem(response, 404)
