"""The registration policy: which mode a new client starts in, and with which scopes.

One pure function over plain facts (no database, no settings), so the table of cases in
tests/clients/test_policy.py is the specification. clients.services gathers the facts,
calls ``decide_registration`` and carries the decision out (docs/decisions/0008).

The modes (DESIGN.md, step 2):
- ``whitelist``: an initial access token (RFC 7591 §3) or an allowlist entry pre-approves
  registrations within its bounds; the client is active at once.
- ``explicit``: an organisation's member asks; an admin reviews. Requests outside a
  whitelist's bounds fall back to this, with the reason recorded.
- ``open``: anyone registers an authorization-code client with low-risk scopes, no review.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

OPEN = "open"
WHITELIST = "whitelist"
EXPLICIT = "explicit"

AUTHORIZATION_CODE = "authorization_code"
CLIENT_CREDENTIALS = "client_credentials"
GRANT_TYPES = (AUTHORIZATION_CODE, CLIENT_CREDENTIALS)

# Where a registration comes from: the RFC 7591 endpoint, or a signed-in member (portal, API).
DYNAMIC = "dynamic"
MEMBER = "member"

TRUST_ORDER = {"low": 0, "substantial": 1, "high": 2}


@dataclass(frozen=True)
class ScopeRule:
    """What the catalogue says about one scope (authserver.models.Scope)."""

    name: str
    risk_level: str = "medium"
    open_registration: bool = False
    requires_approval: bool = False
    min_trust_level: str = "low"
    organisation_kinds: tuple[str, ...] = ()
    environments: tuple[str, ...] = ()


@dataclass(frozen=True)
class OrganisationFacts:
    status: str
    trust_level: str
    kind: str


@dataclass(frozen=True)
class Bounds:
    """A pre-approval: an initial access token or an allowlist entry."""

    source: str  # "initial access token" / "allowlist entry", for the reasons
    scopes: frozenset[str]
    redirect_hosts: frozenset[str] = frozenset()  # empty: any host
    grant_types: frozenset[str] = frozenset()  # empty: both
    environments: frozenset[str] = frozenset()  # empty: any
    expires_at: datetime | None = None
    remaining: int = 1  # uses left (token) or clients left (entry)
    revoked: bool = False


@dataclass(frozen=True)
class RegistrationRequest:
    channel: str  # DYNAMIC or MEMBER
    grant_type: str
    scopes: tuple[str, ...]
    environment: str
    redirect_uris: tuple[str, ...] = ()
    organisation: OrganisationFacts | None = None
    bounds: tuple[Bounds, ...] = ()
    now: datetime | None = None


@dataclass(frozen=True)
class RegistrationSettings:
    open_enabled: bool


@dataclass(frozen=True)
class RegistrationDecision:
    """``mode`` is None when refused; ``error`` is then the RFC 7591 error code."""

    mode: str | None
    active: bool = False
    reasons: tuple[str, ...] = ()
    error: str = ""
    bounds: Bounds | None = field(default=None, compare=False)

    @property
    def refused(self) -> bool:
        return self.mode is None


def _refuse(reason: str, error: str = "invalid_client_metadata") -> RegistrationDecision:
    return RegistrationDecision(mode=None, reasons=(reason,), error=error)


def scope_refusals(
    scopes: tuple[str, ...],
    catalogue: Mapping[str, ScopeRule],
    organisation: OrganisationFacts | None,
    environment: str,
) -> list[str]:
    """The hard rules no review can lift: unknown scopes, trust level, organisation kind, environment."""
    reasons = []
    for name in scopes:
        rule = catalogue.get(name)
        if rule is None:
            reasons.append(f"scope {name!r} is not in the catalogue")
            continue
        if organisation is not None:
            if TRUST_ORDER.get(organisation.trust_level, -1) < TRUST_ORDER.get(rule.min_trust_level, 0):
                reasons.append(
                    f"scope {name!r} needs trust level {rule.min_trust_level}; "
                    f"the organisation has {organisation.trust_level}"
                )
            if rule.organisation_kinds and organisation.kind not in rule.organisation_kinds:
                reasons.append(f"scope {name!r} is for {', '.join(rule.organisation_kinds)} organisations only")
        if rule.environments and environment not in rule.environments:
            reasons.append(f"scope {name!r} is not available in the {environment} environment")
    return reasons


def _outside(request: RegistrationRequest, bounds: Bounds, catalogue: Mapping[str, ScopeRule]) -> list[str]:
    """Why a request does not fit a pre-approval; empty when it fits."""
    reasons = []
    if bounds.revoked:
        return [f"the {bounds.source} is revoked"]
    if bounds.expires_at is not None and request.now is not None and bounds.expires_at <= request.now:
        return [f"the {bounds.source} has expired"]
    if bounds.remaining <= 0:
        return [f"the {bounds.source} is used up"]
    extra = [s for s in request.scopes if s not in bounds.scopes]
    if extra:
        reasons.append(f"scopes {' '.join(extra)} are outside the {bounds.source}")
    if bounds.grant_types and request.grant_type not in bounds.grant_types:
        reasons.append(f"grant type {request.grant_type} is outside the {bounds.source}")
    if bounds.environments and request.environment not in bounds.environments:
        reasons.append(f"environment {request.environment} is outside the {bounds.source}")
    if bounds.redirect_hosts:
        hosts = sorted({urlsplit(uri).hostname or "" for uri in request.redirect_uris} - bounds.redirect_hosts)
        if hosts:
            reasons.append(f"redirect hosts {' '.join(hosts)} are outside the {bounds.source}")
    needs_review = [s for s in request.scopes if (rule := catalogue.get(s)) is not None and rule.requires_approval]
    if needs_review:
        reasons.append(f"scopes {' '.join(needs_review)} always need an administrator's approval")
    return reasons


def decide_registration(
    request: RegistrationRequest, *, catalogue: Mapping[str, ScopeRule], config: RegistrationSettings
) -> RegistrationDecision:
    """Decide the mode of a new client: whitelist, explicit, open, or refused with the reasons."""
    if request.grant_type not in GRANT_TYPES:
        return _refuse(f"grant type must be one of {', '.join(GRANT_TYPES)} (one per client)")
    if request.channel == DYNAMIC and request.grant_type == CLIENT_CREDENTIALS:
        # OAUTH-NL §3.1.3: client-credentials clients must not register dynamically.
        return _refuse("client_credentials clients may not register dynamically (OAUTH-NL §3.1.3)")
    organisation = request.organisation
    if organisation is not None and organisation.status != "active":
        return _refuse(f"the organisation is {organisation.status}, not active", error="access_denied")
    hard = scope_refusals(request.scopes, catalogue, organisation, request.environment)
    if hard:
        return RegistrationDecision(mode=None, reasons=tuple(hard), error="invalid_client_metadata")

    fallback_reasons: list[str] = []
    for bounds in request.bounds:
        outside = _outside(request, bounds, catalogue)
        if not outside:
            return RegistrationDecision(mode=WHITELIST, active=True, bounds=bounds)
        fallback_reasons.extend(outside)

    if organisation is None:
        # Anonymous: open mode or nothing.
        if not config.open_enabled:
            return _refuse(
                "open registration is disabled; use an initial access token (RFC 7591 §3)", error="access_denied"
            )
        if request.grant_type != AUTHORIZATION_CODE:
            return _refuse("open registration is for authorization_code clients only")
        not_open = [s for s in request.scopes if not catalogue[s].open_registration or catalogue[s].risk_level != "low"]
        if not_open:
            return _refuse(f"open registration may not get scopes {' '.join(not_open)} (low-risk scopes only)")
        return RegistrationDecision(mode=OPEN, active=True)

    # A known, active organisation outside any pre-approval: an administrator reviews it.
    return RegistrationDecision(mode=EXPLICIT, active=False, reasons=tuple(fallback_reasons), bounds=None)
