"""A client's public keys fetched from its ``jwks_uri`` (RFC 7591 §2), safely.

The URL is the client's to choose, so fetching it is a server-side request forgery risk:

- https only, no user info; the host name is resolved here and every address it resolves to
  must be public (no loopback, private, link-local incl. cloud metadata, CGNAT, multicast,
  reserved, or an IPv4-mapped/NAT64/6to4 form of those). ``AUTHSERVER_JWKS_URI_ALLOW_PRIVATE``
  lets loopback and private addresses through (tests, private networks); link-local,
  multicast and unspecified addresses are refused always.
- The connection goes to the checked address itself (no second DNS lookup, so DNS rebinding
  cannot swap it) while TLS is verified for the host name. Redirects are not followed.
- One deadline bounds connect, TLS, headers and body together; the body is read in pieces
  and dropped past ``AUTHSERVER_JWKS_URI_MAX_BYTES``.
- Every key must pass ``validate_public_jwk`` (the rules for a registered JWK); keys marked
  ``"use": "enc"`` are not signing keys and are skipped.

The parsed keys are cached (Django cache: Redis in production) as long as the response's
``Cache-Control: max-age`` / ``Expires`` says, clamped to [min, max]. A stale entry, or an
assertion whose ``kid`` is unknown (key rollover), triggers a refetch at most once per minimum
interval, so no request can make this server hammer the client's. A failed refetch keeps the
cached keys until ``AUTHSERVER_JWKS_URI_MAX_CACHE_SECONDS`` after they were fetched.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import ipaddress
import json
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.cache import cache

from authserver.errors import DomainError

from .keys import validate_public_jwk

log = logging.getLogger(__name__)

MAX_URI_LENGTH = 2048  # ClientCredential.jwks_uri
USER_AGENT = "authserver-jwks-fetcher/1"
_CHUNK = 8192
_CACHE_PREFIX = "client-jwks-uri:"

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
# RFC 6052 NAT64 well-known prefix: the last 32 bits are an IPv4 address behind a gateway.
_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")
_CGNAT = ipaddress.IPv4Network("100.64.0.0/10")  # RFC 6598 shared address space


class JwksUriError(DomainError):
    """The jwks_uri or what it served was refused; the message is safe to show and to log."""


class _Unreachable(JwksUriError):
    """No connection to one address; another address of the host may still answer."""


@dataclass(frozen=True)
class Target:
    """A jwks_uri taken apart, with the addresses its host resolved to (all checked)."""

    uri: str
    host: str
    port: int
    path: str
    addresses: tuple[str, ...]

    @property
    def redacted(self) -> str:
        """The URI without its query, fit for logs and the audit trail."""
        port = "" if self.port == 443 else f":{self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"https://{host}{port}{self.path.split('?', 1)[0]}"


@dataclass(frozen=True)
class FetchedJwks:
    keys: list[dict[str, Any]]
    max_age: int  # seconds, clamped to the configured minimum and maximum


# ---- the URL and its addresses ---------------------------------------------------------------


def _refusal(address: IPAddress) -> str | None:
    """Why connecting to ``address`` is refused, or None when it may be used."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = address.ipv4_mapped or address.sixtofour
        if embedded is None and address in _NAT64:
            embedded = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
        if embedded is not None:
            reason = _refusal(embedded)
            return f"{reason} IPv4-in-IPv6" if reason else None
    # Never, whatever the settings: these reach this host or its cloud metadata service.
    if address.is_unspecified:
        return "an unspecified"
    if address.is_multicast:
        return "a multicast"
    if address.is_link_local:
        return "a link-local"
    if settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE:
        return None
    if address.is_loopback:
        return "a loopback"
    if isinstance(address, ipaddress.IPv4Address) and address in _CGNAT:
        return "a shared (CGNAT)"
    if address.is_reserved:
        return "a reserved"
    if address.is_private:
        return "a private"
    if not address.is_global:
        return "a non-global"
    return None


