"""Settings of the vanilla django-oauth-toolkit reference server (benchmark, issue 6).

A Django project as ``startproject`` makes it, plus ``oauth2_provider`` with DOT's defaults:
opaque access tokens in DOT's own tables, client secrets hashed with Django's default
password hasher (PBKDF2) unless the seed turns hashing off per application. Nothing from
authserver is imported. The one DOT setting changed is ``SCOPES``: DOT's default scopes are
``read`` and ``write``, and the benchmark's clients ask for the fixture's ``orders:read``.

Env: DOT_BENCH_DATABASE_URL (PostgreSQL), DOT_BENCH_CONN_MAX_AGE (seconds, default 60 as
authserver's DATABASE_CONN_MAX_AGE, so neither side pays a connection per request),
DOT_BENCH_SECRET_KEY (default: random per process; nothing here signs anything that has to
outlive a process or cross workers).
"""

from __future__ import annotations

import environ
from django.core.management.utils import get_random_secret_key

env = environ.Env()

SECRET_KEY = env.str("DOT_BENCH_SECRET_KEY", default=get_random_secret_key())
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "oauth2_provider",
    "dot_vanilla",  # only for the ``seed`` management command; it has no models
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "dot_vanilla.urls"
WSGI_APPLICATION = "dot_vanilla.wsgi.application"

DATABASES = {"default": env.db_url("DOT_BENCH_DATABASE_URL", default="postgres://postgres@127.0.0.1:5432/dot_bench")}
DATABASES["default"]["CONN_MAX_AGE"] = env.int("DOT_BENCH_CONN_MAX_AGE", default=60)
DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

USE_TZ = True
TIME_ZONE = "UTC"
LANGUAGE_CODE = "en-us"

OAUTH2_PROVIDER = {"SCOPES": {"orders:read": "Read orders"}}
