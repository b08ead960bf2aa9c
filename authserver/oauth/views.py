"""Protocol endpoints: DOT's views where they fit, ours where the profile asks more.

Every OAuth response carries ``Cache-Control: no-store`` (RFC 6749 §5.1) and every error
is the protocol's JSON, never an HTML page or a 500.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider import views as dot_views
from oauth2_provider.oauth2_backends import _add_iss_to_redirect as add_iss_to_redirect
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib.common import Request as OAuthlibRequest
from oauthlib.common import urldecode
from oauthlib.oauth2.rfc6749 import errors

from clients.models import Client

from .. import ratelimit
from ..endpoints import backchannel_base
from ..middleware import allow_form_target
from ..network import client_address
from . import claims as oidc_claims
from . import introspection, issuance
from .keys import keyring

FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"


def oauth_error(error: str, description: str, status: int = 400, headers: dict[str, str] | None = None) -> JsonResponse:
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def no_store(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """RFC 6749 §5.1: responses with tokens or credentials must not be cached."""

    @wraps(view)
    def wrapped(*args: Any, **kwargs: Any) -> HttpResponse:
        response = view(*args, **kwargs)
        response["Cache-Control"] = "no-store"
        response["Pragma"] = "no-cache"
        return response

    return wrapped


# RFC 6749 §5.2: error_description helps the client developer; oauthlib leaves it empty for
# these errors. Deliberately vague for invalid_grant: which check failed is not the caller's business.
_ERROR_DESCRIPTIONS = {
    "invalid_request": "The request is missing a required parameter, repeats one, or is otherwise malformed.",
    "invalid_client": "Client authentication failed.",
    "invalid_grant": (
        "The authorization code, refresh token or code_verifier is invalid, expired, already used, "
        "or was issued to another client or redirect_uri."
    ),
    "invalid_scope": "The requested scope is invalid or not granted to this client.",
    "unsupported_token_type": "Only access tokens and refresh tokens can be revoked.",
    "unauthorized_client": "This client may not use this grant or response type (OAUTH-NL §3.1.1).",
    "unsupported_response_type": "Only response_type=code is supported (no implicit or hybrid flows).",
    "access_denied": "The resource owner denied the request.",
}


def describe_error(body: Any, status: int, request: HttpRequest) -> Any:
    """Give an OAuth JSON error without ``error_description`` one (RFC 6749 §5.2)."""
    if status < 400 or not body:
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or not isinstance(data.get("error"), str) or data.get("error_description"):
        return body
    grant_type = request.POST.get("grant_type", "")[:64]
    if data["error"] == "unsupported_grant_type":
        description = (
            f"grant_type {grant_type!r} is not supported; use authorization_code, client_credentials "
            "or refresh_token (OAUTH-NL, RFC 9700)."
        )
    elif data["error"] == "unauthorized_client":
        description = f"This client may not use grant_type {grant_type!r}: one grant type per client (OAUTH-NL §3.1.1)."
    else:
        description = _ERROR_DESCRIPTIONS.get(data["error"], "The request was refused.")
    data["error_description"] = description
    return json.dumps(data)


class ProtocolEndpointMixin:
    """Form-encoded POST only (RFC 6749 §3.2, RFC 7662 §2.1, RFC 7009 §2.1), JSON errors."""

    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return oauth_error("invalid_request", "Use POST.", status=405, headers={"Allow": "POST"})

    @staticmethod
    def bad_request_shape(request: HttpRequest) -> HttpResponse | None:
        if request.content_type != FORM_CONTENT_TYPE:
            return oauth_error("invalid_request", f"The request body must be {FORM_CONTENT_TYPE}.")
        if request.GET:
            # RFC 6749 §3.2 / RFC 9700: credentials and tokens never travel in the URL.
            return oauth_error("invalid_request", "URL query parameters are not allowed on this endpoint.")
        try:
            request.POST  # noqa: B018 - parse now so a broken body is a 400, not a 500
        except Exception:
            return oauth_error("invalid_request", "The request body could not be parsed.")
        return None


@method_decorator([csrf_exempt, no_store], name="dispatch")
class TokenView(ProtocolEndpointMixin, dot_views.TokenView):
    """RFC 6749 §3.2. DOT's view minus the device flow and the re-read of the token."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        # Per caller address first; per client and organisation once the client is
        # authenticated (Validator.validate_grant_type; authserver/ratelimit.py).
        limited = ratelimit.token_request(request)
        if not limited.allowed:
            return ratelimit.oauth_response(request, limited, "token requests")
        problem = self.bad_request_shape(request)
        if problem is not None:
            return problem
        if not request.POST.get("grant_type"):
            # RFC 6749 §4.1.3, §4.4.2, §6: grant_type is REQUIRED (oauthlib would assume one).
            return oauth_error("invalid_request", "The grant_type parameter is required.")
        if request.POST["grant_type"] == "client_credentials":
            # One row, written once: the access token's INSERT, in autocommit (no transaction,
            # no savepoint), so a client-credentials token costs one SQL statement when warm.
            _url, headers, body, status = self.create_token_response(request)
        else:
            # One transaction per code or refresh grant: an authorization code is locked while
            # it is redeemed (validator._grant), so a concurrent second use waits, then finds it
            # gone; a refresh token likewise (validator.validate_refresh_token).
            with transaction.atomic():
                _url, headers, body, status = self.create_token_response(request)
        body = describe_error(body, status, request)
        response = HttpResponse(content=body, status=status, content_type="application/json")
        for name, value in headers.items():
            response[name] = value
        return response


