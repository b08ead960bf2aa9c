"""The issuance policy as a table: facts in, granted scopes and the token's API (or the refusal
with the rule that refused each scope) out. The table is the specification (decision 0009)."""

from __future__ import annotations

import pytest

from authserver.policy import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    OPAQUE,
    Api,
    ClientFacts,
    IssuanceRequest,
    OrganisationFacts,
    Refusal,
    ScopeRule,
    Zone,
    decide_issuance,
    zone_binding_refusal,
)

ORDERS = Api("https://api.example.nl/orders", "Orders", access_token_lifetime=600)
PARCELS = Api("https://api.example.nl/parcels", "Parcels")
LEDGER = Api("https://api.example.nl/ledger", "Ledger", token_format=OPAQUE, access_token_lifetime=300)
AUDIT = Api("https://api.example.nl/audit", "Audit", token_format=OPAQUE, access_token_lifetime=900)
APIS = {api.audience: api for api in (ORDERS, PARCELS, LEDGER, AUDIT)}

INTERNET = Zone("internet", "production")
DIGINETWERK = Zone("diginetwerk", "production")
DIGINETWERK_TEST = Zone("diginetwerk", "test")

CATALOGUE = {
    "orders:read": ScopeRule("orders:read", api=ORDERS),
    "orders:write": ScopeRule("orders:write", min_trust_level="substantial", api=ORDERS),
    "persons:read": ScopeRule("persons:read", min_trust_level="high"),
    "gov:only": ScopeRule("gov:only", organisation_kinds=("government", "semi_government")),
    "test:only": ScopeRule("test:only", environments=("test", "development")),
    "closed:read": ScopeRule("closed:read", zones=(DIGINETWERK,)),
    "parcels:read": ScopeRule("parcels:read", api=PARCELS),
    "ledger:read": ScopeRule("ledger:read", api=LEDGER),
    "audit:read": ScopeRule("audit:read", api=AUDIT),
    "open:read": ScopeRule("open:read"),
}

SUBSTANTIAL_PRIVATE = OrganisationFacts(status="active", trust_level="substantial", kind="private")
HIGH_GOVERNMENT = OrganisationFacts(status="active", trust_level="high", kind="government")
LOW_SEMI = OrganisationFacts(status="active", trust_level="low", kind="semi_government")
SUSPENDED = OrganisationFacts(status="suspended", trust_level="high", kind="government")

EVERYTHING = frozenset(CATALOGUE) | {"openid", "profile", "legacy:scope"}


def request(
    scopes: tuple[str, ...],
    *,
    granted: frozenset[str] = EVERYTHING,
    environment: str = "production",
    grant_type: str = CLIENT_CREDENTIALS,
    organisation: OrganisationFacts = SUBSTANTIAL_PRIVATE,
    zones: tuple[Zone, ...] = (),
    resources: tuple[str, ...] = (),
    default_lifetime: int = 21600,
) -> IssuanceRequest:
    return IssuanceRequest(
        scopes=scopes,
        client=ClientFacts(granted_scopes=granted, environment=environment, grant_type=grant_type),
        organisation=organisation,
        zones=zones,
        resources=resources,
        default_lifetime=default_lifetime,
    )


