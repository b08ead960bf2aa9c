"""Process-local copies (authserver/hotcache.py): kept for one generation, dropped in every
process by any change, never trusted without a shared cache.

The cross-process tests run a real gunicorn server on this test's database: its worker warms
its copies with a token request, the change happens here (another process, as the admin or a
Celery job would make it), and the server's very next request must see it.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator

import pytest
import requests
from django.conf import settings

from authserver import hotcache
from authserver.oauth.keys import keyring
from clients.models import ClientCredential
from clients.services import client_credential_revoke, client_credential_rotate, client_suspend
from onboarding.services import organisation_suspend

from ..authserver.test_worker import database_url
from ..conftest import register_client
from ..factories import OrganisationFactory
from ..protocol.test_rate_limits import free_port, wait_until_ready


def test_a_value_is_kept_for_one_generation(db):
    calls = []

    def loader() -> int:
        calls.append(1)
        return len(calls)

    hotcache.begin_request()
    try:
        assert hotcache.local("test", "key", loader) == 1
        assert hotcache.local("test", "key", loader) == 1
    finally:
        hotcache.end_request()
    assert hotcache.local("test", "key", loader) == 1  # outside a request too, same generation
    hotcache.replace_generation()  # what any change does, in whichever process
    assert hotcache.local("test", "key", loader) == 2
    assert len(calls) == 2


def test_a_request_reads_the_generation_once(db, django_assert_num_queries, monkeypatch):
    reads = []
    real = hotcache._read_generation
    monkeypatch.setattr(hotcache, "_read_generation", lambda: reads.append(1) or real())
    hotcache.begin_request()
    try:
        for key in ("a", "b", "c"):
            hotcache.local("test", key, lambda: None)
    finally:
        hotcache.end_request()
    assert len(reads) == 1


def test_values_a_keep_rule_refuses_are_not_kept(db):
    calls = []
    for _ in range(2):
        hotcache.local("test", "missing", lambda: calls.append(1), keep=lambda value: value is not None)
    assert len(calls) == 2


def test_entries_expire_with_the_issuance_cache_lifetime(db, settings, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(hotcache.time, "monotonic", lambda: now[0])
    hotcache.forget_local()
    calls = []
    hotcache.local("test", "ttl", lambda: calls.append(1))
    now[0] += settings.AUTHSERVER_ISSUANCE_CACHE_SECONDS - 1
    hotcache.local("test", "ttl", lambda: calls.append(1))
    assert len(calls) == 1
    now[0] += 2
    hotcache.local("test", "ttl", lambda: calls.append(1))
    assert len(calls) == 2


def test_the_store_is_bounded(db, monkeypatch):
    monkeypatch.setattr(hotcache, "MAX_ENTRIES", 3)
    hotcache.forget_local()
    for n in range(10):
        hotcache.local("test", str(n), lambda n=n: n)
    assert len(hotcache._store) <= 3


def test_nothing_is_kept_without_a_shared_cache(db, settings):
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "hc"}}
    calls = []
    for _ in range(2):
        hotcache.local("test", "local-memory", lambda: calls.append(1))
    assert len(calls) == 2


def test_nothing_is_kept_when_the_shared_cache_is_down(db, settings):
    settings.CACHES = {"default": {"BACKEND": "authserver.cache.RedisCache", "LOCATION": "redis://127.0.0.1:1/0"}}
    calls = []
    for _ in range(2):
        hotcache.local("test", "down", lambda: calls.append(1))
    assert len(calls) == 2


# ---- across processes ------------------------------------------------------------------


@pytest.fixture
def server(transactional_db, tmp_path) -> Iterator[str]:
    keyring.signing_key(settings.AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG)  # committed: the server signs with it
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DATABASE_CONN_MAX_AGE": "60",
        "AUTHSERVER_ENVIRONMENT": "test",
        "DJANGO_SETTINGS_MODULE": "authserver.settings",
    }
    assert env.get("REDIS_URL"), "these tests need Redis (make test)"
    port, log = free_port(), tmp_path / "server.log"
    command = [sys.executable, "-m", "gunicorn", "authserver.wsgi:application", "--bind", f"127.0.0.1:{port}"]
    command += ["--workers", "1", "--error-logfile", "-"]
    with log.open("w") as output:
        process = subprocess.Popen(command, cwd=settings.BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(url, process, log)
        yield url
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _token(server: str, client_id: str, secret: str) -> requests.Response:
    return requests.post(
        f"{server}/oauth/token",
        data={"grant_type": "client_credentials"},
        auth=(client_id, secret),
        timeout=10,
    )


def _warm(server: str, client_id: str, secret: str) -> None:
    for _ in range(3):  # the worker now holds the client and its secrets in memory
        assert _token(server, client_id, secret).status_code == 200


@pytest.mark.parametrize(
    "change",
    ["revoke the secret", "suspend the client", "suspend the organisation"],
)
def test_a_change_in_another_process_counts_on_the_next_request(server, change):
    organisation = OrganisationFactory()
    registered = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    )
    _warm(server, registered.client_id, registered.secret)
    if change == "revoke the secret":
        credential = ClientCredential.objects.get(client=registered.client)
        client_credential_revoke(credential_id=credential.pk)
    elif change == "suspend the client":
        client_suspend(client_id=registered.client.pk, reason="test")
    else:
        organisation_suspend(organisation_id=organisation.pk, actor=None, reason="test")  # a system job

    refused = _token(server, registered.client_id, registered.secret)
    assert refused.status_code == 401, refused.text
    assert refused.json()["error"] == "invalid_client"


def test_a_rotated_secret_works_at_once_in_another_process(server):
    registered = register_client(
        OrganisationFactory(), grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    )
    _warm(server, registered.client_id, registered.secret)
    rotated = client_credential_rotate(client_id=registered.client.pk)
    assert _token(server, registered.client_id, rotated.secret).status_code == 200
    assert _token(server, registered.client_id, registered.secret).status_code == 200  # the overlap