@method_decorator([csrf_exempt, no_store], name="dispatch")
class RevokeView(ProtocolEndpointMixin, dot_views.RevokeTokenView):
    """RFC 7009, with client authentication (OAUTH-NL)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        problem = self.bad_request_shape(request)
        if problem is not None:
            return problem
        response = super().post(request, *args, **kwargs)
        if response.status_code >= 400:
            response.content = describe_error(response.content.decode(), response.status_code, request)
        return response


def _authenticate_caller(request: HttpRequest) -> tuple[Client | None, HttpResponse | None]:
    # DOT's cached core (one per process): building a Server per introspection call is waste.
    core = OAuthLibMixin.get_oauthlib_core()
    uri, http_method, body, headers = core._extract_params(request)
    oauth_request = OAuthlibRequest(uri, http_method, body, headers)
    try:
        core.server.request_validator.authenticate_client(oauth_request)
    except errors.InvalidClientError as exc:
        return None, oauth_error(
            "invalid_client", exc.description, status=401, headers={"WWW-Authenticate": 'Basic realm="authserver"'}
        )
    except errors.OAuth2Error as exc:
        # Its headers too: a 503 (the replay cache down) says when to retry.
        return None, oauth_error(exc.error, exc.description, status=exc.status_code, headers=dict(exc.headers))
    return oauth_request.client, None


@method_decorator([csrf_exempt, no_store], name="dispatch")
class IntrospectView(ProtocolEndpointMixin, View):
    """RFC 7662. Only resource servers, with credentials of their own (OAUTH-NL), may ask."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        limited = ratelimit.introspection_request(request)
        if not limited.allowed:
            return ratelimit.oauth_response(request, limited, "introspection requests")
        problem = self.bad_request_shape(request)
        if problem is not None:
            return problem
        client, failure = _authenticate_caller(request)
        if failure is not None:
            return failure
        assert client is not None
        if not client.is_resource_server:
            return oauth_error("unauthorized_client", "This client is not registered as a resource server.", status=403)
        limited = ratelimit.introspection_client(client)
        if not limited.allowed:
            return ratelimit.oauth_response(request, limited, "introspection requests")
        token = request.POST.get("token")
        if not token or "\x00" in token:
            return oauth_error("invalid_request", "The token parameter is required.")
        # Only for the caller's own APIs, cached, inactive at once when revoked (introspection.py).
        answer = introspection.introspect(
            caller=client, token=token, token_type_hint=request.POST.get("token_type_hint")
        )
        return JsonResponse(answer)


@method_decorator([csrf_exempt, no_store], name="dispatch")
class UserInfoView(dot_views.UserInfoView):
    """OIDC Core §5.3, bearer token in the Authorization header only (OAUTH-NL, RFC 9700)."""

    def _create_userinfo_response(self, request: HttpRequest) -> HttpResponse:
        in_body = (
            request.method == "POST" and request.content_type == FORM_CONTENT_TYPE and "access_token" in request.POST
        )
        if "access_token" in request.GET or in_body:
            return oauth_error(
                "invalid_request", "Send the access token in the Authorization header, not in the URL or body."
            )
        return super()._create_userinfo_response(request)


