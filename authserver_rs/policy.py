"""Which scopes each endpoint needs: per method and OpenAPI path template (OAUTH-NL §4).

A ``ScopePolicy`` maps ``(method, path template)`` to the scopes a token must all carry::

    policy = ScopePolicy({
        ("GET", "/orders"): ["orders:read"],
        ("GET", "/orders/{id}"): ["orders:read"],
        "POST /orders": ["orders:write"],
    }, public=["GET /healthz"])

or is read from the authorization server's public catalogue (``/apis.json``) for one API, so
that what is documented is what is enforced::

    policy = ScopePolicy.from_server("https://auth.example.nl", audience="https://api.example.nl/orders")

Matching follows OpenAPI 3 (§4.8.8 "Paths"): a ``{name}`` stands for one non-empty path
segment (never ``.`` or ``..``), and concrete segments win over templated ones, so
``/orders/mine`` is matched before ``/orders/{id}``. Paths match exactly (a trailing slash
counts). ``HEAD`` falls back to the ``GET`` rule; a rule for method ``*`` matches any method
that has no rule of its own. A request that matches no rule is refused (403): an endpoint
nobody documented is not open by accident.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from .documents import CachedDocument
from .errors import InsufficientScope, IssuerUnavailable
from .http import HttpClient
from .validator import VerifiedToken

__all__ = ["PathTemplate", "Requirement", "ScopePolicy"]

log = logging.getLogger("authserver_rs")

_PARAMETER = re.compile(r"\{[^{}/]+\}")
RuleKey = tuple[str, str] | str
ScopeNames = Iterable[str] | str
# Mapping is invariant in its key: accept dicts keyed by strings, by tuples, or by both.
Rules = Mapping[str, ScopeNames] | Mapping[tuple[str, str], ScopeNames] | Mapping[RuleKey, ScopeNames]


def _pieces(segment: str) -> list[str]:
    """A template segment cut into its ``{parameters}`` and the literal text between them."""
    pieces: list[str] = []
    position = 0
    for found in _PARAMETER.finditer(segment):
        if found.start() > position:
            pieces.append(segment[position : found.start()])
        pieces.append(found.group(0))
        position = found.end()
    if position < len(segment):
        pieces.append(segment[position:])
    return pieces


class PathTemplate:
    """An OpenAPI path template such as ``/orders/{id}`` or ``/files/{name}.json``."""

    def __init__(self, template: str) -> None:
        if not isinstance(template, str) or not template.startswith("/"):
            raise ValueError(f"a path template starts with a slash: {template!r}")
        self.template = template
        self._segments: list[re.Pattern[str] | str] = []
        rank: list[int] = []
        for segment in template.split("/")[1:]:
            literal = _PARAMETER.sub("", segment)
            if "{" in literal or "}" in literal:
                raise ValueError(f"unbalanced braces in the path template {template!r}")
            if literal == segment:
                self._segments.append(segment)
                rank.append(0)
                continue
            pattern = "".join(
                "[^/]+" if _PARAMETER.fullmatch(piece) else re.escape(piece) for piece in _pieces(segment)
            )
            self._segments.append(re.compile(pattern))
            rank.append(2 if _PARAMETER.fullmatch(segment) else 1)
        # Lower sorts first: concrete segments (0) before partly (1) and wholly (2) templated ones.
        self.rank = tuple(rank)

    def matches(self, path: str) -> bool:
        parts = path.split("/")[1:]
        if len(parts) != len(self._segments):
            return False
        for part, segment in zip(parts, self._segments, strict=True):
            if isinstance(segment, str):
                if part != segment:
                    return False
            elif part in ("", ".", "..") or not segment.fullmatch(part):
                return False
        return True

    def __repr__(self) -> str:
        return f"PathTemplate({self.template!r})"


@dataclass(frozen=True)
class Requirement:
    """What a matched endpoint needs: every scope in ``scopes``, or nothing when ``public``."""

    method: str
    template: str
    scopes: tuple[str, ...] = ()
    public: bool = False


@dataclass(frozen=True)
class _Rule:
    requirement: Requirement
    path: PathTemplate


def _parse_key(key: RuleKey) -> tuple[str, str]:
    if isinstance(key, str):
        method, _, template = key.strip().partition(" ")
    else:
        method, template = key
    method, template = method.strip().upper(), template.strip()
    if not method or not template:
        raise ValueError(f"a rule is ('METHOD', '/path') or 'METHOD /path', not {key!r}")
    return method, template


def _scope_names(value: ScopeNames) -> tuple[str, ...]:
    names = value.split() if isinstance(value, str) else list(value)
    if not all(isinstance(name, str) and name and " " not in name for name in names):
        raise ValueError(f"scopes are non-empty names without spaces, not {value!r}")
    return tuple(dict.fromkeys(names))


def _compile(rules: Rules, public: Iterable[RuleKey]) -> list[_Rule]:
    compiled: list[_Rule] = []
    for key in public:
        method, template = _parse_key(key)
        compiled.append(_Rule(Requirement(method, template, public=True), PathTemplate(template)))
    items: Iterable[tuple[RuleKey, ScopeNames]] = rules.items()
    for key, scopes in items:
        method, template = _parse_key(key)
        compiled.append(_Rule(Requirement(method, template, _scope_names(scopes)), PathTemplate(template)))
    return compiled


class ScopePolicy:
    """Required scopes per (method, path template); see the module docstring."""

    def __init__(
        self,
        rules: Rules | None = None,
        *,
        public: Iterable[RuleKey] = (),
        base_path: str = "",
    ) -> None:
        self.base_path = base_path.rstrip("/")
        if self.base_path and not self.base_path.startswith("/"):
            raise ValueError("base_path starts with a slash")
        self._public = list(public)
        self._rules = _compile(rules or {}, self._public)

    def rules(self) -> list[_Rule]:
        return self._rules

    def match(self, method: str, path: str) -> Requirement | None:
        """The requirement of the most specific rule for this request, or None."""
        path = path.split("?", 1)[0] or "/"
        if self.base_path:
            if path != self.base_path and not path.startswith(self.base_path + "/"):
                return None
            path = path[len(self.base_path) :] or "/"
        if any(part in (".", "..") for part in path.split("/")):
            return None  # never match a path that a server might resolve to another one
        method = method.upper()
        candidates = [rule for rule in self.rules() if rule.path.matches(path)]
        for wanted in (method, "GET" if method == "HEAD" else None, "*"):
            found = [rule for rule in candidates if wanted is not None and rule.requirement.method == wanted]
            if found:
                return min(found, key=lambda rule: rule.path.rank).requirement
        return None

    def check(self, method: str, path: str, token: VerifiedToken) -> Requirement:
        """The requirement the token meets; ``InsufficientScope`` naming the scope(s) otherwise."""
        requirement = self.match(method, path)
        if requirement is None:
            raise InsufficientScope(
                f"No scope policy covers {method.upper()} {path.split('?', 1)[0]}; access is refused."
            )
        missing = [scope for scope in requirement.scopes if scope not in token.scopes]
        if missing:
            raise InsufficientScope(
                f"{requirement.method} {requirement.template} needs the scope {' '.join(requirement.scopes)}; "
                f"the token lacks {' '.join(missing)}.",
                scope=requirement.scopes,
            )
        return requirement

    # ---- the catalogue ----------------------------------------------------------------------

    @classmethod
    def from_catalogue(
        cls,
        document: Mapping[str, Any],
        *,
        audience: str | None = None,
        slug: str | None = None,
        public: Iterable[RuleKey] = (),
        base_path: str = "",
    ) -> ScopePolicy:
        """The policy of one API in a catalogue document (``/apis.json``), by audience or slug."""
        return cls(catalogue_rules(document, audience=audience, slug=slug), public=public, base_path=base_path)

    @classmethod
    def from_server(
        cls,
        issuer: str,
        *,
        audience: str | None = None,
        slug: str | None = None,
        public: Iterable[RuleKey] = (),
        base_path: str = "",
        catalogue_url: str | None = None,
        min_age: float = 60,
        max_age: float = 3600,
        timeout: float = 5.0,
        allow_insecure_http: bool = False,
        http: HttpClient | None = None,
    ) -> CatalogueScopePolicy:
        """The policy read from ``{issuer}/apis.json``, re-read as its cache headers say."""
        return CatalogueScopePolicy(
            issuer,
            audience=audience,
            slug=slug,
            public=public,
            base_path=base_path,
            catalogue_url=catalogue_url,
            min_age=min_age,
            max_age=max_age,
            http=http or HttpClient(timeout=timeout, allow_insecure_http=allow_insecure_http),
        )


def catalogue_rules(
    document: Mapping[str, Any], *, audience: str | None = None, slug: str | None = None
) -> dict[RuleKey, tuple[str, ...]]:
    """``{(method, path): scopes}`` of the API with this audience (or slug) in ``/apis.json``.

    The document: ``{"issuer": ..., "apis": [{"slug", "audience", "endpoints": [{"method",
    "path", "scopes": [...]}, ...]}, ...]}``. Every scope an endpoint lists is required.
    """
    if (audience is None) == (slug is None):
        raise ValueError("name the API by exactly one of audience and slug")
    apis = document.get("apis") if isinstance(document, Mapping) else None
    if not isinstance(apis, list):
        raise ValueError("the catalogue document has no list of apis")
    for api in apis:
        if not isinstance(api, Mapping):
            continue
        if (audience is not None and api.get("audience") == audience) or (slug is not None and api.get("slug") == slug):
            break
    else:
        raise LookupError(
            f"the catalogue lists no published API with {'audience' if audience else 'slug'} {audience or slug}"
        )
    rules: dict[RuleKey, tuple[str, ...]] = {}
    for endpoint in api.get("endpoints") or []:
        if not isinstance(endpoint, Mapping):
            raise ValueError("an endpoint in the catalogue is not an object")
        method, path, scopes = endpoint.get("method"), endpoint.get("path"), endpoint.get("scopes") or []
        if not isinstance(method, str) or not isinstance(path, str) or not isinstance(scopes, list):
            raise ValueError(f"the catalogue endpoint {endpoint!r} lacks method, path or a list of scopes")
        rules[(method, path)] = _scope_names(scopes)
    return rules


class CatalogueScopePolicy(ScopePolicy):
    """A ``ScopePolicy`` read from the issuer's ``/apis.json`` and refreshed as it ages.

    The catalogue is read on first use (the API may start before the issuer), kept for the
    max-age it is served with (clamped to ``[min_age, max_age]``), and when a refresh fails the
    last good policy stays in force a while (``CachedDocument``). Without any, requests get 503.
    """

    def __init__(
        self,
        issuer: str,
        *,
        audience: str | None,
        slug: str | None,
        public: Iterable[RuleKey],
        base_path: str,
        catalogue_url: str | None,
        min_age: float,
        max_age: float,
        http: HttpClient,
    ) -> None:
        super().__init__({}, public=public, base_path=base_path)
        if (audience is None) == (slug is None):
            raise ValueError("name the API by exactly one of audience and slug")
        self.issuer = issuer
        self.audience = audience
        self.slug = slug
        self.http = http
        self.url = http.check(catalogue_url or issuer.rstrip("/") + "/apis.json")
        self.document = CachedDocument(self._load, name="API catalogue", min_age=min_age, max_age=max_age)

    def _load(self) -> tuple[list[_Rule], int | None]:
        answer = self.http.get(self.url)
        if answer.status != 200:
            log.error("authserver_rs: the API catalogue %s answered HTTP %s", self.url, answer.status)
            raise IssuerUnavailable("The API catalogue is unavailable.")
        document = answer.json()
        if isinstance(document, dict) and document.get("issuer", self.issuer) != self.issuer:
            log.error("authserver_rs: the API catalogue %s belongs to another issuer", self.url)
            raise IssuerUnavailable("The API catalogue belongs to another issuer.")
        try:
            rules = catalogue_rules(document, audience=self.audience, slug=self.slug)
            compiled = _compile(rules, self._public)
        except (LookupError, ValueError) as exc:
            log.error("authserver_rs: the API catalogue %s cannot be used: %s", self.url, exc)
            raise IssuerUnavailable("The API catalogue does not describe this API.") from exc
        return compiled, answer.max_age()

    def rules(self) -> list[_Rule]:
        return self.document.get()
