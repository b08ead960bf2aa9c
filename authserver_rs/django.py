"""Django REST framework: ``BearerTokenAuthentication`` and the ``RequiredScopes`` permission.

Configure once in the Django settings of the API (keys are ``TokenValidator`` arguments, plus
``realm`` and the scope policy: ``scopes``, ``public``, ``base_path``, or ``catalogue``)::

    AUTHSERVER_RS = {
        "issuer": "https://auth.example.nl",
        "audience": "https://api.example.nl/orders",
        "mode": "jwt",                      # or "introspection" with client_id + client_secret/private_key
        "catalogue": True,                  # scopes per endpoint from {issuer}/apis.json (or a slug)
    }
    REST_FRAMEWORK = {
        "DEFAULT_AUTHENTICATION_CLASSES": ["authserver_rs.django.BearerTokenAuthentication"],
        "DEFAULT_PERMISSION_CLASSES": ["authserver_rs.django.RequiredScopes"],
    }

or per view, with ``required_scopes = ["orders:read"]`` (or ``{"GET": [...], "POST": [...]}``)
on the view, which wins over the policy. ``request.auth`` is the ``VerifiedToken`` and
``request.user`` a ``TokenUser`` (not a database user). A subclass may set ``validator`` /
``scope_policy`` / ``realm`` as class attributes instead of the settings.

Errors are RFC 6750's (status and ``WWW-Authenticate``) through DRF's exception handling:
401 ``invalid_token``, 401 without an error code when no token was sent, 400
``invalid_request`` for a token in the query string or a form body, 403 ``insufficient_scope``
naming the scope, 503 when the issuer cannot be asked.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterable, Mapping
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.signals import setting_changed
from django.http.request import RawPostDataException
from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import APIException
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from .errors import BearerError, InsufficientScope, InvalidRequest, IssuerUnavailable, MissingToken
from .guard import Guard, bearer_token, token_in_query
from .policy import Requirement, ScopePolicy
from .validator import TokenValidator, VerifiedToken

__all__ = ["BearerError", "BearerTokenAuthentication", "RequiredScopes", "TokenUser", "configured_guard"]

FORM = "application/x-www-form-urlencoded"
CHALLENGE_ATTRIBUTE = "authserver_rs_challenge"
_POLICY_KEYS = ("realm", "scopes", "public", "base_path", "catalogue")

_configured: Guard | None = None
_lock = threading.Lock()


def configured_guard() -> Guard:
    """The validator and scope policy of ``settings.AUTHSERVER_RS``, built once per process."""
    global _configured
    if _configured is None:
        with _lock:
            if _configured is None:
                _configured = _build(getattr(settings, "AUTHSERVER_RS", None))
    return _configured


def _build(config: Mapping[str, Any] | None) -> Guard:
    if not isinstance(config, Mapping):
        raise ImproperlyConfigured("Set AUTHSERVER_RS (issuer, audience, ...) to use authserver_rs.django.")
    validator_args = {key: value for key, value in config.items() if key not in _POLICY_KEYS}
    try:
        validator = TokenValidator(**validator_args)
        policy = _policy(config, validator)
    except (TypeError, ValueError) as exc:
        raise ImproperlyConfigured(f"AUTHSERVER_RS: {exc}") from exc
    return Guard(validator, policy, realm=config.get("realm"))


def _policy(config: Mapping[str, Any], validator: TokenValidator) -> ScopePolicy | None:
    public = config.get("public", ())
    base_path = config.get("base_path", "")
    catalogue = config.get("catalogue")
    if catalogue and config.get("scopes") is not None:
        raise ValueError("give either scopes or catalogue, not both")
    if catalogue:
        slug = catalogue if isinstance(catalogue, str) else None
        return ScopePolicy.from_server(
            validator.issuer,
            audience=None if slug else validator.audience,
            slug=slug,
            public=public,
            base_path=base_path,
            http=validator.http,
        )
    if config.get("scopes") is not None:
        return ScopePolicy(config["scopes"], public=public, base_path=base_path)
    return None


def _reset(*, setting: str, **kwargs: Any) -> None:
    global _configured
    if setting == "AUTHSERVER_RS":
        _configured = None


setting_changed.connect(_reset, dispatch_uid="authserver_rs.django.reset")


class TokenUser:
    """``request.user`` for a token: authenticated, no database row (use ``request.auth``)."""

    is_authenticated = True
    is_anonymous = False
    is_active = True
    is_staff = False
    is_superuser = False
    pk = None
    id = None

    def __init__(self, token: VerifiedToken) -> None:
        self.token = token
        self.client_id = token.client_id
        self.username = token.sub or token.client_id

    def __str__(self) -> str:
        return self.username

    def get_username(self) -> str:
        return self.username


class BearerAPIException(APIException):
    """A ``BearerError`` as DRF answers it: its status, ``WWW-Authenticate`` and ``Retry-After``."""

    def __init__(self, error: BearerError, realm: str) -> None:
        super().__init__(detail=error.description, code=error.error or "not_authenticated")
        self.status_code = error.status
        self.error = error
        challenge = error.challenge(realm)
        if challenge is not None:
            self.auth_header = challenge
        if isinstance(error, IssuerUnavailable):
            self.wait = 5


class _GuardSource:
    validator: TokenValidator | None = None
    scope_policy: ScopePolicy | None = None
    realm: str | None = None

    def get_guard(self) -> Guard:
        if self.validator is not None:
            return Guard(self.validator, self.scope_policy, realm=self.realm)
        return configured_guard()


class BearerTokenAuthentication(_GuardSource, BaseAuthentication):
    """Authenticates ``Authorization: Bearer`` requests with the configured ``TokenValidator``."""

    def authenticate(self, request: Request) -> tuple[TokenUser, VerifiedToken] | None:
        guard = self.get_guard()
        try:
            _refuse_token_outside_header(request)
            header = request.META.get("HTTP_AUTHORIZATION")
            try:
                raw = bearer_token(header)
            except MissingToken:
                return None  # another authentication class may know this request
            token = guard.validator.verify(raw, client_certificate_thumbprint=self.client_certificate(request))
        except BearerError as error:
            # authenticate_header() is asked separately for 401s: it answers this challenge.
            setattr(request._request, CHALLENGE_ATTRIBUTE, error.challenge(guard.realm))
            raise BearerAPIException(error, guard.realm) from None
        return TokenUser(token), token

    def client_certificate(self, request: Request) -> str | None:
        """The thumbprint of the client certificate (RFC 8705); override behind a trusted proxy."""
        return None

    def authenticate_header(self, request: Request) -> str:
        challenge = getattr(request._request, CHALLENGE_ATTRIBUTE, None)
        return challenge or MissingToken("").challenge(self.get_guard().realm) or "Bearer"


def _refuse_token_outside_header(request: Request) -> None:
    django_request = request._request
    if token_in_query(django_request.META.get("QUERY_STRING", "")):
        raise InvalidRequest("Send the access token in the Authorization header, never in the URL (RFC 6750 §2.3).")
    if django_request.content_type != FORM:
        return
    try:
        names = {
            name for name, _ in urllib.parse.parse_qsl(django_request.body.decode("latin-1"), keep_blank_values=True)
        }
    except RawPostDataException:
        names = set(django_request.POST)  # something read the stream first; Django parsed it then
    if "access_token" in names:
        raise InvalidRequest("Send the access token in the Authorization header, not in the request body.")


class RequiredScopes(_GuardSource, BasePermission):
    """The token must carry the scopes of this endpoint: the view's ``required_scopes`` (a list,
    or a dict per method), else the configured scope policy for the method and path."""

    def has_permission(self, request: Request, view: Any) -> bool:
        token = request.auth
        if not isinstance(token, VerifiedToken):
            return False  # DRF answers 401 with BearerTokenAuthentication's challenge
        guard = self.get_guard() if getattr(view, "required_scopes", None) is None else None
        try:
            if guard is not None:
                if guard.scope_policy is None:
                    raise ImproperlyConfigured(
                        f"{type(view).__name__} has no required_scopes and AUTHSERVER_RS has no scope policy."
                    )
                guard.scope_policy.check(request.method or "GET", request.path_info, token)
            else:
                self._check(self._view_requirement(request, view), token)
        except BearerError as error:
            raise BearerAPIException(error, self._realm(request, guard)) from None
        return True

    @staticmethod
    def _view_requirement(request: Request, view: Any) -> Requirement | None:
        spec: Iterable[str] | Mapping[str, Iterable[str]] = view.required_scopes
        method = (request.method or "GET").upper()
        template = request.path_info
        if isinstance(spec, Mapping):
            scopes = spec.get(method, spec.get("GET") if method == "HEAD" else None)
            if scopes is None:
                return None
            return Requirement(method, template, tuple(scopes))
        return Requirement(method, template, tuple(spec))

    @staticmethod
    def _check(requirement: Requirement | None, token: VerifiedToken) -> None:
        if requirement is None:
            raise InsufficientScope("No scope is configured for this method on this endpoint; access is refused.")
        missing = [scope for scope in requirement.scopes if scope not in token.scopes]
        if missing:
            raise InsufficientScope(
                f"This endpoint needs the scope {' '.join(requirement.scopes)}; the token lacks {' '.join(missing)}.",
                scope=requirement.scopes,
            )

    def _realm(self, request: Request, guard: Guard | None) -> str:
        if guard is not None:
            return guard.realm
        for authenticator in getattr(request, "authenticators", None) or ():
            if isinstance(authenticator, BearerTokenAuthentication):
                return authenticator.get_guard().realm
        return self.realm or "api"
