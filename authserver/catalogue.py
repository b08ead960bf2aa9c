"""The API catalogue: importing an API's OpenAPI document, and the public catalogue's data.

``api_import_openapi`` fills an API's endpoints and their required scopes from an OpenAPI 3.0
or 3.1 document (OAUTH-NL §4: each API documents the scopes every endpoint needs).
``catalogue_document`` reads the rows the server enforces with (Scope, ApiResource,
Endpoint, NetworkZone) into the one document that /apis/, /apis/<slug>/ and /apis.json
render, so what is published is what is enforced.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

import yaml
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Prefetch, QuerySet

from .audit import audit_record
from .errors import DomainError
from .models import ApiResource, Endpoint, NetworkZone, Scope

# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), printable ASCII but space, " and \.
SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")
# The largest OpenAPI document the import reads (the command and the admin upload).
MAX_DOCUMENT_BYTES = 5 * 1024 * 1024
# OpenAPI 3.x Path Item fields that are not operations (OpenAPI 3.1 §4.8.9).
_PATH_ITEM_FIELDS = frozenset({"summary", "description", "servers", "parameters"})
_OPENAPI_VERSION = re.compile(r"3\.[01](\.\d+)?(-[0-9A-Za-z.-]+)?")
_OAUTH_SCHEME_TYPES = frozenset({"oauth2", "openIdConnect"})
_SUMMARY_MAX = Endpoint._meta.get_field("summary").max_length or 512
_PATH_MAX = Endpoint._meta.get_field("path").max_length or 1024
_SCOPE_NAME_MAX = Scope._meta.get_field("name").max_length or 128
_LISTED_MAX = 200  # names per list in the audit row


# --- OpenAPI import --------------------------------------------------------------------------


@dataclass
class ImportResult:
    """What an import did; the lists hold "METHOD /path" operations and scope names."""

    api: ApiResource
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    scopes_created: list[str] = field(default_factory=list)
    scopes_claimed: list[str] = field(default_factory=list)
    # Scopes the server itself defines (OIDC's openid, profile, ...): not catalogue scopes.
    scopes_ignored: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.removed or self.scopes_created or self.scopes_claimed)

    def summary(self) -> str:
        text = (
            f"{len(self.created)} endpoints created, {len(self.updated)} updated, "
            f"{len(self.unchanged)} unchanged, {len(self.removed)} removed; "
            f"{len(self.scopes_created)} scopes created"
        )
        if self.scopes_claimed:
            text += f", {len(self.scopes_claimed)} claimed for this API ({', '.join(self.scopes_claimed)})"
        if self.removed:
            text += f". Removed: {', '.join(self.removed)}"
        if self.scopes_ignored:
            text += f". Not catalogue scopes, ignored: {', '.join(self.scopes_ignored)}"
        return text + "."


@dataclass(frozen=True)
class _Operation:
    method: str
    path: str
    summary: str
    scopes: tuple[str, ...]


def load_openapi(document: dict[str, Any] | str | bytes) -> dict[str, Any]:
    """The document as a mapping: JSON or YAML text (UTF-8), or an already parsed dict."""
    if isinstance(document, dict):
        return document
    if isinstance(document, bytes):
        if len(document) > MAX_DOCUMENT_BYTES:
            raise DomainError(f"The document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.")
        try:
            document = document.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise DomainError("The document is not UTF-8 text.") from exc
    if not isinstance(document, str):
        raise DomainError("The document is neither JSON nor YAML text.")
    if len(document) > MAX_DOCUMENT_BYTES:
        raise DomainError(f"The document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.")
    text = document.lstrip("\ufeff").strip()
    if not text:
        raise DomainError("The document is empty.")
    if text.startswith(("{", "[")):
        try:
            parsed = json.loads(text)
        except json.JSONDecodeError as exc:
            raise DomainError(
                f"The document is not valid JSON: {exc.msg} (line {exc.lineno}, column {exc.colno})."
            ) from exc
    else:
        try:
            parsed = yaml.safe_load(text)  # safe_load: plain data only, never Python objects
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
            problem = getattr(exc, "problem", None) or "unreadable"
            raise DomainError(f"The document is not valid YAML: {problem}{where}.") from exc
    if not isinstance(parsed, dict):
        raise DomainError("The document is not an OpenAPI document: its top level is not a mapping.")
    return parsed


def _resolve(document: dict[str, Any], value: Any, where: str) -> Any:
    """Follow local references (``#/components/...``); other references are refused."""
    seen: set[str] = set()
    while isinstance(value, dict) and "$ref" in value:
        ref = value["$ref"]
        if not isinstance(ref, str) or not ref.startswith("#/"):
            raise DomainError(f"{where}: only references within the document (#/...) are supported, not {ref!r}.")
        if ref in seen:
            raise DomainError(f"{where}: the reference {ref} refers to itself.")
        seen.add(ref)
        value = document
        for part in ref[2:].split("/"):
            part = part.replace("~1", "/").replace("~0", "~")
            if not isinstance(value, dict) or part not in value:
                raise DomainError(f"{where}: the reference {ref} points at nothing.")
            value = value[part]
    return value


def _security_schemes(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    components = document.get("components") or {}
    if not isinstance(components, dict):
        raise DomainError("components is not a mapping.")
    schemes = components.get("securitySchemes") or {}
    if not isinstance(schemes, dict):
        raise DomainError("components.securitySchemes is not a mapping.")
    resolved: dict[str, dict[str, Any]] = {}
    for name, scheme in schemes.items():
        scheme = _resolve(document, scheme, f"security scheme {name}")
        if not isinstance(scheme, dict) or not isinstance(scheme.get("type"), str):
            raise DomainError(f"Security scheme {name} has no type.")
        resolved[str(name)] = scheme
    return resolved


def _scope_descriptions(schemes: dict[str, dict[str, Any]]) -> dict[str, str]:
    """Scope name -> description from every OAuth 2.0 flow's ``scopes`` map."""
    descriptions: dict[str, str] = {}
    for name, scheme in schemes.items():
        if scheme["type"] != "oauth2":
            continue
        flows = scheme.get("flows") or {}
        if not isinstance(flows, dict):
            raise DomainError(f"Security scheme {name}: flows is not a mapping.")
        for flow_name, flow in flows.items():
            scopes = flow.get("scopes") if isinstance(flow, dict) else None
            if scopes is None:
                continue
            if not isinstance(scopes, dict):
                raise DomainError(f"Security scheme {name}, flow {flow_name}: scopes is not a mapping.")
            for scope, description in scopes.items():
                if str(scope) not in descriptions or not descriptions[str(scope)]:
                    descriptions[str(scope)] = str(description or "").strip()
    return descriptions


def _required_scopes(security: Any, schemes: dict[str, dict[str, Any]], where: str) -> tuple[str, ...]:
    """The scopes of the OAuth 2.0 / OIDC schemes in a security requirement list.

    A requirement list offers alternatives (any one suffices); within one, every scheme and
    every scope is needed. An Endpoint holds one set of scopes that every call needs (and
    resource servers enforce them so, see authserver_rs), so alternatives that name
    different OAuth scopes cannot be recorded faithfully and are refused. An alternative
    without OAuth scopes (an API key, mutual TLS, ``{}``) does not lift the OAuth one's.
    """
    if not isinstance(security, list):
        raise DomainError(f"{where}: security is not a list of security requirements.")
    alternatives: list[tuple[str, ...]] = []
    for requirement in security:
        if not isinstance(requirement, dict):
            raise DomainError(f"{where}: a security requirement is not a mapping.")
        names: list[str] = []
        for scheme_name, scopes in requirement.items():
            scheme = schemes.get(str(scheme_name))
            if scheme is None:
                raise DomainError(
                    f"{where}: the security scheme {scheme_name} is not defined in components.securitySchemes."
                )
            if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
                raise DomainError(f"{where}: the scopes of {scheme_name} are not a list of names.")
            if scheme["type"] not in _OAUTH_SCHEME_TYPES:
                continue  # API keys, HTTP auth, mutual TLS: no OAuth scopes
            for scope in scopes:
                if len(scope) > _SCOPE_NAME_MAX or not SCOPE_TOKEN.fullmatch(scope):
                    raise DomainError(
                        f"{where}: {scope!r} is not a scope name (printable ASCII without spaces, quotes or "
                        f"backslashes, RFC 6749 §3.3; at most {_SCOPE_NAME_MAX} characters)."
                    )
                if scope not in names:
                    names.append(scope)
        if names and all(set(names) != set(other) for other in alternatives):
            alternatives.append(tuple(names))
    if len(alternatives) > 1:
        offered = " or ".join("[" + " ".join(names) + "]" for names in alternatives)
        raise DomainError(
            f"{where}: its security requirements offer different scopes as alternatives ({offered}); the catalogue "
            "records one set of scopes that every call needs. Give the operation one OAuth requirement."
        )
    return alternatives[0] if alternatives else ()


def parse_operations(document: dict[str, Any]) -> tuple[list[_Operation], dict[str, str]]:
    """Every operation of an OpenAPI 3.0/3.1 document, and the scope descriptions it gives."""
    version = document.get("openapi")
    # "3.1.0" as the specification writes it; a bare 3.1 (a YAML number) is read kindly.
    if not isinstance(version, str | float) or not _OPENAPI_VERSION.fullmatch(str(version)):
        if version is not None:
            found = f"openapi: {version}"
        elif "swagger" in document:
            found = f"swagger: {document['swagger']}; convert it to OpenAPI 3 first"
        else:
            found = "it has no openapi field"
        raise DomainError(f"Not an OpenAPI 3.0 or 3.1 document ({found}).")
    paths = document.get("paths")
    if not isinstance(paths, dict) or not paths:
        raise DomainError("The document has no paths: there are no endpoints to import.")
    schemes = _security_schemes(document)
    top_level = document.get("security", [])
    default_scopes = _required_scopes(top_level, schemes, "the top-level security")
    methods = {method.lower() for method in Endpoint.Method.values}
    operations: list[_Operation] = []
    for path, item in paths.items():
        if not isinstance(path, str) or not path.startswith("/"):
            raise DomainError(f"The path {path!r} does not start with a slash.")
        if len(path) > _PATH_MAX:
            raise DomainError(f"The path {path[:60]}… is longer than {_PATH_MAX} characters.")
        if not isinstance(item, dict):
            raise DomainError(f"The path {path} is not a mapping of operations.")
        if "$ref" in item:
            raise DomainError(f"The path {path} is a reference ($ref); bundle the document into one file first.")
        for key, operation in item.items():
            if not isinstance(key, str) or key.startswith("x-") or key in _PATH_ITEM_FIELDS:
                continue
            if key not in methods:
                supported = ", ".join(Endpoint.Method.values)
                raise DomainError(
                    f"The path {path} has an operation {key!r}: not a method the catalogue knows ({supported})."
                )
            where = f"{key.upper()} {path}"
            if not isinstance(operation, dict):
                raise DomainError(f"{where} is not an operation (a mapping).")
            if "security" in operation:
                scopes = _required_scopes(operation["security"], schemes, where)
            else:
                scopes = default_scopes
            summary = operation.get("summary") or str(operation.get("description") or "").strip().split("\n")[0]
            operations.append(
                _Operation(method=key.upper(), path=path, summary=str(summary).strip()[:_SUMMARY_MAX], scopes=scopes)
            )
    if not operations:
        raise DomainError("The document's paths have no operations: there are no endpoints to import.")
    return operations, _scope_descriptions(schemes)


@transaction.atomic
def api_import_openapi(
    *, api: ApiResource, document: dict[str, Any] | str | bytes, actor: Any, claim_scopes: bool = False
) -> ImportResult:
    """Make the API's endpoints those of the OpenAPI document: all or nothing, idempotent.

    Scopes the document names that the catalogue lacks are created for this API (medium
    risk); a scope of another API is refused (a scope belongs to one API); a catalogue scope
    of no API is refused unless ``claim_scopes``, because claiming it moves tokens that
    carry it to this API's audience.
    """
    operations, descriptions = parse_operations(load_openapi(document))
    api = ApiResource.objects.select_for_update().get(pk=api.pk)  # one import per API at a time
    result = ImportResult(api=api)

    server_scopes = set(settings.OAUTH2_PROVIDER.get("SCOPES", {}))
    wanted = list(dict.fromkeys(scope for op in operations for scope in op.scopes))
    existing = {scope.name: scope for scope in Scope.objects.select_related("api").filter(name__in=wanted)}
    result.scopes_ignored = [name for name in wanted if name in server_scopes and name not in existing]
    foreign = sorted(
        f"{name} (of {scope.api.name})"
        for name, scope in existing.items()
        if scope.api is not None and scope.api_id != api.pk
    )
    if foreign:
        raise DomainError(
            f"Scopes of another API: {', '.join(foreign)}. A scope belongs to one API; rename them in the document."
        )
    unowned = sorted(name for name, scope in existing.items() if scope.api_id is None)
    if unowned and not claim_scopes:
        raise DomainError(
            f"Scopes in the catalogue that belong to no API: {', '.join(unowned)}. Claim them for {api.name} "
            "(tokens carrying them are then for this API), or assign them in the scope catalogue first."
        )
    for name in unowned:
        existing[name].api = api
        existing[name].save(update_fields=["api", "updated_at"])
        result.scopes_claimed.append(name)
    for name in wanted:
        if name in existing or name in result.scopes_ignored:
            continue
        try:
            with transaction.atomic():
                existing[name] = Scope.objects.create(
                    name=name, description=descriptions.get(name, ""), risk_level=Scope.RiskLevel.MEDIUM, api=api
                )
        except IntegrityError as exc:  # created meanwhile, by another import or an admin
            raise DomainError(f"The scope {name} was added to the catalogue meanwhile; import again.") from exc
        result.scopes_created.append(name)

    current = {
        (endpoint.method, endpoint.path): endpoint
        for endpoint in Endpoint.objects.filter(api=api).prefetch_related("required_scopes")
    }
    seen: set[tuple[str, str]] = set()
    for op in operations:
        key = (op.method, op.path)
        seen.add(key)
        label = f"{op.method} {op.path}"
        scopes = [existing[name] for name in op.scopes if name in existing]
        endpoint = current.get(key)
        if endpoint is None:
            endpoint = Endpoint.objects.create(api=api, method=op.method, path=op.path, summary=op.summary)
            endpoint.required_scopes.set(scopes)
            result.created.append(label)
            continue
        same_scopes = {s.pk for s in endpoint.required_scopes.all()} == {s.pk for s in scopes}
        if endpoint.summary == op.summary and same_scopes:
            result.unchanged.append(label)
            continue
        if endpoint.summary != op.summary:
            endpoint.summary = op.summary
            endpoint.save(update_fields=["summary"])
        if not same_scopes:
            endpoint.required_scopes.set(scopes)
        result.updated.append(label)
    stale = [endpoint for key, endpoint in current.items() if key not in seen]
    if stale:
        result.removed = [f"{endpoint.method} {endpoint.path}" for endpoint in stale]
        Endpoint.objects.filter(pk__in=[endpoint.pk for endpoint in stale]).delete()

    audit_record(
        "api.openapi_imported",
        actor=actor,
        target=api,
        organisation=api.owner,
        data={
            "api": api.slug,
            "changed": result.changed,
            "counts": {
                "created": len(result.created),
                "updated": len(result.updated),
                "unchanged": len(result.unchanged),
                "removed": len(result.removed),
                "scopes_created": len(result.scopes_created),
                "scopes_claimed": len(result.scopes_claimed),
            },
            "removed": result.removed[:_LISTED_MAX],
            "scopes_created": result.scopes_created[:_LISTED_MAX],
            "scopes_claimed": result.scopes_claimed[:_LISTED_MAX],
        },
    )
    return result


# --- The public catalogue's data -------------------------------------------------------------


def default_lifetimes() -> dict[str, int]:
    """The server's access-token lifetimes per kind of client (STANDARDS.md), in seconds."""
    return {
        "client_credentials": settings.AUTHSERVER_CLIENT_CREDENTIALS_TOKEN_LIFETIME,
        "authorization_code": settings.AUTHSERVER_ACCESS_TOKEN_LIFETIME,
        "authorization_code_public_client": settings.AUTHSERVER_PUBLIC_CLIENT_ACCESS_TOKEN_LIFETIME,
    }


def api_lifetimes(lifetime: int | None, defaults: dict[str, int]) -> dict[str, int]:
    """The API's lifetime when it sets one, else the server's, for each kind of client.

    As authserver.oauth.tokens.access_token_lifetime issues them: a public client's token
    never outlives the public-client lifetime, whatever the API sets.
    """
    if not lifetime:
        return dict(defaults)
    lifetimes = dict.fromkeys(defaults, lifetime)
    public = "authorization_code_public_client"
    lifetimes[public] = min(lifetime, defaults[public])
    return lifetimes


def _scope_entry(scope: Scope) -> dict[str, Any]:
    return {
        "name": scope.name,
        "description": scope.description,
        "api": scope.api.slug if scope.api is not None else None,
        "risk_level": scope.risk_level,
        "min_trust_level": scope.min_trust_level,
        # Empty lists mean: no restriction (every kind, every environment, any zone).
        "organisation_kinds": list(scope.allowed_organisation_kinds or []),
        "environments": list(scope.allowed_environments or []),
        "network_zones": [{"name": zone.name, "environment": zone.environment} for zone in scope.allowed_zones.all()],
        "open_registration": scope.open_registration,
        "requires_approval": scope.requires_approval,
    }


def _api_entry(api: ApiResource, defaults: dict[str, int]) -> dict[str, Any]:
    endpoints = list(api.endpoints.all())
    scopes: dict[str, Scope] = {scope.name: scope for scope in api.scopes.all()}
    for endpoint in endpoints:
        for scope in endpoint.required_scopes.all():
            scopes.setdefault(scope.name, scope)  # needed here, though of no or another API
    return {
        "name": api.name,
        "slug": api.slug,
        "description": api.description,
        "audience": api.audience,
        "owner": api.owner.name,
        "documentation_url": api.documentation_url or None,
        "token_format": api.token_format,
        "access_token_lifetime": api_lifetimes(api.access_token_lifetime, defaults),
        "endpoints": [
            {
                "method": endpoint.method,
                "path": endpoint.path,
                "summary": endpoint.summary,
                "scopes": sorted(scope.name for scope in endpoint.required_scopes.all()),
            }
            for endpoint in endpoints
        ],
        "scopes": [_scope_entry(scopes[name]) for name in sorted(scopes)],
    }


def _scopes_prefetch(lookup: str) -> Prefetch:
    zones = Prefetch("allowed_zones", queryset=NetworkZone.objects.order_by("environment", "name"))
    return Prefetch(lookup, queryset=Scope.objects.select_related("api").prefetch_related(zones))


def published_apis() -> QuerySet[ApiResource]:
    """Published APIs with everything the catalogue shows, in a fixed number of queries."""
    return (
        ApiResource.objects.filter(published=True)
        .select_related("owner")
        .prefetch_related(
            _scopes_prefetch("scopes"),
            Prefetch("endpoints", queryset=Endpoint.objects.order_by("path", "method")),
            _scopes_prefetch("endpoints__required_scopes"),
        )
        .order_by("name")
    )


def catalogue_document() -> dict[str, Any]:
    """The public catalogue, read from the rows the server enforces with.

    The shape is stable and documented (docs/operations.md, "API catalogue"). Unpublished
    APIs, and the scopes that belong to them, are left out.
    """
    defaults = default_lifetimes()
    zones = Prefetch("allowed_zones", queryset=NetworkZone.objects.order_by("environment", "name"))
    other = Scope.objects.filter(api__isnull=True).prefetch_related(zones).order_by("name")
    return {
        "issuer": settings.AUTHSERVER_ISSUER,
        "default_token_format": ApiResource.TokenFormat.JWT.value,
        "default_access_token_lifetime": defaults,
        "apis": [_api_entry(api, defaults) for api in published_apis()],
        "other_scopes": [_scope_entry(scope) for scope in other],
    }


def catalogue_api_entry(slug: str) -> dict[str, Any] | None:
    """One published API's entry of the catalogue (as in ``catalogue_document``), or None."""
    api = published_apis().filter(slug=slug).first()
    return None if api is None else _api_entry(api, default_lifetimes())
