"""Process-local copies of what every token request reads, valid for one generation.

The token and introspection endpoints read the same few rows on every request: the client
with its organisation, its usable credentials, the scope catalogue, the client's rate-limit
budget. Each process keeps them in memory, tagged with the deployment's *generation*: a
value in the shared cache (Redis) that every change to those rows replaces (signals on
save and delete below; services that change rows in bulk call :func:`bump`). A request reads
the generation once (one Redis GET), so a revoked credential, a suspended client or
organisation, a changed scope stops working on the next request in every process.

When the shared cache cannot be read, or there is none (the embedded defaults keep a cache
per process, which cannot carry another process's change), nothing local is trusted: every
lookup goes to the database. Entries also live at most ``AUTHSERVER_ISSUANCE_CACHE_SECONDS``, which bounds what
a change made behind Django's back (SQL, a bulk ``update()`` nobody bumped for) can leave.
Outside a request (Celery, commands) the generation is read on every lookup.

Values are shared by every request of the process: treat them as read-only.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction

log = logging.getLogger(__name__)

T = TypeVar("T")

# Part of the key: a process never reads entries of an older shape.
CACHE_VERSION = 1
# A bound on the entries one process keeps (clients x kinds); past it the store starts over.
MAX_ENTRIES = 10_000


class _RequestScope:
    __slots__ = ("generation", "read")

    def __init__(self) -> None:
        self.generation: str | None = None
        self.read = False


_scope: ContextVar[_RequestScope | None] = ContextVar("authserver_hotcache_scope", default=None)
_lock = threading.Lock()
_store: dict[tuple[str, str], Any] = {}
_store_generation: str | None = None
_store_started = 0.0


def _generation_key() -> str:
    # The database name: deployments (and test workers) sharing one Redis stay apart.
    return f"hotcache:v{CACHE_VERSION}:{connection.settings_dict['NAME']}:generation"


def _shared_cache() -> bool:
    # A per-process cache (the embedded defaults' local memory) cannot tell this process what
    # another one (a management command, the worker) changed: then nothing is kept locally.
    backend = settings.CACHES["default"]["BACKEND"]
    return not backend.endswith(("LocMemCache", "DummyCache"))


def _read_generation() -> str | None:
    if not _shared_cache():
        return None
    key = _generation_key()
    try:
        generation = cache.get(key)
        if generation is None:
            cache.add(key, uuid.uuid4().hex, timeout=None)
            generation = cache.get(key)
    except Exception:
        log.warning("shared cache unavailable: process-local copies are not used", exc_info=True)
        return None
    return None if generation is None else str(generation)


def begin_request() -> None:
    """Start a request: its first lookup reads the generation, the others reuse it."""
    _scope.set(_RequestScope())


def end_request() -> None:
    _scope.set(None)


def generation() -> str | None:
    """The current generation (once per request), or None when it cannot be read."""
    scope = _scope.get()
    if scope is None:
        return _read_generation()
    if not scope.read:
        scope.generation = _read_generation()
        scope.read = True
    return scope.generation


def local(kind: str, key: str, loader: Callable[[], T], *, keep: Callable[[T], bool] | None = None) -> T:
    """``loader()``'s value, kept in this process for the current generation.

    ``keep`` decides whether a value is kept (e.g. not an unknown client: any string can be
    asked for, and misses must not fill the store).
    """
    global _store, _store_generation, _store_started
    current = generation()
    if current is None:
        return loader()
    now = time.monotonic()
    with _lock:
        if current != _store_generation or now - _store_started > settings.AUTHSERVER_ISSUANCE_CACHE_SECONDS:
            _store, _store_generation, _store_started = {}, current, now
        store = _store
        try:
            return cast(T, store[(kind, key)])
        except KeyError:
            pass
    value = loader()
    if keep is None or keep(value):
        with _lock:
            if store is _store:
                if len(store) >= MAX_ENTRIES:
                    store.clear()
                store[(kind, key)] = value
    return value


def forget_local() -> None:
    """Drop this process's copies (tests; the generation still decides for other processes)."""
    global _store, _store_generation
    with _lock:
        _store, _store_generation = {}, None


def bump() -> None:
    """Invalidate every process's copies: now, and again when the transaction commits (a
    request may read the old rows in between and keep them under the new generation)."""
    replace_generation()
    transaction.on_commit(replace_generation, robust=True)


def replace_generation() -> None:
    """Invalidate every process's copies now (outside a transaction; :func:`bump` inside one)."""
    forget_local()
    scope = _scope.get()
    if scope is not None:
        scope.read = False  # this request's own later lookups see the change too
    try:
        cache.set(_generation_key(), uuid.uuid4().hex, timeout=None)
    except Exception:
        log.warning("could not invalidate the process-local copies; they expire on their own", exc_info=True)


def _changed(**kwargs: Any) -> None:
    bump()


def connect_signals() -> None:
    """Every model whose rows the copies hold (called from AuthserverConfig.ready)."""
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from authserver.models import ApiResource, NetworkZone, RateLimitTier, Scope
    from clients.models import Client, ClientCredential
    from onboarding.models import Organisation

    for model in (Client, ClientCredential, Organisation, Scope, ApiResource, NetworkZone, RateLimitTier):
        post_save.connect(_changed, sender=model, dispatch_uid=f"hotcache-save-{model.__name__}")
        post_delete.connect(_changed, sender=model, dispatch_uid=f"hotcache-delete-{model.__name__}")
    for field in (
        Scope.allowed_zones,
        NetworkZone.clients,
        ApiResource.introspectors,
        RateLimitTier.clients,
        RateLimitTier.organisations,
    ):
        through = field.through
        m2m_changed.connect(_changed, sender=through, dispatch_uid=f"hotcache-m2m-{through.__name__}")
