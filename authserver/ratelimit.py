"""Rate limits shared by every web process: the ``limits`` library over Redis.

One call, ``hit("20/hour", "register", ip)``, counts a request against a limit and says
whether it may proceed and, when not, how many seconds until it may (the ``Retry-After``
value). Limits are moving windows (no burst of twice the limit across a window boundary),
written in the ``limits`` notation: ``"20/hour"``, ``"5/minute;100/day"``. An empty limit
string means no limit.

Storage: Redis (``REDIS_URL``) when set, so every web process counts together; otherwise
the process's memory (the embedded default, one process). Should Redis be unreachable the
request is allowed and a warning logged: a rate limit protects capacity, and an outage of
the counter store must not take registration or token issuance down with it.
"""

from __future__ import annotations

import logging
import math
import time
from functools import cache
from typing import cast

from django.conf import settings
from limits import RateLimitItem, parse_many
from limits.storage import Storage, storage_from_string
from limits.strategies import MovingWindowRateLimiter

logger = logging.getLogger(__name__)

# Our keys beside Django's cache keys in the same Redis database.
KEY_PREFIX = "authserver-ratelimit"


def storage_uri() -> str:
    """The ``limits`` storage URI: Redis when configured, else this process's memory."""
    return settings.REDIS_URL or "memory://"


@cache
def _limiter(uri: str) -> MovingWindowRateLimiter:
    options = {"key_prefix": KEY_PREFIX} if uri.startswith(("redis://", "rediss://", "redis+unix://")) else {}
    storage = cast(Storage, storage_from_string(uri, **options))
    return MovingWindowRateLimiter(storage)


@cache
def _items(limit_string: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(limit_string)) if limit_string.strip() else ()


def hit(limit_string: str, *keys: str) -> tuple[bool, int]:
    """Count one request for ``keys`` against ``limit_string``: (allowed, retry_after_seconds).

    Every limit in the string is counted (``"5/minute;100/day"``); the request is refused
    when any of them is exhausted, and ``retry_after_seconds`` is then the wait until the
    longest-blocked limit has room again (at least 1). Allowed requests get 0.
    Raises ValueError for a limit string ``limits`` cannot parse.
    """
    items = _items(limit_string)
    if not items:
        return True, 0
    limiter = _limiter(storage_uri())
    try:
        refused = [item for item in items if not limiter.hit(item, *keys)]
        if not refused:
            return True, 0
        now = time.time()
        reset = max(limiter.get_window_stats(item, *keys).reset_time for item in refused)
    except Exception:  # redis.ConnectionError and kin: fail open (see the module docstring)
        logger.warning("rate limit storage unavailable; allowing the request", exc_info=True)
        return True, 0
    return False, max(1, math.ceil(reset - now))


def reset(limit_string: str, *keys: str) -> None:
    """Forget what was counted for ``keys`` under ``limit_string`` (operators, tests)."""
    limiter = _limiter(storage_uri())
    for item in _items(limit_string):
        limiter.clear(item, *keys)
