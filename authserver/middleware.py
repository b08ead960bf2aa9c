"""Request context, metrics, and the response headers every response needs.

Order in settings.MIDDLEWARE (outermost first): MetricsMiddleware sees the final status of
every response; RequestContextMiddleware gives it a request id; Django's SecurityMiddleware
adds HSTS, nosniff and Referrer-Policy; SecurityHeadersMiddleware adds the rest of ADR's
security headers and answers CORS, preflights included, before any view runs.
DatabaseUnavailableMiddleware turns a database outage met by a view into a 503 its caller
can retry.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from django.conf import settings
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import resolve_url
from django.utils.cache import patch_vary_headers

from . import hotcache, metrics
from .context import RequestContext, reset_request_context, set_request_context
from .endpoints import CORS_ALLOW_LIST, NO_STORE, OPEN_DOCUMENTS, endpoint_family
from .network import client_address

log = logging.getLogger(__name__)

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives every request an id (echoed as X-Request-ID) for logs and the audit log.

    The caller address is the socket peer, or what X-Forwarded-For says when that peer is a
    trusted proxy (authserver.network.client_address).
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = set_request_context(RequestContext(request_id=request_id, ip_address=client_address(request)))
        hotcache.begin_request()  # the generation of the process-local copies: read once per request
        try:
            response = self.get_response(request)
        finally:
            hotcache.end_request()
            reset_request_context(token)
        response["X-Request-ID"] = request_id
        return response


class MetricsMiddleware:
    """Counts every response by endpoint family and status class (authserver.metrics)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        metrics.count_response(endpoint_family(request.path_info), response)
        return response


# ADR /core/transport/security-headers. Pages load scripts, styles and images from this
# origin only; nothing may frame them; forms post to this origin only, except where a page
# sends the browser on to a client (see allow_form_target). Inline styles are still allowed
# because the templates carry their CSS inline; scripts never are. When the CSS moves to
# static/, drop 'unsafe-inline' from style-src.
PAGE_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)
# Everything that is not a page (JSON, JWKS, problem details) may load nothing at all.
DOCUMENT_POLICY = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
# What a browser-based client may send cross-origin (RFC 6749 §3.2, RFC 7662, RFC 7009, OIDC userinfo).
CORS_METHODS = {
    "token": "POST",
    "introspect": "POST",
    "revoke": "POST",
    "userinfo": "GET, POST",
    "discovery": "GET, HEAD",
    "jwks": "GET, HEAD",
}
CORS_ALLOW_HEADERS = "Authorization, Content-Type"
CORS_EXPOSE_HEADERS = "WWW-Authenticate, X-Request-ID"
CORS_MAX_AGE = "600"
_FORM_TARGETS = "_authserver_form_targets"


def allow_form_target(request: HttpRequest, url: str) -> None:
    """Let the forms of the page answering ``request`` lead to ``url``'s origin.

    CSP ``form-action`` also governs the redirects that follow a form submission (CSP 3
    §6.3.2), so the consent form, whose POST answers with a redirect to the client's
    ``redirect_uri``, needs that origin next to 'self'. Call it with validated URLs only:
    a redirect URI registered for the client (RFC 6749 §3.1.2, exact match).
    """
    parts = urlsplit(url)
    if parts.scheme in ("https", "http") and parts.netloc:
        targets: set[str] = getattr(request, _FORM_TARGETS, set())
        targets.add(f"{parts.scheme}://{parts.netloc}")
        setattr(request, _FORM_TARGETS, targets)


def _login_form_targets(request: HttpRequest) -> None:
    """The sign-in page on the way to /oauth/authorize may end at the client too.

    After signing in, the browser follows ``next`` to the authorization endpoint, which can
    answer with a redirect to the client (an error response, RFC 6749 §4.1.2.1), all in the
    chain of the sign-in form's submission. Only a redirect URI registered for the client in
    ``next`` is added.
    """
    next_url = request.GET.get("next") or (request.POST.get("next") if request.method == "POST" else None)
    if not next_url or not next_url.startswith("/oauth/authorize?"):
        return
    query = parse_qs(urlsplit(next_url).query)
    client_id = (query.get("client_id") or [""])[0]
    redirect_uri = (query.get("redirect_uri") or [""])[0]
    if not client_id or not redirect_uri:
        return
    from clients.models import Client

    registered = Client.objects.filter(client_id=client_id).values_list("redirect_uris", flat=True).first()
    if registered and redirect_uri in registered.split():
        allow_form_target(request, redirect_uri)


