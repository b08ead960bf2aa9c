"""The caller's address (X-Forwarded-For only from trusted proxies), network zones, and the
cached catalogue facts the issuance policy reads (authserver/network.py, oauth/issuance.py)."""

from __future__ import annotations

import pytest
from django.http import HttpResponse
from django.test import RequestFactory

from authserver.audit import AuditEvent, audit_record
from authserver.middleware import RequestContextMiddleware
from authserver.models import ApiResource, NetworkZone, Scope
from authserver.network import client_address, parse_networks, zones_containing
from authserver.oauth import issuance
from authserver.policy import Api, Zone

from ..factories import ScopeFactory


@pytest.fixture
def proxies(settings):
    settings.AUTHSERVER_TRUSTED_PROXIES = ["127.0.0.1", "10.0.0.0/8"]


# (case, REMOTE_ADDR, X-Forwarded-For or None, the caller's address)
ADDRESSES = [
    ("socket peer, no header", "203.0.113.9", None, "203.0.113.9"),
    ("untrusted peer: header ignored", "203.0.113.9", "198.51.100.7", "203.0.113.9"),
    ("trusted proxy, one hop", "127.0.0.1", "198.51.100.7", "198.51.100.7"),
    ("trusted proxy, caller forged the left part", "127.0.0.1", "192.0.2.1, 198.51.100.7", "198.51.100.7"),
    ("a chain of trusted proxies is skipped", "127.0.0.1", "192.0.2.1, 198.51.100.7, 10.1.2.3", "198.51.100.7"),
    ("every hop a trusted proxy: the left-most", "127.0.0.1", "10.0.0.5, 10.1.2.3", "10.0.0.5"),
    ("trusted proxy, empty header", "127.0.0.1", "", "127.0.0.1"),
    ("garbage where a proxy wrote: the last vouched address", "127.0.0.1", "198.51.100.7, not-an-ip", "127.0.0.1"),
    ("garbage left of the caller is never reached", "127.0.0.1", "not-an-ip, 198.51.100.7", "198.51.100.7"),
    ("IPv4 with a port", "127.0.0.1", "198.51.100.7:4711", "198.51.100.7"),
    ("IPv6 in brackets with a port", "127.0.0.1", "[2001:db8::1]:4711", "2001:db8::1"),
    ("IPv6 normalised", "127.0.0.1", "2001:DB8:0::1", "2001:db8::1"),
    ("IPv4-mapped IPv6 peer", "::ffff:127.0.0.1", "198.51.100.7", "198.51.100.7"),
    ("trusted proxy network", "10.9.8.7", "198.51.100.7", "198.51.100.7"),
    ("no socket address", "", "198.51.100.7", None),
    ("a header longer than a proxy writes", "127.0.0.1", "198.51.100.7," * 400, "127.0.0.1"),
]


@pytest.mark.parametrize(("case", "peer", "forwarded", "expected"), ADDRESSES, ids=[a[0] for a in ADDRESSES])
def test_client_address(proxies, case, peer, forwarded, expected):
    meta = {"REMOTE_ADDR": peer}
    if forwarded is not None:
        meta["HTTP_X_FORWARDED_FOR"] = forwarded
    assert client_address(meta) == expected
    # The same from a Django request and from an oauthlib request (whose headers DOT copies from META).
    django_request = RequestFactory().get(
        "/", REMOTE_ADDR=peer, **({"HTTP_X_FORWARDED_FOR": forwarded} if forwarded else {})
    )
    assert client_address(django_request) == expected

    class OAuthlibRequest:
        headers = meta

    assert client_address(OAuthlibRequest()) == expected


