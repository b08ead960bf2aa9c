"""RFC 9457 problem details: every error of every API has this one shape.

    {"type": ".../api/problems/validation-error", "title": "Your request is not valid.",
     "status": 400, "detail": "...", "instance": "/api/v1/organisations",
     "errors": [{"field": "oin", "pointer": "#/oin", "code": "oin_prefix", "detail": "..."}]}

How exceptions map to statuses (docs/api.md for API users, docs/decisions/0007-api-kernel.md for why):

- field errors (DRF or Django ``ValidationError``, from a serializer or a service) -> 400
  ``validation-error`` with ``errors``, one entry per message, each with a JSON Pointer
  (RFC 6901, as in RFC 9457 §3's example) into the request body;
- DRF's and Django's ``PermissionDenied`` -> 403 ``forbidden``; so is any exception a view
  lists in ``problem_exceptions`` (``{ExceptionClass: (status, slug)}``), which is how an
  app's API maps its own refusals (``onboarding.permissions.PermissionDenied``) without the
  kernel importing the app;
- any other ``DomainError``, ``InvalidTransition`` included -> 409 ``conflict``: the request
  is well-formed and permitted, but the resource's current state or a rule of the domain
  refuses it (submitting twice, editing an approved application, the last owner leaving).
  Retrying makes sense only after the state changes, which is what RFC 9110 §15.5.10 says of
  409; 422 would suggest the content itself is wrong, which the field errors already say;
- plain HTTP errors (401, 404, 405, 406, 415, 429) use ``about:blank`` with the status phrase
  as title (RFC 9457 §4.2.1);
- the database unreachable (``authserver.middleware.database_unavailable``) -> 503
  ``about:blank`` with ``Retry-After``;
- anything else -> 500 ``about:blank`` with no internals; the traceback goes to the log only.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.core.exceptions import ValidationError as DjangoValidationError
from django.http import Http404
from rest_framework import exceptions, serializers
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings
from rest_framework.views import set_rollback

from authserver.errors import DomainError
from authserver.middleware import DATABASE_RETRY_AFTER, DATABASE_UNAVAILABLE, database_unavailable

log = logging.getLogger(__name__)

PROBLEM_CONTENT_TYPE = "application/problem+json"
ABOUT_BLANK = "about:blank"


@dataclass(frozen=True)
class ProblemType:
    slug: str
    title: str
    status: int
    description: str


# The problem types of our own; each resolves to a page at /api/problems/<slug> (RFC 9457 §3.1.1).
PROBLEM_TYPES: dict[str, ProblemType] = {
    problem.slug: problem
    for problem in (
        ProblemType(
            "validation-error",
            "Your request is not valid.",
            400,
            "One or more fields of the request are missing or wrong. The errors member lists each "
            "one with a JSON Pointer into the request body and a message; nothing was stored.",
        ),
        ProblemType(
            "invalid-request",
            "The request is malformed.",
            400,
            "The request could not be read: a body that is not valid JSON, or an access token in "
            "the query string (RFC 6750 §2.3 and RFC 9700 forbid that; send it in the Authorization "
            "header).",
        ),
        ProblemType(
            "forbidden",
            "You may not do this.",
            403,
            "You are signed in, but your role in the organisation, your token's scope, or the kind "
            "of token (a client-credentials token acts for no person) does not allow this operation.",
        ),
        ProblemType(
            "conflict",
            "The current state does not allow this.",
            409,
            "The request is valid, but the resource's current state or a rule of the domain refuses "
            "it: for example submitting an application twice, editing one that was decided, or the "
            "last owner leaving an organisation. The detail says which rule.",
        ),
    )
}


def problem_type_uri(slug: str) -> str:
    return f"{settings.AUTHSERVER_ISSUER}/api/problems/{slug}"


class ProblemJSONRenderer(JSONRenderer):
    media_type = PROBLEM_CONTENT_TYPE
    format = "problem+json"


class FieldErrorSerializer(serializers.Serializer):
    field = serializers.CharField(allow_null=True, help_text="The request field, dotted for nested fields.")
    pointer = serializers.CharField(help_text="JSON Pointer (RFC 6901) into the request body, as a URI fragment.")
    code = serializers.CharField()
    detail = serializers.CharField()


class ProblemSerializer(serializers.Serializer):
    """An error, as RFC 9457 problem details (``application/problem+json``)."""

    type = serializers.URLField(
        help_text="A URI that identifies the problem type and resolves to its description; "
        "about:blank for plain HTTP errors."
    )
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField()
    instance = serializers.CharField(help_text="The path of the request that had the problem.")


class ValidationProblemSerializer(ProblemSerializer):
    """RFC 9457 problem details with the field errors (RFC 9457 §3's ``errors`` extension)."""

    def get_fields(self) -> dict[str, serializers.Field]:
        # Declared here because ``errors`` is also the name of Serializer's own property.
        fields = super().get_fields()
        fields["errors"] = FieldErrorSerializer(many=True)
        return fields


def problem_response(
    request: Any,
    *,
    status: int,
    detail: str,
    slug: str | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """A problem details response; ``request`` is DRF's or Django's request (or None)."""
    problem_type = PROBLEM_TYPES.get(slug) if slug else None
    body: dict[str, Any] = {
        "type": problem_type_uri(problem_type.slug) if problem_type else ABOUT_BLANK,
        "title": problem_type.title if problem_type else _status_phrase(status),
        "status": status,
        "detail": detail,
        # The path only: a query string may carry what must not be echoed (a refused token).
        "instance": getattr(request, "path", "") or "",
    }
    if errors is not None:
        body["errors"] = errors
    if request is not None and hasattr(request, "accepted_renderer"):
        # Errors are problem+json whatever was negotiated (even for the YAML schema view).
        request.accepted_renderer = ProblemJSONRenderer()
        request.accepted_media_type = PROBLEM_CONTENT_TYPE
    return Response(body, status=status, headers=dict(headers or {}), content_type=PROBLEM_CONTENT_TYPE)


def _status_phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


# ---- field errors -------------------------------------------------------------------------


def _pointer(path: list[str]) -> str:
    # RFC 6901 §3 escaping, then as a URI fragment (§6) like RFC 9457's example.
    return "#" + "".join("/" + part.replace("~", "~0").replace("/", "~1") for part in path)


def _field_error(path: list[str], code: str, message: str) -> dict[str, Any]:
    return {
        "field": ".".join(path) or None,
        "pointer": _pointer(path),
        "code": code or "invalid",
        "detail": message,
    }


def drf_field_errors(detail: Any, path: list[str] | None = None) -> list[dict[str, Any]]:
    """Flatten DRF's nested ``ValidationError.detail`` into a list of field errors."""
    path = path or []
    if isinstance(detail, Mapping):
        errors: list[dict[str, Any]] = []
        for key, value in detail.items():
            key = str(key)
            child = path if key in (api_settings.NON_FIELD_ERRORS_KEY, NON_FIELD_ERRORS) else [*path, key]
            errors.extend(drf_field_errors(value, child))
        return errors
    if isinstance(detail, list | tuple):
        errors = []
        for index, value in enumerate(detail):
            if isinstance(value, Mapping | list | tuple):
                errors.extend(drf_field_errors(value, [*path, str(index)]))
            else:
                errors.extend(drf_field_errors(value, path))
        return errors
    return [_field_error(path, str(getattr(detail, "code", "") or "invalid"), str(detail))]


def django_field_errors(exc: DjangoValidationError) -> list[dict[str, Any]]:
    """Flatten a Django ``ValidationError`` (from ``full_clean`` or a service)."""
    errors: list[dict[str, Any]] = []
    if hasattr(exc, "error_dict"):
        for field, field_errors in exc.error_dict.items():
            path = [] if field == NON_FIELD_ERRORS else [str(field)]
            errors.extend(_django_messages(path, field_errors))
    else:
        errors.extend(_django_messages([], exc.error_list))
    return errors


def _django_messages(path: list[str], field_errors: Iterable[DjangoValidationError]) -> list[dict[str, Any]]:
    result = []
    for error in field_errors:
        message = str(error.message % error.params) if error.params else str(error.message)
        result.append(_field_error(path, error.code or "invalid", message))
    return result


def _summary(errors: list[dict[str, Any]]) -> str:
    fields = sorted({error["field"] for error in errors if error["field"]})
    if fields:
        return f"Check these fields: {', '.join(fields)}."
    return errors[0]["detail"] if errors else "The request is not valid."


# ---- the exception handler ------------------------------------------------------------------


def exception_handler(exc: Exception, context: Mapping[str, Any]) -> Response:
    """DRF's EXCEPTION_HANDLER: every exception becomes a problem details response."""
    request = context.get("request")
    # Whatever a service did before it refused is undone when requests are atomic.
    set_rollback()

    mapped: Mapping[type[Exception], tuple[int, str]] = getattr(context.get("view"), "problem_exceptions", {})
    for exc_class, (status, slug) in mapped.items():
        if isinstance(exc, exc_class):
            return problem_response(request, status=status, slug=slug, detail=str(exc) or _status_phrase(status))

    if isinstance(exc, exceptions.ValidationError):
        errors = drf_field_errors(exc.detail)
        return problem_response(request, status=400, slug="validation-error", detail=_summary(errors), errors=errors)
    if isinstance(exc, DjangoValidationError):
        errors = django_field_errors(exc)
        return problem_response(request, status=400, slug="validation-error", detail=_summary(errors), errors=errors)
    if isinstance(exc, DjangoPermissionDenied):
        detail = str(exc) or "You may not do this."
        return problem_response(request, status=403, slug="forbidden", detail=detail)
    if isinstance(exc, DomainError):
        return problem_response(request, status=409, slug="conflict", detail=str(exc) or "Refused by a domain rule.")
    if isinstance(exc, Http404):
        return problem_response(request, status=404, detail="There is nothing here, or it is not yours to see.")
    if isinstance(exc, exceptions.APIException):
        return _api_exception(request, exc)
    if database_unavailable(exc):
        log.warning("database unavailable (%s); answered 503", type(exc).__name__)
        return problem_response(
            request,
            status=503,
            detail=DATABASE_UNAVAILABLE,
            headers={"Retry-After": str(DATABASE_RETRY_AFTER), "Cache-Control": "no-store"},
        )

    log.exception("unhandled exception in an API view", exc_info=exc)
    return problem_response(
        request,
        status=500,
        detail="Something went wrong on our side. It was logged; the X-Request-ID header identifies it.",
    )


def _api_exception(request: Any, exc: exceptions.APIException) -> Response:
    headers: dict[str, str] = {}
    auth_header = getattr(exc, "auth_header", None)
    if auth_header:
        headers["WWW-Authenticate"] = str(auth_header)
    wait = getattr(exc, "wait", None)
    if wait:
        headers["Retry-After"] = f"{int(wait)}"
    detail: Any = exc.detail
    if isinstance(detail, Mapping):
        # e.g. DOT's TokenHasScope: {"detail": ..., "required_scopes": [...]}
        detail = detail.get("detail") or exc.default_detail
    elif isinstance(detail, list):
        detail = " ".join(str(item) for item in detail) or exc.default_detail
    slug = None
    if isinstance(exc, exceptions.PermissionDenied):
        slug = "forbidden"
    elif isinstance(exc, exceptions.ParseError) or getattr(exc, "problem_slug", None) == "invalid-request":
        slug = "invalid-request"
    return problem_response(request, status=exc.status_code, slug=slug, detail=str(detail), headers=headers)
