"""authserver in its production shape: AUTHSERVER_ENVIRONMENT=production behind a (simulated)
TLS proxy, PostgreSQL, Redis, and the application server configuration from deploy/."""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import sys
from pathlib import Path

from .procs import Server

REPO = Path(__file__).resolve().parents[2]
ISSUER = "https://auth.bench.example"
HOST = "auth.bench.example"
# What the TLS-terminating proxy adds to every request it forwards (deploy/nginx/).
PROXY_HEADERS = {"Host": HOST, "X-Forwarded-Proto": "https"}
# Limits far above what one core can serve: the limiter runs on every request, as in
# production, and never refuses (the rate-limit tests prove refusals).
UNLIMITED = "1000000/minute"
# The application server deploy/ runs (deploy/granian.sh), chosen by this benchmark.
DEFAULT_APP_SERVER = "granian"


def environment(database_url: str, redis_url: str) -> dict[str, str]:
    fernet = base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/root"),
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "authserver.settings",
        "AUTHSERVER_ENVIRONMENT": "production",
        "AUTHSERVER_ISSUER": ISSUER,
        "ALLOWED_HOSTS": f"{HOST},127.0.0.1",
        "AUTHSERVER_BEHIND_TLS_PROXY": "true",
        "AUTHSERVER_DATA_DIR": str(REPO / "bench" / "out" / "data"),
        "SECRET_KEY": secrets.token_urlsafe(50),
        "AUTHSERVER_KEY_ENCRYPTION_KEYS": fernet,
        "AUTHSERVER_SECRET_PEPPER": secrets.token_urlsafe(32),
        "AUTHSERVER_PAIRWISE_SALT": secrets.token_urlsafe(32),
        "AUTHSERVER_METRICS_TOKEN": secrets.token_urlsafe(32),
        "AUTHSERVER_CLIENT_SECRETS_ENABLED": "true",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "CELERY_BROKER_URL": redis_url,
        "AUTHSERVER_RATE_LIMIT_TOKEN": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_ORGANISATION_TOKEN": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_INTROSPECTION": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_INTROSPECTION_PER_IP": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_AUTHORIZE_PER_IP": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP": UNLIMITED,
        "AUTHSERVER_RATE_LIMIT_LOGIN_PER_USERNAME": UNLIMITED,
        "LOG_LEVEL": "WARNING",
    }


def prepare_database(env: dict[str, str], fixture: Path, log: Path) -> None:
    """Recreate the benchmark database, migrate it and seed it (bench/harness/seed.py)."""
    name = env["DATABASE_URL"].rsplit("/", 1)[1]
    for command in (["dropdb", "--if-exists", "--force", name], ["createdb", name]):
        subprocess.run([*command, "-h", "127.0.0.1", "-U", "postgres"], check=True, capture_output=True)
    with log.open("ab") as output:
        for command in (
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            [sys.executable, "bench/harness/seed.py", str(fixture)],
        ):
            subprocess.run(command, cwd=REPO, env=env, check=True, stdout=output, stderr=subprocess.STDOUT)


def gunicorn(env: dict[str, str], port: int, log: Path, extra: dict[str, str] | None = None) -> Server:
    server_env = {**env, "GUNICORN_BIND": f"127.0.0.1:{port}", "GUNICORN_ACCESSLOG": str(log.with_suffix(".access"))}
    server_env.update(extra or {})
    return Server(
        name="authserver (gunicorn)",
        command=[str(REPO / ".venv/bin/gunicorn"), "-c", "deploy/gunicorn.conf.py", "authserver.wsgi:application"],
        env=server_env,
        port=port,
        cwd=REPO,
        log=log,
        ready_path="/healthz",
    )


def granian(env: dict[str, str], port: int, log: Path, extra: dict[str, str] | None = None) -> Server:
    """granian's WSGI server as deploy/granian.sh runs it (its GRANIAN_* settings from ``extra``)."""
    server_env = {**env, "GRANIAN_HOST": "127.0.0.1", "GRANIAN_PORT": str(port)}
    server_env.update(extra or {})
    return Server(
        name="authserver (granian)",
        command=["bash", "deploy/granian.sh"],
        env=server_env,
        port=port,
        cwd=REPO,
        log=log,
        ready_path="/healthz",
    )