# (case, request, error ("" granted), the refused scope, a fragment of its rule or the description)
CASES = [
    # --- the client grant ---
    ("granted scope", request(("open:read",)), "", None, None),
    ("no scopes at all", request(()), "", None, None),
    (
        "not granted",
        request(("open:read",), granted=frozenset({"orders:read"})),
        "invalid_scope",
        "open:read",
        "not granted to this client",
    ),
    ("unknown scope, granted: the grant decides", request(("legacy:scope",)), "", None, None),
    (
        "unknown scope, not granted",
        request(("legacy:other",)),
        "invalid_scope",
        "legacy:other",
        "not granted to this client",
    ),
    (
        "OIDC scope on client credentials",
        request(("openid",)),
        "invalid_scope",
        "openid",
        "needs an end user",
    ),
    ("OIDC scope on authorization code", request(("openid", "profile"), grant_type=AUTHORIZATION_CODE), "", None, None),
    # --- trust level ---
    ("trust level reached", request(("orders:write",)), "", None, None),
    (
        "trust level too low",
        request(("orders:write",), organisation=LOW_SEMI),
        "invalid_scope",
        "orders:write",
        "needs trust level substantial; the organisation has low",
    ),
    (
        "trust level high needed",
        request(("persons:read",)),
        "invalid_scope",
        "persons:read",
        "needs trust level high; the organisation has substantial",
    ),
    ("trust level high held", request(("persons:read",), organisation=HIGH_GOVERNMENT), "", None, None),
    # --- organisation kind ---
    ("kind allowed", request(("gov:only",), organisation=HIGH_GOVERNMENT), "", None, None),
    ("kind allowed (semi-government)", request(("gov:only",), organisation=LOW_SEMI), "", None, None),
    (
        "kind refused",
        request(("gov:only",)),
        "invalid_scope",
        "gov:only",
        "not for private organisations (only government, semi-government)",
    ),
    # --- environment ---
    ("environment allowed", request(("test:only",), environment="test"), "", None, None),
    (
        "environment refused",
        request(("test:only",)),
        "invalid_scope",
        "test:only",
        "not in the production environment",
    ),
    # --- network zone ---
    ("zone allowed", request(("closed:read",), zones=(INTERNET, DIGINETWERK)), "", None, None),
    (
        "zone refused",
        request(("closed:read",), zones=(INTERNET,)),
        "invalid_scope",
        "closed:read",
        "not from network zone internet (only from diginetwerk)",
    ),
    (
        "no zone at all",
        request(("closed:read",)),
        "invalid_scope",
        "closed:read",
        "not from outside its network zones (only from diginetwerk)",
    ),
    (
        "same zone name, other environment",
        request(("closed:read",), environment="test", zones=(DIGINETWERK_TEST,)),
        "invalid_scope",
        "closed:read",
        "not from network zone diginetwerk (only from diginetwerk (production))",
    ),
    # --- the first failing rule is the one reported, for every refused scope ---
    (
        "not granted beats trust level",
        request(("persons:read",), granted=frozenset(), organisation=LOW_SEMI),
        "invalid_scope",
        "persons:read",
        "not granted to this client",
    ),
    (
        "one refusal fails the whole request",
        request(("open:read", "persons:read")),
        "invalid_scope",
        "persons:read",
        "needs trust level high",
    ),
    # --- resources (RFC 8707) ---
    ("resource of the scope's API", request(("orders:read",), resources=(ORDERS.audience,)), "", None, None),
    (
        "scope of another API",
        request(("orders:read", "parcels:read"), resources=(ORDERS.audience,)),
        "invalid_scope",
        "parcels:read",
        "belongs to API Parcels, not to the requested resource",
    ),
    (
        "unknown resource",
        request(("orders:read",), resources=("https://api.example.nl/unknown",)),
        "invalid_target",
        None,
        "Unknown resource https://api.example.nl/unknown",
    ),
    (
        "scopes of two APIs without a resource",
        request(("orders:read", "parcels:read")),
        "invalid_target",
        None,
        "several APIs: Orders (orders:read); Parcels (parcels:read)",
    ),
    (
        "scopes of two APIs with both resources",
        request(("orders:read", "parcels:read"), resources=(ORDERS.audience, PARCELS.audience)),
        "",
        None,
        None,
    ),
    (
        "two resources of different formats",
        request(("orders:read", "ledger:read"), resources=(ORDERS.audience, LEDGER.audience)),
        "invalid_target",
        None,
        "different token formats",
    ),
    (
        "a scope of no API rides along",
        request(("orders:read", "open:read"), resources=(ORDERS.audience,)),
        "",
        None,
        None,
    ),
    ("a resource without its scopes", request(("open:read",), resources=(PARCELS.audience,)), "", None, None),
    (
        "unknown resource beats a refused scope",
        request(("persons:read",), resources=("https://api.example.nl/unknown",)),
        "invalid_target",
        None,
        "Unknown resource",
    ),
    # --- the organisation ---
    ("organisation not active", request(("open:read",), organisation=SUSPENDED), "invalid_client", None, "suspended"),
]


@pytest.mark.parametrize(("case", "req", "error", "scope", "fragment"), CASES, ids=[case[0] for case in CASES])
def test_issuance_policy(case, req, error, scope, fragment):
    decision = decide_issuance(req, catalogue=CATALOGUE, apis=APIS)
    assert decision.error == error, (case, decision)
    if not error:
        assert decision.scopes == req.scopes
        assert decision.refusals == ()
        assert decision.description == ""
        return
    assert decision.scopes == ()
    assert fragment in decision.description, decision.description
    if scope is not None:
        refused = {refusal.scope: refusal.rule for refusal in decision.refusals}
        assert fragment in refused[scope], refused
        assert f"'{scope}'" in decision.description


