"""Introspection resource servers can lean on (RFC 7662, OAUTH-NL; docs/decisions/0010).

Only for the caller's own APIs, with the holder organisation's identifiers, cached for at most
half the token's remaining lifetime, and inactive on the very next call after every way a token
can stop working, even while its answer is cached. Driven over HTTP against the live server
(``requests``); the query budget with Django's test client and ``django_assert_num_queries``.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis
import requests
from django.conf import settings
from django.core.cache import cache
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from authserver.models import ApiResource
from authserver.oauth import introspection
from clients.models import Client
from clients.services import client_revoke, client_suspend
from onboarding.services import organisation_suspend

from ..conftest import RegisteredClient, decode_unverified, register_client
from ..factories import OrganisationFactory, ScopeFactory, UserFactory
from .test_errors import basic, obtain_code, post_form, redeem

TIMEOUT = 10
ORDERS = "https://api.example.org/orders"
PARCELS = "https://api.example.org/parcels"
AccessToken = get_access_token_model()

# Queries of authenticating a client_secret_basic caller once warm: none, the client with its
# organisation and its credentials are process-local copies (authserver/hotcache.py). Issue 6
# (benchmarks) pins the budget on these numbers: 0 cached, 1 not cached.
AUTH_QUERIES = 0


# ---- fixtures: two APIs of an owner organisation, each with its own resource server ----------


@pytest.fixture
def api_owner(db):
    """The organisation running the APIs; token holders are clients of ``organisation``."""
    return OrganisationFactory(kind="government", oin="00000001002220647000", kvk_number="")


def _resource_server(owner) -> RegisteredClient:
    return register_client(
        owner, grant_type="client_credentials", auth_method="client_secret_basic", scopes=[], is_resource_server=True
    )


@pytest.fixture
def orders_rs(api_owner) -> RegisteredClient:
    return _resource_server(api_owner)


@pytest.fixture
def parcels_rs(api_owner) -> RegisteredClient:
    return _resource_server(api_owner)


def _api(owner, *, name: str, audience: str, scopes: list[str], introspector: RegisteredClient) -> ApiResource:
    api = ApiResource.objects.create(name=name, slug=name.lower(), audience=audience, owner=owner)
    api.introspectors.add(introspector.client)
    for scope in scopes:
        ScopeFactory(name=scope, api=api, risk_level="low")
    return api


@pytest.fixture
def orders_api(api_owner, orders_rs) -> ApiResource:
    return _api(
        api_owner, name="Orders", audience=ORDERS, scopes=["orders:read", "orders:write"], introspector=orders_rs
    )


@pytest.fixture
def parcels_api(api_owner, parcels_rs) -> ApiResource:
    return _api(api_owner, name="Parcels", audience=PARCELS, scopes=["parcels:read"], introspector=parcels_rs)


@pytest.fixture
def consumer(organisation, orders_api, parcels_api) -> RegisteredClient:
    """A client-credentials client of another organisation, granted scopes of both APIs."""
    return register_client(
        organisation,
        grant_type="client_credentials",
        auth_method="client_secret_basic",
        scopes=["orders:read", "parcels:read"],
    )


# ---- helpers -------------------------------------------------------------------------------


def get_token(issuer: str, registered: RegisteredClient, **form: str) -> dict[str, Any]:
    response = requests.post(
        f"{issuer}/oauth/token",
        data={"grant_type": "client_credentials", **form},
        auth=(registered.client_id, registered.secret),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def introspect(issuer: str, caller: RegisteredClient, token: str, **extra: str) -> dict[str, Any]:
    response = requests.post(
        f"{issuer}/oauth/introspect",
        data={"token": token, **extra},
        auth=(caller.client_id, caller.secret),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    assert "no-store" in response.headers["Cache-Control"]
    return response.json()


def checksum(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def cached_answer(caller: RegisteredClient, token: str) -> Any:
    return cache.get(introspection.answer_key(caller.client, checksum(token)))


def redis_ttl(key: str) -> int:
    connection = redis.Redis.from_url(settings.CACHES["default"]["LOCATION"])
    try:
        return int(connection.ttl(cache.make_key(key)))
    finally:
        connection.close()


def active_and_cached(issuer: str, caller: RegisteredClient, token: str) -> dict[str, Any]:
    """Introspect twice: the second answer comes from the cache and equals the first."""
    first = introspect(issuer, caller, token)
    assert first["active"] is True, first
    assert cached_answer(caller, token) is not None
    assert introspect(issuer, caller, token) == first
    return first


# ---- who may learn what ----------------------------------------------------------------------


def test_own_api_token_is_active_with_every_field(issuer, consumer, orders_rs, organisation):
    issued = get_token(issuer, consumer, scope="orders:read", resource=ORDERS)

    answer = introspect(issuer, orders_rs, issued["access_token"])

    now = time.time()
    assert answer["active"] is True
    assert answer["scope"] == "orders:read"
    assert answer["client_id"] == answer["azp"] == answer["sub"] == consumer.client_id
    assert answer["aud"] == ORDERS
    assert answer["iss"] == issuer
    assert answer["token_type"] == "Bearer"
    assert now - 60 < answer["iat"] <= now + 1
    claims = decode_unverified(issued["access_token"])
    assert (answer["iat"], answer["exp"]) == (claims["iat"], claims["exp"])
    assert answer["exp"] == answer["iat"] + settings.AUTHSERVER_CLIENT_CREDENTIALS_TOKEN_LIFETIME
    # The holder's organisation, by the identifiers it has (a private one: its KvK number).
    assert answer["organisation"] == {"name": organisation.name, "kvk_number": organisation.kvk_number}
    assert "username" not in answer


def test_government_holder_is_identified_by_oin(issuer, api_owner, orders_rs, orders_api):
    holder = register_client(
        api_owner, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    )
    issued = get_token(issuer, holder, scope="orders:read", resource=ORDERS)

    answer = introspect(issuer, orders_rs, issued["access_token"])

    assert answer["organisation"] == {"name": api_owner.name, "oin": "00000001002220647000"}


def test_user_token_has_the_users_subject_and_no_username(issuer, client, user, organisation, orders_rs, orders_api):
    web = register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "orders:read"],
        redirect_uris=["https://rp.example.org/callback"],
    )
    code, verifier = obtain_code(client, user, web, scope="openid orders:read", resource=ORDERS)
    tokens = redeem(client, web, code, verifier, resource=ORDERS).json()

    answer = introspect(issuer, orders_rs, tokens["access_token"])

    assert answer["active"] is True
    assert answer["sub"] == str(user.subject_id)
    assert answer["client_id"] == web.client_id
    assert "username" not in answer
    assert user.username not in json.dumps(answer)


def test_token_for_another_api_is_inactive(issuer, consumer, orders_rs, parcels_rs):
    parcels_token = get_token(issuer, consumer, scope="parcels:read", resource=PARCELS)["access_token"]

    # RFC 7662 §2.2: nothing more than inactive, and nothing cached for the refused caller.
    assert introspect(issuer, orders_rs, parcels_token) == {"active": False}
    assert cached_answer(orders_rs, parcels_token) is None
    assert introspect(issuer, parcels_rs, parcels_token)["aud"] == PARCELS


def test_resource_server_of_no_api_learns_nothing(issuer, consumer, organisation):
    stranger = _resource_server(organisation)
    token = get_token(issuer, consumer, scope="orders:read", resource=ORDERS)["access_token"]

    assert introspect(issuer, stranger, token) == {"active": False}


def test_token_without_audience_counts_by_its_scopes(issuer, organisation, api_owner, orders_rs, orders_api):
    """No resource requested: a scope of the caller's API makes it the caller's token; scopes of
    no API make it nobody's. Binding the scope to the API takes effect on the next call."""
    legacy = ScopeFactory(name="legacy:read", risk_level="low")
    holder = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["legacy:read"]
    )
    token = get_token(issuer, holder, scope="legacy:read")["access_token"]
    assert AccessToken.objects.get(token_checksum=checksum(token)).resource == []

    assert introspect(issuer, orders_rs, token) == {"active": False}

    legacy.api = orders_api
    legacy.save()

    answer = introspect(issuer, orders_rs, token)
    assert answer["active"] is True
    assert "aud" not in answer


