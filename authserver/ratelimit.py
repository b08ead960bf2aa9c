"""Rate limits shared by every web process: the ``limits`` library over Redis.

What is limited (budgets in the ``limits`` notation, ``"300/minute"``, ``"5/minute;100/day"``;
an empty string means no limit; docs/operations.md "Rate limits"):

- token endpoint: per caller address before anything else (``AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP``),
  then, once the client is authenticated, per client and per organisation (the client's
  RateLimitTier, else ``AUTHSERVER_RATE_LIMIT_TOKEN`` / ``..._ORGANISATION_TOKEN``);
- introspection: per caller address, then per authenticated resource server (its tier's
  ``introspection_rate``, else ``AUTHSERVER_RATE_LIMIT_INTROSPECTION``);
- registration: anonymous (open mode) registrations per address (clients/dcr.py, ``hit``);
- authorization endpoint: per address; login (``/accounts/login/``, the admin's): attempts
  (POSTs) per address and per username.

Per client only after authentication, never per the client_id a request merely claims: counting
unauthenticated attempts against a claimed client_id would let anyone exhaust a victim client's
budget, while guessing credentials is what the per-address limit stops.

Tiers: a tier on the client wins over one on its organisation; among several at one level each
budget is the most generous of them. A client's budget is kept in the process
(authserver/hotcache.py) and forgotten in every process as soon as a tier or its assignment
changes: the token endpoint pays no query for it.

Storage: ``AUTHSERVER_RATE_LIMIT_STORAGE_URL``, else Redis (``REDIS_URL``) so every process
counts together, else this process's memory (the embedded default, one process). Limits are
moving windows: no burst of twice the limit across a window boundary.

Counter store unreachable: each endpoint group fails open (the request proceeds) or closed
(503 ``temporarily_unavailable`` with ``Retry-After``) per ``AUTHSERVER_RATE_LIMIT_FAILURE_MODE``;
by default token issuance fails closed (an unmetered token endpoint is what the limits exist to
prevent) and everything else open (an outage of the counter store must not lock people out).
A warning is logged, at most once per ``STORAGE_RETRY_SECONDS`` per process, during which the
process does not try the store again.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging
import math
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import astuple, dataclass
from enum import StrEnum
from functools import cache, lru_cache, wraps
from typing import Any, cast

from django.conf import settings
from django.core import checks
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template.response import TemplateResponse
from limits import RateLimitItem, parse_many
from limits.errors import StorageError
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter
from oauthlib.oauth2.rfc6749 import errors as oauth_errors

from . import hotcache, metrics
from .endpoints import endpoint_family
from .network import client_address

logger = logging.getLogger(__name__)


class Group(StrEnum):
    """Endpoint groups: each has its own failure mode."""

    TOKEN = "token"
    INTROSPECTION = "introspection"
    REGISTRATION = "registration"
    AUTHORIZE = "authorize"
    LOGIN = "login"


OPEN, CLOSED = "open", "closed"
DEFAULT_FAILURE_MODES: dict[str, str] = {group.value: OPEN for group in Group} | {Group.TOKEN.value: CLOSED}
# Retry-After of a 503 while the counter store is unreachable.
UNAVAILABLE_RETRY_AFTER = 10
# After the store failed, this process answers by the failure mode without trying it for this long.
STORAGE_RETRY_SECONDS = 5.0
# Connect and read timeouts towards Redis: a store that hangs costs a request at most this long.
STORAGE_TIMEOUT_SECONDS = 0.5
RATE_LIMITED = "too_many_requests"  # clients/dcr.py answers the same code
UNAVAILABLE = "temporarily_unavailable"  # RFC 6749 §4.1.2.1
TEMPLATE = "429.html"


@dataclass(frozen=True)
class Decision:
    """Whether a request may proceed; when not, for how long (``Retry-After``) and why."""

    allowed: bool
    retry_after: int = 0
    unavailable: bool = False  # the counter store is unreachable and this group fails closed
    subject: str = ""  # what ran out: address, client, organisation, username

    def describe(self, what: str) -> str:
        if self.unavailable:
            return f"Rate limiting is temporarily unavailable; try again in {self.retry_after} seconds."
        by = {
            "address": f"Too many {what} from this address",
            "client": f"This client has used up its budget for {what}",
            "organisation": f"This client's organisation has used up its budget for {what}",
            "username": f"Too many {what} for this username",
        }.get(self.subject, f"Too many {what}")
        return f"{by}; try again in {self.retry_after} seconds."


ALLOWED = Decision(allowed=True)


# ---- the limit notation ------------------------------------------------------------


@cache
def _items(limit_string: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(limit_string)) if limit_string.strip() else ()


def validate_limit(value: str) -> None:
    """Django validator: a limit in the ``limits`` notation, or empty for none."""
    try:
        _items(value)
    except ValueError:
        raise ValidationError(
            "Write a rate as an amount per period, e.g. 600/minute or 5/second;1000/day.", code="invalid"
        ) from None


def _rate_per_second(limit_string: str) -> float:
    """How much a limit allows, sustained: its tightest item (no limit: infinite)."""
    items = _items(limit_string)
    return min((item.amount / item.get_expiry() for item in items), default=math.inf)


def most_generous(limit_strings: Iterable[str]) -> str | None:
    """The limit that allows the most; invalid ones are skipped (None when none is valid)."""
    valid = []
    for limit in limit_strings:
        try:
            valid.append((_rate_per_second(limit), limit))
        except ValueError:
            logger.error("rate limit tier with an invalid limit %r ignored", limit)
    return max(valid, key=lambda pair: pair[0])[1] if valid else None


# ---- storage and counting ----------------------------------------------------------


def storage_uri() -> str:
    """The ``limits`` storage URI: the configured one, else Redis, else this process's memory."""
    return settings.AUTHSERVER_RATE_LIMIT_STORAGE_URL or settings.REDIS_URL or "memory://"


