"""Rate limits (authserver/ratelimit.py) against the real Redis: per address, client,
organisation, resource server and username; tiers; the answers; and a counter store that is down.

Each test counts under a key prefix of its own (tests/conftest.py), so limits set here start at zero.
"""

from __future__ import annotations

import json
import socket
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from authserver import metrics, ratelimit
from authserver.models import RateLimitTier
from onboarding.models import Organisation

from ..conftest import register_client
from ..factories import OrganisationFactory
from ..protocol.test_errors import FORM, basic, obtain_code, redeem

TOKEN = "/oauth/token"
INTROSPECT = "/oauth/introspect"


def post_form(client, path: str, data: dict[str, Any], authorization: str, **extra: Any):
    return client.post(path, urlencode(data), content_type=FORM, HTTP_AUTHORIZATION=authorization, **extra)


def token_request(client, registered, *, secret: str | None = None, **extra: Any):
    data = {"grant_type": "client_credentials", "scope": "orders:read"}
    return post_form(client, TOKEN, data, basic(registered.client_id, secret or registered.secret), **extra)


def assert_too_many(response, *, mentions: str) -> int:
    """429, RFC 6749-style JSON, an integer Retry-After of at least 1 second, never cached."""
    assert response.status_code == 429, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json")
    assert "no-store" in response["Cache-Control"]
    body = json.loads(response.content)
    assert body["error"] == "too_many_requests"
    assert mentions in body["error_description"], body
    retry_after = int(response["Retry-After"])
    assert 1 <= retry_after <= 60
    assert f"{retry_after} seconds" in body["error_description"]
    return retry_after


def cc_client(organisation):
    return register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    )


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: a Redis that is down (connection refused at once)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# ---- the token endpoint -----------------------------------------------------------------------


def test_client_over_its_budget_gets_429_with_retry_after_until_the_window_moves(
    client, cc_basic, settings, time_machine
):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN = "2/minute"
    assert token_request(client, cc_basic).status_code == 200
    assert token_request(client, cc_basic).status_code == 200
    refused = token_request(client, cc_basic)

    retry_after = assert_too_many(refused, mentions="This client")
    assert "access_token" not in refused.json()
    assert retry_after >= 55  # both tokens came moments ago: most of the minute is left
    time_machine.move_to(timezone.now() + timedelta(seconds=retry_after), tick=False)
    assert token_request(client, cc_basic).status_code == 200


def test_failed_authentication_does_not_spend_the_claimed_clients_budget(client, cc_basic, settings):
    # Counting attempts per claimed client_id would let anyone lock a victim client out.
    settings.AUTHSERVER_RATE_LIMIT_TOKEN = "1/minute"
    for _ in range(3):
        assert token_request(client, cc_basic, secret="wrong").status_code == 401

    assert token_request(client, cc_basic).status_code == 200
    assert_too_many(token_request(client, cc_basic), mentions="This client")


def test_per_address_limit_counts_every_attempt_before_authentication(client, cc_basic, settings):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP = "3/minute"
    for _ in range(3):
        assert token_request(client, cc_basic, secret="guess").status_code == 401

    assert_too_many(token_request(client, cc_basic), mentions="from this address")
    # Another caller is not affected; neither is the same caller's shape error counted twice.
    assert token_request(client, cc_basic, REMOTE_ADDR="192.0.2.10").status_code == 200


def test_ipv6_callers_are_counted_per_64_block(client, cc_basic, settings):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP = "2/minute"
    assert token_request(client, cc_basic, REMOTE_ADDR="2001:db8:1:2::1").status_code == 200
    assert token_request(client, cc_basic, REMOTE_ADDR="2001:db8:1:2:ffff::9").status_code == 200

    assert_too_many(token_request(client, cc_basic, REMOTE_ADDR="2001:db8:1:2::abcd"), mentions="address")
    assert token_request(client, cc_basic, REMOTE_ADDR="2001:db8:1:3::1").status_code == 200


def test_forged_forwarded_for_does_not_escape_the_address_limit(client, cc_basic, settings):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP = "2/minute"
    settings.AUTHSERVER_TRUSTED_PROXIES = []
    for n in range(2):
        assert token_request(client, cc_basic, HTTP_X_FORWARDED_FOR=f"198.51.100.{n}").status_code == 200

    assert_too_many(token_request(client, cc_basic, HTTP_X_FORWARDED_FOR="198.51.100.99"), mentions="address")