def test_refresh_token_is_introspectable_by_its_api_only(issuer, client, user, web, orders_rs, parcels_rs, parcels_api):
    refresh = _user_tokens(client, user, web)[0]["refresh_token"]

    answer = introspect(issuer, orders_rs, refresh, token_type_hint="refresh_token")
    assert answer["active"] is True
    assert answer["token_type"] == "refresh_token"
    assert introspect(issuer, parcels_rs, refresh) == {"active": False}


def test_removing_the_caller_from_the_introspectors_ends_a_cached_answer(issuer, consumer, orders_rs, orders_api):
    token = get_token(issuer, consumer, scope="orders:read", resource=ORDERS)["access_token"]
    active_and_cached(issuer, orders_rs, token)

    orders_api.introspectors.remove(orders_rs.client)

    assert introspect(issuer, orders_rs, token) == {"active": False}


# ---- a revoked token is inactive on the very next call, cached or not ---------------------------


def test_revocation_endpoint(issuer, consumer, orders_rs):
    token = get_token(issuer, consumer, scope="orders:read", resource=ORDERS)["access_token"]
    active_and_cached(issuer, orders_rs, token)

    revoked = requests.post(
        f"{issuer}/oauth/revoke", data={"token": token}, auth=(consumer.client_id, consumer.secret), timeout=TIMEOUT
    )
    assert revoked.status_code == 200

    assert introspect(issuer, orders_rs, token) == {"active": False}


