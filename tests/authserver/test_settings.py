"""Production settings: `check --deploy` passes on production values, and unsafe ones are refused.

Each case runs in a subprocess because settings are read from the environment at import.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from django.conf import settings

# What the test process's own environment could leak into a "production" subprocess.
_CLEARED = (
    "DATABASE_URL",
    "REDIS_URL",
    "CELERY_BROKER_URL",
    "DEBUG",
    "SECRET_KEY",
    "ALLOWED_HOSTS",
    "SILENCED_SYSTEM_CHECKS",
    "SECURE_HSTS_PRELOAD",
    "SECURE_HSTS_SECONDS",
    "SESSION_COOKIE_SECURE",
    "CSRF_COOKIE_SECURE",
    "AUTHSERVER_ENVIRONMENT",
    "AUTHSERVER_ISSUER",
    "AUTHSERVER_KEY_ENCRYPTION_KEYS",
    "AUTHSERVER_SECRET_PEPPER",
    "AUTHSERVER_PAIRWISE_SALT",
    "DJANGO_SETTINGS_MODULE",
    # Set while browser tests run (tests/e2e); Django's async.E001 refuses it in deployment.
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)


@pytest.fixture
def production_env(tmp_path: Path) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    env.update(
        AUTHSERVER_ENVIRONMENT="production",
        AUTHSERVER_ISSUER="https://auth.example.org",
        SECRET_KEY=secrets.token_urlsafe(50),
        AUTHSERVER_KEY_ENCRYPTION_KEYS=Fernet.generate_key().decode(),
        AUTHSERVER_SECRET_PEPPER=secrets.token_urlsafe(32),
        AUTHSERVER_PAIRWISE_SALT=secrets.token_urlsafe(32),
        DEBUG="false",
        ALLOWED_HOSTS="auth.example.org",
        DATABASE_URL=f"sqlite:///{tmp_path / 'authserver.sqlite3'}",
        AUTHSERVER_DATA_DIR=str(tmp_path),
        # Only read, never connected to, by the checks (authserver.W001 asks for a shared cache).
        REDIS_URL="redis://127.0.0.1:6379/13",
    )
    return env


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], cwd=settings.BASE_DIR, env=env, capture_output=True, text=True, timeout=120
    )


def manage(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return run(env, "manage.py", *args)


def test_check_deploy_passes_on_production_values(production_env):
    result = manage(production_env, "check", "--deploy", "--fail-level", "WARNING")

    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout
    assert result.stderr == ""


def test_production_values_start_the_wsgi_application(production_env):
    result = run(production_env, "-c", "import authserver.wsgi")

    assert result.returncode == 0, result.stderr


def test_production_turns_the_transport_hardening_on(production_env):
    script = (
        "import django, json; django.setup(); from django.conf import settings as s; print(json.dumps(["
        "s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS >= 31536000,"
        "s.AUTHSERVER_CLIENT_SECRETS_ENABLED]))"
    )
    result = run({**production_env, "DJANGO_SETTINGS_MODULE": "authserver.settings"}, "-c", script)

    assert result.returncode == 0, result.stderr
    # DEBUG off, secure cookies, a year of HSTS, and client secrets opt-in (KP-AC).
    assert result.stdout.strip() == "[false, true, true, true, false]"


UNSAFE = [
    pytest.param({"AUTHSERVER_ISSUER": "http://auth.example.org"}, "authserver.E001", id="http-issuer"),
    pytest.param({"DEBUG": "true"}, "authserver.E002", id="debug-on"),
    pytest.param({"SECRET_KEY": settings.DEFAULT_SECRET_KEY}, "authserver.E003", id="default-secret-key"),
    pytest.param({"SECRET_KEY": None}, "authserver.E003", id="no-secret-key"),
    pytest.param({"SECRET_KEY": "short-but-not-the-default"}, "authserver.E003", id="short-secret-key"),
    pytest.param({"AUTHSERVER_KEY_ENCRYPTION_KEYS": None}, "authserver.E004", id="derived-kek"),
    pytest.param({"AUTHSERVER_KEY_ENCRYPTION_KEYS": ""}, "authserver.E004", id="empty-kek"),
    pytest.param({"AUTHSERVER_SECRET_PEPPER": None}, "authserver.E004", id="derived-pepper"),
    pytest.param({"AUTHSERVER_SECRET_PEPPER": ""}, "authserver.E004", id="empty-pepper"),
    pytest.param({"AUTHSERVER_PAIRWISE_SALT": None}, "authserver.E004", id="derived-pairwise-salt"),
]


def with_changes(env: dict[str, str], changes: dict[str, str | None]) -> dict[str, str]:
    env = dict(env)
    for key, value in changes.items():
        if value is None:
            env.pop(key, None)
        else:
            env[key] = value
    return env


@pytest.mark.parametrize(("changes", "check_id"), UNSAFE)
def test_check_refuses_an_unsafe_production_value(production_env, changes, check_id):
    result = manage(with_changes(production_env, changes), "check")

    assert result.returncode == 1
    assert check_id in result.stderr
    # Only the problem this case introduced is reported.
    reported = {line.split("(")[1].split(")")[0] for line in result.stderr.splitlines() if "(authserver.E" in line}
    assert reported == {check_id}


@pytest.mark.parametrize(("changes", "check_id"), UNSAFE)
def test_wsgi_refuses_to_start_on_an_unsafe_production_value(production_env, changes, check_id):
    result = run(with_changes(production_env, changes), "-c", "import authserver.wsgi")

    assert result.returncode != 0
    assert "django.core.exceptions.ImproperlyConfigured" in result.stderr


def test_outside_production_the_embedded_defaults_are_accepted(production_env):
    env = with_changes(
        production_env,
        {"AUTHSERVER_ENVIRONMENT": "development", "AUTHSERVER_ISSUER": "http://localhost:8000", "SECRET_KEY": None},
    )
    env = with_changes(env, {"AUTHSERVER_KEY_ENCRYPTION_KEYS": None, "AUTHSERVER_SECRET_PEPPER": None})

    assert manage(env, "check").returncode == 0
    assert run(env, "-c", "import authserver.wsgi").returncode == 0