class SecurityHeadersMiddleware:
    """CSP, X-Frame-Options, nosniff, Referrer-Policy, no-store and CORS on every response.

    HSTS is Django's SecurityMiddleware (SECURE_HSTS_SECONDS; on https requests only, which
    behind nginx needs AUTHSERVER_BEHIND_TLS_PROXY) and nginx's own header.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        family = endpoint_family(request.path_info)
        cors = family in CORS_ALLOW_LIST or family in OPEN_DOCUMENTS
        if cors and request.method == "OPTIONS" and "Access-Control-Request-Method" in request.headers:
            response = self._preflight(request, family)
        else:
            response = self.get_response(request)
            if cors:
                self._cors(request, family, response)
        self._security_headers(request, family, response)
        return response

    # ---- CORS ------------------------------------------------------------------------

    @staticmethod
    def _allowed_origin(request: HttpRequest, family: str) -> str | None:
        if family in OPEN_DOCUMENTS:
            return "*"
        origin = request.headers.get("Origin")
        if origin and origin in settings.AUTHSERVER_CORS_ALLOWED_ORIGINS:
            return origin
        return None

    def _preflight(self, request: HttpRequest, family: str) -> HttpResponse:
        response = HttpResponse(status=204)
        del response["Content-Type"]
        allowed = self._allowed_origin(request, family)
        if allowed is not None:
            response["Access-Control-Allow-Origin"] = allowed
            response["Access-Control-Allow-Methods"] = CORS_METHODS[family]
            response["Access-Control-Allow-Headers"] = CORS_ALLOW_HEADERS
            response["Access-Control-Max-Age"] = CORS_MAX_AGE
        if allowed != "*":
            patch_vary_headers(response, ("Origin",))
        return response

    def _cors(self, request: HttpRequest, family: str, response: HttpResponse) -> None:
        allowed = self._allowed_origin(request, family)
        if allowed is None:
            # oauthlib adds the header for a client's own allowed_origins; the deployment's
            # allow-list decides (it also decides every preflight).
            del response["Access-Control-Allow-Origin"]
        else:
            response["Access-Control-Allow-Origin"] = allowed
            response["Access-Control-Expose-Headers"] = CORS_EXPOSE_HEADERS
        if allowed != "*":
            patch_vary_headers(response, ("Origin",))

    # ---- security headers --------------------------------------------------------------

    def _security_headers(self, request: HttpRequest, family: str, response: HttpResponse) -> None:
        if "Content-Security-Policy" not in response:  # a view may set a narrower policy
            response["Content-Security-Policy"] = self._policy(request, family, response)
        response.setdefault("X-Content-Type-Options", "nosniff")
        if not getattr(response, "xframe_options_exempt", False):
            response.setdefault("X-Frame-Options", "DENY")
        if settings.SECURE_REFERRER_POLICY:
            response.setdefault("Referrer-Policy", settings.SECURE_REFERRER_POLICY)
        if family in NO_STORE and "no-store" not in response.get("Cache-Control", ""):
            response["Cache-Control"] = "no-store"

    def _policy(self, request: HttpRequest, family: str, response: HttpResponse) -> str:
        if not response.get("Content-Type", "").startswith("text/html"):
            return DOCUMENT_POLICY
        if family == "accounts" and request.path_info == resolve_url(settings.LOGIN_URL):
            _login_form_targets(request)
        targets = sorted(getattr(request, _FORM_TARGETS, ()))
        return f"{PAGE_POLICY}; form-action 'self'{''.join(' ' + target for target in targets)}"


# ---- database outages ------------------------------------------------------------------

# Retry-After of a 503 while the database is unreachable: a restart or failover takes seconds.
DATABASE_RETRY_AFTER = 5
DATABASE_UNAVAILABLE = "The service is temporarily unavailable; try again in a few seconds."
# Families answered in RFC 6749 §5.2's JSON; "api" gets RFC 9457 problem details, the rest a page.
_OAUTH_JSON = frozenset({"token", "introspect", "revoke", "userinfo", "register", "oauth", "jwks", "discovery"})
_PAGE = (
    "<!doctype html><html lang=en><meta charset=utf-8><title>Temporarily unavailable</title>"
    "<h1>Temporarily unavailable</h1><p>" + DATABASE_UNAVAILABLE + "</p></html>"
)


def database_unavailable(exc: BaseException) -> bool:
    """Is ``exc`` the database being unreachable (down, restarting, connection lost)?

    Django raises OperationalError when a connection fails or breaks mid-query and
    InterfaceError on a connection that was already closed. Django has marked the
    connection as failed by then; the next request checks it (CONN_HEALTH_CHECKS) and
    reconnects, so the process recovers by itself when the database is back.
    """
    return isinstance(exc, OperationalError | InterfaceError)


def database_unavailable_response(request: HttpRequest) -> HttpResponse:
    """503 with Retry-After in the shape of the endpoint: RFC 6749 §5.2 JSON with RFC 6749
    §4.1.2.1's ``temporarily_unavailable`` on the OAuth endpoints, RFC 9457 problem details
    on the REST API, a plain page elsewhere. Nothing here touches the database."""
    family = endpoint_family(request.path_info)
    response: HttpResponse
    if family in _OAUTH_JSON:
        response = JsonResponse({"error": "temporarily_unavailable", "error_description": DATABASE_UNAVAILABLE})
        response["Pragma"] = "no-cache"
    elif family == "api":
        problem = {
            "type": "about:blank",
            "title": "Service Unavailable",
            "status": 503,
            "detail": DATABASE_UNAVAILABLE,
            "instance": request.path,  # the path only, never the query
        }
        response = JsonResponse(problem, content_type="application/problem+json")
    else:
        response = HttpResponse(_PAGE, content_type="text/html; charset=utf-8")
    response.status_code = 503
    response["Retry-After"] = str(DATABASE_RETRY_AFTER)
    response["Cache-Control"] = "no-store"
    return response


class DatabaseUnavailableMiddleware:
    """A view that meets a database outage answers 503 ``temporarily_unavailable``, never a 500.

    The REST API's own exception handler (authserver/api/problems.py) answers the same for
    its views, which DRF keeps from reaching ``process_exception``.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        if not database_unavailable(exception):
            return None
        # The type only: the driver's message names host and port, and a 503 is expected here.
        log.warning("database unavailable (%s); answered 503", type(exception).__name__)
        return database_unavailable_response(request)
