"""drf-spectacular: the problem responses of every operation and the OAuth 2.0 security scheme."""

from __future__ import annotations

import inspect
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema as SpectacularAutoSchema
from drf_spectacular.settings import spectacular_settings

from .problems import PROBLEM_CONTENT_TYPE, ProblemSerializer, ValidationProblemSerializer

# Which problem statuses an operation documents, beside its success response.
_ALWAYS = {
    "401": "Not authenticated: no session and no bearer token, or the token is invalid.",
    "403": "Forbidden: your role, your token's scope, or a token without a person.",
    "500": "Something went wrong on our side; nothing internal is shown.",
}
_WITH_BODY = {
    "400": "The request is not valid: field errors in `errors`, or a body that does not parse (then without "
    "`errors`); nothing was stored."
}
_UNSAFE_BODY = {"415": "The request body is not of a media type this operation accepts."}
_UNSAFE = {"409": "The resource's current state or a domain rule refuses the request."}
_WITH_PATH = {"404": "Not found, or not yours to see."}


class AutoSchema(SpectacularAutoSchema):
    """Adds the RFC 9457 problem responses each operation can give."""

    def get_description(self) -> str:  # type: ignore[override]  # drf-spectacular's signature
        # Only a view's own docstring describes it, not one inherited from a base class.
        return inspect.cleandoc(type(self.view).__dict__.get("__doc__") or "")

    def _get_response_bodies(self, direction: Any = "response") -> dict[str, Any]:
        responses = super()._get_response_bodies(direction)
        if direction != "response" or not self._is_authenticated_view():
            return responses
        problems = dict(_ALWAYS)
        if self.method in ("POST", "PUT", "PATCH"):
            problems.update(_UNSAFE_BODY)
        if self._get_request_body() is not None:
            problems.update(_WITH_BODY)
        if self.method not in ("GET", "HEAD", "OPTIONS"):
            problems.update(_UNSAFE)
        if "{" in self.path or self.method not in ("GET", "POST"):
            problems.update(_WITH_PATH)
        if self._is_list_view():
            problems["404"] = "Not found, not yours to see, or a page number past the end."
        problem = self.resolve_serializer(ProblemSerializer, "response").ref
        invalid = self.resolve_serializer(ValidationProblemSerializer, "response").ref
        for status, description in sorted(problems.items()):
            # A body that does not parse (DRF's ParseError) has no field errors to list.
            schema = {"anyOf": [invalid, problem]} if status == "400" else problem
            responses.setdefault(
                status, {"description": description, "content": {PROBLEM_CONTENT_TYPE: {"schema": schema}}}
            )
        return responses

    def _map_basic_serializer(self, serializer: Any, direction: Any) -> Any:
        schema = super()._map_basic_serializer(serializer, direction)
        # An optional e-mail address or URI is stored and answered as "", which its format
        # alone would not admit (found by tests/faults/test_fuzz_api.py).
        for name, prop in schema.get("properties", {}).items():
            field = serializer.fields.get(name)
            if prop.get("format") in ("email", "uri") and field is not None and _may_be_blank(field):
                prop["anyOf"] = [{"format": prop.pop("format")}, {"maxLength": 0}]
        return schema

    def _is_authenticated_view(self) -> bool:
        return bool(getattr(self.view, "authentication_classes", ()))


def _may_be_blank(field: Any) -> bool:
    """Whether a serializer field may hold "": it allows blank, or its model field does."""
    if getattr(field, "allow_blank", False):
        return True
    model = getattr(getattr(getattr(field, "parent", None), "Meta", None), "model", None)
    if model is None or not isinstance(getattr(field, "source", None), str):
        return False
    try:
        return bool(model._meta.get_field(field.source).blank)
    except Exception:  # a property or a related path, not a model field
        return False


class BearerTokenScheme(OpenApiAuthenticationExtension):
    """OAuth 2.0 authorization code flow with PKCE at this server; each operation lists its scopes."""

    target_class = "authserver.api.authentication.BearerTokenAuthentication"
    name = "oauth2"

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[str]]:
        return {self.name: list(getattr(auto_schema.view, "required_scopes", None) or [])}

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        issuer = settings.AUTHSERVER_ISSUER
        scopes = spectacular_settings.OAUTH2_SCOPES or {}
        return {
            "type": "oauth2",
            "description": "An access token of this server for a person (authorization code flow with "
            "PKCE S256), in the Authorization header only. Client-credentials tokens are refused (403).",
            "flows": {
                "authorizationCode": {
                    "authorizationUrl": f"{issuer}/oauth/authorize",
                    "tokenUrl": f"{issuer}/oauth/token",
                    "scopes": scopes,
                }
            },
        }
