"""The facts the issuance policy needs, read once per process and generation.

The token endpoint is the hot path: the catalogue rules of the requested scopes, the APIs
named by resource indicators, the network zone table of the client's environment and the
zones a client is bound to are read from the database in one query each and kept in the
process (authserver/hotcache.py) for the current generation, which any change to Scope,
ApiResource or NetworkZone (rows or their zone and client links) replaces in every process:
an admin's change counts from the next request on. ``AUTHSERVER_ISSUANCE_CACHE_SECONDS``
bounds what a change made behind Django's back (a bulk ``update()``, SQL) can leave; 0 turns
the copies off.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from typing import Any

from django.conf import settings

from authserver import hotcache, network
from authserver.models import ApiResource, NetworkZone, Scope
from authserver.policy import (
    AUTHORIZATION_CODE,
    CLIENT_CREDENTIALS,
    Api,
    ClientFacts,
    IssuanceDecision,
    IssuanceRequest,
    OrganisationFacts,
    ScopeRule,
    Zone,
    decide_issuance,
)
from clients.models import Client

__all__ = ["Snapshot", "decide", "invalidate"]


def invalidate() -> None:
    """Forget every copy of the catalogue, in every process (they share the generation)."""
    hotcache.bump()


def _digest(values: Iterable[str]) -> str:
    return hashlib.sha256("\x00".join(sorted(set(values))).encode()).hexdigest()[:32]


class Snapshot:
    """The catalogue as one request sees it: process-local copies, else one query per fact."""

    def __init__(self) -> None:
        self.ttl = settings.AUTHSERVER_ISSUANCE_CACHE_SECONDS

    def _cached(self, requests: dict[str, tuple[str, str, Any]]) -> dict[str, Any]:
        """``{name: (kind, key part, loader)}`` -> ``{name: value}``."""
        if self.ttl <= 0:
            return {name: loader() for name, (_kind, _part, loader) in requests.items()}
        return {
            name: hotcache.local(f"issuance-{kind}", part, loader) for name, (kind, part, loader) in requests.items()
        }

    # ---- lookups -----------------------------------------------------------------------

    def bound_zones(self, client_pk: int) -> tuple[Zone, ...]:
        """The zones a client is bound to; empty: not bound."""
        return self._cached({"bound": ("bound", str(client_pk), lambda: _load_bound_zones(client_pk))})["bound"]

    def zone_table(self, environment: str) -> tuple[tuple[Zone, tuple[str, ...]], ...]:
        return self._cached({"zones": ("zones", environment, lambda: _load_zone_table(environment))})["zones"]

    def caller_zones(self, address: str | None, environment: str) -> tuple[Zone, ...]:
        """The zones of ``environment`` whose networks contain ``address``."""
        if not address:
            return ()
        return network.zones_containing(address, self.zone_table(environment))

    def rules_and_apis(
        self, scopes: Iterable[str], audiences: Iterable[str]
    ) -> tuple[dict[str, ScopeRule], dict[str, Api]]:
        """The catalogue rules of ``scopes`` (absent: not in the catalogue) and the APIs by audience.

        A value with a NUL character is in no catalogue (PostgreSQL text cannot hold one, and
        asking for it is a DataError): it is left out of the queries, so the policy refuses it
        as an unknown scope or resource instead of the request failing."""
        names = sorted({name for name in scopes if "\x00" not in name})
        resources = sorted({audience for audience in audiences if "\x00" not in audience})
        requests: dict[str, tuple[str, str, Any]] = {"rules": ("rules", _digest(names), lambda: _load_rules(names))}
        if resources:
            requests["apis"] = ("apis", _digest(resources), lambda: _load_apis(resources))
        found = self._cached(requests)
        return found["rules"], found.get("apis", {})


def decide(
    *,
    client: Client,
    scopes: Iterable[str],
    resources: Iterable[str],
    address: str | None,
    default_lifetime: int,
    snapshot: Snapshot | None = None,
) -> IssuanceDecision:
    """The issuance policy's decision for ``client``, with its facts as they are now."""
    snapshot = snapshot or Snapshot()
    scopes, resources = tuple(scopes), tuple(resources)
    rules, apis = snapshot.rules_and_apis(scopes, resources)
    zones: tuple[Zone, ...] = ()
    if any(rules[name].zones for name in scopes if name in rules):
        zones = snapshot.caller_zones(address, client.environment)
    organisation = client.organisation
    return decide_issuance(
        IssuanceRequest(
            scopes=scopes,
            client=ClientFacts(
                granted_scopes=frozenset(client.scopes),
                environment=client.environment,
                grant_type=(
                    CLIENT_CREDENTIALS
                    if client.authorization_grant_type == Client.GRANT_CLIENT_CREDENTIALS
                    else AUTHORIZATION_CODE
                ),
            ),
            organisation=OrganisationFacts(
                status=organisation.status, trust_level=organisation.trust_level, kind=organisation.kind
            ),
            zones=zones,
            resources=resources,
            default_lifetime=default_lifetime,
        ),
        catalogue=rules,
        apis=apis,
    )


# ---- loaders: one query each -----------------------------------------------------------


def _api(audience: str | None, name: str | None, token_format: str | None, lifetime: int | None) -> Api | None:
    if audience is None:
        return None
    return Api(
        audience=audience, name=name or audience, token_format=token_format or "jwt", access_token_lifetime=lifetime
    )


def _load_rules(names: list[str]) -> dict[str, ScopeRule]:
    if not names:
        return {}
    rows = Scope.objects.filter(name__in=names).values_list(
        "name",
        "min_trust_level",
        "allowed_organisation_kinds",
        "allowed_environments",
        "api__audience",
        "api__name",
        "api__token_format",
        "api__access_token_lifetime",
        "allowed_zones__name",
        "allowed_zones__environment",
    )
    fields: dict[str, dict[str, Any]] = {}
    for name, trust, kinds, environments, audience, api_name, token_format, lifetime, zone, zone_env in rows:
        entry = fields.setdefault(
            name,
            {
                "name": name,
                "min_trust_level": trust,
                "organisation_kinds": tuple(kinds or ()),
                "environments": tuple(environments or ()),
                "api": _api(audience, api_name, token_format, lifetime),
                "zones": [],
            },
        )
        if zone is not None:
            entry["zones"].append(Zone(zone, zone_env))
    return {
        name: ScopeRule(**{**entry, "zones": tuple(sorted(set(entry["zones"]), key=str))})
        for name, entry in fields.items()
    }


def _load_apis(audiences: list[str]) -> dict[str, Api]:
    rows = ApiResource.objects.filter(audience__in=audiences).values_list(
        "audience", "name", "token_format", "access_token_lifetime"
    )
    return {row[0]: api for row in rows if (api := _api(*row)) is not None}


def _load_zone_table(environment: str) -> tuple[tuple[Zone, tuple[str, ...]], ...]:
    rows = NetworkZone.objects.filter(environment=environment).values_list("name", "environment", "cidrs")
    return tuple((Zone(name, env), tuple(str(cidr) for cidr in (cidrs or ()))) for name, env, cidrs in rows)


def _load_bound_zones(client_pk: int) -> tuple[Zone, ...]:
    rows = NetworkZone.objects.filter(clients=client_pk).values_list("name", "environment")
    return tuple(Zone(name, env) for name, env in rows)