def test_behind_a_trusted_proxy_each_forwarded_caller_has_its_own_budget(client, cc_basic, settings):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP = "1/minute"
    settings.AUTHSERVER_TRUSTED_PROXIES = ["127.0.0.1"]
    assert token_request(client, cc_basic, HTTP_X_FORWARDED_FOR="198.51.100.1").status_code == 200
    assert token_request(client, cc_basic, HTTP_X_FORWARDED_FOR="198.51.100.2").status_code == 200

    assert_too_many(token_request(client, cc_basic, HTTP_X_FORWARDED_FOR="198.51.100.1"), mentions="address")


def test_organisation_budget_is_shared_by_its_clients(client, organisation, settings):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN = "100/minute"
    settings.AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN = "3/minute"
    first, second = cc_client(organisation), cc_client(organisation)
    outsider = cc_client(OrganisationFactory())

    assert [token_request(client, c).status_code for c in (first, first, second)] == [200, 200, 200]

    assert_too_many(token_request(client, second), mentions="organisation")
    assert_too_many(token_request(client, first), mentions="organisation")
    assert token_request(client, outsider).status_code == 200


def test_client_tier_beats_organisation_tier(client, organisation, settings):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN = "100/minute"
    premium, ordinary = cc_client(organisation), cc_client(organisation)
    organisation_tier = RateLimitTier.objects.create(name="organisation", token_rate="1/minute")
    organisation_tier.organisations.add(organisation)
    client_tier = RateLimitTier.objects.create(name="client", token_rate="3/minute")
    client_tier.clients.add(premium.client)

    assert [token_request(client, premium).status_code for _ in range(3)] == [200, 200, 200]
    assert_too_many(token_request(client, premium), mentions="This client")
    assert token_request(client, ordinary).status_code == 200
    assert_too_many(token_request(client, ordinary), mentions="This client")


def test_an_organisation_tier_sets_the_organisation_budget(client, organisation, settings):
    settings.AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN = ""
    first, second = cc_client(organisation), cc_client(organisation)
    tier = RateLimitTier.objects.create(name="shared", token_rate="100/minute", organisation_token_rate="2/minute")
    tier.organisations.add(organisation)

    assert token_request(client, first).status_code == 200
    assert token_request(client, second).status_code == 200
    assert_too_many(token_request(client, first), mentions="organisation")


def test_refresh_and_code_grants_spend_the_same_client_budget(client, user, web_client, settings):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN = "1/minute"
    code, verifier = obtain_code(client, user, web_client)
    tokens = redeem(client, web_client, code, verifier)
    assert tokens.status_code == 200, tokens.content

    refreshed = post_form(
        client,
        TOKEN,
        {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]},
        basic(web_client.client_id, web_client.secret),
    )
    assert_too_many(refreshed, mentions="This client")
    # Refused before anything was issued: the refresh token still works once the window moves.
    ratelimit.reset("1/minute", "token", "client", web_client.client_id)
    again = post_form(
        client,
        TOKEN,
        {"grant_type": "refresh_token", "refresh_token": tokens.json()["refresh_token"]},
        basic(web_client.client_id, web_client.secret),
    )
    assert again.status_code == 200, again.content


# ---- tiers: the lookup ---------------------------------------------------------------------


def test_most_generous_limit_compares_sustained_rates():
    assert ratelimit.most_generous(["2/minute", "100/hour"]) == "2/minute"  # 120/hour beats 100/hour
    assert ratelimit.most_generous(["10/second;100/minute", "50/minute"]) == "10/second;100/minute"
    assert ratelimit.most_generous(["600/minute", ""]) == ""  # empty: no limit
    assert ratelimit.most_generous(["nonsense", "5/minute"]) == "5/minute"
    assert ratelimit.most_generous(["nonsense"]) is None


def test_several_tiers_at_one_level_give_the_most_generous_of_each_budget(organisation, settings):
    settings.AUTHSERVER_RATE_LIMIT_INTROSPECTION = "7/minute"
    registered = cc_client(organisation)
    low = RateLimitTier.objects.create(name="low", token_rate="10/minute", introspection_rate="900/minute")
    high = RateLimitTier.objects.create(name="high", token_rate="1000/hour", introspection_rate="10/minute")
    for tier in (low, high):
        tier.clients.add(registered.client)

    budget = ratelimit.budget_for(registered.client)

    assert budget == ratelimit.Budget(token="1000/hour", introspection="900/minute", organisation_token="")