def _resolve(host: str, port: int) -> tuple[str, ...]:
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        candidates = [literal]
    else:
        try:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except (socket.gaierror, UnicodeError) as exc:
            raise JwksUriError(f"the jwks_uri host {host} cannot be resolved") from exc
        candidates = [ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos]
        if not candidates:
            raise JwksUriError(f"the jwks_uri host {host} cannot be resolved")
    # Every address must pass, not just one: which one a connection gets is not ours to pick.
    for address in candidates:
        reason = _refusal(address)
        if reason:
            raise JwksUriError(
                f"the jwks_uri host {host} resolves to {address}, {reason} address, which is not allowed"
            )
    return tuple(dict.fromkeys(str(address) for address in candidates))


def check_uri(uri: Any) -> Target:
    """Take a jwks_uri apart and resolve its host; raise JwksUriError when it may not be fetched."""
    if not isinstance(uri, str) or not uri.strip():
        raise JwksUriError("jwks_uri must be an https URL")
    uri = uri.strip()
    if len(uri) > MAX_URI_LENGTH:
        raise JwksUriError(f"jwks_uri is longer than {MAX_URI_LENGTH} characters")
    if any(ord(character) < 0x21 or ord(character) == 0x7F for character in uri):
        raise JwksUriError("jwks_uri contains spaces or control characters")
    try:
        parts = urlsplit(uri)
        port = parts.port or 443
    except ValueError as exc:
        raise JwksUriError(f"jwks_uri is not a valid URL: {exc}") from exc
    if parts.scheme.lower() != "https":
        raise JwksUriError("jwks_uri must use https (RFC 7591 §2)")
    if "@" in parts.netloc:
        raise JwksUriError("jwks_uri may not contain user information")
    if parts.fragment:
        raise JwksUriError("jwks_uri may not contain a fragment")
    if not (parts.path + parts.query).isascii():
        raise JwksUriError("jwks_uri path and query must be ASCII (percent-encode other characters)")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise JwksUriError("jwks_uri has no host")
    if ":" not in host:
        try:
            host = host.encode("idna").decode("ascii")
        except UnicodeError as exc:
            raise JwksUriError("jwks_uri host is not a valid host name") from exc
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(uri=uri, host=host, port=port, path=path, addresses=_resolve(host, port))


# ---- fetching --------------------------------------------------------------------------------


def _tls_context() -> ssl.SSLContext:
    bundle = settings.AUTHSERVER_JWKS_URI_CA_BUNDLE
    context = ssl.create_default_context(cafile=bundle or None)
    if not bundle and not context.get_ca_certs():
        try:  # a slim image without a system store; certifi ships Mozilla's
            import certifi
        except ImportError:
            pass
        else:
            context.load_verify_locations(cafile=certifi.where())
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class _PinnedConnection(http.client.HTTPConnection):
    """HTTPS to one already-checked address, with TLS verified for the URL's host name."""

    default_port = 443

    def __init__(self, target: Target, address: str, context: ssl.SSLContext, timeout: float):
        super().__init__(target.host, target.port, timeout=timeout)
        self._address = address
        self._tls = context
        self.raw_socket: socket.socket | None = None
        self.timed_out = threading.Event()

    def connect(self) -> None:
        raw = socket.create_connection((self._address, self.port), timeout=self.timeout)
        # Kept so the deadline can shut the connection from another thread (see _read).
        self.raw_socket = raw.dup()
        if self.timed_out.is_set():
            raw.close()
            raise TimeoutError
        self.sock = self._tls.wrap_socket(raw, server_hostname=self.host)

    def stop(self) -> None:
        """Shut the connection down (from the deadline's thread); a blocked read returns at once."""
        self.timed_out.set()
        if self.raw_socket is not None:
            with contextlib.suppress(OSError):
                self.raw_socket.shutdown(socket.SHUT_RDWR)


def _freshness(headers: http.client.HTTPMessage) -> int:
    """Seconds the response may be used (RFC 9111 §4.2.1), clamped to the configured bounds."""
    low = settings.AUTHSERVER_JWKS_URI_MIN_CACHE_SECONDS
    high = max(settings.AUTHSERVER_JWKS_URI_MAX_CACHE_SECONDS, low)
    directives: dict[str, str] = {}
    for part in ",".join(headers.get_all("Cache-Control") or []).split(","):
        name, _, value = part.strip().partition("=")
        if name:
            directives[name.lower()] = value.strip().strip('"')
    seconds: float = 0
    if "no-store" in directives or "no-cache" in directives:
        seconds = 0
    elif "max-age" in directives:
        try:
            seconds = int(directives["max-age"])
        except ValueError:
            seconds = 0
        with contextlib.suppress(ValueError):
            seconds -= int(headers.get("Age") or 0)
    elif headers.get("Expires"):
        try:
            expires = parsedate_to_datetime(headers["Expires"])
            date = parsedate_to_datetime(headers["Date"]) if headers.get("Date") else None
            seconds = expires.timestamp() - (date.timestamp() if date else time.time())
        except (TypeError, ValueError, IndexError, OverflowError):
            seconds = 0  # RFC 9111 §5.3: an invalid Expires means already expired
    return int(min(max(seconds, low), high))


