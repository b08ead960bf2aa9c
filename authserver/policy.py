"""The issuance policy: which of the requested scopes a token may carry, and for which API.

One pure function over plain facts (no database, no settings), like the registration policy
(clients/policy.py), so the table of cases in tests/authserver/test_issuance_policy.py is
the specification. The validator (authserver/oauth/validator.py) gathers the facts through
authserver/oauth/issuance.py, calls ``decide_issuance`` and raises what it decides
(docs/decisions/0009).

The rules, per requested scope, first failing rule reported:
1. the client was granted it (``client.scope``); OpenID Connect scopes never on
   client_credentials (no end user);
2. the organisation's current trust level reaches the scope's minimum;
3. the organisation's kind is one the scope allows;
4. the client's environment is one the scope allows;
5. the caller's network zone is one the scope allows;
6. with resource indicators (RFC 8707), the scope belongs to one of the requested APIs.

Scopes not in the catalogue are governed by the client grant alone (rule 1): the catalogue
may be incomplete while clients registered before it migrate (decision 0009).

A refused scope fails the whole request with ``invalid_scope`` (RFC 6749 §5.2); nothing is
silently narrowed. Resources name APIs by their audience; an unknown one is
``invalid_target`` (RFC 8707 §2), as is a request whose scopes span several APIs without a
resource to choose one.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from clients.policy import TRUST_ORDER, OrganisationFacts

__all__ = [
    "Api",
    "ClientFacts",
    "IssuanceDecision",
    "IssuanceRequest",
    "OrganisationFacts",
    "Refusal",
    "ScopeRule",
    "Zone",
    "decide_issuance",
    "zone_binding_refusal",
]

AUTHORIZATION_CODE = "authorization_code"
CLIENT_CREDENTIALS = "client_credentials"
OIDC_SCOPES = frozenset({"openid", "profile", "email", "address", "phone", "offline_access"})

JWT = "jwt"
OPAQUE = "opaque"

INVALID_SCOPE = "invalid_scope"
INVALID_TARGET = "invalid_target"  # RFC 8707 §2
INVALID_CLIENT = "invalid_client"


@dataclass(frozen=True)
class Zone:
    """A network zone (authserver.models.NetworkZone): names are unique per environment."""

    name: str
    environment: str

    def __str__(self) -> str:
        return self.name


@dataclass(frozen=True)
class Api:
    """An API resource (authserver.models.ApiResource) as a token sees it."""

    audience: str
    name: str
    token_format: str = JWT
    access_token_lifetime: int | None = None  # seconds; None: the server's for the grant


@dataclass(frozen=True)
class ScopeRule:
    """What the catalogue says about one scope (authserver.models.Scope) at issuance."""

    name: str
    min_trust_level: str = "low"
    organisation_kinds: tuple[str, ...] = ()  # empty: every kind
    environments: tuple[str, ...] = ()  # empty: every environment
    zones: tuple[Zone, ...] = ()  # empty: from anywhere
    api: Api | None = None


@dataclass(frozen=True)
class ClientFacts:
    granted_scopes: frozenset[str]
    environment: str
    grant_type: str  # the client's one grant: AUTHORIZATION_CODE or CLIENT_CREDENTIALS


@dataclass(frozen=True)
class IssuanceRequest:
    scopes: tuple[str, ...]
    client: ClientFacts
    organisation: OrganisationFacts
    zones: tuple[Zone, ...] = ()  # the zones of the client's environment the caller is in
    resources: tuple[str, ...] = ()  # RFC 8707 resource indicators, as requested
    default_lifetime: int = 3600  # seconds: the server's access token lifetime for this grant


@dataclass(frozen=True)
class Refusal:
    scope: str
    rule: str

    def __str__(self) -> str:
        return f"scope {self.scope!r}: {self.rule}"


@dataclass(frozen=True)
class IssuanceDecision:
    """``error`` is empty when granted; otherwise the OAuth error code and its description.

    When granted: ``apis`` are the APIs the token is for (its ``aud``); ``token_format`` and
    ``access_token_lifetime`` follow from them: the shortest of their lifetimes, an API
    without one counting as the server's lifetime for the grant.
    """

    scopes: tuple[str, ...] = ()
    refusals: tuple[Refusal, ...] = ()
    error: str = ""
    description: str = ""
    apis: tuple[Api, ...] = ()
    token_format: str = JWT
    access_token_lifetime: int = 0

    @property
    def refused(self) -> bool:
        return bool(self.error)

    @property
    def audiences(self) -> tuple[str, ...]:
        return tuple(api.audience for api in self.apis)


def _refuse(error: str, description: str, refusals: tuple[Refusal, ...] = ()) -> IssuanceDecision:
    return IssuanceDecision(error=error, description=description, refusals=refusals)


def _kind(kind: str) -> str:
    return kind.replace("_", "-")


def _names(zones: tuple[Zone, ...], environment: str) -> str:
    """Zone names; a zone of another environment than the client's says which."""
    labels = {zone.name if zone.environment == environment else f"{zone.name} ({zone.environment})" for zone in zones}
    return ", ".join(sorted(labels)) or "none"


