"""The facts the issuance policy needs, read once per request and cached briefly.

The token endpoint is the hot path: the catalogue rules of the requested scopes, the APIs
named by resource indicators, the network zone table of the client's environment and the
zones a client is bound to are read from the database in one query each and kept in the
Django cache (Redis in production) for AUTHSERVER_ISSUANCE_CACHE_SECONDS. Every key carries
a generation that any change to Scope, ApiResource or NetworkZone (rows or their zone and
client links) replaces, so an admin's change counts from the next request on; the lifetime
only bounds what a change made behind Django's back (a bulk ``update()``, SQL) can leave.

Keys also carry the database name: several deployments (or test workers) may share one
Redis and one cache prefix without reading each other's catalogue.
"""

from __future__ import annotations

import hashlib
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models.signals import m2m_changed, post_delete, post_save

from authserver import network
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

log = logging.getLogger(__name__)

# Part of every key: entries written by an older shape of the cached values are never read.
CACHE_VERSION = 1


def _namespace() -> str:
    return f"issuance-catalogue:v{CACHE_VERSION}:{connection.settings_dict['NAME']}"


def _generation() -> str:
    key = f"{_namespace()}:generation"
    generation = cache.get(key)
    if generation is None:
        cache.add(key, uuid.uuid4().hex, timeout=None)
        generation = cache.get(key) or "0"
    return str(generation)


def invalidate() -> None:
    """Forget every cached catalogue entry (all processes: they share the generation)."""
    try:
        cache.set(f"{_namespace()}:generation", uuid.uuid4().hex, timeout=None)
    except Exception:  # the cache is down: what it holds expires within the cache lifetime
        log.warning("could not invalidate the cached issuance catalogue", exc_info=True)


def _digest(values: Iterable[str]) -> str:
    return hashlib.sha256("\x00".join(sorted(set(values))).encode()).hexdigest()[:32]


class Snapshot:
    """The catalogue as one request sees it: one generation read, then cached lookups.

    The cache only saves queries: when it fails, the facts come from the database.
    """

    def __init__(self) -> None:
        self.ttl = settings.AUTHSERVER_ISSUANCE_CACHE_SECONDS
        self._prefix = ""
        self._memo: dict[str, Any] = {}

    def _key(self, kind: str, part: str) -> str:
        if not self._prefix:
            self._prefix = f"{_namespace()}:{_generation()}"
        return f"{self._prefix}:{kind}:{part}"

    def _cached(self, requests: dict[str, tuple[str, str, Any]]) -> dict[str, Any]:
        """``{name: (kind, key part, loader)}`` -> ``{name: value}``: memo, then cache, then loader."""
        found = {
            name: self._memo[kind + part] for name, (kind, part, _) in requests.items() if kind + part in self._memo
        }
        wanted = {name: spec for name, spec in requests.items() if name not in found}
        if wanted and self.ttl > 0:
            try:
                keys = {name: self._key(kind, part) for name, (kind, part, _) in wanted.items()}
                hits = cache.get_many(list(keys.values()))
            except Exception:
                log.warning("issuance catalogue cache unavailable; reading the database", exc_info=True)
                self.ttl = 0
            else:
                for name, key in keys.items():
                    if key in hits:
                        found[name] = hits[key]
        missing = {name: spec for name, spec in wanted.items() if name not in found}
        for name, (_kind, _part, loader) in missing.items():
            found[name] = loader()
        if missing and self.ttl > 0:
            entries = {self._key(kind, part): found[name] for name, (kind, part, _) in missing.items()}
            try:
                cache.set_many(entries, self.ttl)
            except Exception:
                log.warning("issuance catalogue cache unavailable; not caching", exc_info=True)
        for name, (kind, part, _) in requests.items():
            self._memo[kind + part] = found[name]
        return found

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
        """The catalogue rules of ``scopes`` (absent: not in the catalogue) and the APIs by audience."""
        names = sorted(set(scopes))
        resources = sorted(set(audiences))
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


# ---- invalidation ----------------------------------------------------------------------


def _changed(**kwargs: Any) -> None:
    # Now, so this process and others stop reading the old entries at once; and again after
    # the commit, in case a request re-read the old rows in between.
    invalidate()
    transaction.on_commit(invalidate, robust=True)


for _model in (Scope, ApiResource, NetworkZone):
    post_save.connect(_changed, sender=_model, dispatch_uid=f"issuance-catalogue-save-{_model.__name__}")
    post_delete.connect(_changed, sender=_model, dispatch_uid=f"issuance-catalogue-delete-{_model.__name__}")
for _through in (Scope.allowed_zones.through, NetworkZone.clients.through):
    m2m_changed.connect(_changed, sender=_through, dispatch_uid=f"issuance-catalogue-m2m-{_through.__name__}")