def _too_slow() -> JwksUriError:
    return JwksUriError(f"the jwks_uri did not answer within {settings.AUTHSERVER_JWKS_URI_TIMEOUT_SECONDS:g} seconds")


def _read(target: Target, address: str, deadline_seconds: float) -> tuple[bytes, int]:
    max_bytes = settings.AUTHSERVER_JWKS_URI_MAX_BYTES
    connection = _PinnedConnection(target, address, _tls_context(), timeout=deadline_seconds)
    timed_out = connection.timed_out
    # The deadline covers the whole exchange, not each socket read: a server trickling a byte
    # a second would otherwise hold a worker for as long as it likes.
    watchdog = threading.Timer(deadline_seconds, connection.stop)
    watchdog.daemon = True
    watchdog.start()
    try:
        connection.request(
            "GET",
            target.path,
            headers={
                "Accept": "application/jwk-set+json, application/json",
                "Accept-Encoding": "identity",
                "User-Agent": USER_AGENT,
            },
        )
        response = connection.getresponse()
        if 300 <= response.status < 400:
            raise JwksUriError(f"the jwks_uri answered with a redirect ({response.status}); redirects are not followed")
        if response.status != 200:
            raise JwksUriError(f"the jwks_uri answered HTTP {response.status}, not 200")
        if (response.getheader("Content-Encoding") or "identity").lower() != "identity":
            raise JwksUriError("the jwks_uri answered with a content encoding; serve the JWKS uncompressed")
        declared = response.getheader("Content-Length")
        if declared and declared.isdigit() and int(declared) > max_bytes:
            raise JwksUriError(f"the JWKS at the jwks_uri is larger than {max_bytes} bytes")
        body = bytearray()
        while chunk := response.read1(_CHUNK):
            body += chunk
            if len(body) > max_bytes:
                raise JwksUriError(f"the JWKS at the jwks_uri is larger than {max_bytes} bytes")
        if timed_out.is_set():
            raise TimeoutError
        return bytes(body), _freshness(response.msg)
    except JwksUriError:
        raise
    except ssl.SSLCertVerificationError as exc:
        raise JwksUriError(f"the TLS certificate of {target.host} is not valid: {exc.verify_message}") from exc
    except TimeoutError as exc:
        raise _too_slow() from exc
    except (OSError, http.client.HTTPException) as exc:
        if timed_out.is_set():
            raise _too_slow() from exc
        if connection.sock is None:
            raise _Unreachable(f"the jwks_uri host cannot be reached ({type(exc).__name__})") from exc
        raise JwksUriError(f"the jwks_uri could not be fetched ({type(exc).__name__})") from exc
    finally:
        watchdog.cancel()
        connection.close()
        if connection.raw_socket is not None:
            connection.raw_socket.close()


def parse_jwks(body: bytes) -> list[dict[str, Any]]:
    """The signing keys of a JWK Set (RFC 7517 §5), each checked like a registered key."""
    try:
        document = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise JwksUriError("the jwks_uri did not serve JSON") from exc
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise JwksUriError('the jwks_uri must serve a JWK Set: a JSON object with a "keys" array (RFC 7517 §5)')
    keys = []
    for number, jwk in enumerate(document["keys"], start=1):
        if isinstance(jwk, dict) and jwk.get("use") == "enc":
            continue  # an encryption key, not one a client signs assertions with
        try:
            keys.append(validate_public_jwk(jwk))
        except DomainError as exc:
            raise JwksUriError(f"key {number} of the JWKS at the jwks_uri: {exc}") from exc
    if not keys:
        raise JwksUriError("the JWKS at the jwks_uri holds no signing key")
    return keys