def _cacheable(response: HttpResponse, max_age: int) -> HttpResponse:
    response["Cache-Control"] = f"public, max-age={max_age}"
    # Open documents (STANDARDS.md, CORS): any origin may read them.
    response["Access-Control-Allow-Origin"] = "*"
    return response


def jwks(request: HttpRequest) -> HttpResponse:
    """Next, active and recently retired public keys, each with kid, kty and alg."""
    if request.method not in ("GET", "HEAD"):
        return oauth_error("invalid_request", "Use GET.", status=405, headers={"Allow": "GET, HEAD"})
    response = JsonResponse(keyring.jwks())
    response["Content-Type"] = "application/jwk-set+json"
    return _cacheable(response, settings.AUTHSERVER_JWKS_MAX_AGE)


def metadata() -> dict[str, Any]:
    """What this server really supports, and nothing more (RFC 8414, OIDC Discovery)."""
    issuer = settings.AUTHSERVER_ISSUER
    # The back channel may have its own host name (deploy/nginx/: its own certificate and,
    # for mTLS, its own trust store); RFC 8414 §2 lets endpoints live anywhere.
    backchannel = backchannel_base()
    auth_methods = ["private_key_jwt"]
    if settings.AUTHSERVER_CLIENT_SECRETS_ENABLED:
        auth_methods += ["client_secret_basic", "client_secret_post"]
    # Mutual TLS (RFC 8705) needs the proxy that verifies the certificate (deploy/nginx/).
    mtls = bool(settings.AUTHSERVER_TRUSTED_PROXIES)
    if mtls:
        auth_methods += ["tls_client_auth", "self_signed_tls_client_auth"]
    signing_algs = ["RS256", "PS256", "ES256"]
    scopes = sorted(settings.OAUTH2_PROVIDER["SCOPES"])
    return {
        "issuer": issuer,
        "authorization_endpoint": f"{issuer}/oauth/authorize",
        "token_endpoint": f"{backchannel}/oauth/token",
        "userinfo_endpoint": f"{backchannel}/oauth/userinfo",
        "jwks_uri": f"{issuer}/oauth/jwks",
        "introspection_endpoint": f"{backchannel}/oauth/introspect",
        "revocation_endpoint": f"{backchannel}/oauth/revoke",
        "end_session_endpoint": f"{issuer}/oauth/logout",
        # RFC 7591 §3 / RFC 8414 §2: dynamic registration, on the back channel (deploy/nginx/).
        "registration_endpoint": f"{backchannel}/oauth/register",
        "scopes_supported": scopes,
        "response_types_supported": ["code"],
        "response_modes_supported": ["query"],
        "grant_types_supported": ["authorization_code", "client_credentials", "refresh_token"],
        "subject_types_supported": ["public", "pairwise"],
        "id_token_signing_alg_values_supported": signing_algs,
        "token_endpoint_auth_methods_supported": auth_methods,
        "token_endpoint_auth_signing_alg_values_supported": signing_algs,
        "introspection_endpoint_auth_methods_supported": auth_methods,
        "introspection_endpoint_auth_signing_alg_values_supported": signing_algs,
        "revocation_endpoint_auth_methods_supported": auth_methods,
        "revocation_endpoint_auth_signing_alg_values_supported": signing_algs,
        "code_challenge_methods_supported": ["S256"],
        "claims_supported": list(oidc_claims.SUPPORTED_CLAIMS),
        "claims_parameter_supported": True,
        "request_parameter_supported": False,
        "request_uri_parameter_supported": False,
        "acr_values_supported": list(oidc_claims.ACR_VALUES),
        "authorization_response_iss_parameter_supported": True,
        "frontchannel_logout_supported": False,
        "backchannel_logout_supported": False,
        # RFC 8705 §3.3: tokens of mutual-TLS clients are bound to their certificate.
        **({"tls_client_certificate_bound_access_tokens": True} if mtls else {}),
    }


def discovery(request: HttpRequest) -> HttpResponse:
    if request.method not in ("GET", "HEAD"):
        return oauth_error("invalid_request", "Use GET.", status=405, headers={"Allow": "GET, HEAD"})
    return _cacheable(JsonResponse(metadata()), settings.AUTHSERVER_DISCOVERY_MAX_AGE)