_limiter_lock = threading.Lock()


@lru_cache(maxsize=8)
def _limiter(uri: str, key_prefix: str) -> MovingWindowRateLimiter:
    options: dict[str, Any] = {"wrap_exceptions": True}
    if uri.startswith(("redis://", "rediss://", "redis+unix://")):
        options.update(
            key_prefix=key_prefix,
            socket_connect_timeout=STORAGE_TIMEOUT_SECONDS,
            socket_timeout=STORAGE_TIMEOUT_SECONDS,
        )
    # ``limits`` imports its Redis dependency lazily, and two threads doing it at once make one
    # of them see "redis version 0.0.0" (a ConfigurationError, a 500): measured under a threaded
    # application server (bench/). One thread at a time builds a storage.
    with _limiter_lock:
        storage = cast(Storage, storage_from_string(uri, **options))
    return MovingWindowRateLimiter(storage)


def limiter() -> MovingWindowRateLimiter:
    return _limiter(storage_uri(), settings.AUTHSERVER_RATE_LIMIT_KEY_PREFIX)


_storage_down_until: dict[str, float] = {}


def failure_mode(group: str) -> str:
    configured = {**DEFAULT_FAILURE_MODES, **settings.AUTHSERVER_RATE_LIMIT_FAILURE_MODE}
    return OPEN if configured.get(group) == OPEN else CLOSED


def _storage_unavailable(group: str) -> Decision:
    if failure_mode(group) == OPEN:
        return ALLOWED
    return Decision(allowed=False, retry_after=UNAVAILABLE_RETRY_AFTER, unavailable=True)


def check(group: str, limit_string: str, *keys: str, subject: str = "") -> Decision:
    """Count one request for ``keys`` against every limit in ``limit_string``.

    Refused when any of them is exhausted; ``retry_after`` is then the wait until the
    longest-blocked one has room again (at least 1). A refused request is not counted.
    Raises ValueError for a limit ``limits`` cannot parse.
    """
    items = _items(limit_string)
    if not items:
        return ALLOWED
    uri = storage_uri()
    if _storage_down_until.get(uri, 0.0) > time.monotonic():
        return _storage_unavailable(group)
    counter = limiter()
    try:
        refused = [item for item in items if not counter.hit(item, *keys)]
        if not refused:
            return ALLOWED
        now = time.time()
        reset_at = max(counter.get_window_stats(item, *keys).reset_time for item in refused)
    except StorageError as exc:
        _storage_down_until[uri] = time.monotonic() + STORAGE_RETRY_SECONDS
        # The exception names host and port at most; the URI (a password) is never logged.
        logger.warning(
            "rate limit storage unreachable (%s: %s); %s requests fail %s for %s seconds",
            type(exc.storage_error).__name__,
            exc.storage_error,
            group,
            failure_mode(group),
            STORAGE_RETRY_SECONDS,
        )
        return _storage_unavailable(group)
    return Decision(allowed=False, retry_after=max(1, math.ceil(reset_at - now)), subject=subject)


def _first_refusal(group: str, limits: Iterable[tuple[str, tuple[str, ...], str]]) -> Decision:
    for limit_string, keys, subject in limits:
        decision = check(group, limit_string, group, subject, *keys, subject=subject)
        if not decision.allowed:
            return decision
    return ALLOWED


