"""System checks: a production deployment must not run on embedded defaults.

Registered as errors (not deploy warnings) when AUTHSERVER_ENVIRONMENT=production, so
``manage.py check`` fails, and ``assert_production_ready`` makes wsgi/asgi refuse to start.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import checks
from django.core.exceptions import ImproperlyConfigured


def production_problems() -> list[checks.CheckMessage]:
    problems: list[checks.CheckMessage] = []
    if not settings.IS_PRODUCTION:
        return problems
    if not settings.AUTHSERVER_ISSUER.startswith("https://"):
        problems.append(
            checks.Error(
                "AUTHSERVER_ISSUER must be an https URL in production (RFC 8414 §2, ADR TLS).",
                id="authserver.E001",
            )
        )
    if settings.DEBUG:
        problems.append(checks.Error("DEBUG must be off in production.", id="authserver.E002"))
    if settings.SECRET_KEY == settings.DEFAULT_SECRET_KEY or len(settings.SECRET_KEY) < 50:
        problems.append(
            checks.Error("SECRET_KEY must be set to a long random value in production.", id="authserver.E003")
        )
    # Django's settings object holds only upper-case names, so the derivation comes from the module.
    from authserver.settings import _derived_key

    for name, value, purpose in (
        ("AUTHSERVER_KEY_ENCRYPTION_KEYS", next(iter(settings.AUTHSERVER_KEY_ENCRYPTION_KEYS), ""), "key-encryption"),
        ("AUTHSERVER_SECRET_PEPPER", settings.AUTHSERVER_SECRET_PEPPER, "secret-pepper"),
        ("AUTHSERVER_PAIRWISE_SALT", settings.AUTHSERVER_PAIRWISE_SALT, "pairwise"),
    ):
        if not value or value == _derived_key(purpose):  # an empty value is no key at all
            problems.append(
                checks.Error(f"{name} must be set explicitly in production, not derived.", id="authserver.E004")
            )
    if settings.CACHES["default"]["BACKEND"].endswith("LocMemCache"):
        # The client-assertion jti replay cache, code replay detection and metrics must be shared
        # by every web process (RFC 7523 §3 item 7); a local-memory cache is per process.
        problems.append(
            checks.Warning(
                "REDIS_URL is not set: replay caches are per process. Set REDIS_URL in production.",
                id="authserver.W001",
            )
        )
    return problems


@checks.register(checks.Tags.security)
def check_production_settings(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    return production_problems()


def assert_production_ready() -> None:
    problems = production_problems()
    if problems:
        raise ImproperlyConfigured("; ".join(problem.msg for problem in problems))