def test_client_revocation(issuer, consumer, orders_rs):
    token = get_token(issuer, consumer, scope="orders:read", resource=ORDERS)["access_token"]
    active_and_cached(issuer, orders_rs, token)

    client_revoke(client_id=consumer.client.pk)

    assert introspect(issuer, orders_rs, token) == {"active": False}


def test_client_suspension(issuer, consumer, orders_rs):
    token = get_token(issuer, consumer, scope="orders:read", resource=ORDERS)["access_token"]
    active_and_cached(issuer, orders_rs, token)

    client_suspend(client_id=consumer.client.pk, reason="abuse report")

    assert introspect(issuer, orders_rs, token) == {"active": False}


def test_organisation_suspension(issuer, consumer, orders_rs, organisation):
    token = get_token(issuer, consumer, scope="orders:read", resource=ORDERS)["access_token"]
    active_and_cached(issuer, orders_rs, token)

    organisation_suspend(organisation_id=organisation.pk, reason="KvK registration ended")

    assert Client.objects.get(pk=consumer.client.pk).status == Client.Status.SUSPENDED
    assert introspect(issuer, orders_rs, token) == {"active": False}


def test_client_status_change_without_token_revocation(issuer, consumer, orders_rs):
    """A client that stops being active some other way (expiry of an unused open client, an
    admin edit) is covered as well: the client's save drops its tokens' answers."""
    token = get_token(issuer, consumer, scope="orders:read", resource=ORDERS)["access_token"]
    active_and_cached(issuer, orders_rs, token)

    Client.objects.filter(pk=consumer.client.pk).update(status=Client.Status.EXPIRED)  # no signal: still cached
    assert introspect(issuer, orders_rs, token)["active"] is True
    expired = Client.objects.get(pk=consumer.client.pk)
    expired.save(update_fields=["status"])

    assert introspect(issuer, orders_rs, token) == {"active": False}


@pytest.fixture
def web(organisation, orders_api) -> RegisteredClient:
    return register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "orders:read"],
        redirect_uris=["https://rp.example.org/callback"],
    )


def _user_tokens(client, user, web: RegisteredClient) -> tuple[dict[str, Any], str, str]:
    code, verifier = obtain_code(client, user, web, scope="openid orders:read", resource=ORDERS)
    tokens = redeem(client, web, code, verifier, resource=ORDERS).json()
    assert "access_token" in tokens, tokens
    return tokens, code, verifier


def _refresh(issuer: str, web: RegisteredClient, refresh_token: str) -> requests.Response:
    return requests.post(
        f"{issuer}/oauth/token",
        data={"grant_type": "refresh_token", "refresh_token": refresh_token},
        auth=(web.client_id, web.secret),
        timeout=TIMEOUT,
    )


