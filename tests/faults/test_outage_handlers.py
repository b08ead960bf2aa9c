"""Outages met where no view is: Django's 500 handler, the introspection caller, the code path."""

from __future__ import annotations

from unittest import mock

import pytest
from django.db import OperationalError
from django.test import RequestFactory

from authserver.oauth import validator as validator_module
from authserver.oauth.client_auth import ReplayCacheUnavailableError
from authserver.views import server_error


@pytest.mark.parametrize(("path", "content_type"), [("/oauth/token", "application/json"), ("/portal/", "text/html")])
def test_a_database_outage_outside_a_view_is_a_503(path, content_type):
    try:
        raise OperationalError("the server closed the connection")
    except OperationalError:
        response = server_error(RequestFactory().get(path))
    assert response.status_code == 503
    assert response["Retry-After"]
    assert response["Content-Type"].startswith(content_type)


def test_any_other_error_is_still_django_s_500():
    try:
        raise RuntimeError("a bug")
    except RuntimeError:
        response = server_error(RequestFactory().get("/portal/"))
    assert response.status_code == 500


@pytest.mark.django_db
def test_a_503_from_the_caller_s_authentication_keeps_its_retry_after(client, resource_server, resource_server_api):
    with mock.patch.object(
        validator_module.Validator, "authenticate_client", side_effect=ReplayCacheUnavailableError()
    ):
        response = client.post("/oauth/introspect", "token=x", content_type="application/x-www-form-urlencoded")
    assert response.status_code == 503
    assert response.json()["error"] == "temporarily_unavailable"
    assert response["Retry-After"] == str(ReplayCacheUnavailableError.retry_after)


def test_the_code_path_survives_an_unreachable_cache(caplog):
    def down(*args, **kwargs):
        raise ConnectionError("redis down")

    assert validator_module._cache_quietly(down, "key") is None
    assert "cache unavailable on the authorization-code path" in caplog.text