def test_without_trusted_proxies_the_header_never_counts(settings):
    settings.AUTHSERVER_TRUSTED_PROXIES = []
    assert client_address({"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "198.51.100.7"}) == "127.0.0.1"


def test_zones_containing():
    internet, diginetwerk, v6 = (
        Zone("internet", "production"),
        Zone("diginetwerk", "production"),
        Zone("v6", "production"),
    )
    table = [
        (internet, ("0.0.0.0/0",)),
        (diginetwerk, ("198.51.100.0/24", "192.0.2.0/25")),
        (v6, ("2001:db8::/32", "not a network")),
    ]
    assert zones_containing("198.51.100.7", table) == (internet, diginetwerk)
    assert zones_containing("192.0.2.200", table) == (internet,)
    assert zones_containing("2001:db8::1", table) == (v6,)
    assert zones_containing("not-an-ip", table) == ()
    assert zones_containing(None, table) == ()
    assert parse_networks(("10.1.2.3/8", "bad")) == parse_networks(("10.0.0.0/8",))


# ---- the audit log records the resolved address ------------------------------------------------


def test_audit_records_the_resolved_address(settings, rf, organisation):
    """RequestContextMiddleware gives audit rows the caller's address: forwarded by a trusted proxy only."""

    def view(request):
        audit_record("test.address", organisation=organisation)
        return HttpResponse()

    middleware = RequestContextMiddleware(view)
    settings.AUTHSERVER_TRUSTED_PROXIES = ["127.0.0.1"]
    middleware(rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="192.0.2.1, 198.51.100.7"))
    middleware(rf.get("/", REMOTE_ADDR="203.0.113.9", HTTP_X_FORWARDED_FOR="198.51.100.7"))
    settings.AUTHSERVER_TRUSTED_PROXIES = []
    middleware(rf.get("/", REMOTE_ADDR="127.0.0.1", HTTP_X_FORWARDED_FOR="198.51.100.7"))
    recorded = list(AuditEvent.objects.filter(event="test.address").order_by("pk").values_list("ip_address", flat=True))
    assert recorded == ["198.51.100.7", "203.0.113.9", "127.0.0.1"]


# ---- the cached catalogue --------------------------------------------------------------------------


@pytest.fixture
def orders_api(organisation) -> ApiResource:
    return ApiResource.objects.create(
        name="Orders",
        slug="orders",
        audience="https://api.example.nl/orders",
        owner=organisation,
        access_token_lifetime=600,
    )


@pytest.fixture
def diginetwerk(db) -> NetworkZone:
    return NetworkZone.objects.create(name="diginetwerk", environment="production", cidrs=["198.51.100.0/24"])


def test_rules_and_apis_are_read_in_one_query_each_then_cached(django_assert_num_queries, orders_api, diginetwerk):
    scope = ScopeFactory(name="orders:read", api=orders_api, min_trust_level="high", allowed_environments=["test"])
    scope.allowed_zones.add(diginetwerk)
    ScopeFactory(name="weather:read")

    with django_assert_num_queries(2):
        rules, apis = issuance.Snapshot().rules_and_apis(
            ["orders:read", "weather:read", "legacy"], [orders_api.audience]
        )
    orders = Api("https://api.example.nl/orders", "Orders", access_token_lifetime=600)
    assert rules["orders:read"].api == orders
    assert rules["orders:read"].min_trust_level == "high"
    assert rules["orders:read"].environments == ("test",)
    assert rules["orders:read"].zones == (Zone("diginetwerk", "production"),)
    assert rules["weather:read"].api is None
    assert "legacy" not in rules  # not in the catalogue
    assert apis == {orders.audience: orders}

    with django_assert_num_queries(0):  # another request: from the cache
        assert issuance.Snapshot().rules_and_apis(["weather:read", "legacy", "orders:read"], [orders_api.audience]) == (
            rules,
            apis,
        )


@pytest.mark.parametrize(
    "change",
    [
        lambda scope, api, zone, client: Scope.objects.filter(pk=scope.pk).first().save(),
        lambda scope, api, zone, client: ApiResource.objects.get(pk=api.pk).save(),
        lambda scope, api, zone, client: zone.save(),
        lambda scope, api, zone, client: scope.allowed_zones.add(zone),
        lambda scope, api, zone, client: zone.clients.add(client),
        lambda scope, api, zone, client: ScopeFactory(name="other:scope").delete(),
    ],
    ids=["scope saved", "api saved", "zone saved", "scope zone linked", "client bound", "scope deleted"],
)
def test_every_catalogue_change_invalidates(django_assert_num_queries, orders_api, diginetwerk, cc_basic, change):
    scope = ScopeFactory(name="orders:read", api=orders_api)
    issuance.Snapshot().rules_and_apis(["orders:read"], [])
    with django_assert_num_queries(0):
        issuance.Snapshot().rules_and_apis(["orders:read"], [])
    change(scope, orders_api, diginetwerk, cc_basic.client)
    with django_assert_num_queries(1):
        issuance.Snapshot().rules_and_apis(["orders:read"], [])


def test_a_changed_rule_is_read_at_once(orders_api):
    scope = ScopeFactory(name="orders:read", api=orders_api, min_trust_level="low")
    assert issuance.Snapshot().rules_and_apis(["orders:read"], [])[0]["orders:read"].min_trust_level == "low"
    scope.min_trust_level = "high"
    scope.save()
    assert issuance.Snapshot().rules_and_apis(["orders:read"], [])[0]["orders:read"].min_trust_level == "high"


def test_zone_table_and_bound_zones(django_assert_num_queries, diginetwerk, cc_basic):
    NetworkZone.objects.create(name="internet", environment="production", cidrs=["0.0.0.0/0", "::/0"])
    NetworkZone.objects.create(name="diginetwerk", environment="test", cidrs=["198.51.100.0/24"])
    diginetwerk.clients.add(cc_basic.client)

    snapshot = issuance.Snapshot()
    with django_assert_num_queries(2):
        assert snapshot.bound_zones(cc_basic.client.pk) == (Zone("diginetwerk", "production"),)
        assert snapshot.caller_zones("198.51.100.7", "production") == (
            Zone("diginetwerk", "production"),
            Zone("internet", "production"),
        )
    with django_assert_num_queries(0):
        assert snapshot.caller_zones("203.0.113.9", "production") == (Zone("internet", "production"),)
        assert issuance.Snapshot().bound_zones(cc_basic.client.pk) == (Zone("diginetwerk", "production"),)
    assert issuance.Snapshot().caller_zones("198.51.100.7", "test") == (Zone("diginetwerk", "test"),)
    assert issuance.Snapshot().caller_zones(None, "production") == ()


def test_caching_can_be_turned_off(settings, django_assert_num_queries, orders_api):
    settings.AUTHSERVER_ISSUANCE_CACHE_SECONDS = 0
    ScopeFactory(name="orders:read", api=orders_api)
    for _ in range(2):
        with django_assert_num_queries(1):
            issuance.Snapshot().rules_and_apis(["orders:read"], [])


def test_an_unreachable_cache_falls_back_to_the_database(settings, django_assert_num_queries, orders_api, caplog):
    """The cache only saves queries: with Redis down a token request still gets its facts."""
    ScopeFactory(name="orders:read", api=orders_api)
    settings.CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}
    }
    issuance.invalidate()  # logged, not raised
    for _ in range(2):  # nothing is kept in the process while the generation cannot be read
        with django_assert_num_queries(1):
            rules, _apis = issuance.Snapshot().rules_and_apis(["orders:read"], [])
    assert rules["orders:read"].api is not None
    assert "could not invalidate the process-local copies" in caplog.text
    assert "process-local copies are not used" in caplog.text


def test_a_nul_character_is_in_no_catalogue_and_breaks_nothing(orders_api):
    """PostgreSQL text cannot hold NUL: such a scope or resource is unknown, not a DataError (500).
    Found by the fuzzer (tests/faults/test_fuzz_oauth.py) at the authorization endpoint."""
    ScopeFactory(name="orders:read", api=orders_api)
    rules, apis = issuance.Snapshot().rules_and_apis(["orders:read", "orders\x00read"], ["https://api\x00/"])
    assert set(rules) == {"orders:read"}
    assert apis == {}