def test_user_deactivation(issuer, client, user, web, orders_rs):
    tokens, _code, _verifier = _user_tokens(client, user, web)
    active_and_cached(issuer, orders_rs, tokens["access_token"])

    user.is_active = False
    user.save()

    assert introspect(issuer, orders_rs, tokens["access_token"]) == {"active": False}


def test_refresh_rotation_ends_the_old_access_token(issuer, client, user, web, orders_rs):
    tokens, _code, _verifier = _user_tokens(client, user, web)
    active_and_cached(issuer, orders_rs, tokens["access_token"])

    refreshed = _refresh(issuer, web, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text

    assert introspect(issuer, orders_rs, tokens["access_token"]) == {"active": False}
    assert introspect(issuer, orders_rs, refreshed.json()["access_token"])["active"] is True


def test_replayed_code_ends_the_whole_family(issuer, client, user, web, orders_rs):
    tokens, code, verifier = _user_tokens(client, user, web)
    refreshed = _refresh(issuer, web, tokens["refresh_token"]).json()
    active_and_cached(issuer, orders_rs, refreshed["access_token"])

    replay = redeem(client, web, code, verifier, resource=ORDERS)
    assert replay.json()["error"] == "invalid_grant"

    assert introspect(issuer, orders_rs, refreshed["access_token"]) == {"active": False}
    assert introspect(issuer, orders_rs, refreshed["refresh_token"]) == {"active": False}


def test_another_users_deactivation_leaves_the_answer_alone(issuer, client, user, web, orders_rs):
    tokens, _code, _verifier = _user_tokens(client, user, web)
    first = active_and_cached(issuer, orders_rs, tokens["access_token"])

    other = UserFactory()
    other.is_active = False
    other.save()

    assert cached_answer(orders_rs, tokens["access_token"]) is not None
    assert introspect(issuer, orders_rs, tokens["access_token"]) == first


# ---- how long an answer is cached ------------------------------------------------------------


@pytest.mark.parametrize(
    ("remaining", "setting", "expected"),
    [
        (6 * 3600, 60, 60),  # far from expiry: the setting
        (100, 60, 50),  # near expiry: half what is left
        (61, 60, 30),
        (1, 60, 0),  # under two seconds left: not cached
        (-5, 60, 0),  # expired
        (6 * 3600, 0, 0),  # caching off
    ],
)
def test_cache_lifetime_is_half_the_remaining_lifetime_at_most(settings, remaining, setting, expected):
    settings.AUTHSERVER_INTROSPECTION_CACHE_SECONDS = setting
    now = timezone.now()
    assert introspection.cache_seconds(now + timedelta(seconds=remaining), now) == expected


def test_cached_answer_lives_at_most_half_the_remaining_lifetime(client, time_machine, consumer, orders_rs):
    auth = basic(consumer.client_id, consumer.secret)
    issued = post_form(client, "/oauth/token", {"grant_type": "client_credentials", "resource": ORDERS}, auth).json()
    token = issued["access_token"]
    expires = AccessToken.objects.get(token_checksum=checksum(token)).expires
    key = introspection.answer_key(orders_rs.client, checksum(token))
    rs_auth = basic(orders_rs.client_id, orders_rs.secret)

    assert post_form(client, "/oauth/introspect", {"token": token}, rs_auth).json()["active"] is True
    assert 0 < redis_ttl(key) <= settings.AUTHSERVER_INTROSPECTION_CACHE_SECONDS
    cache.delete(key)

    time_machine.move_to(expires - timedelta(seconds=100), tick=False)
    assert post_form(client, "/oauth/introspect", {"token": token}, rs_auth).json()["active"] is True
    assert 40 <= redis_ttl(key) <= 50
    cache.delete(key)

    time_machine.move_to(expires - timedelta(seconds=1), tick=False)
    assert post_form(client, "/oauth/introspect", {"token": token}, rs_auth).json()["active"] is True
    assert cache.get(key) is None  # too close to its end to be worth caching

    time_machine.move_to(expires + timedelta(seconds=1), tick=False)
    assert post_form(client, "/oauth/introspect", {"token": token}, rs_auth).json() == {"active": False}


def test_inactive_answers_are_not_cached(client, consumer, orders_rs, parcels_rs):
    auth = basic(consumer.client_id, consumer.secret)
    token = post_form(client, "/oauth/token", {"grant_type": "client_credentials", "resource": PARCELS}, auth)
    token = token.json()["access_token"]
    for value in (token, "not-a-token", "a.b.c"):
        answer = post_form(client, "/oauth/introspect", {"token": value}, basic(orders_rs.client_id, orders_rs.secret))
        assert answer.json() == {"active": False}
        assert cached_answer(orders_rs, value) is None


def test_caching_can_be_switched_off(client, settings, consumer, orders_rs):
    settings.AUTHSERVER_INTROSPECTION_CACHE_SECONDS = 0
    auth = basic(consumer.client_id, consumer.secret)
    token = post_form(client, "/oauth/token", {"grant_type": "client_credentials", "resource": ORDERS}, auth)
    token = token.json()["access_token"]
    rs_auth = basic(orders_rs.client_id, orders_rs.secret)

    assert post_form(client, "/oauth/introspect", {"token": token}, rs_auth).json()["active"] is True
    assert cached_answer(orders_rs, token) is None
    post_form(client, "/oauth/revoke", {"token": token}, auth)
    assert post_form(client, "/oauth/introspect", {"token": token}, rs_auth).json() == {"active": False}


def test_answers_are_per_caller(issuer, consumer, orders_rs, orders_api, api_owner):
    """A second resource server of the same API has its own cache entry; revoking the token ends both."""
    second = _resource_server(api_owner)
    orders_api.introspectors.add(second.client)
    token = get_token(issuer, consumer, scope="orders:read", resource=ORDERS)["access_token"]
    for caller in (orders_rs, second):
        active_and_cached(issuer, caller, token)

    revoked = requests.post(
        f"{issuer}/oauth/revoke", data={"token": token}, auth=(consumer.client_id, consumer.secret), timeout=TIMEOUT
    )
    assert revoked.status_code == 200

    for caller in (orders_rs, second):
        assert introspect(issuer, caller, token) == {"active": False}


# ---- the query budget ------------------------------------------------------------------------


@pytest.fixture
def own_cache(settings):
    """A cache of this test only: the suite's workers share Redis, and another worker's catalogue
    change (a new catalogue version) would make this test re-read the caller's rights."""
    caches_setting = {alias: dict(config) for alias, config in settings.CACHES.items()}
    caches_setting["default"]["KEY_PREFIX"] = f"test-introspection-{uuid.uuid4().hex}"
    settings.CACHES = caches_setting


def test_query_budget(client, django_assert_num_queries, own_cache, consumer, orders_rs):
    """Cached: only the caller's authentication. Not cached: that plus the token (one query)."""
    auth = basic(consumer.client_id, consumer.secret)

    def new_token() -> str:
        response = post_form(client, "/oauth/token", {"grant_type": "client_credentials", "resource": ORDERS}, auth)
        return response.json()["access_token"]

    rs_auth = basic(orders_rs.client_id, orders_rs.secret)
    # Warm up once: the credential's last use (hourly), the caller's rate-limit tier and rights.
    post_form(client, "/oauth/introspect", {"token": new_token()}, rs_auth)
    token = new_token()

    with django_assert_num_queries(AUTH_QUERIES + 1):
        assert post_form(client, "/oauth/introspect", {"token": token}, rs_auth).json()["active"] is True
    with django_assert_num_queries(AUTH_QUERIES):
        assert post_form(client, "/oauth/introspect", {"token": token}, rs_auth).json()["active"] is True
    # An unknown JWT-shaped token costs one query too (refresh tokens are never JWTs).
    with django_assert_num_queries(AUTH_QUERIES + 1):
        assert post_form(client, "/oauth/introspect", {"token": "x.y.z"}, rs_auth).json() == {"active": False}
    # Any other unknown string: the access and the refresh token lookups.
    with django_assert_num_queries(AUTH_QUERIES + 2):
        assert post_form(client, "/oauth/introspect", {"token": "not-a-token"}, rs_auth).json() == {"active": False}
