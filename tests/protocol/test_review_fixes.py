"""Defences added after review: deactivated users, code replay after a refresh, the claims
parameter within the granted scopes, and no username at introspection."""

from __future__ import annotations

import json
from typing import Any

from ..conftest import decode_unverified
from .test_errors import basic, obtain_code, post_form, redeem


def _introspect(client, resource_server, token: str) -> dict[str, Any]:
    response = post_form(
        client, "/oauth/introspect", {"token": token}, basic(resource_server.client_id, resource_server.secret)
    )
    assert response.status_code == 200
    return response.json()


def _refresh(client, web_client, refresh_token: str):
    return post_form(
        client,
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": refresh_token},
        basic(web_client.client_id, web_client.secret),
    )


def test_a_deactivated_users_tokens_stop_working(
    client, user, web_client, resource_server, resource_server_api, django_capture_on_commit_callbacks
):
    code, verifier = obtain_code(client, user, web_client)
    tokens = redeem(client, web_client, code, verifier).json()
    assert _introspect(client, resource_server, tokens["access_token"])["active"] is True

    user.is_active = False
    with django_capture_on_commit_callbacks(execute=True):  # the commit drops cached answers
        user.save(update_fields=["is_active"])

    assert _introspect(client, resource_server, tokens["access_token"]) == {"active": False}
    userinfo = client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    assert userinfo.status_code == 401
    assert _refresh(client, web_client, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_code_replayed_after_a_refresh_revokes_the_refresh_family(
    client, user, web_client, resource_server, resource_server_api, django_capture_on_commit_callbacks
):
    code, verifier = obtain_code(client, user, web_client)
    first = redeem(client, web_client, code, verifier).json()
    refreshed = _refresh(client, web_client, first["refresh_token"]).json()
    assert _introspect(client, resource_server, refreshed["access_token"])["active"] is True

    with django_capture_on_commit_callbacks(execute=True):  # the request's commit drops cached answers
        replay = redeem(client, web_client, code, verifier)
    assert replay.json()["error"] == "invalid_grant"

    assert _introspect(client, resource_server, refreshed["access_token"]) == {"active": False}
    assert _refresh(client, web_client, refreshed["refresh_token"]).json()["error"] == "invalid_grant"


def test_the_claims_parameter_does_not_widen_the_granted_scopes(client, user, web_client):
    claims = json.dumps({"id_token": {"email": None, "name": None}})
    code, verifier = obtain_code(client, user, web_client, scope="openid", claims=claims)
    id_token = decode_unverified(redeem(client, web_client, code, verifier).json()["id_token"])
    assert "email" not in id_token
    assert "name" not in id_token

    code, verifier = obtain_code(client, user, web_client, scope="openid email", claims=claims)
    id_token = decode_unverified(redeem(client, web_client, code, verifier).json()["id_token"])
    assert id_token["email"] == user.email


def test_introspection_does_not_reveal_the_username(client, user, web_client, resource_server, resource_server_api):
    code, verifier = obtain_code(client, user, web_client)
    answer = _introspect(client, resource_server, redeem(client, web_client, code, verifier).json()["access_token"])
    assert answer["active"] is True
    assert "username" not in answer
    assert user.username not in json.dumps(answer)