def test_budget_is_cached_and_forgotten_whenever_tiers_change(organisation, settings, django_assert_num_queries):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN = "300/minute"
    registered = cc_client(organisation)
    client = registered.client

    def token_budget() -> str:
        return ratelimit.budget_for(client).token

    assert token_budget() == "300/minute"
    with django_assert_num_queries(0):
        assert token_budget() == "300/minute"

    tier = RateLimitTier.objects.create(name="gold", token_rate="5/second")
    tier.clients.add(client)
    assert token_budget() == "5/second"
    with django_assert_num_queries(0):
        assert token_budget() == "5/second"

    tier.token_rate = "6/second"
    tier.save()
    assert token_budget() == "6/second"

    tier.clients.remove(client)
    assert token_budget() == "300/minute"

    client.rate_limit_tiers.add(tier)  # the reverse side of the same relation
    assert token_budget() == "6/second"
    tier.clients.clear()
    assert token_budget() == "300/minute"

    tier.organisations.add(organisation)
    assert token_budget() == "6/second"
    Organisation.objects.get(pk=organisation.pk).rate_limit_tiers.clear()
    assert token_budget() == "300/minute"

    tier.organisations.add(organisation)
    assert token_budget() == "6/second"
    tier.delete()
    assert token_budget() == "300/minute"


def test_second_token_request_reads_no_tier_from_the_database(client, cc_basic):
    def tier_queries() -> list[str]:
        with CaptureQueriesContext(connection) as captured:
            assert token_request(client, cc_basic).status_code == 200
        return [q["sql"] for q in captured.captured_queries if RateLimitTier._meta.db_table in q["sql"]]

    assert tier_queries()  # the first request looks the tier up...
    assert tier_queries() == []  # ...the next ones find it in the cache


def test_tier_limits_are_validated_as_rates(organisation):
    tier = RateLimitTier(name="broken", token_rate="lots/minute", introspection_rate="5/minute")
    with pytest.raises(ValidationError) as refused:
        tier.full_clean()
    assert "token_rate" in refused.value.message_dict
    RateLimitTier(name="fine", token_rate="5/second;1000/day", organisation_token_rate="").full_clean()


# ---- introspection, authorization, login -----------------------------------------------------


def test_resource_server_over_its_introspection_budget_gets_429(client, resource_server, cc_basic, settings):
    settings.AUTHSERVER_RATE_LIMIT_INTROSPECTION = "2/minute"
    token = token_request(client, cc_basic).json()["access_token"]
    auth = basic(resource_server.client_id, resource_server.secret)

    for _ in range(2):
        assert post_form(client, INTROSPECT, {"token": token}, auth).status_code == 200

    assert_too_many(post_form(client, INTROSPECT, {"token": token}, auth), mentions="This client")


def test_introspection_per_address_counts_before_authentication(client, resource_server, settings):
    settings.AUTHSERVER_RATE_LIMIT_INTROSPECTION_PER_IP = "2/minute"
    wrong = basic(resource_server.client_id, "wrong")
    for _ in range(2):
        assert post_form(client, INTROSPECT, {"token": "x"}, wrong).status_code == 401

    right = basic(resource_server.client_id, resource_server.secret)
    assert_too_many(post_form(client, INTROSPECT, {"token": "x"}, right), mentions="from this address")


def assert_too_many_page(response, *, mentions: str) -> None:
    assert response.status_code == 429, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("text/html")
    assert "no-store" in response["Cache-Control"]
    assert int(response["Retry-After"]) >= 1
    page = response.content.decode()
    assert "Too many requests" in page
    assert mentions in page


def test_authorization_endpoint_is_limited_per_address(client, web_client, settings):
    settings.AUTHSERVER_RATE_LIMIT_AUTHORIZE_PER_IP = "2/minute"
    params = {"response_type": "code", "client_id": web_client.client_id}
    for _ in range(2):
        assert client.get("/oauth/authorize", params).status_code == 302  # to the login page

    assert_too_many_page(client.get("/oauth/authorize", params), mentions="authorization requests")
    assert client.get("/oauth/authorize", params, REMOTE_ADDR="192.0.2.7").status_code == 302


def login(client, path: str, username: str, password: str = "not the password", **extra: Any):
    return client.post(path, {"username": username, "password": password}, **extra)


def test_login_attempts_are_limited_per_username(client, user, password, settings):
    settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_USERNAME = "2/minute"
    settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP = "100/minute"
    for _ in range(2):
        assert login(client, "/accounts/login/", user.username).status_code == 200  # the form, with its error
    # The right password does not get through either: that is what makes guessing pointless.
    refused = login(client, "/accounts/login/", f"  {user.username.upper()} ", password, REMOTE_ADDR="192.0.2.8")
    assert_too_many_page(refused, mentions="for this username")
    assert "_auth_user_id" not in client.session

    # Other usernames, and merely showing the form, are not affected.
    assert login(client, "/accounts/login/", "someone-else").status_code == 200
    assert client.get("/accounts/login/").status_code == 200


