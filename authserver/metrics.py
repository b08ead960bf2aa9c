"""Counters for Prometheus, kept in the Django cache so they span every process.

With ``REDIS_URL`` the cache is Redis, shared by all web and worker processes on all hosts,
so ``/metrics`` on any web process answers the totals of the whole deployment: scrape one
of them (through the load balancer), not each, or the series are counted twice. Without
Redis (the embedded defaults) the cache is per process and the numbers are that process's.

Hot-path cost: none on Redis. There a counter family is one hash; a process adds its events
up in memory and sends them within ``FLUSH_SECONDS`` as one pipeline of ``HINCRBY`` (a
timer thread; ``read()`` sends first, and so does a process that exits cleanly). A process
killed outright loses at most that last second of counts. Other cache backends keep one key
per series and use ``incr`` at once, adding the key to the family's index the first time.

A counter is written here and nowhere else; label values are bounded (endpoint families,
status classes, grant types, registered client ids, OAuth error codes, task names), so the
number of series stays small. ``prometheus_client`` is not used: the text exposition format
is a few lines (render() below).
"""

from __future__ import annotations

import atexit
import collections
import hashlib
import json
import logging
import os
import re
import threading
from dataclasses import dataclass
from typing import Any

from django.core.cache import caches
from django.core.cache.backends.redis import RedisCache

log = logging.getLogger(__name__)

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_ERROR_CODE = re.compile(r"^[a-z_]{1,40}$")
_GRANT_TYPES = {"authorization-code": "authorization_code", "client-credentials": "client_credentials"}
_MAX_LABEL = 200


@dataclass(frozen=True)
class Counter:
    name: str
    help: str
    labels: tuple[str, ...]


REQUESTS = Counter(
    "authserver_http_requests_total",
    "HTTP responses by endpoint family (authserver/endpoints.py) and status class.",
    ("family", "status"),
)
TOKENS_ISSUED = Counter(
    "authserver_tokens_issued_total",
    "Access tokens issued, by grant type and client.",
    ("grant_type", "client_id"),
)
TOKEN_ERRORS = Counter(
    "authserver_token_errors_total",
    "Token endpoint error responses by OAuth error code (RFC 6749 §5.2).",
    ("error",),
)
INTROSPECTIONS = Counter(
    "authserver_introspections_total",
    "Introspection requests by result: active, inactive, or refused (client authentication or request failed).",
    ("result",),
)
RATE_LIMIT_HITS = Counter(
    "authserver_rate_limit_hits_total",
    "Requests refused by a rate limit, by endpoint family.",
    ("family",),
)
CELERY_TASKS = Counter(
    "authserver_celery_tasks_total",
    "Celery task outcomes (success, failure, retry) by task name.",
    ("task", "outcome"),
)
COUNTERS: tuple[Counter, ...] = (REQUESTS, TOKENS_ISSUED, TOKEN_ERRORS, INTROSPECTIONS, RATE_LIMIT_HITS, CELERY_TASKS)


# ---- storage -------------------------------------------------------------------------


def _family_key(counter: Counter) -> str:
    return f"metrics:{counter.name}"


def _field(values: tuple[str, ...]) -> str:
    return json.dumps(values, separators=(",", ":"))


def _backend() -> Any:
    return caches["default"]


def _redis(backend: RedisCache, key: str) -> Any:
    # Django's RedisCache has no hash operations; its redis-py client, from the pool it
    # already keeps, does.
    return backend._cache.get_client(key, write=True)  # type: ignore[attr-defined]


def _series_key(counter: Counter, field: str) -> str:
    # Label values may hold any character; cache keys should not (memcached's rules).
    return f"{_family_key(counter)}:{hashlib.sha256(field.encode()).hexdigest()[:32]}"


# ---- batching (Redis) ------------------------------------------------------------------

FLUSH_SECONDS = 1.0
_pending: collections.Counter[tuple[str, str]] = collections.Counter()
_pending_lock = threading.Lock()
_flush_timer: threading.Timer | None = None


def _reset_after_fork() -> None:
    # A forked child (gunicorn or Celery worker) inherits the parent's pending counts but not
    # its timer thread: it starts empty, and the parent still sends its own.
    global _pending, _pending_lock, _flush_timer
    _pending, _pending_lock, _flush_timer = collections.Counter(), threading.Lock(), None


os.register_at_fork(after_in_child=_reset_after_fork)


def _add_pending(key: str, field: str) -> None:
    """One more event for the hash ``key`` (the cache key as made now: a change of the cache's
    key prefix later never moves counts between deployments)."""
    global _flush_timer
    with _pending_lock:
        _pending[(key, field)] += 1
        if _flush_timer is None:
            _flush_timer = threading.Timer(FLUSH_SECONDS, flush)
            _flush_timer.daemon = True
            _flush_timer.start()


def flush() -> None:
    """Send this process's pending counts to Redis, one pipeline. Never raises."""
    global _pending, _flush_timer
    with _pending_lock:
        batch, _pending = _pending, collections.Counter()
        if _flush_timer is not None and _flush_timer is not threading.current_thread():
            _flush_timer.cancel()
        _flush_timer = None
    if not batch:
        return
    try:
        backend = _backend()
        if not isinstance(backend, RedisCache):
            return
        pipeline = _redis(backend, backend.make_and_validate_key("metrics")).pipeline(transaction=False)
        for (key, field), count in batch.items():
            pipeline.hincrby(key, field, count)
        pipeline.execute()
    except Exception:
        log.debug("metrics: could not send %d counts", sum(batch.values()), exc_info=True)


atexit.register(flush)


