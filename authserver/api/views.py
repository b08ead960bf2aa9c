"""The base of every API view, the catch-all 404, and the OpenAPI document and its pages."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import Http404
from django.utils.http import parse_header_parameters
from drf_spectacular.generators import SchemaGenerator
from drf_spectacular.views import SpectacularAPIView, SpectacularJSONAPIView
from rest_framework import exceptions
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.permissions import AllowAny
from rest_framework.renderers import TemplateHTMLRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from .problems import PROBLEM_TYPES, problem_type_uri

# ADR /core/version-header: the full version in every response; the OpenAPI document says the same.
API_VERSION = "1.0.0"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})


class UnsupportedContentType(exceptions.UnsupportedMediaType):
    def __init__(self, media_type: str, allowed: list[str]) -> None:
        shown = f'"{media_type}"' if media_type else "a body without a Content-Type"
        super().__init__(media_type, detail=f"This endpoint does not accept {shown}; send {' or '.join(allowed)}.")


def _has_body(request: Request) -> bool:
    if "HTTP_TRANSFER_ENCODING" in request.META:
        return True
    try:
        return int(request.META.get("CONTENT_LENGTH") or 0) > 0
    except ValueError:
        return True


class ApiMixin:
    """Put before DRF's view class: ``class View(ApiMixin, generics.ListAPIView)``.

    - 415 for a request body of a media type the view has no parser for (ADR: unexpected
      content types get 415), checked before the handler runs, so it holds for handlers that
      never read the body, too;
    - ``Cache-Control: no-store`` (ADR security headers) and ``API-Version`` on every response,
      errors included.
    """

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)  # type: ignore[misc]
        self.check_content_type(request)

    def check_content_type(self, request: Request) -> None:
        method = request.method or ""
        if method not in BODY_METHODS or not hasattr(self, method.lower()):
            return  # no body expected, or a 405 follows
        header = request.META.get("CONTENT_TYPE", "")
        media_type = parse_header_parameters(header)[0].lower() if header.strip() else ""
        allowed = sorted({parser.media_type for parser in self.get_parsers()})  # type: ignore[attr-defined]
        if not media_type:
            if _has_body(request):
                raise UnsupportedContentType("", allowed)
            return  # no body at all: fine for actions such as submit
        if media_type not in allowed:
            raise UnsupportedContentType(media_type, allowed)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)  # type: ignore[misc]
        response["Cache-Control"] = "no-store"
        response["API-Version"] = API_VERSION
        return response


class NotFoundView(ApiMixin, APIView):
    """Whatever no API route matched: a 404 problem rather than Django's HTML page."""

    authentication_classes = ()
    permission_classes = (AllowAny,)
    schema = None  # not part of the OpenAPI document

    @property
    def default_response_headers(self) -> dict[str, str]:
        headers = super().default_response_headers
        headers.pop("Allow", None)
        return headers

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        raise Http404


class _OpenDocument(ApiMixin, APIView):
    """The OpenAPI document is an open document: no authentication, any origin (STANDARDS.md, CORS)."""

    authentication_classes = ()
    permission_classes = (AllowAny,)

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Access-Control-Allow-Origin"] = "*"
        return response


class SchemaView(_OpenDocument, SpectacularAPIView):
    """OpenAPI 3 as YAML, or JSON with ``?format=json`` or ``Accept: application/json``."""


class SchemaJSONView(_OpenDocument, SpectacularJSONAPIView):
    """ADR /core/publish-openapi: the document in JSON at ``<api base>/openapi.json``."""


def _operations(schema: dict[str, Any]) -> list[dict[str, Any]]:
    operations = []
    for path, item in schema.get("paths", {}).items():
        for method, operation in item.items():
            if method not in {"get", "post", "put", "patch", "delete"}:
                continue
            scopes = sorted(
                {scope for requirement in operation.get("security", []) for scope in requirement.get("oauth2", [])}
            )
            operations.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": operation.get("summary") or operation.get("operationId", ""),
                    "description": operation.get("description", ""),
                    "scopes": scopes,
                    "responses": sorted(operation.get("responses", {})),
                    "tag": (operation.get("tags") or [""])[0],
                }
            )
    return operations


class FirstRenderer(BaseContentNegotiation):
    """The pages below are HTML whatever the Accept header says (errors stay problem+json)."""

    def select_parser(self, request: Request, parsers: Any) -> Any:
        return parsers[0] if parsers else None

    def select_renderer(self, request: Request, renderers: Any, format_suffix: str | None = None) -> Any:
        return renderers[0], renderers[0].media_type


class _Page(_OpenDocument):
    renderer_classes = (TemplateHTMLRenderer,)
    content_negotiation_class = FirstRenderer
    schema = None


class DocsView(_Page):
    """A plain page of the API: every operation, its scopes and statuses, links to the schema.

    Swagger UI and Redoc would load their scripts from a CDN (no sidecar is installed), which
    offline deployments cannot reach; the OpenAPI document itself is the reference.
    """

    def get(self, request: Request) -> Response:
        schema = SchemaGenerator().get_schema(request=None, public=True)
        context = {
            "info": schema.get("info", {}),
            "operations": _operations(schema),
            "problem_types": [(problem, problem_type_uri(problem.slug)) for problem in PROBLEM_TYPES.values()],
            "issuer": settings.AUTHSERVER_ISSUER,
        }
        return Response(context, template_name="api/docs.html")


class ProblemTypeView(_Page):
    """The human-readable page a problem ``type`` URI points to (RFC 9457 §3.1.1)."""

    def get(self, request: Request, slug: str) -> Response:
        problem = PROBLEM_TYPES.get(slug)
        if problem is None:
            raise Http404
        return Response({"problem": problem, "uri": problem_type_uri(slug)}, template_name="api/problem.html")
