"""Rate limits hold across server processes: two gunicorn servers on the same Redis count together.

Both servers run on this test's database (committed data: ``transactional_db``) and under this
test's rate-limit key prefix (tests/conftest.py), with small limits from their environment, as
a deployment configures them. Requests alternate between the two.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.conf import settings

from authserver.oauth.keys import keyring

from ..authserver.test_worker import database_url
from ..conftest import register_client

START_SECONDS = 30.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen, log: Path) -> None:
    """Poll /healthz (bounded): the servers start in real time, so this waits, not sleeps for time."""
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited:\n{log.read_text()[-4000:]}")
        try:
            if requests.get(f"{url}/healthz", timeout=5).status_code == 200:
                return
        except (requests.ConnectionError, requests.Timeout):
            pass
        time.sleep(0.1)
    pytest.fail(f"the server did not start in {START_SECONDS:.0f}s:\n{log.read_text()[-4000:]}")


@pytest.fixture
def two_servers(transactional_db, tmp_path, settings) -> Iterator[list[str]]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DATABASE_CONN_MAX_AGE": "0",
        "AUTHSERVER_ENVIRONMENT": "test",
        "DJANGO_SETTINGS_MODULE": "authserver.settings",
        "AUTHSERVER_RATE_LIMIT_KEY_PREFIX": settings.AUTHSERVER_RATE_LIMIT_KEY_PREFIX,
        "AUTHSERVER_RATE_LIMIT_TOKEN": "3/minute",
        "AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP": "6/minute",
    }
    assert env.get("REDIS_URL"), "the rate limit tests need Redis (make test)"
    servers: list[tuple[str, subprocess.Popen, Path]] = []
    try:
        for n in range(2):
            port, log = free_port(), tmp_path / f"server-{n}.log"
            command = [sys.executable, "-m", "gunicorn", "authserver.wsgi:application"]
            command += ["--bind", f"127.0.0.1:{port}", "--workers", "1", "--error-logfile", "-"]
            with log.open("w") as output:
                process = subprocess.Popen(
                    command, cwd=settings.BASE_DIR, env=env, stdout=output, stderr=subprocess.STDOUT
                )
            servers.append((f"http://127.0.0.1:{port}", process, log))
        for url, process, log in servers:
            wait_until_ready(url, process, log)
        yield [url for url, _process, _log in servers]
    finally:
        for _url, process, _log in servers:
            process.send_signal(signal.SIGINT)  # gunicorn's quick shutdown (SIGTERM waits for workers)
        for _url, process, _log in servers:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def test_client_and_address_limits_hold_across_two_server_processes(two_servers, organisation):
    keyring.signing_key(settings.AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG)  # committed, so the servers sign with it
    one, two = (
        register_client(
            organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
        )
        for _ in range(2)
    )
    a, b = two_servers

    def token(server: str, registered) -> requests.Response:
        return requests.post(
            f"{server}/oauth/token",
            data={"grant_type": "client_credentials", "scope": "orders:read"},
            auth=(registered.client_id, registered.secret),
            timeout=10,
        )

    # Per client, 3 a minute: the fourth request is refused by whichever server gets it.
    answers = [token(server, one) for server in (a, b, a, b)]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 429], [r.text for r in answers]
    refused = answers[-1]
    assert refused.json()["error"] == "too_many_requests"
    assert "This client" in refused.json()["error_description"]
    assert 1 <= int(refused.headers["Retry-After"]) <= 60
    assert "no-store" in refused.headers["Cache-Control"]
    assert token(a, one).status_code == 429

    # Per address, 6 a minute over both servers: five counted so far, so one more gets through.
    assert token(b, two).status_code == 200
    over = token(a, two)
    assert over.status_code == 429
    assert "from this address" in over.json()["error_description"]