def hit(limit_string: str, *keys: str) -> tuple[bool, int]:
    """(allowed, retry_after_seconds) for RFC 7591 registration (clients/dcr.py), per
    ``check`` under the registration group's failure mode. A closed registration group answers
    an unreachable store as (False, UNAVAILABLE_RETRY_AFTER): dcr.py then says 429."""
    decision = check(Group.REGISTRATION, limit_string, *keys)
    return decision.allowed, decision.retry_after


def reset(limit_string: str, *keys: str) -> None:
    """Forget what was counted for ``keys`` under ``limit_string`` (operators, tests)."""
    counter = limiter()
    for item in _items(limit_string):
        counter.clear(item, *keys)


# ---- who is asking -----------------------------------------------------------------


def caller_address(request: HttpRequest) -> str:
    """The caller's address: the socket peer, or X-Forwarded-For from a trusted proxy only."""
    return client_address(request) or "unknown"


def address_key(address: str) -> str:
    """IPv4 addresses as they are; IPv6 by /64, the smallest block one subscriber gets."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address[:64]
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


def username_key(username: str) -> str:
    # Keyed hash: the counter store never holds a username (often an email address).
    normalised = username.strip().casefold().encode()
    return hmac.new(settings.SECRET_KEY.encode(), normalised, hashlib.sha256).hexdigest()[:32]


# ---- budgets: tiers ----------------------------------------------------------------


@dataclass(frozen=True)
class Budget:
    token: str
    introspection: str
    organisation_token: str


_TIER_FIELDS = ("token_rate", "introspection_rate", "organisation_token_rate")


def default_budget() -> Budget:
    return Budget(
        token=settings.AUTHSERVER_RATE_LIMIT_TOKEN,
        introspection=settings.AUTHSERVER_RATE_LIMIT_INTROSPECTION,
        organisation_token=settings.AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN,
    )


def _tier_rates(client: Any) -> tuple[str, ...]:
    """The tier-given rates of a client: () when no tier applies (then the settings decide)."""
    from .models import RateLimitTier

    rows = list(RateLimitTier.objects.filter(clients=client.pk).values_list(*_TIER_FIELDS))
    if not rows and client.organisation_id:
        rows = list(RateLimitTier.objects.filter(organisations=client.organisation_id).values_list(*_TIER_FIELDS))
    if not rows:
        return ()
    rates = (most_generous(column) for column in zip(*rows, strict=True))
    # A column of only invalid limits (the model validates them) falls back to the setting.
    return tuple(
        default if rate is None else rate for rate, default in zip(rates, astuple(default_budget()), strict=True)
    )


def budget_for(client: Any) -> Budget:
    """The client's budgets: its tiers, else its organisation's, else the settings.

    Kept in the process for the current generation (authserver/hotcache.py): a change to a
    tier, its clients or organisations replaces the generation, so it counts from the next
    request in every process."""
    rates = hotcache.local("ratelimit-budget", client.client_id, lambda: _tier_rates(client))
    return Budget(*rates) if len(rates) == len(_TIER_FIELDS) else default_budget()


# ---- the endpoints' checks ---------------------------------------------------------


def token_request(request: HttpRequest) -> Decision:
    """Before anything else at /oauth/token: the caller's address."""
    address = address_key(caller_address(request))
    return _first_refusal(Group.TOKEN, [(settings.AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP, (address,), "address")])


def token_client(client: Any) -> Decision:
    """After client authentication: the client's budget, then its organisation's."""
    budget = budget_for(client)
    limits = [(budget.token, (client.client_id,), "client")]
    if client.organisation_id:
        limits.append((budget.organisation_token, (str(client.organisation_id),), "organisation"))
    return _first_refusal(Group.TOKEN, limits)


def introspection_request(request: HttpRequest) -> Decision:
    address = address_key(caller_address(request))
    limit = settings.AUTHSERVER_RATE_LIMIT_INTROSPECTION_PER_IP
    return _first_refusal(Group.INTROSPECTION, [(limit, (address,), "address")])


def introspection_client(client: Any) -> Decision:
    """After the resource server authenticated: its introspection budget."""
    budget = budget_for(client)
    return _first_refusal(Group.INTROSPECTION, [(budget.introspection, (client.client_id,), "client")])


def authorize_request(request: HttpRequest) -> Decision:
    address = address_key(caller_address(request))
    return _first_refusal(Group.AUTHORIZE, [(settings.AUTHSERVER_RATE_LIMIT_AUTHORIZE_PER_IP, (address,), "address")])


