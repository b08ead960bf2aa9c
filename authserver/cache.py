"""Django's Redis cache backend, minus a per-call cost.

Django's ``RedisCacheClient.get_client`` builds a new ``redis.Redis`` object on every cache
operation (over the same connection pool); building one sets up its table of response
callbacks, which costs about as much as the round trip to a local Redis. The hot paths make
several cache operations per request, so this client keeps one ``redis.Redis`` per pool: it
is thread-safe, and its pool already handles forks (redis-py checks the pid).
"""

from __future__ import annotations

from typing import Any

from django.core.cache.backends.redis import RedisCache as DjangoRedisCache
from django.core.cache.backends.redis import RedisCacheClient


class _ReusingClient(RedisCacheClient):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clients: dict[int, Any] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> Any:
        pool = self._get_connection_pool(write)  # type: ignore[attr-defined]
        client = self._clients.get(id(pool))
        if client is None:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)  # type: ignore[attr-defined]
        return client


class RedisCache(DjangoRedisCache):
    def __init__(self, server: Any, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = _ReusingClient
