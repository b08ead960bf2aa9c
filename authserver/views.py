"""Small pages of the runtime: home, liveness, readiness and metrics."""

from __future__ import annotations

import hmac
import logging
import sys

from django.conf import settings
from django.core.cache import cache
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render

from . import metrics as metrics_registry

log = logging.getLogger(__name__)

# A readiness probe must answer within the probe's own timeout, also when the broker hangs.
BROKER_TIMEOUT_SECONDS = 2


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "home.html", {"issuer": settings.AUTHSERVER_ISSUER})


def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse({"status": "ok"})


def readyz(request: HttpRequest) -> HttpResponse:
    checks: dict[str, str] = {}
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        checks["database"] = "ok"
    except Exception:
        checks["database"] = "unavailable"
    try:
        cache.set("readyz", "1", 5)
        checks["cache"] = "ok" if cache.get("readyz") == "1" else "unavailable"
    except Exception:
        checks["cache"] = "unavailable"
    checks["broker"] = _broker_status()
    ready = all(value == "ok" for value in checks.values())
    response = JsonResponse(
        {"status": "ok" if ready else "unavailable", "checks": checks}, status=200 if ready else 503
    )
    response["Cache-Control"] = "no-store"
    return response


def _broker_status() -> str:
    """Can this process reach the Celery broker? kombu's filesystem transport always can."""
    from .celery import app

    try:
        with app.connection_for_write(
            connect_timeout=BROKER_TIMEOUT_SECONDS,
            transport_options={"socket_timeout": BROKER_TIMEOUT_SECONDS},
        ) as connection:
            connection.ensure_connection(
                max_retries=1, interval_start=0, interval_step=0, timeout=BROKER_TIMEOUT_SECONDS
            )
    except Exception as exc:
        log.warning("readyz: the Celery broker is unavailable: %s", type(exc).__name__)
        return "unavailable"
    return "ok"


def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus text format. With AUTHSERVER_METRICS_TOKEN set, a bearer token is required."""
    expected = settings.AUTHSERVER_METRICS_TOKEN
    if expected:
        presented = request.headers.get("Authorization", "")
        if not hmac.compare_digest(presented.encode(), f"Bearer {expected}".encode()):
            response = HttpResponse("Authorization required.\n", status=401, content_type="text/plain")
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
            return response
    return HttpResponse(metrics_registry.render(), content_type=metrics_registry.CONTENT_TYPE)


def server_error(request: HttpRequest) -> HttpResponse:
    """Django's 500 page, except for a database outage met outside a view (a middleware saving
    the session on the way out, say), which DatabaseUnavailableMiddleware never sees: that is
    the same 503 ``temporarily_unavailable`` with Retry-After a view's outage gets."""
    from django.views import defaults

    from .middleware import database_unavailable, database_unavailable_response

    exception = sys.exc_info()[1]
    if exception is not None and database_unavailable(exception):
        log.warning("database unavailable (%s) outside a view; answered 503", type(exception).__name__)
        return database_unavailable_response(request)
    return defaults.server_error(request)
