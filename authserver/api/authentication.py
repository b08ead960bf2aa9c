"""Who is calling: an OAuth 2.0 bearer token issued by this server, or a browser session.

The bearer class comes first, so an unauthenticated request gets 401 with a ``Bearer``
challenge (RFC 6750 §3). Sessions are DRF's ``SessionAuthentication``, which enforces CSRF
on unsafe methods.
"""

from __future__ import annotations

from typing import Any

from oauth2_provider.contrib.rest_framework import OAuth2Authentication
from rest_framework import exceptions
from rest_framework.authentication import SessionAuthentication
from rest_framework.request import Request

__all__ = ["BearerTokenAuthentication", "SessionAuthentication", "TokenInQueryString"]


class TokenInQueryString(exceptions.APIException):
    """RFC 6750 §2.3, RFC 9700 §4.3.2, ADR no-sensitive-uris: never a token in the URI."""

    status_code = 400
    default_detail = "Send the access token in the Authorization header, never in the query string."
    default_code = "invalid_request"
    problem_slug = "invalid-request"
    auth_header = 'Bearer realm="api", error="invalid_request"'


class BearerTokenAuthentication(OAuth2Authentication):
    """``Authorization: Bearer`` with an access token of this server (django-oauth-toolkit).

    The validator loads the token by its hash and refuses it when expired, revoked, meant for
    another resource (RFC 8707) or when its client or organisation is no longer active.
    """

    www_authenticate_realm = "api"

    def authenticate(self, request: Request) -> tuple[Any, Any] | None:
        # Refused outright, even beside a valid session: a token in a URI leaks into logs,
        # browser history and Referer headers, so the caller must learn to stop.
        if "access_token" in request.query_params:
            raise TokenInQueryString()
        if not request.META.get("HTTP_AUTHORIZATION", "").lower().startswith("bearer "):
            return None  # not ours; the session may authenticate
        result = super().authenticate(request)
        if result is None:
            # A presented but unusable token is an error, not anonymity (RFC 6750 §3.1
            # invalid_token), even when a session cookie came along.
            error = getattr(request, "oauth2_error", None) or {}
            raise exceptions.AuthenticationFailed(
                error.get("error_description") or "The access token is invalid, expired or revoked."
            )
        user, token = result
        if user is not None and not user.is_active:
            raise exceptions.AuthenticationFailed("This account is deactivated.")
        return user, token
