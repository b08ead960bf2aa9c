"""What a caller needs before a view runs: a person, and for a token, the view's scope.

Roles inside an organisation are not checked here: the services enforce them (STYLE.md §1),
and the views answer 404 for organisations the caller does not belong to.
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured
from rest_framework.permissions import BasePermission
from rest_framework.request import Request


def token_of(request: Request) -> Any | None:
    """The OAuth access token the request was authenticated with, if any."""
    auth = request.auth
    return auth if hasattr(auth, "scope") and hasattr(auth, "allow_scopes") else None


class PersonWithScope(BasePermission):
    """A signed-in person (session), or a token of a person carrying the view's ``required_scopes``.

    A client-credentials token acts for no person, so it gets 403: these APIs act on behalf of
    an organisation's representative. The scopes are declared per view (OAUTH-NL §4: each API
    documents the scopes each endpoint needs) and appear in the OpenAPI document.
    """

    message = "This API needs a signed-in person, or an access token of a person with the required scope."

    def has_permission(self, request: Request, view: Any) -> bool:
        required = getattr(view, "required_scopes", None)
        if required is None:
            raise ImproperlyConfigured(f"{type(view).__name__} must declare required_scopes")
        user = request.user
        if user is None or not user.is_authenticated:
            if token_of(request) is not None:
                self.message = "A client-credentials token acts for no person; this API needs a person's token."
            return False
        token = token_of(request)
        if token is None:
            return True  # a session
        if not token.allow_scopes(list(required)):
            self.message = f"The access token lacks the scope this API needs: {' '.join(required)}."
            return False
        return True
