"""RFC 7591 §2 client metadata, read and checked against the NL GOV rules.

``parse_client_metadata`` turns the JSON object a client sent (its software statement's
claims already merged in) into a ``ClientMetadata``, or raises ``MetadataError`` with the
RFC 7591 §3.2.2 code and every reason found. It touches no database, so what it accepts is
decided here alone; the registration policy (clients.policy) then decides the mode and the
scopes.

The rules (STANDARDS.md, OAUTH-NL, RFC 8252, RFC 9700):
- one grant type per client: ``authorization_code`` (``refresh_token`` may accompany it) or
  ``client_credentials``; ``response_types`` consistent with it (``code``, or none);
- redirect URIs absolute, compared exactly, no fragment, no wildcard, never the host name
  ``localhost``; ``https`` for web clients; native clients (``application_type=native``)
  may also use ``http`` on a loopback IP literal (127.0.0.1, [::1]) and private-use
  reverse-DNS schemes (RFC 8252 §7.1, §7.3, §8.3);
- ``token_endpoint_auth_method`` defaults to ``private_key_jwt`` (``none`` for native
  clients); client secrets only where the deployment allows them; keys as ``jwks`` or
  ``jwks_uri``, never both (RFC 7591 §2).

Unknown members are ignored (RFC 7591 §2); a known member of the wrong JSON type is
``invalid_client_metadata``.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from authserver.errors import DomainError

from .keys import validate_public_jwk

INVALID_METADATA = "invalid_client_metadata"
INVALID_REDIRECT_URI = "invalid_redirect_uri"

AUTHORIZATION_CODE = "authorization_code"
CLIENT_CREDENTIALS = "client_credentials"
REFRESH_TOKEN = "refresh_token"
GRANT_TYPES = (AUTHORIZATION_CODE, CLIENT_CREDENTIALS)

WEB = "web"
NATIVE = "native"
APPLICATION_TYPES = (WEB, NATIVE)

PRIVATE_KEY_JWT = "private_key_jwt"
SECRET_METHODS = ("client_secret_basic", "client_secret_post")
NONE = "none"
# Mutual TLS clients (RFC 8705) register their certificate through the portal or the API.
AUTH_METHODS = (PRIVATE_KEY_JWT, *SECRET_METHODS, NONE)

SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256")
SUBJECT_TYPES = ("public", "pairwise")

MAX_URI_LENGTH = 2048
MAX_REDIRECT_URIS = 20
MAX_KEYS = 10
MAX_CONTACTS = 10
# RFC 6749 §3.3 scope-token: %x21 / %x23-5B / %x5D-7E
_SCOPE_TOKEN = re.compile(r"^[\x21\x23-\x5b\x5d-\x7e]+$")
_LOOPBACK = (ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1"))
# RFC 8252 §7.1: a private-use scheme is a reverse domain name, e.g. nl.example.app
_REVERSE_DNS_SCHEME = re.compile(r"^[a-z][a-z0-9+-]*(\.[a-z0-9][a-z0-9+-]*)+$")


class MetadataError(Exception):
    """Refused metadata: ``error`` is the RFC 7591 §3.2.2 code, ``reasons`` say why."""

    def __init__(self, error: str, reasons: list[str] | tuple[str, ...]):
        self.error = error
        self.reasons = tuple(reasons)
        super().__init__("; ".join(self.reasons))


@dataclass(frozen=True)
class ClientMetadata:
    """What a client asked to be registered with, checked."""

    grant_type: str
    application_type: str
    token_endpoint_auth_method: str
    redirect_uris: tuple[str, ...] = ()
    post_logout_redirect_uris: tuple[str, ...] = ()
    client_name: str = ""
    client_uri: str = ""
    contacts: tuple[str, ...] = ()
    scopes: tuple[str, ...] | None = None  # None: the member was absent
    jwks: tuple[dict[str, Any], ...] = ()  # public JWKs, each with a kid
    jwks_uri: str = ""
    software_id: str = ""
    software_version: str = ""
    id_token_signed_response_alg: str = ""
    subject_type: str = "public"

    @property
    def is_public(self) -> bool:
        return self.token_endpoint_auth_method == NONE

    @property
    def uses_secret(self) -> bool:
        return self.token_endpoint_auth_method in SECRET_METHODS


class _Reader:
    """Reads members by their expected JSON type; a wrong type is a reason, never a crash."""

    def __init__(self, data: Mapping[str, Any]):
        self.data = data
        self.metadata_reasons: list[str] = []
        self.redirect_reasons: list[str] = []

    def string(self, name: str, *, max_length: int = 255, choices: tuple[str, ...] = ()) -> str | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            self.metadata_reasons.append(f"{name} must be a string")
            return None
        if len(value) > max_length:
            self.metadata_reasons.append(f"{name} is longer than {max_length} characters")
            return None
        if "\x00" in value:
            self.metadata_reasons.append(f"{name} contains a NUL character")
            return None
        if choices and value not in choices:
            self.metadata_reasons.append(f"{name} must be one of {', '.join(choices)}")
            return None
        return value

    def strings(self, name: str, *, max_items: int, max_length: int = MAX_URI_LENGTH) -> list[str] | None:
        value = self.data.get(name)
        if value is None:
            return None
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            self.metadata_reasons.append(f"{name} must be an array of strings")
            return None
        if len(value) > max_items:
            self.metadata_reasons.append(f"{name} may hold at most {max_items} values")
            return None
        too_long = [item for item in value if len(item) > max_length]
        if too_long:
            self.metadata_reasons.append(f"{name}: values may be at most {max_length} characters")
            return None
        return list(dict.fromkeys(value))


def redirect_uri_problems(uri: str, application_type: str) -> list[str]:
    """Why ``uri`` may not be registered as a redirect URI; empty when it may."""
    if not uri or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in uri):
        return [f"{uri!r} is empty or contains whitespace or control characters"]
    if "#" in uri:
        return [f"{uri}: a fragment is not allowed (RFC 6749 §3.1.2)"]
    if "*" in uri:
        return [f"{uri}: wildcards are not allowed; redirect URIs match exactly"]
    try:
        parts = urlsplit(uri)
        host = parts.hostname
        parts.port  # noqa: B018 - a malformed port raises here
    except ValueError:
        return [f"{uri} is not a valid absolute URI"]
    scheme = parts.scheme.lower()
    if not scheme:
        return [f"{uri} is not absolute (RFC 6749 §3.1.2)"]
    if host == "localhost" or (host or "").endswith(".localhost"):
        return [f"{uri}: use the loopback IP literal 127.0.0.1 or [::1], not localhost (RFC 8252 §8.3)"]
    if parts.username is not None or parts.password is not None:
        return [f"{uri}: user information is not allowed in a redirect URI"]
    if scheme == "https":
        if not host:
            return [f"{uri} has no host"]
        return []
    native = application_type == NATIVE
    if scheme == "http":
        try:
            loopback = host is not None and ipaddress.ip_address(host) in _LOOPBACK
        except ValueError:
            loopback = False
        if native and loopback:
            return []
        if native:
            return [f"{uri}: http is allowed only on the loopback IP literals 127.0.0.1 and [::1] (RFC 8252 §7.3)"]
        return [f"{uri}: web clients must use https redirect URIs"]
    if not native:
        return [f"{uri}: web clients must use https redirect URIs (custom schemes are for native clients)"]
    if not _REVERSE_DNS_SCHEME.match(scheme):
        return [
            f"{uri}: a native client's own scheme must be a reverse domain name like nl.example.app (RFC 8252 §7.1)"
        ]
    return []


def _check_uri(reader: _Reader, name: str, value: str, *, https_only: bool = True) -> None:
    try:
        parts = urlsplit(value)
    except ValueError:
        reader.metadata_reasons.append(f"{name} is not a valid URL")
        return
    if (parts.scheme != "https" and https_only) or not parts.hostname or "#" in value:
        reader.metadata_reasons.append(f"{name} must be an absolute https URL without a fragment")


def _grant_type(reader: _Reader) -> str | None:
    grant_types = reader.strings("grant_types", max_items=5, max_length=255)
    if grant_types is None:
        if "grant_types" in reader.data and reader.data["grant_types"] is not None:
            return None  # wrong type, reported
        grant_types = [AUTHORIZATION_CODE]  # RFC 7591 §2 default
    unknown = [g for g in grant_types if g not in (*GRANT_TYPES, REFRESH_TOKEN)]
    if unknown:
        reader.metadata_reasons.append(
            f"grant type {', '.join(unknown)} is not supported; use authorization_code or client_credentials "
            "(OAUTH-NL, RFC 9700)"
        )
        return None
    main = [g for g in grant_types if g != REFRESH_TOKEN]
    if len(main) != 1:
        reader.metadata_reasons.append(
            "register exactly one grant type per client: authorization_code or client_credentials (OAUTH-NL §3.1.1)"
        )
        return None
    if REFRESH_TOKEN in grant_types and main[0] != AUTHORIZATION_CODE:
        reader.metadata_reasons.append("refresh_token accompanies authorization_code only (OAUTH-NL)")
        return None
    return main[0]


def _response_types(reader: _Reader, grant_type: str | None) -> None:
    response_types = reader.strings("response_types", max_items=5, max_length=255)
    if response_types is None or grant_type is None:
        return
    if grant_type == AUTHORIZATION_CODE and response_types not in ([], ["code"]):
        reader.metadata_reasons.append('response_types must be ["code"] (no implicit or hybrid flows)')
    if grant_type == CLIENT_CREDENTIALS and response_types:
        reader.metadata_reasons.append("a client_credentials client has no response_types")


def _scopes(reader: _Reader) -> tuple[str, ...] | None:
    scope = reader.string("scope", max_length=4096)
    if scope is None:
        return None
    scopes = tuple(dict.fromkeys(scope.split()))
    bad = [s for s in scopes if not _SCOPE_TOKEN.match(s) or len(s) > 128]
    if bad:
        reader.metadata_reasons.append(f"scope values {' '.join(repr(s) for s in bad)} are not valid (RFC 6749 §3.3)")
    return scopes


def _jwks(reader: _Reader) -> tuple[dict[str, Any], ...]:
    value = reader.data.get("jwks")
    if value is None:
        return ()
    keys = value.get("keys") if isinstance(value, dict) else None
    if not isinstance(keys, list) or not keys:
        reader.metadata_reasons.append('jwks must be a JWK Set: {"keys": [...]} with at least one key')
        return ()
    if len(keys) > MAX_KEYS:
        reader.metadata_reasons.append(f"jwks may hold at most {MAX_KEYS} keys")
        return ()
    public: list[dict[str, Any]] = []
    for index, jwk in enumerate(keys):
        try:
            public.append(validate_public_jwk(jwk))
        except DomainError as exc:
            reader.metadata_reasons.append(f"jwks key {index}: {exc}")
    kids = [jwk["kid"] for jwk in public]
    if len(set(kids)) != len(kids):
        reader.metadata_reasons.append("jwks: every key needs a kid of its own")
    return tuple(public)


def parse_client_metadata(data: Mapping[str, Any], *, secrets_enabled: bool) -> ClientMetadata:
    """Check RFC 7591 metadata; raise MetadataError with every reason found."""
    reader = _Reader(data)
    application_type = reader.string("application_type", choices=APPLICATION_TYPES) or WEB
    grant_type = _grant_type(reader)
    _response_types(reader, grant_type)

    default_method = NONE if application_type == NATIVE else PRIVATE_KEY_JWT
    method = reader.string("token_endpoint_auth_method", max_length=64) or default_method
    if method not in AUTH_METHODS:
        reader.metadata_reasons.append(
            f"token_endpoint_auth_method {method!r} is not supported here; use {', '.join(AUTH_METHODS)}"
            " (mutual-TLS clients register in the portal)"
        )
    elif method in SECRET_METHODS and not secrets_enabled:
        reader.metadata_reasons.append(
            f"{method}: this deployment does not issue client secrets; use private_key_jwt (KP-AC)"
        )
    elif method in SECRET_METHODS and application_type == NATIVE:
        reader.metadata_reasons.append("a native client cannot keep a secret (RFC 8252 §8.5); use none with PKCE")
    if method == NONE and grant_type == CLIENT_CREDENTIALS:
        reader.metadata_reasons.append("a client_credentials client must authenticate; none is not allowed")

    given_uris = reader.strings("redirect_uris", max_items=MAX_REDIRECT_URIS)
    redirect_uris = given_uris or []
    for uri in redirect_uris:
        reader.redirect_reasons.extend(redirect_uri_problems(uri, application_type))
    wrong_type = given_uris is None and data.get("redirect_uris") is not None  # reported already
    if grant_type == AUTHORIZATION_CODE and not redirect_uris and not wrong_type:
        reader.redirect_reasons.append("redirect_uris is required for authorization_code clients")
    if grant_type == CLIENT_CREDENTIALS and redirect_uris:
        reader.metadata_reasons.append("a client_credentials client has no redirect_uris")

    post_logout = reader.strings("post_logout_redirect_uris", max_items=MAX_REDIRECT_URIS) or []
    for uri in post_logout:
        reader.metadata_reasons.extend(
            f"post_logout_redirect_uris: {problem}" for problem in redirect_uri_problems(uri, application_type)
        )

    client_name = reader.string("client_name") or ""
    client_uri = reader.string("client_uri", max_length=MAX_URI_LENGTH) or ""
    if client_uri:
        _check_uri(reader, "client_uri", client_uri)
    contacts = reader.strings("contacts", max_items=MAX_CONTACTS, max_length=254) or []
    scopes = _scopes(reader)
    software_id = reader.string("software_id") or ""
    software_version = reader.string("software_version", max_length=64) or ""
    alg = reader.string("id_token_signed_response_alg", max_length=16, choices=SIGNING_ALGORITHMS) or ""
    subject_type = reader.string("subject_type", choices=SUBJECT_TYPES) or "public"

    jwks = _jwks(reader)
    jwks_uri = reader.string("jwks_uri", max_length=MAX_URI_LENGTH) or ""
    if jwks_uri:
        _check_uri(reader, "jwks_uri", jwks_uri)
    has_jwks = data.get("jwks") is not None
    if has_jwks and jwks_uri:
        reader.metadata_reasons.append("jwks and jwks_uri are mutually exclusive (RFC 7591 §2); send one")
    elif method == PRIVATE_KEY_JWT and not has_jwks and not jwks_uri:
        reader.metadata_reasons.append("private_key_jwt needs the client's public keys: send jwks or jwks_uri")
    elif method != PRIVATE_KEY_JWT and (has_jwks or jwks_uri):
        reader.metadata_reasons.append(f"jwks and jwks_uri are for private_key_jwt, not {method}")

    if reader.metadata_reasons:
        raise MetadataError(INVALID_METADATA, reader.metadata_reasons + reader.redirect_reasons)
    if reader.redirect_reasons:
        raise MetadataError(INVALID_REDIRECT_URI, reader.redirect_reasons)
    assert grant_type is not None
    return ClientMetadata(
        grant_type=grant_type,
        application_type=application_type,
        token_endpoint_auth_method=method,
        redirect_uris=tuple(redirect_uris),
        post_logout_redirect_uris=tuple(post_logout),
        client_name=client_name,
        client_uri=client_uri,
        contacts=tuple(contacts),
        scopes=scopes,
        jwks=jwks,
        jwks_uri=jwks_uri,
        software_id=software_id,
        software_version=software_version,
        id_token_signed_response_alg=alg,
        subject_type=subject_type,
    )
