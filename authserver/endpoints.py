"""Endpoint families: the one map from a request path to what kind of endpoint it is.

The response-header rules (authserver.middleware), the CORS rules and the request metrics
(authserver.metrics) all key on these families, so a new URL joins the right rules by its
path. The nginx configuration (deploy/nginx/) splits the same families over the front
channel (browsers) and the back channel (server to server).
"""

from __future__ import annotations

from typing import Final

from django.conf import settings

# /oauth/<name> endpoints, each its own family.
_OAUTH: Final = {
    "authorize": "authorize",
    "token": "token",
    "introspect": "introspect",
    "revoke": "revoke",
    "userinfo": "userinfo",
    "logout": "logout",
    "jwks": "jwks",
}
# First path segment -> family, for the areas that are one family each.
_AREAS: Final = {
    "accounts": "accounts",
    "portal": "portal",
    "admin": "admin",
    "api": "api",
    "apis": "catalogue",
    "apis.json": "catalogue",
    "static": "static",
    "healthz": "health",
    "readyz": "health",
    "metrics": "metrics",
    ".well-known": "discovery",
}

FAMILIES: Final = (
    "home",
    "discovery",
    "jwks",
    "authorize",
    "token",
    "introspect",
    "revoke",
    "userinfo",
    "logout",
    "register",
    "oauth",
    "accounts",
    "portal",
    "admin",
    "api",
    "catalogue",
    "static",
    "health",
    "metrics",
    "other",
)

# Open documents (STANDARDS.md, CORS): any origin may read them, and caches may keep them.
OPEN_DOCUMENTS: Final = frozenset({"discovery", "jwks"})
# OAuth/OIDC endpoints that browser-based clients call cross-origin: CORS by allow-list.
CORS_ALLOW_LIST: Final = frozenset({"token", "userinfo", "revoke", "introspect"})
# Responses that carry tokens, credentials or personal data: never stored by any cache
# (RFC 6749 §5.1, ADR /core/transport/security-headers).
NO_STORE: Final = frozenset(
    {"authorize", "token", "introspect", "revoke", "userinfo", "logout", "register", "oauth"}
    | {"accounts", "portal", "admin", "api", "metrics", "health"}
)


def endpoint_family(path: str) -> str:
    """The family of a request path (``/oauth/token`` -> ``token``); ``other`` when unknown."""
    if path == "/":
        return "home"
    parts = path.lstrip("/").split("/", 2)
    head = parts[0]
    if head == "oauth":
        name = parts[1] if len(parts) > 1 else ""
        if name == "register":
            return "register"
        return _OAUTH.get(name, "oauth")
    return _AREAS.get(head, "other")


def backchannel_base() -> str:
    """Where the back-channel endpoints live: AUTHSERVER_BACKCHANNEL_URL, else the issuer."""
    return settings.AUTHSERVER_BACKCHANNEL_URL or settings.AUTHSERVER_ISSUER
