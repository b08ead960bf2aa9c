"""Documents fetched from the issuer and kept as its HTTP cache headers say.

``CachedDocument`` keeps one parsed document (discovery, the JWKS, the catalogue) for the
``Cache-Control: max-age`` the issuer sent, clamped to ``[min_age, max_age]`` so that neither
a ``no-store`` nor a year-long max-age is taken literally. When a refresh fails, the last good
document is used a while longer (at most ``max_age`` past its expiry; a new attempt at most
every ``retry_interval`` seconds); without one, the caller gets ``IssuerUnavailable``.

``JwksCache`` adds what a key rotation needs (RFC 7517, OAUTH-NL): a token signed with a
``kid`` that the cached set lacks makes it fetch the set again, at most once per
``refetch_interval`` seconds, so a rotation on the server is picked up without a restart and a
stream of tokens with invented kids cannot make it hammer the issuer.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import jwt

from .errors import InvalidToken, IssuerUnavailable

log = logging.getLogger("authserver_rs")

T = TypeVar("T")

# RFC 9068 §4 / OAUTH-NL: asymmetric signatures the issuer uses; never "none" or HS*.
SIGNING_ALGORITHMS = ("RS256", "PS256", "ES256")
# With nothing cached, a failed fetch is retried this soon (seconds), not on every request.
NOTHING_CACHED_RETRY = 5


@dataclass(frozen=True)
class _Entry(Generic[T]):
    value: T
    expires_at: float


class CachedDocument(Generic[T]):
    """One document from ``load`` (which returns it and the max-age the issuer sent)."""

    def __init__(
        self,
        load: Callable[[], tuple[T, int | None]],
        *,
        name: str,
        min_age: float = 60,
        max_age: float = 86400,
        default_age: float = 300,
        retry_interval: float = 30,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not 0 <= min_age <= max_age:
            raise ValueError("min_age must be between 0 and max_age")
        self._load = load
        self.name = name
        self.min_age = min_age
        self.max_age = max_age
        self.default_age = default_age
        self.retry_interval = retry_interval
        self.clock = clock
        self.fetches = 0  # load attempts, for tests and metrics
        self._entry: _Entry[T] | None = None
        self._attempted_at: float | None = None
        self._lock = threading.Lock()

    def ttl(self, max_age: int | None) -> float:
        """The issuer's max-age (or the default when it sent none), clamped."""
        seconds = self.default_age if max_age is None else max_age
        return min(max(seconds, self.min_age), self.max_age)

    def get(self) -> T:
        """The document: cached while fresh, else fetched; the last good one if that fails."""
        entry = self._entry
        if entry is not None and self.clock() < entry.expires_at:
            return entry.value
        with self._lock:
            entry = self._entry
            now = self.clock()
            if entry is not None and now < entry.expires_at:
                return entry.value  # another thread refreshed it meanwhile
            if entry is not None and self._recently_attempted(now, self.retry_interval):
                return self._stale(entry, now)
            if entry is None and self._recently_attempted(now, min(self.retry_interval, NOTHING_CACHED_RETRY)):
                raise IssuerUnavailable(f"The issuer's {self.name} cannot be fetched now.")
            return self._fetch(now)

    def refresh(self, *, min_interval: float) -> T:
        """Fetch again now, unless an attempt was made less than ``min_interval`` seconds ago."""
        with self._lock:
            now = self.clock()
            entry = self._entry
            if entry is not None and self._recently_attempted(now, min_interval):
                return entry.value if now < entry.expires_at else self._stale(entry, now)
            return self._fetch(now)

    def clear(self) -> None:
        with self._lock:
            self._entry = None
            self._attempted_at = None

    def _recently_attempted(self, now: float, interval: float) -> bool:
        return self._attempted_at is not None and now - self._attempted_at < interval

    def _stale(self, entry: _Entry[T], now: float) -> T:
        if now < entry.expires_at + self.max_age:
            return entry.value
        raise IssuerUnavailable(f"The issuer's {self.name} could not be refreshed.")

    def _fetch(self, now: float) -> T:
        self._attempted_at = now
        self.fetches += 1
        try:
            value, max_age = self._load()
        except IssuerUnavailable:
            entry = self._entry
            if entry is None:
                raise
            log.warning("authserver_rs: refreshing the %s failed; using the cached one", self.name)
            return self._stale(entry, now)
        self._entry = _Entry(value=value, expires_at=now + self.ttl(max_age))
        return value


def parse_jwks(document: Any, algorithms: Iterable[str] = SIGNING_ALGORITHMS) -> dict[str, jwt.PyJWK]:
    """The signing keys of a JWK Set by kid: only keys with a kid and an allowed ``alg``.

    OAUTH-NL: every published key has ``kid``, ``kty`` and ``alg``. A key without ``alg``, with
    ``use`` other than ``sig``, or of an algorithm not allowed here is ignored, so a token can
    only ever be checked with the one algorithm its key is published for.
    """
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise IssuerUnavailable("The issuer's JWKS is not a JWK Set.")
    allowed = set(algorithms)
    keys: dict[str, jwt.PyJWK] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict):
            continue
        kid, alg = jwk.get("kid"), jwk.get("alg")
        if not isinstance(kid, str) or not kid or alg not in allowed or jwk.get("use", "sig") != "sig":
            continue
        if any(name in jwk for name in ("d", "p", "q", "k")):
            continue  # a private or symmetric key has no business in a public JWKS
        try:
            keys[kid] = jwt.PyJWK(jwk, algorithm=alg)
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError) as exc:
            log.warning("authserver_rs: ignoring the unusable JWKS key %s: %s", kid, exc)
    return keys


class JwksCache(CachedDocument[dict[str, jwt.PyJWK]]):
    """The issuer's signing keys by kid, refetched (rate-limited) on an unknown kid."""

    def __init__(
        self,
        load: Callable[[], tuple[dict[str, jwt.PyJWK], int | None]],
        *,
        refetch_interval: float = 30,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("retry_interval", refetch_interval)
        super().__init__(load, name="JWKS", **kwargs)
        self.refetch_interval = refetch_interval

    def key(self, kid: str) -> jwt.PyJWK:
        keys = self.get()
        if kid in keys:
            return keys[kid]
        # Perhaps a key published after we fetched the set (a rotation): look again, rarely.
        keys = self.refresh(min_interval=self.refetch_interval)
        if kid in keys:
            return keys[kid]
        raise InvalidToken("The access token is signed with a key the issuer does not publish.")
