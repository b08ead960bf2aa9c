"""Validate an access token for one API: locally as a JWT (RFC 9068), or by introspection (RFC 7662).

``TokenValidator(issuer, audience, mode=...)`` reads the issuer's discovery document
(``/.well-known/openid-configuration``) for the ``jwks_uri`` or ``introspection_endpoint``, and
``verify(token)`` returns a ``VerifiedToken`` or raises a ``BearerError`` (``InvalidToken`` for
every token that is not good for this API, ``IssuerUnavailable`` when the issuer cannot be asked).

JWT mode checks, in this order: the header's ``alg`` is one the issuer signs with (RS256,
PS256, ES256; never ``none`` or HS*), ``typ`` is ``at+jwt`` (RFC 9068 §4), the ``kid`` is
published in the issuer's JWKS and published for that very ``alg``, the signature, then
``iss``, ``exp``, ``nbf``/``iat`` (with ``clock_skew``), ``aud`` contains the API's audience
(its RFC 8707 resource indicator), ``client_id``/``azp`` present, and ``cnf`` (below).

Introspection mode posts the token to the introspection endpoint with the resource server's
own credentials (OAUTH-NL: ``client_secret_basic`` or ``private_key_jwt``) and checks the
answer the same way: ``active``, ``token_type`` (a refresh token is no bearer token), ``iss``,
``exp``, ``nbf``, ``aud``, ``client_id``, ``cnf``. Active answers may be cached for at most
half the token's remaining lifetime and never longer than ``introspection_cache_seconds``
(default 0: every request asks, so a revocation counts at once); inactive answers and errors
are never cached.

``cnf`` (RFC 8705 §3): a certificate-bound token passes only when the caller hands
``verify`` the SHA-256 thumbprint of the client certificate of the connection the token came
on (``certificate_thumbprint`` computes it), and it matches. Without one it is refused: a
bound token used without its certificate is exactly what the binding forbids.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import secrets
import threading
import time
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, Protocol

import jwt
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .documents import SIGNING_ALGORITHMS, CachedDocument, JwksCache, parse_jwks
from .errors import InvalidToken, IssuerUnavailable
from .http import HttpClient, Response, check_url

__all__ = ["MemoryCache", "TokenValidator", "VerifiedToken", "certificate_thumbprint"]

log = logging.getLogger("authserver_rs")

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ACCESS_TOKEN_TYPES = ("at+jwt", "application/at+jwt")  # RFC 9068 §4, compared case-insensitively
# Organisation identifiers an introspection answer may carry (NL GOV: OIN, else KvK, else eIDAS).
ORGANISATION_FIELDS = ("name", "oin", "kvk_number", "eidas_identifier")
MAX_TOKEN_LENGTH = 16 * 1024


@dataclass(frozen=True)
class VerifiedToken:
    """A token that passed every check, and what the API may rely on from it."""

    client_id: str
    sub: str | None
    scopes: frozenset[str]
    aud: tuple[str, ...]
    exp: int | None
    iss: str
    # Identifiers of the client's organisation (introspection answers carry them): name, oin,
    # kvk_number, eidas_identifier; empty when the token says nothing about it.
    organisation: Mapping[str, str] = field(default_factory=dict)
    claims: Mapping[str, Any] = field(default_factory=dict)  # the JWT claims or the introspection answer
    via: Literal["jwt", "introspection"] = "jwt"

    @property
    def oin(self) -> str | None:
        return self.organisation.get("oin")

    @property
    def kvk_number(self) -> str | None:
        return self.organisation.get("kvk_number")

    @property
    def organisation_id(self) -> str | None:
        """The organisation's identifier in the NL GOV order: OIN, else KvK number, else eIDAS."""
        for name in ("oin", "kvk_number", "eidas_identifier"):
            if self.organisation.get(name):
                return self.organisation[name]
        return None

    def has_scopes(self, scopes: Iterable[str]) -> bool:
        return set(scopes) <= self.scopes


class Cache(Protocol):
    """What the introspection cache needs; Django's cache framework fits as it is."""

    def get(self, key: str) -> Any: ...

    def set(self, key: str, value: Any, timeout: float) -> Any: ...


class MemoryCache:
    """A bounded in-process cache with per-entry expiry (the default introspection cache)."""

    def __init__(self, max_entries: int = 10_000, clock: Callable[[], float] = time.time) -> None:
        self.max_entries = max_entries
        self.clock = clock
        self._entries: OrderedDict[str, tuple[float, Any]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> Any:
        with self._lock:
            found = self._entries.get(key)
            if found is None:
                return None
            if self.clock() >= found[0]:
                del self._entries[key]
                return None
            self._entries.move_to_end(key)
            return found[1]

    def set(self, key: str, value: Any, timeout: float) -> None:
        with self._lock:
            self._entries[key] = (self.clock() + timeout, value)
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)