@method_decorator(no_store, name="dispatch")
class AuthorizationView(dot_views.AuthorizationView):
    """RFC 6749 §4.1.1 with the consent screen OAUTH-NL §3.1.4 asks for.

    The consent page (CSRF token, request parameters) and the redirect carrying the code are
    never cached (RFC 6749 §10.12, RFC 9700 §4.2.4; ADR security headers).
    """

    template_name = "oauth2_provider/authorize.html"

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        limited = ratelimit.authorize_request(request)
        if not limited.allowed:
            return ratelimit.html_response(request, limited, "authorization requests")
        try:
            urldecode(request.get_full_path().partition("?")[2])
        except ValueError:
            # oauthlib raises on a query string that is not x-www-form-urlencoded (a bare "%",
            # "%zz"); RFC 6749 §4.1.2.1: a malformed request is shown to the user, not redirected.
            # Found by tests/faults/test_fuzz_oauth.py.
            malformed = errors.InvalidRequestError(description="The query string is not validly URL-encoded.")
            return self.render_to_response({"error": malformed}, status=400)
        return super().dispatch(request, *args, **kwargs)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        application = kwargs.get("application") or context.get("application")
        if isinstance(application, Client):
            lifetime, resources = self._token_shape(application, kwargs)
            context["consent"] = {
                "registered": application.get_registration_mode_display(),
                "is_public": application.is_public,
                "software_statement_issuer": application.software_statement_issuer,
                "organisation": application.organisation,
                "access_token_minutes": lifetime // 60,
                "refresh_hours": settings.AUTHSERVER_REFRESH_TOKEN_ABSOLUTE_LIFETIME // 3600,
                "resources": resources,
            }
        if kwargs.get("redirect_uri"):
            # Validated by oauthlib (registered, exact match): the consent form's POST is
            # answered with a redirect there, which CSP form-action must allow.
            allow_form_target(self.request, kwargs["redirect_uri"])
        return context

    def _token_shape(self, application: Client, kwargs: dict[str, Any]) -> tuple[int, list[str]]:
        """OAUTH-NL §3.1.4: the consent shows the resources and duration the token will have:
        the issuance policy's (docs/decisions/0009; the validator already let the request pass)."""
        lifetime = (
            settings.AUTHSERVER_PUBLIC_CLIENT_ACCESS_TOKEN_LIFETIME
            if application.is_public
            else settings.AUTHSERVER_ACCESS_TOKEN_LIFETIME
        )
        resources = (kwargs.get("resource") or "").split()
        decision = issuance.decide(
            client=application,
            scopes=kwargs.get("scopes") or [],
            resources=resources,
            address=client_address(self.request),
            default_lifetime=lifetime,
        )
        if decision.refused:
            return lifetime, resources
        if application.is_public:
            return min(lifetime, decision.access_token_lifetime), list(decision.audiences)
        return decision.access_token_lifetime, list(decision.audiences)

    def error_response(self, error: Any, application: Any, **kwargs: Any) -> HttpResponse:
        oauthlib_error = getattr(error, "oauthlib_error", None)
        if oauthlib_error is not None and not oauthlib_error.description:
            oauthlib_error.description = _ERROR_DESCRIPTIONS.get(oauthlib_error.error, "")
        response = super().error_response(error, application, **kwargs)
        response["Cache-Control"] = "no-store"
        if response.has_header("Location") and oauth2_settings.COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS:
            # RFC 9207 §2: iss in every authorization response, error responses included
            # (DOT adds it to successful responses only).
            issuer = oauth2_settings.oauth2_authorization_server_issuer(self.request)
            response["Location"] = add_iss_to_redirect(response["Location"], issuer)
        return response


@method_decorator(no_store, name="dispatch")
class LogoutView(dot_views.RPInitiatedLogoutView):
    """OIDC RP-Initiated Logout 1.0; post_logout_redirect_uri must be registered exactly."""

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        # Validated in get() before the confirmation page renders (registered for the
        # client); the confirmation form's POST redirects there (CSP form-action).
        target = self.oidc_data.get("post_logout_redirect_uri")
        if target:
            allow_form_target(self.request, target)
        return super().get_context_data(**kwargs)
