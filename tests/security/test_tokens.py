"""Stolen and left-over tokens (RFC 9700 §4.14, RFC 6819 §4.5, §5.2.2): a replayed refresh token
revokes its whole family, tokens of a suspended organisation, a revoked or suspended client or a
deactivated account stop introspecting active at once (a cached answer included), and the
database keeps no token, secret or registration token in the clear."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from authserver.oauth.client_auth import hash_client_secret
from clients.models import Client, ClientCredential, InitialAccessToken
from clients.services import client_revoke, client_suspend, initial_access_token_issue
from onboarding.services import organisation_suspend

from ..conftest import RegisteredClient, register_client
from ..factories import ScopeFactory
from ..protocol.test_errors import assert_oauth_error, basic, obtain_code, post_form, redeem
from .conftest import ORDERS_API, Api

pytestmark = pytest.mark.django_db

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()


def refresh(client, registered: RegisteredClient, token: str):
    return post_form(
        client,
        "/oauth/token",
        {"grant_type": "refresh_token", "refresh_token": token},
        basic(registered.client_id, registered.secret),
    )


def introspect(client, api: Api, token: str) -> dict[str, Any]:
    rs = api.resource_server
    response = post_form(client, "/oauth/introspect", {"token": token}, basic(rs.client_id, rs.secret))
    assert response.status_code == 200, response.content
    return response.json()


def client_credentials_token(client, registered: RegisteredClient) -> str:
    response = post_form(
        client,
        "/oauth/token",
        {"grant_type": "client_credentials", "scope": "orders:read", "resource": ORDERS_API},
        basic(registered.client_id, registered.secret),
    )
    assert response.status_code == 200, response.content
    return response.json()["access_token"]


@pytest.fixture
def consumer(organisation, orders_api) -> RegisteredClient:
    return register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    )


# ---- refresh token replay (RFC 9700 §4.14.2) ---------------------------------------------------


def test_a_replayed_refresh_token_revokes_the_whole_family(
    client, user, web_client, orders_api, django_capture_on_commit_callbacks
):
    """The attacker stole R1; the client already rotated it (R1 -> R2). Whoever presents R1 now,
    every token of that family dies: R2, and the access tokens R1 and R2 brought."""
    code, verifier = obtain_code(client, user, web_client)
    first = redeem(client, web_client, code, verifier).json()
    second = refresh(client, web_client, first["refresh_token"])
    assert second.status_code == 200, second.content
    rotated = second.json()
    assert rotated["refresh_token"] != first["refresh_token"]
    assert introspect(client, orders_api, rotated["access_token"])["active"] is True

    with django_capture_on_commit_callbacks(execute=True):  # the request's commit
        replay = refresh(client, web_client, first["refresh_token"])
    assert_oauth_error(replay, 400, "invalid_grant")

    assert_oauth_error(refresh(client, web_client, rotated["refresh_token"]), 400, "invalid_grant")
    for token in (first["access_token"], rotated["access_token"], rotated["refresh_token"]):
        assert introspect(client, orders_api, token) == {"active": False}
    assert client.get("/oauth/userinfo", HTTP_AUTHORIZATION=f"Bearer {rotated['access_token']}").status_code == 401


def test_a_refresh_token_is_bound_to_its_client(client, user, web_client, attacker_client):
    code, verifier = obtain_code(client, user, web_client)
    stolen = redeem(client, web_client, code, verifier).json()["refresh_token"]
    response = refresh(client, attacker_client, stolen)
    assert_oauth_error(response, 400, "invalid_grant")
    assert not AccessToken.objects.filter(application=attacker_client.client).exists()


# ---- tokens stop working when their holder does (RFC 7662 §2.2) ---------------------------------------


def _suspend_organisation(registered: RegisteredClient) -> None:
    organisation_suspend(organisation_id=registered.client.organisation_id, reason="Fraud suspected.")


def _revoke_client(registered: RegisteredClient) -> None:
    client_revoke(client_id=registered.client.pk)


def _suspend_client(registered: RegisteredClient) -> None:
    client_suspend(client_id=registered.client.pk, reason="Leaked credentials.")


@pytest.mark.parametrize(
    "stop",
    [_suspend_organisation, _revoke_client, _suspend_client],
    ids=["organisation-suspended", "client-revoked", "client-suspended"],
)
def test_tokens_of_a_stopped_holder_are_inactive_at_once_even_when_cached(
    client, consumer, orders_api, stop, django_capture_on_commit_callbacks
):
    token = client_credentials_token(client, consumer)
    assert introspect(client, orders_api, token)["active"] is True
    assert introspect(client, orders_api, token)["active"] is True  # now answered from the cache

    with django_capture_on_commit_callbacks(execute=True):  # the service's commit
        stop(consumer)

    assert introspect(client, orders_api, token) == {"active": False}
    # And the holder gets no new token.
    response = post_form(
        client, "/oauth/token", {"grant_type": "client_credentials"}, basic(consumer.client_id, consumer.secret)
    )
    assert_oauth_error(response, 401, "invalid_client")


def test_a_deactivated_accounts_tokens_are_inactive_at_once(
    client, user, web_client, orders_api, django_capture_on_commit_callbacks
):
    code, verifier = obtain_code(client, user, web_client)
    tokens = redeem(client, web_client, code, verifier).json()
    assert introspect(client, orders_api, tokens["access_token"])["active"] is True
    user.is_active = False
    with django_capture_on_commit_callbacks(execute=True):
        user.save(update_fields=["is_active"])
    assert introspect(client, orders_api, tokens["access_token"]) == {"active": False}
    assert_oauth_error(refresh(client, web_client, tokens["refresh_token"]), 400, "invalid_grant")


def test_a_compromised_resource_server_learns_nothing_about_other_apis_tokens(
    client, consumer, orders_api, organisation
):
    """A resource server (its credentials stolen, or itself malicious) may introspect only tokens
    meant for its own APIs; anything else is ``{"active": false}`` and reveals nothing."""
    token = client_credentials_token(client, consumer)
    stranger = register_client(
        organisation,
        grant_type="client_credentials",
        auth_method="client_secret_basic",
        scopes=[],
        is_resource_server=True,
    )
    response = post_form(client, "/oauth/introspect", {"token": token}, basic(stranger.client_id, stranger.secret))
    assert response.json() == {"active": False}
    # A client that is not a resource server may not introspect at all.
    response = post_form(client, "/oauth/introspect", {"token": token}, basic(consumer.client_id, consumer.secret))
    assert response.status_code == 403


# ---- nothing reusable at rest (RFC 9700 §4.14, §4.2.4; RFC 6819 §5.1.4.1) -----------------------------


def test_the_database_holds_no_token_secret_or_registration_token_in_the_clear(client, user, web_client, organisation):
    code, verifier = obtain_code(client, user, web_client)
    tokens = redeem(client, web_client, code, verifier).json()
    access, refresh_token = tokens["access_token"], tokens["refresh_token"]
    ScopeFactory(name="orders:read", risk_level="low")
    iat_value = initial_access_token_issue(organisation=organisation, scopes=["orders:read"], actor=None).value

    stored_access = AccessToken.objects.get(token_checksum=hashlib.sha256(access.encode()).hexdigest())
    stored_refresh = RefreshToken.objects.get(token_checksum=hashlib.sha256(refresh_token.encode()).hexdigest())
    assert stored_access.token == ""
    assert stored_refresh.token == ""
    credential = ClientCredential.objects.get(client=web_client.client, kind=ClientCredential.Kind.SECRET)
    assert credential.secret_hash == hash_client_secret(web_client.secret) != web_client.secret
    assert InitialAccessToken.objects.filter(token_hash=hash_client_secret(iat_value)).exists()

    # No column of any of these tables holds one of the values.
    values = [access, refresh_token, web_client.secret, iat_value]
    for model in (AccessToken, RefreshToken, ClientCredential, InitialAccessToken, Client, get_user_model()):
        for row in model.objects.values():
            text = repr(row)
            assert not [value for value in values if value in text], (model.__name__, row)


def test_a_near_miss_of_a_real_token_is_not_found(client, consumer, orders_api):
    """Tokens are looked up by a hash of the whole value: a prefix, a suffix or one changed
    character of a live token finds nothing."""
    token = client_credentials_token(client, consumer)
    assert introspect(client, orders_api, token)["active"] is True
    flipped = token[:-1] + ("A" if token[-1] != "A" else "B")
    for guess in (token[:-1], token[:40], token + "A", flipped, token.upper()):
        assert introspect(client, orders_api, guess) == {"active": False}