def test_every_refused_scope_is_named_with_its_rule():
    decision = decide_issuance(
        request(("gov:only", "open:read", "test:only", "orders:write"), organisation=LOW_SEMI),
        catalogue=CATALOGUE,
        apis=APIS,
    )
    assert decision.refusals == (
        Refusal("test:only", "not in the production environment (only test, development)"),
        Refusal("orders:write", "needs trust level substantial; the organisation has low"),
    )
    assert decision.description == (
        "Refused scope 'test:only': not in the production environment (only test, development); "
        "scope 'orders:write': needs trust level substantial; the organisation has low."
    )


# ---- the token's API: audience, format, lifetime -----------------------------------------------------


@pytest.mark.parametrize(
    ("scopes", "resources", "audiences", "token_format", "lifetime"),
    [
        # No API among the scopes: no aud, a JWT, the server's lifetime for the grant.
        (("open:read",), (), (), "jwt", 21600),
        # One API named by its scopes alone: that API.
        (("orders:read", "orders:write"), (), (ORDERS.audience,), "jwt", 600),
        (("orders:read", "open:read"), (), (ORDERS.audience,), "jwt", 600),
        # An API without a lifetime of its own: the server's.
        (("parcels:read",), (), (PARCELS.audience,), "jwt", 21600),
        (("ledger:read",), (), (LEDGER.audience,), "opaque", 300),
        # The resource chooses.
        (("orders:read",), (ORDERS.audience,), (ORDERS.audience,), "jwt", 600),
        (("open:read",), (LEDGER.audience,), (LEDGER.audience,), "opaque", 300),
        # Several resources of one format: the shortest lifetime, an API without one counting as the server's.
        (
            ("orders:read", "parcels:read"),
            (ORDERS.audience, PARCELS.audience),
            (ORDERS.audience, PARCELS.audience),
            "jwt",
            600,
        ),
        (
            ("ledger:read", "audit:read"),
            (LEDGER.audience, AUDIT.audience),
            (LEDGER.audience, AUDIT.audience),
            "opaque",
            300,
        ),
        # A repeated resource counts once.
        (("orders:read",), (ORDERS.audience, ORDERS.audience), (ORDERS.audience,), "jwt", 600),
    ],
)
def test_the_token_follows_its_api(scopes, resources, audiences, token_format, lifetime):
    decision = decide_issuance(request(scopes, resources=resources), catalogue=CATALOGUE, apis=APIS)
    assert not decision.refused, decision
    assert decision.audiences == audiences
    assert decision.token_format == token_format
    assert decision.access_token_lifetime == lifetime


def test_a_longer_api_lifetime_than_the_server_default_is_the_apis():
    long_lived = Api("https://api.example.nl/long", "Long", access_token_lifetime=7200)
    catalogue = {"long:read": ScopeRule("long:read", api=long_lived)}
    decision = decide_issuance(
        request(("long:read",), granted=frozenset({"long:read"}), default_lifetime=3600),
        catalogue=catalogue,
        apis={long_lived.audience: long_lived},
    )
    assert decision.access_token_lifetime == 7200


# ---- a client bound to network zones ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("bound", "caller", "refused"),
    [
        ((), (), False),  # not bound: anywhere
        ((), (INTERNET,), False),
        ((DIGINETWERK,), (DIGINETWERK,), False),
        ((DIGINETWERK, INTERNET), (INTERNET,), False),
        ((DIGINETWERK,), (INTERNET,), True),
        ((DIGINETWERK,), (), True),
    ],
)
def test_zone_binding(bound, caller, refused):
    reason = zone_binding_refusal("198.51.100.7", bound, caller, "production")
    assert (reason is not None) is refused
    if refused:
        assert reason == "Requests from 198.51.100.7 are outside the client's network zones (diginetwerk)."


def test_a_zone_is_its_name_in_its_environment():
    reason = zone_binding_refusal("198.51.100.7", (DIGINETWERK,), (DIGINETWERK_TEST,), "test")
    assert reason == "Requests from 198.51.100.7 are outside the client's network zones (diginetwerk (production))."
