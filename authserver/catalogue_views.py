"""The public API catalogue: /apis/, /apis/<slug>/ and /apis.json.

Open documents, like discovery: no sign-in, any origin may read them (CORS ``*``), and
caches may keep them for a few minutes. The pages are rendered for nobody in particular
(no user, no messages, no CSRF token) so that a shared cache never hands one visitor's page
to another. All three render ``catalogue.catalogue_document``, read from the rows the server
enforces with.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import AnonymousUser
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from clients.models import Client
from onboarding.models import Organisation

from .catalogue import catalogue_api_entry, catalogue_document
from .models import ApiResource, Scope
from .oauth.views import oauth_error

# A change in the catalogue reaches every reader within five minutes.
MAX_AGE = 300

_RISK = dict(Scope.RiskLevel.choices)
_TRUST = dict(Organisation.TrustLevel.choices)
_KINDS = dict(Organisation.Kind.choices)
_ENVIRONMENTS = dict(Client.Environment.choices)
_FORMATS = dict(ApiResource.TokenFormat.choices)
_GRANTS = {
    "client_credentials": "Client credentials",
    "authorization_code": "Authorization code",
    "authorization_code_public_client": "Authorization code, public client",
}


def duration(seconds: int) -> str:
    """3600 -> "1 hour", 900 -> "15 minutes", 5400 -> "90 minutes"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} seconds" if seconds != 1 else "1 second"


def _readable_scope(scope: dict[str, Any]) -> dict[str, Any]:
    """The JSON entry plus the words a page shows for its machine values."""
    return {
        **scope,
        "risk_label": _RISK.get(scope["risk_level"], scope["risk_level"]),
        "trust_label": _TRUST.get(scope["min_trust_level"], scope["min_trust_level"]),
        "kind_labels": [_KINDS.get(kind, kind) for kind in scope["organisation_kinds"]],
        "environment_labels": [_ENVIRONMENTS.get(env, env) for env in scope["environments"]],
        "zone_labels": [
            f"{zone['name']} ({_ENVIRONMENTS.get(zone['environment'], zone['environment']).lower()})"
            for zone in scope["network_zones"]
        ],
    }


def _readable_api(api: dict[str, Any]) -> dict[str, Any]:
    return {
        **api,
        "token_format_label": _FORMATS.get(api["token_format"], api["token_format"]),
        "lifetimes": [
            (_GRANTS.get(kind, kind), duration(seconds)) for kind, seconds in api["access_token_lifetime"].items()
        ],
        "scopes": [_readable_scope(scope) for scope in api["scopes"]],
    }


def _open_document(response: HttpResponse) -> HttpResponse:
    response["Cache-Control"] = f"public, max-age={MAX_AGE}"
    # Open documents (STANDARDS.md, CORS): any origin may read them.
    response["Access-Control-Allow-Origin"] = "*"
    return response


def _method_not_allowed() -> HttpResponse:
    response = HttpResponse("Use GET.\n", status=405, content_type="text/plain; charset=utf-8")
    response["Allow"] = "GET, HEAD"
    return response


def _page(request: HttpRequest, template: str, context: dict[str, Any]) -> HttpResponse:
    # The same page for everyone: no signed-in header, no flash messages (see the docstring).
    context = {**context, "user": AnonymousUser(), "messages": ()}
    return _open_document(render(request, template, context))


def catalogue(request: HttpRequest) -> HttpResponse:
    """Every published API, and the scopes that belong to no API."""
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed()
    document = catalogue_document()
    context = {
        "apis": [_readable_api(api) for api in document["apis"]],
        "other_scopes": [_readable_scope(scope) for scope in document["other_scopes"]],
        "default_format": _FORMATS.get(document["default_token_format"], ""),
        "default_lifetimes": [
            (_GRANTS.get(kind, kind), duration(seconds))
            for kind, seconds in document["default_access_token_lifetime"].items()
        ],
    }
    return _page(request, "catalogue/index.html", context)


def catalogue_api(request: HttpRequest, slug: str) -> HttpResponse:
    """One published API: its endpoints, the scopes each needs, and who may get them."""
    if request.method not in ("GET", "HEAD"):
        return _method_not_allowed()
    api = catalogue_api_entry(slug)
    if api is None:
        raise Http404("No published API with this name.")
    return _page(request, "catalogue/api.html", {"api": _readable_api(api)})


def catalogue_json(request: HttpRequest) -> HttpResponse:
    """The whole catalogue as one JSON document (shape: docs/operations.md, "API catalogue")."""
    if request.method not in ("GET", "HEAD"):
        return oauth_error("invalid_request", "Use GET.", status=405, headers={"Allow": "GET, HEAD"})
    return _open_document(JsonResponse(catalogue_document(), json_dumps_params={"ensure_ascii": False}))