def _scope_refusal(
    name: str, rule: ScopeRule | None, request: IssuanceRequest, chosen: Mapping[str, Api] | None
) -> str | None:
    """The first rule that refuses scope ``name``, or None when it may be issued."""
    client, organisation = request.client, request.organisation
    if name not in client.granted_scopes:
        return "not granted to this client"
    if client.grant_type == CLIENT_CREDENTIALS and name in OIDC_SCOPES:
        return "an OpenID Connect scope needs an end user; not with client_credentials"
    if rule is None:
        return None  # not in the catalogue: the client grant alone decides (decision 0009)
    if TRUST_ORDER.get(organisation.trust_level, -1) < TRUST_ORDER.get(rule.min_trust_level, 0):
        return f"needs trust level {rule.min_trust_level}; the organisation has {organisation.trust_level}"
    if rule.organisation_kinds and organisation.kind not in rule.organisation_kinds:
        allowed = ", ".join(_kind(kind) for kind in rule.organisation_kinds)
        return f"not for {_kind(organisation.kind)} organisations (only {allowed})"
    if rule.environments and client.environment not in rule.environments:
        return f"not in the {client.environment} environment (only {', '.join(rule.environments)})"
    if rule.zones and not set(rule.zones) & set(request.zones):
        env = client.environment
        where = f"network zone {_names(request.zones, env)}" if request.zones else "outside its network zones"
        return f"not from {where} (only from {_names(rule.zones, env)})"
    if chosen is not None and rule.api is not None and rule.api.audience not in chosen:
        return f"belongs to API {rule.api.name}, not to the requested resource"
    return None


def decide_issuance(
    request: IssuanceRequest, *, catalogue: Mapping[str, ScopeRule], apis: Mapping[str, Api]
) -> IssuanceDecision:
    """Grant every requested scope or refuse the request, saying which rule refused what.

    ``catalogue`` holds the rules of (at least) the requested scopes; ``apis`` the APIs by
    audience (at least the requested resources).
    """
    organisation = request.organisation
    if organisation.status != "active":
        # Unreachable through the validator (an inactive organisation's clients do not
        # authenticate), kept so the function is right on its own.
        return _refuse(INVALID_CLIENT, f"The client's organisation is {organisation.status}, not active.")

    resources = tuple(dict.fromkeys(request.resources))
    unknown = [resource for resource in resources if resource not in apis]
    if unknown:
        return _refuse(
            INVALID_TARGET,
            f"Unknown resource {', '.join(unknown)}: a resource indicator must be the audience of an API "
            "in this server's catalogue (RFC 8707 §2).",
        )
    chosen = {resource: apis[resource] for resource in resources} if resources else None

    scopes = tuple(dict.fromkeys(request.scopes))
    refusals = tuple(
        Refusal(name, reason)
        for name in scopes
        if (reason := _scope_refusal(name, catalogue.get(name), request, chosen)) is not None
    )
    if refusals:
        return _refuse(INVALID_SCOPE, "Refused " + "; ".join(str(refusal) for refusal in refusals) + ".", refusals)

    if chosen is not None:
        selected = tuple(chosen.values())
    else:
        # No resource: the API of the scopes, when they name exactly one (decision 0009).
        by_audience: dict[str, Api] = {}
        for name in scopes:
            rule = catalogue.get(name)
            if rule is not None and rule.api is not None:
                by_audience.setdefault(rule.api.audience, rule.api)
        if len(by_audience) > 1:
            spread = "; ".join(
                f"{api.name} ({', '.join(s for s in scopes if (r := catalogue.get(s)) and r.api == api)})"
                for api in sorted(by_audience.values(), key=lambda api: api.name)
            )
            return _refuse(
                INVALID_TARGET,
                f"The requested scopes belong to several APIs: {spread}. Ask for one API's token at a time "
                "with the resource parameter (RFC 8707).",
            )
        selected = tuple(by_audience.values())

    formats = {api.token_format for api in selected}
    if len(formats) > 1:
        return _refuse(
            INVALID_TARGET,
            "The requested resources have different token formats ("
            + ", ".join(f"{api.name}: {api.token_format}" for api in selected)
            + "); ask for one token per resource.",
        )
    lifetimes = [api.access_token_lifetime or request.default_lifetime for api in selected]
    return IssuanceDecision(
        scopes=scopes,
        apis=selected,
        token_format=formats.pop() if formats else JWT,
        access_token_lifetime=min(lifetimes, default=request.default_lifetime),
    )


def zone_binding_refusal(
    address: str | None, bound: tuple[Zone, ...], caller: tuple[Zone, ...], environment: str
) -> str | None:
    """A client bound to network zones is served only from an address in one of them.

    ``bound`` are the client's zones (empty: not bound), ``caller`` the zones of the client's
    ``environment`` the address is in. Returns the reason to refuse, or None.
    """
    if not bound or set(bound) & set(caller):
        return None
    zones = _names(bound, environment)
    return f"Requests from {address or 'an unknown address'} are outside the client's network zones ({zones})."
