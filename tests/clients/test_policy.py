"""The registration policy as a table: facts in, mode (or refusal with its reasons) out."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from clients import policy
from clients.policy import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    DYNAMIC,
    EXPLICIT,
    MEMBER,
    OPEN,
    WHITELIST,
    Bounds,
    OrganisationFacts,
    RegistrationRequest,
    RegistrationSettings,
    ScopeRule,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

CATALOGUE = {
    "profile:read": ScopeRule("profile:read", risk_level="low", open_registration=True),
    "weather:read": ScopeRule("weather:read", risk_level="low", open_registration=False),
    "orders:read": ScopeRule("orders:read", risk_level="medium"),
    "orders:write": ScopeRule("orders:write", risk_level="high", min_trust_level="substantial"),
    "persons:read": ScopeRule("persons:read", risk_level="high", min_trust_level="high", requires_approval=True),
    "gov:only": ScopeRule("gov:only", organisation_kinds=("government",)),
    "test:only": ScopeRule("test:only", environments=("test", "development")),
}

ACTIVE_SUBSTANTIAL = OrganisationFacts(status="active", trust_level="substantial", kind="private")
ACTIVE_HIGH_GOV = OrganisationFacts(status="active", trust_level="high", kind="government")
SUSPENDED = OrganisationFacts(status="suspended", trust_level="high", kind="government")

TOKEN = Bounds(
    source="initial access token",
    scopes=frozenset({"orders:read", "orders:write", "persons:read"}),
    redirect_hosts=frozenset({"app.example.nl"}),
    expires_at=NOW + timedelta(days=1),
)
ENTRY = Bounds(
    source="allowlist entry #1",
    scopes=frozenset({"orders:read"}),
    grant_types=frozenset({CLIENT_CREDENTIALS}),
    environments=frozenset({"production"}),
    remaining=1,
)


def request(**overrides) -> RegistrationRequest:
    values = {
        "channel": MEMBER,
        "grant_type": AUTHORIZATION_CODE,
        "scopes": ("orders:read",),
        "environment": "production",
        "redirect_uris": ("https://app.example.nl/callback",),
        "organisation": ACTIVE_SUBSTANTIAL,
        "bounds": (),
        "now": NOW,
    }
    values.update(overrides)
    return RegistrationRequest(**values)


def decide(open_enabled: bool = True, **overrides) -> policy.RegistrationDecision:
    return policy.decide_registration(
        request(**overrides), catalogue=CATALOGUE, config=RegistrationSettings(open_enabled=open_enabled)
    )


# (case, overrides, open enabled, expected mode (None: refused), expected error, a reason fragment)
CASES = [
    # --- open: anonymous dynamic registration ---
    ("open, low-risk scope", {"channel": DYNAMIC, "organisation": None, "scopes": ("profile:read",)}, True,
     OPEN, "", ""),
    ("open, no scopes at all", {"channel": DYNAMIC, "organisation": None, "scopes": ()}, True, OPEN, "", ""),
    ("open disabled", {"channel": DYNAMIC, "organisation": None, "scopes": ("profile:read",)}, False,
     None, "access_denied", "open registration is disabled"),
    ("open, medium scope", {"channel": DYNAMIC, "organisation": None, "scopes": ("profile:read", "orders:read")},
     True, None, "invalid_client_metadata", "low-risk scopes only"),
    ("open, low risk but not marked for open", {"channel": DYNAMIC, "organisation": None,
     "scopes": ("weather:read",)}, True, None, "invalid_client_metadata", "weather:read"),
    ("open, client credentials", {"channel": DYNAMIC, "organisation": None, "grant_type": CLIENT_CREDENTIALS,
     "scopes": ("profile:read",)}, True, None, "invalid_client_metadata", "may not register dynamically"),
    ("dynamic client credentials even with a token", {"channel": DYNAMIC, "grant_type": CLIENT_CREDENTIALS,
     "bounds": (TOKEN,)}, True, None, "invalid_client_metadata", "OAUTH-NL"),
    ("unknown grant type", {"grant_type": "password"}, True, None, "invalid_client_metadata", "grant type"),
    ("unknown scope", {"scopes": ("nope",)}, True, None, "invalid_client_metadata", "not in the catalogue"),
    # --- whitelist: an initial access token ---
    ("token, within bounds", {"channel": DYNAMIC, "bounds": (TOKEN,), "scopes": ("orders:read", "orders:write")},
     True, WHITELIST, "", ""),
    ("token, scope outside", {"channel": DYNAMIC, "bounds": (TOKEN,), "scopes": ("orders:read", "gov:only")},
     True, None, "invalid_client_metadata", "gov:only"),
    ("token, scope outside its bounds", {"channel": DYNAMIC, "bounds": (TOKEN,), "scopes": ("weather:read",)},
     True, EXPLICIT, "", "outside the initial access token"),
    ("token, redirect host outside", {"channel": DYNAMIC, "bounds": (TOKEN,),
     "redirect_uris": ("https://evil.example.com/cb",)}, True, EXPLICIT, "", "evil.example.com"),
    ("token, scope needing approval", {"channel": DYNAMIC, "bounds": (TOKEN,), "organisation": ACTIVE_HIGH_GOV,
     "scopes": ("persons:read",)}, True, EXPLICIT, "", "approval"),
    ("token, expired", {"channel": DYNAMIC, "bounds": (Bounds(**{**TOKEN.__dict__,
     "expires_at": NOW - timedelta(seconds=1)}),)}, True, EXPLICIT, "", "expired"),
    ("token, used up", {"channel": DYNAMIC, "bounds": (Bounds(**{**TOKEN.__dict__, "remaining": 0}),)}, True,
     EXPLICIT, "", "used up"),
    # --- whitelist: an allowlist entry ---
    ("entry, within bounds", {"grant_type": CLIENT_CREDENTIALS, "bounds": (ENTRY,)}, True, WHITELIST, "", ""),
    ("entry, wrong grant", {"bounds": (ENTRY,)}, True, EXPLICIT, "", "grant type authorization_code"),
    ("entry, wrong environment", {"grant_type": CLIENT_CREDENTIALS, "bounds": (ENTRY,), "environment": "test"},
     True, EXPLICIT, "", "environment test"),
    ("entry, full", {"grant_type": CLIENT_CREDENTIALS, "bounds": (Bounds(**{**ENTRY.__dict__, "remaining": 0}),)},
     True, EXPLICIT, "", "used up"),
    ("entry, revoked", {"grant_type": CLIENT_CREDENTIALS, "bounds": (Bounds(**{**ENTRY.__dict__,
     "revoked": True}),)}, True, EXPLICIT, "", "revoked"),
    ("second entry fits", {"grant_type": CLIENT_CREDENTIALS, "bounds": (Bounds(**{**ENTRY.__dict__,
     "remaining": 0}), ENTRY)}, True, WHITELIST, "", ""),
    # --- explicit: members of active organisations ---
    ("member, no pre-approval", {}, True, EXPLICIT, "", ""),
    ("member, client credentials", {"grant_type": CLIENT_CREDENTIALS}, False, EXPLICIT, "", ""),
    ("member, open disabled changes nothing", {"scopes": ("profile:read",)}, False, EXPLICIT, "", ""),
    # --- hard rules no review lifts ---
    ("trust level too low", {"scopes": ("persons:read",)}, True, None, "invalid_client_metadata",
     "needs trust level high"),
    ("organisation kind", {"scopes": ("gov:only",)}, True, None, "invalid_client_metadata",
     "government organisations only"),
    ("environment", {"scopes": ("test:only",)}, True, None, "invalid_client_metadata", "production environment"),
    ("environment allowed", {"scopes": ("test:only",), "environment": "test"}, True, EXPLICIT, "", ""),
    ("suspended organisation", {"organisation": SUSPENDED}, True, None, "access_denied", "suspended"),
    ("high trust government gets everything reviewed", {"organisation": ACTIVE_HIGH_GOV,
     "scopes": ("persons:read", "gov:only", "orders:write")}, True, EXPLICIT, "", ""),
]  # fmt: skip


@pytest.mark.parametrize(("overrides", "open_enabled", "mode", "error", "reason"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_registration_policy(overrides, open_enabled, mode, error, reason):
    decision = decide(open_enabled=open_enabled, **overrides)

    assert decision.mode == mode
    assert decision.error == error
    assert decision.active == (mode in (OPEN, WHITELIST))
    if reason:
        assert reason in "; ".join(decision.reasons)


def test_a_refusal_lists_every_reason():
    decision = decide(scopes=("persons:read", "gov:only", "test:only"))

    assert decision.refused
    assert len(decision.reasons) == 3


def test_the_whitelist_decision_names_the_bounds_that_matched():
    full = Bounds(**{**ENTRY.__dict__, "remaining": 0})

    decision = decide(grant_type=CLIENT_CREDENTIALS, bounds=(full, ENTRY))

    assert decision.bounds is ENTRY