def login_attempt(request: HttpRequest) -> Decision:
    """A sign-in attempt (a POST): per address, then per username (the form's ``username``)."""
    limits = [(settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP, (address_key(caller_address(request)),), "address")]
    username = request.POST.get("username", "")
    if username.strip():
        limits.append((settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_USERNAME, (username_key(username),), "username"))
    return _first_refusal(Group.LOGIN, limits)


# ---- answers -----------------------------------------------------------------------


def _count(request: HttpRequest | None, decision: Decision, family: str = "") -> None:
    if not decision.unavailable:
        metrics.count_rate_limit_hit(family or (endpoint_family(request.path_info) if request else "other"))


def oauth_response(request: HttpRequest, decision: Decision, what: str) -> JsonResponse:
    """429 ``too_many_requests`` (or 503 ``temporarily_unavailable``) in RFC 6749 §5.2's JSON."""
    _count(request, decision)
    error, status = (UNAVAILABLE, 503) if decision.unavailable else (RATE_LIMITED, 429)
    response = JsonResponse({"error": error, "error_description": decision.describe(what)}, status=status)
    response["Retry-After"] = str(decision.retry_after)
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


def html_response(request: HttpRequest, decision: Decision, what: str) -> HttpResponse:
    """The same refusal as a page, for browsers (authorization endpoint, sign-in)."""
    _count(request, decision)
    context = {
        "retry_after": decision.retry_after,
        "unavailable": decision.unavailable,
        "message": decision.describe(what),
    }
    response = TemplateResponse(request, TEMPLATE, context, status=503 if decision.unavailable else 429)
    response["Retry-After"] = str(decision.retry_after)
    response["Cache-Control"] = "no-store"
    return response.render()


class TooManyRequestsError(oauth_errors.OAuth2Error):
    """RFC 6585 §4 in RFC 6749 §5.2's JSON, raised inside oauthlib (the validator)."""

    error = RATE_LIMITED
    status_code = 429

    def __init__(self, decision: Decision, description: str, request: Any = None) -> None:
        super().__init__(description=description, request=request)
        self.retry_after = decision.retry_after

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimitUnavailableError(TooManyRequestsError):
    """The counter store is unreachable and token issuance fails closed (RFC 6749 §4.1.2.1's code)."""

    error = UNAVAILABLE
    status_code = 503


def enforce_token_budget(client: Any, request: Any) -> None:
    """For the validator, once the client is authenticated: raise when its budget is spent."""
    decision = token_client(client)
    if decision.allowed:
        return
    _count(None, decision, family="token")
    error_class = RateLimitUnavailableError if decision.unavailable else TooManyRequestsError
    raise error_class(decision, decision.describe("token requests"), request=request)


def limit_login(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Wrap a login view: sign-in attempts (POSTs) are limited per address and username."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if request.method == "POST":
            decision = login_attempt(request)
            if not decision.allowed:
                return html_response(request, decision, "sign-in attempts")
        return view(request, *args, **kwargs)

    return wrapped


# ---- configuration checks ----------------------------------------------------------

_LIMIT_SETTINGS = (
    "AUTHSERVER_RATE_LIMIT_TOKEN",
    "AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN",
    "AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP",
    "AUTHSERVER_RATE_LIMIT_INTROSPECTION",
    "AUTHSERVER_RATE_LIMIT_INTROSPECTION_PER_IP",
    "AUTHSERVER_RATE_LIMIT_AUTHORIZE_PER_IP",
    "AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP",
    "AUTHSERVER_RATE_LIMIT_LOGIN_PER_USERNAME",
    "AUTHSERVER_REGISTRATION_RATE_LIMIT",
)


@checks.register(checks.Tags.security)
def check_rate_limit_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    problems: list[checks.CheckMessage] = []
    for name in _LIMIT_SETTINGS:
        try:
            _items(getattr(settings, name))
        except ValueError:
            problems.append(
                checks.Error(f"{name} is not a rate in the limits notation (e.g. 300/minute).", id="authserver.E020")
            )
    for group, mode in settings.AUTHSERVER_RATE_LIMIT_FAILURE_MODE.items():
        if group not in set(Group) or mode not in (OPEN, CLOSED):
            problems.append(
                checks.Error(
                    f"AUTHSERVER_RATE_LIMIT_FAILURE_MODE: {group}={mode} is not <group>={OPEN}|{CLOSED} "
                    f"with a group of {', '.join(Group)}.",
                    id="authserver.E021",
                )
            )
    return problems