def increment(counter: Counter, *values: str) -> None:
    """Add one to a series. Never raises: a metrics failure must not fail a request."""
    labels = tuple(str(value)[:_MAX_LABEL] for value in values)
    if len(labels) != len(counter.labels):
        raise ValueError(f"{counter.name} takes labels {counter.labels}")
    field = _field(labels)
    try:
        backend = _backend()
        if isinstance(backend, RedisCache):
            _add_pending(backend.make_and_validate_key(_family_key(counter)), field)
            return
        series_key = _series_key(counter, field)
        try:
            backend.incr(series_key)
        except ValueError:  # the first event of this series
            if backend.add(series_key, 1, timeout=None):
                # Not atomic across processes; one process per cache (locmem) or Redis.
                index_key = f"{_family_key(counter)}:index"
                backend.set(index_key, sorted({*(backend.get(index_key) or ()), field}), timeout=None)
            else:
                backend.incr(series_key)
    except Exception:
        log.debug("metrics: could not count %s", counter.name, exc_info=True)


def read(counter: Counter) -> dict[tuple[str, ...], int]:
    """Every series of a counter with its value (this process's pending counts included)."""
    flush()
    backend = _backend()
    if isinstance(backend, RedisCache):
        key = backend.make_and_validate_key(_family_key(counter))
        raw = _redis(backend, key).hgetall(key)
        pairs = {(field.decode() if isinstance(field, bytes) else field): int(value) for field, value in raw.items()}
    else:
        fields = backend.get(f"{_family_key(counter)}:index") or []
        values = backend.get_many([_series_key(counter, field) for field in fields])
        pairs = {field: int(values.get(_series_key(counter, field), 0)) for field in fields}
    series: dict[tuple[str, ...], int] = {}
    for field, value in pairs.items():
        try:
            labels = tuple(str(label) for label in json.loads(field))
        except ValueError:
            continue
        if len(labels) == len(counter.labels):
            series[labels] = value
    return series


# ---- the events ----------------------------------------------------------------------


def count_request(family: str, status: int) -> None:
    increment(REQUESTS, family, f"{status // 100}xx")


def count_token_issued(grant_type: str, client_id: str) -> None:
    increment(TOKENS_ISSUED, grant_type, client_id)


def count_token_error(error: str) -> None:
    increment(TOKEN_ERRORS, error if _ERROR_CODE.match(error) else "other")


def count_introspection(result: str) -> None:
    increment(INTROSPECTIONS, result)


def count_rate_limit_hit(family: str) -> None:
    """For the rate limiter (the access-policy issue) to call when it refuses a request."""
    increment(RATE_LIMIT_HITS, family)


def count_task(task: str, outcome: str) -> None:
    increment(CELERY_TASKS, task, outcome)


def count_response(family: str, response: Any) -> None:
    """The request counter, plus what the token and introspection responses tell."""
    status = response.status_code
    count_request(family, status)
    if family == "token" and status >= 400:
        count_token_error(str(_json_field(response, "error") or "other"))
    elif family == "introspect":
        if status == 200:
            count_introspection("active" if _json_field(response, "active") is True else "inactive")
        else:
            count_introspection("refused")


def _json_field(response: Any, name: str) -> Any:
    if getattr(response, "streaming", False) or not response.get("Content-Type", "").startswith("application/json"):
        return None
    try:
        data = json.loads(response.content)
    except ValueError:
        return None
    return data.get(name) if isinstance(data, dict) else None


# ---- signal receivers (connected in AuthserverConfig.ready) -------------------------


def access_token_saved(sender: Any, instance: Any, created: bool, **kwargs: Any) -> None:
    """Every issued access token is one new row (DOT's validator saves it), whatever the grant."""
    if not created:
        return
    application = instance.application if type(instance).application.is_cached(instance) else None
    if instance.source_refresh_token_id:
        grant_type = "refresh_token"
    elif application is not None:
        # DOT stores "client-credentials"; the label is the grant_type a client sends.
        grant_type = _GRANT_TYPES.get(application.authorization_grant_type, application.authorization_grant_type)
    else:
        grant_type = "unknown"
    client_id = application.client_id if application is not None else str(instance.application_id or "-")
    count_token_issued(grant_type, client_id)


def task_succeeded(sender: Any = None, **kwargs: Any) -> None:
    count_task(getattr(sender, "name", "unknown"), "success")


def task_failed(sender: Any = None, **kwargs: Any) -> None:
    count_task(getattr(sender, "name", "unknown"), "failure")


def task_retried(sender: Any = None, **kwargs: Any) -> None:
    count_task(getattr(sender, "name", "unknown"), "retry")


def connect_signals() -> None:
    from celery.signals import task_failure, task_retry, task_success
    from django.db.models.signals import post_save
    from oauth2_provider.models import get_access_token_model

    post_save.connect(access_token_saved, sender=get_access_token_model(), dispatch_uid="authserver.metrics.tokens")
    task_success.connect(task_succeeded, dispatch_uid="authserver.metrics.task_success")
    task_failure.connect(task_failed, dispatch_uid="authserver.metrics.task_failure")
    task_retry.connect(task_retried, dispatch_uid="authserver.metrics.task_retry")


# ---- exposition ----------------------------------------------------------------------


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render() -> str:
    """The Prometheus text exposition format (version 0.0.4)."""
    lines: list[str] = []
    for counter in COUNTERS:
        lines.append(f"# HELP {counter.name} {counter.help}")
        lines.append(f"# TYPE {counter.name} counter")
        for labels, value in sorted(read(counter).items()):
            rendered = ",".join(
                f'{name}="{_escape(label)}"' for name, label in zip(counter.labels, labels, strict=True)
            )
            lines.append(f"{counter.name}{{{rendered}}} {value}")
    return "\n".join(lines) + "\n"