def certificate_thumbprint(certificate: str | bytes) -> str:
    """RFC 8705 §3.1 ``x5t#S256``: base64url (no padding) of the SHA-256 of the DER certificate.

    Takes PEM (text or bytes), DER bytes, or the URL-escaped PEM that nginx puts in
    ``$ssl_client_escaped_cert``.
    """
    data = certificate.encode() if isinstance(certificate, str) else bytes(certificate)
    if b"%" in data and b"-----BEGIN" not in data:
        data = urllib.parse.unquote_to_bytes(data)
    cert = x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    digest = hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


class TokenValidator:
    """Checks bearer tokens for one API (``audience``) issued by one authorization server."""

    def __init__(
        self,
        issuer: str,
        audience: str,
        *,
        mode: Literal["jwt", "introspection"] = "jwt",
        client_id: str | None = None,
        client_secret: str | None = None,
        private_key: Any = None,
        private_key_id: str | None = None,
        private_key_algorithm: str = "RS256",
        clock_skew: int = 30,
        timeout: float = 5.0,
        algorithms: Iterable[str] = SIGNING_ALGORITHMS,
        jwks_min_age: float = 60,
        jwks_max_age: float = 86400,
        jwks_refetch_interval: float = 30,
        discovery_max_age: float = 86400,
        introspection_cache_seconds: int = 0,
        cache: Cache | None = None,
        allow_insecure_http: bool = False,
        http: HttpClient | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if mode not in ("jwt", "introspection"):
            raise ValueError('mode must be "jwt" or "introspection"')
        if not isinstance(audience, str) or not audience:
            raise ValueError("audience is the API's resource indicator (RFC 8707), a non-empty string")
        self.http = http or HttpClient(timeout=timeout, allow_insecure_http=allow_insecure_http)
        self.issuer = issuer
        self.http.check(issuer)
        self.audience = audience
        self.mode = mode
        self.clock_skew = clock_skew
        self.clock = clock
        self.algorithms = tuple(alg for alg in algorithms if alg in SIGNING_ALGORITHMS)
        if not self.algorithms:
            raise ValueError(f"algorithms must name at least one of {', '.join(SIGNING_ALGORITHMS)}")
        self.introspection_cache_seconds = max(0, int(introspection_cache_seconds))
        self.cache: Cache = cache if cache is not None else MemoryCache(clock=clock)

        self.client_id = client_id
        self._client_secret = client_secret
        self._private_key: Any = None
        self.private_key_id = private_key_id
        self.private_key_algorithm = private_key_algorithm
        if mode == "introspection":
            self._configure_credentials(client_id, client_secret, private_key, private_key_algorithm)

        self.discovery = CachedDocument(
            self._load_discovery,
            name="discovery document",
            min_age=60,
            max_age=discovery_max_age,
            default_age=3600,
            clock=clock,
        )
        self.jwks = JwksCache(
            self._load_jwks,
            min_age=jwks_min_age,
            max_age=jwks_max_age,
            refetch_interval=jwks_refetch_interval,
            clock=clock,
        )

    def __repr__(self) -> str:  # never the credentials
        return f"TokenValidator(issuer={self.issuer!r}, audience={self.audience!r}, mode={self.mode!r})"

    def _configure_credentials(self, client_id: str | None, secret: str | None, key: Any, alg: str) -> None:
        if not client_id:
            raise ValueError("introspection mode needs the resource server's own client_id (OAUTH-NL)")
        if (secret is None) == (key is None):
            raise ValueError("introspection mode needs exactly one of client_secret and private_key")
        if key is not None:
            if alg not in SIGNING_ALGORITHMS:
                raise ValueError(f"private_key_algorithm must be one of {', '.join(SIGNING_ALGORITHMS)}")
            if isinstance(key, str | bytes):
                key = serialization.load_pem_private_key(key.encode() if isinstance(key, str) else key, password=None)
            self._private_key = key

    # ---- the issuer's documents ---------------------------------------------------------

    def _load_discovery(self) -> tuple[dict[str, Any], int | None]:
        base = self.issuer.rstrip("/")
        answer: Response | None = None
        # OIDC Discovery (NL GOV: M), then RFC 8414.
        for suffix in ("/.well-known/openid-configuration", "/.well-known/oauth-authorization-server"):
            answer = self.http.get(base + suffix)
            if answer.status == 200:
                break
        assert answer is not None
        if answer.status != 200:
            log.error("authserver_rs: the issuer's discovery document answered HTTP %s", answer.status)
            raise IssuerUnavailable("The token issuer's discovery document is unavailable.")
        metadata = answer.json()
        if not isinstance(metadata, dict) or metadata.get("issuer") != self.issuer:
            # RFC 8414 §3.3: the issuer in the document must be the one configured, exactly.
            log.error("authserver_rs: the discovery document names another issuer than %s", self.issuer)
            raise IssuerUnavailable("The token issuer's discovery document names another issuer.")
        return metadata, answer.max_age()

    def endpoint(self, name: str) -> str:
        """An endpoint URL from discovery (``jwks_uri``, ``introspection_endpoint``, ...)."""
        url = self.discovery.get().get(name)
        if not isinstance(url, str):
            raise IssuerUnavailable(f"The token issuer does not advertise {name}.")
        try:
            return check_url(url, allow_insecure_http=self.http.allow_insecure_http)
        except ValueError as exc:
            log.error("authserver_rs: the issuer's %s is not a URL we call: %s", name, exc)
            raise IssuerUnavailable(f"The token issuer's {name} is not an https URL.") from exc

    def _load_jwks(self) -> tuple[dict[str, jwt.PyJWK], int | None]:
        answer = self.http.get(
            self.endpoint("jwks_uri"), headers={"Accept": "application/jwk-set+json, application/json"}
        )
        if answer.status != 200:
            log.error("authserver_rs: the issuer's JWKS answered HTTP %s", answer.status)
            raise IssuerUnavailable("The token issuer's JWKS is unavailable.")
        return parse_jwks(answer.json(), self.algorithms), answer.max_age()

    # ---- verification -------------------------------------------------------------------

    def verify(self, token: str, *, client_certificate_thumbprint: str | None = None) -> VerifiedToken:
        """The token's facts when it is good for this API; ``InvalidToken`` otherwise."""
        if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_LENGTH:
            raise InvalidToken("The access token is empty or too long.")
        if self.mode == "jwt":
            return self._verify_jwt(token, client_certificate_thumbprint)
        return self._verify_by_introspection(token, client_certificate_thumbprint)

    def _verify_jwt(self, token: str, thumbprint: str | None) -> VerifiedToken:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidToken("The access token is not a JWT; this API validates signed JWT access tokens.") from exc
        alg = header.get("alg")
        if alg not in self.algorithms:
            # Before any key is touched: "none", HS256 with the public key as secret, ... (RFC 8725 §3.1).
            raise InvalidToken(f"The access token's signing algorithm {str(alg)[:20]!r} is not accepted.")
        typ = header.get("typ")
        if not isinstance(typ, str) or typ.lower() not in ACCESS_TOKEN_TYPES:
            raise InvalidToken("The token is not an access token (RFC 9068: its typ must be at+jwt).")
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("The access token has no kid in its header.")
        key = self.jwks.key(kid)
        if key.algorithm_name != alg:
            raise InvalidToken("The access token's alg is not the algorithm its key is published for.")
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=[alg],
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.clock_skew,
                options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise InvalidToken("The access token has expired.") from exc
        except jwt.ImmatureSignatureError as exc:
            raise InvalidToken("The access token is not valid yet (nbf or iat in the future).") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidToken(f"The access token is not for this API (its aud must contain {self.audience}).") from exc
        except jwt.InvalidIssuerError as exc:
            raise InvalidToken(f"The access token was not issued by {self.issuer}.") from exc
        except jwt.MissingRequiredClaimError as exc:
            raise InvalidToken(f"The access token lacks the {exc.claim} claim.") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidToken("The access token's signature does not verify.") from exc
        except jwt.PyJWTError as exc:
            raise InvalidToken("The access token is malformed.") from exc
        return self._verified(claims, thumbprint, via="jwt")

    def _verify_by_introspection(self, token: str, thumbprint: str | None) -> VerifiedToken:
        key = (
            "authserver_rs:introspection:"
            + hashlib.sha256(f"{self.issuer}\0{self.audience}\0{token}".encode()).hexdigest()
        )
        answer = self.cache.get(key) if self.introspection_cache_seconds else None
        if not isinstance(answer, dict):
            answer = self._introspect(token)
            if answer.get("active") is not True:
                raise InvalidToken("The access token is not active: expired, revoked, or not for this API.")
            verified = self._verified(answer, thumbprint, via="introspection")
            ttl = self._cache_seconds(verified.exp)
            if ttl > 0:
                self.cache.set(key, answer, ttl)
            return verified
        return self._verified(answer, thumbprint, via="introspection")

    def _cache_seconds(self, exp: int | None) -> int:
        """At most half the remaining lifetime, and never longer than the setting."""
        if exp is None or not self.introspection_cache_seconds:
            return 0
        return max(0, min(self.introspection_cache_seconds, int((exp - self.clock()) // 2)))

    def _introspect(self, token: str) -> dict[str, Any]:
        url = self.endpoint("introspection_endpoint")
        form = {"token": token, "token_type_hint": "access_token"}
        headers: dict[str, str] = {}
        assert self.client_id is not None
        if self._private_key is not None:
            # RFC 7523 §2.2 / OAUTH-NL: iss = sub = client_id, aud = the token endpoint, one-time jti.
            form.update(
                client_id=self.client_id,
                client_assertion_type=ASSERTION_TYPE,
                client_assertion=self._client_assertion(),
            )
        else:
            # RFC 6749 §2.3.1: form-encode id and secret before joining them.
            pair = f"{urllib.parse.quote_plus(self.client_id)}:{urllib.parse.quote_plus(self._client_secret or '')}"
            headers["Authorization"] = "Basic " + base64.b64encode(pair.encode()).decode()
        answer = self.http.post_form(url, form, headers=headers)
        if answer.status != 200:
            # Our own credentials or rights are wrong (401/403), or the issuer is in trouble:
            # either way the token's fate is unknown, so this is no invalid_token.
            log.error("authserver_rs: introspection answered HTTP %s: %s", answer.status, answer.body[:300])
            raise IssuerUnavailable("The token issuer's introspection endpoint refused or failed.")
        data = answer.json()
        if not isinstance(data, dict):
            raise IssuerUnavailable("The token issuer's introspection answer is not a JSON object.")
        return data

    def _client_assertion(self) -> str:
        now = int(self.clock())
        claims = {
            "iss": self.client_id,
            "sub": self.client_id,
            "aud": self.endpoint("token_endpoint"),
            "iat": now,
            "exp": now + 60,
            "jti": secrets.token_urlsafe(24),
        }
        headers = {"kid": self.private_key_id} if self.private_key_id else None
        return jwt.encode(claims, self._private_key, algorithm=self.private_key_algorithm, headers=headers)

    # ---- the checks both modes share ------------------------------------------------------

    def _verified(
        self, claims: dict[str, Any], thumbprint: str | None, *, via: Literal["jwt", "introspection"]
    ) -> VerifiedToken:
        if via == "introspection":
            self._check_introspected(claims)
        client_id = claims.get("client_id") or claims.get("azp")
        if not isinstance(client_id, str) or not client_id:
            raise InvalidToken("The access token names no client (client_id / azp).")
        if claims.get("azp") not in (None, client_id):
            raise InvalidToken("The access token's azp and client_id disagree.")
        self._check_confirmation(claims.get("cnf"), thumbprint)
        aud = claims["aud"]
        scope = claims.get("scope")
        sub = claims.get("sub")
        exp = claims.get("exp")
        organisation = claims.get("organisation")
        return VerifiedToken(
            client_id=client_id,
            sub=sub if isinstance(sub, str) else None,
            scopes=frozenset(scope.split()) if isinstance(scope, str) else frozenset(),
            aud=(aud,) if isinstance(aud, str) else tuple(aud),
            exp=int(exp) if isinstance(exp, int | float) else None,
            iss=self.issuer,
            organisation=MappingProxyType(
                {
                    name: organisation[name]
                    for name in ORGANISATION_FIELDS
                    if isinstance(organisation, dict) and isinstance(organisation.get(name), str) and organisation[name]
                }
            ),
            claims=MappingProxyType(dict(claims)),
            via=via,
        )

    def _check_introspected(self, answer: dict[str, Any]) -> None:
        """The claims an introspection answer carries, checked as a JWT's would be."""
        token_type = answer.get("token_type")
        if token_type is not None and str(token_type).lower() != "bearer":
            raise InvalidToken("The token is not an access token.")
        if answer.get("iss", self.issuer) != self.issuer:
            raise InvalidToken(f"The access token was not issued by {self.issuer}.")
        now = self.clock()
        exp, nbf = answer.get("exp"), answer.get("nbf")
        if exp is not None and (not isinstance(exp, int | float) or now >= exp + self.clock_skew):
            raise InvalidToken("The access token has expired.")
        if nbf is not None and (not isinstance(nbf, int | float) or now < nbf - self.clock_skew):
            raise InvalidToken("The access token is not valid yet (nbf in the future).")
        aud = answer.get("aud")
        audiences = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
        if self.audience not in audiences:
            raise InvalidToken(f"The access token is not for this API (its aud must contain {self.audience}).")

    @staticmethod
    def _check_confirmation(cnf: Any, thumbprint: str | None) -> None:
        """RFC 8705 §3: a certificate-bound token only with the very certificate."""
        if cnf is None:
            return
        if not isinstance(cnf, dict) or set(cnf) != {"x5t#S256"} or not isinstance(cnf["x5t#S256"], str):
            raise InvalidToken("The access token is bound by a confirmation method (cnf) this API cannot check.")
        if not thumbprint:
            raise InvalidToken("The access token is bound to a client certificate (RFC 8705); use it over mutual TLS.")
        if not hmac.compare_digest(cnf["x5t#S256"].encode(), thumbprint.encode()):
            raise InvalidToken("The access token is bound to another client certificate (RFC 8705 §3).")