def test_login_attempts_are_limited_per_address_on_both_login_pages(client, db, settings):
    settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP = "3/minute"
    assert login(client, "/accounts/login/", "a").status_code == 200
    assert login(client, "/admin/login/", "b").status_code == 200
    assert login(client, "/accounts/login/", "c").status_code == 200

    assert_too_many_page(login(client, "/admin/login/", "d"), mentions="from this address")
    assert_too_many_page(login(client, "/accounts/login/", "e"), mentions="from this address")
    assert login(client, "/admin/login/", "f", REMOTE_ADDR="192.0.2.9").status_code == 200


def test_refusals_are_counted_for_prometheus(client, cc_basic, settings):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN = "1/minute"

    def refused() -> int:
        return metrics.read(metrics.RATE_LIMIT_HITS).get(("token",), 0)

    before = refused()
    token_request(client, cc_basic)
    assert token_request(client, cc_basic).status_code == 429

    assert refused() >= before + 1


# ---- the counter store is down -----------------------------------------------------------------


def test_redis_down_token_issuance_fails_closed_by_default(client, cc_basic, resource_server, settings, closed_port):
    token = token_request(client, cc_basic).json()["access_token"]
    settings.AUTHSERVER_RATE_LIMIT_STORAGE_URL = f"redis://127.0.0.1:{closed_port}/0"

    refused = token_request(client, cc_basic)

    assert refused.status_code == 503
    assert refused.json()["error"] == "temporarily_unavailable"
    assert int(refused["Retry-After"]) == ratelimit.UNAVAILABLE_RETRY_AFTER
    assert "no-store" in refused["Cache-Control"]
    # Introspection, authorization and login fail open by default.
    auth = basic(resource_server.client_id, resource_server.secret)
    assert post_form(client, INTROSPECT, {"token": token}, auth).status_code == 200
    assert client.get("/oauth/authorize", {"response_type": "code"}).status_code != 503
    assert login(client, "/accounts/login/", "someone").status_code == 200
    assert ratelimit.hit("5/minute", "register", "127.0.0.1") == (True, 0)


def test_redis_down_behaviour_follows_the_setting(client, cc_basic, resource_server, settings, closed_port, caplog):
    token = token_request(client, cc_basic).json()["access_token"]
    settings.AUTHSERVER_RATE_LIMIT_STORAGE_URL = f"redis://:sekrit-password@127.0.0.1:{closed_port}/0"
    settings.AUTHSERVER_RATE_LIMIT_FAILURE_MODE = {
        "token": "open",
        "introspection": "closed",
        "login": "closed",
        "registration": "closed",
    }

    assert token_request(client, cc_basic).status_code == 200
    unavailable = post_form(client, INTROSPECT, {"token": token}, basic(resource_server.client_id, "x"))
    assert unavailable.status_code == 503
    assert unavailable.json()["error"] == "temporarily_unavailable"
    page = login(client, "/accounts/login/", "someone")
    assert page.status_code == 503
    assert "Temporarily unavailable" in page.content.decode()
    assert ratelimit.hit("5/minute", "register", "127.0.0.1") == (False, ratelimit.UNAVAILABLE_RETRY_AFTER)

    assert "rate limit storage unreachable" in caplog.text
    assert "sekrit-password" not in caplog.text


def test_redis_down_token_issuance_is_refused_before_any_work(client, cc_basic, settings, closed_port):
    settings.AUTHSERVER_RATE_LIMIT_STORAGE_URL = f"redis://127.0.0.1:{closed_port}/0"
    with CaptureQueriesContext(connection) as captured:
        assert token_request(client, cc_basic).status_code == 503
    assert captured.captured_queries == []  # refused on the address check, before the client is loaded


# ---- configuration -------------------------------------------------------------------------------


def test_system_check_refuses_bad_limits_and_failure_modes(settings):
    assert ratelimit.check_rate_limit_settings() == []
    settings.AUTHSERVER_RATE_LIMIT_TOKEN = "300 per minute please"
    settings.AUTHSERVER_RATE_LIMIT_FAILURE_MODE = {"token": "sometimes", "tokens": "open"}

    problems = {problem.id: problem.msg for problem in ratelimit.check_rate_limit_settings()}

    assert "AUTHSERVER_RATE_LIMIT_TOKEN" in problems["authserver.E020"]
    assert len([p for p in ratelimit.check_rate_limit_settings() if p.id == "authserver.E021"]) == 2


@pytest.mark.parametrize(
    ("address", "key"),
    [
        ("192.0.2.1", "192.0.2.1"),
        ("::ffff:192.0.2.1", "192.0.2.1"),
        ("2001:db8:a:b:c:d:e:f", "2001:db8:a:b::/64"),
        ("not an address", "not an address"),
    ],
)
def test_address_key(address, key):
    assert ratelimit.address_key(address) == key