def fetch(uri: Any) -> FetchedJwks:
    """Check, resolve and fetch a jwks_uri now (no cache); raise JwksUriError when refused."""
    target = check_uri(uri)
    return fetch_target(target)


def fetch_target(target: Target) -> FetchedJwks:
    """Fetch a checked target: its addresses in turn until one connects, all within one deadline."""
    deadline = float(settings.AUTHSERVER_JWKS_URI_TIMEOUT_SECONDS)
    started = time.monotonic()
    error: JwksUriError | None = None
    for address in target.addresses:
        remaining = deadline - (time.monotonic() - started)
        if remaining <= 0:
            break
        try:
            body, max_age = _read(target, address, remaining)
        except _Unreachable as exc:
            error = exc  # nothing listens there (say ::1 of localhost): try the next address
            continue
        return FetchedJwks(keys=parse_jwks(body), max_age=max_age)
    raise error or _too_slow()


# ---- the cache -------------------------------------------------------------------------------


def _cache_key(uri: str) -> str:
    return _CACHE_PREFIX + hashlib.sha256(uri.encode()).hexdigest()


def _store(uri: str, entry: dict[str, Any], now: float) -> None:
    # The entry outlives its freshness: stale keys still verify while a refetch fails, until
    # usable_until; the attempt time throttles refetches.
    ttl = max(entry["usable_until"] - now, settings.AUTHSERVER_JWKS_URI_MIN_CACHE_SECONDS, 1)
    cache.set(_cache_key(uri), entry, timeout=int(ttl) + 1)


def remember(uri: str, fetched: FetchedJwks) -> dict[str, Any]:
    """Cache keys fetched just now (at registration, so the first token request needs no fetch)."""
    now = time.time()
    entry = {
        "keys": fetched.keys,
        "fresh_until": now + fetched.max_age,
        "usable_until": now + settings.AUTHSERVER_JWKS_URI_MAX_CACHE_SECONDS,
        "attempted_at": now,
    }
    _store(uri, entry, now)
    return entry


def forget(uri: str) -> None:
    cache.delete(_cache_key(uri))


def _refetch(uri: str, entry: dict[str, Any] | None, now: float) -> dict[str, Any] | None:
    lock = _cache_key(uri) + ":fetching"
    deadline = float(settings.AUTHSERVER_JWKS_URI_TIMEOUT_SECONDS)
    if not cache.add(lock, 1, timeout=int(deadline) + 5):
        return entry  # another worker is fetching it right now
    try:
        try:
            target = check_uri(uri)
        except JwksUriError as exc:
            log.warning("jwks_uri refused: %s", exc)
            target = None
        if target is not None:
            try:
                fetched = fetch_target(target)
            except JwksUriError as exc:
                log.warning("jwks_uri %s: fetch failed, keeping cached keys if any: %s", target.redacted, exc)
            else:
                log.info("jwks_uri %s: fetched %d keys", target.redacted, len(fetched.keys))
                return remember(uri, fetched)
        # Remember the failed attempt (throttle), keep what was cached until its lifetime ends.
        failed = dict(entry) if entry else {"keys": [], "fresh_until": now, "usable_until": now}
        failed["attempted_at"] = now
        _store(uri, failed, now)
        return failed
    finally:
        cache.delete(lock)


def signing_keys(uri: str, *, kid: str | None = None) -> list[dict[str, Any]]:
    """The keys served at ``uri``, from the cache; refetched when stale or ``kid`` is unknown.

    One cache read when the entry is fresh. A refetch happens at most once per
    AUTHSERVER_JWKS_URI_MIN_CACHE_SECONDS per URI, whatever the callers ask.
    """
    now = time.time()
    entry = cache.get(_cache_key(uri))
    if entry is None:
        entry = _refetch(uri, None, now)
    else:
        keys = entry["keys"] if now < entry["usable_until"] else []
        stale = now >= entry["fresh_until"]
        unknown = kid is not None and all(key.get("kid") != kid for key in keys)
        throttled = now - entry["attempted_at"] < settings.AUTHSERVER_JWKS_URI_MIN_CACHE_SECONDS
        if (stale or unknown) and not throttled:
            entry = _refetch(uri, entry, now)
    if entry is None or now >= entry["usable_until"]:
        return []
    return list(entry["keys"])
