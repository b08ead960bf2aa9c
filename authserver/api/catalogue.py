"""/api/v1/organisations/{id}/apis...: API owners list their APIs and import their OpenAPI documents.

OAUTH-NL §4: each API documents the scopes every endpoint needs. An API's owner keeps that
documentation current by sending its OpenAPI 3.0/3.1 document, which
``authserver.catalogue.api_import_openapi`` turns into the API's endpoints and their required
scopes: all or nothing, idempotent, audited. The public catalogue (/apis/, /apis.json) shows
the result at once.

Who may do what (as in clients/api/views.py): a caller sees an organisation's APIs only
through a live membership of it; any other organisation id is a 404, and so is an API the
organisation does not own. Importing needs an owner or admin role
(``onboarding.permissions.MANAGE_ROLES``, 403 otherwise) and an active organisation (409).
Owners never claim catalogue scopes that belong to no API (``claim_scopes=False``): that moves
the tokens carrying them to this API's audience, so only the server's administrators may.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Count, QuerySet
from django.shortcuts import get_object_or_404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiExample, extend_schema, extend_schema_view
from rest_framework import generics, parsers, serializers
from rest_framework.exceptions import ErrorDetail, ParseError
from rest_framework.request import Request
from rest_framework.response import Response

from authserver.catalogue import MAX_DOCUMENT_BYTES, ImportResult, api_import_openapi, load_openapi
from authserver.errors import DomainError
from authserver.models import ApiResource
from onboarding.api.views import MemberApiView
from onboarding.models import Organisation
from onboarding.permissions import MANAGE_ROLES, PermissionDenied, require_role

from .parsers import JSONParser

YAML_MEDIA_TYPES = ("application/yaml", "application/vnd.oai.openapi+yaml")


# ---- parsers ------------------------------------------------------------------------------


class OpenApiYAMLParser(parsers.BaseParser):
    """An OpenAPI document in YAML (safe_load: plain data only), at most MAX_DOCUMENT_BYTES."""

    media_type = "application/yaml"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> Any:
        # One byte more than allowed tells "too large" from "exactly the limit".
        content = stream.read(MAX_DOCUMENT_BYTES + 1) if stream is not None else b""
        try:
            return load_openapi(content)
        except DomainError as exc:
            raise ParseError(str(exc)) from exc
        except RecursionError:
            raise ParseError("YAML parse error - the document is nested too deeply.") from None


class OpenApiMediaTypeYAMLParser(OpenApiYAMLParser):
    """The OpenAPI Initiative's registered media type for YAML documents."""

    media_type = "application/vnd.oai.openapi+yaml"


# ---- serializers --------------------------------------------------------------------------


class OwnedApiSerializer(serializers.ModelSerializer[ApiResource]):
    """An API the organisation owns, as its owner sees it (published or not)."""

    endpoint_count = serializers.IntegerField(read_only=True, help_text="How many endpoints the catalogue holds.")
    access_token_lifetime = serializers.IntegerField(
        read_only=True, allow_null=True, help_text="Seconds; null: the server's lifetime for the grant."
    )

    class Meta:
        model = ApiResource
        fields = (
            "name",
            "slug",
            "description",
            "audience",
            "token_format",
            "access_token_lifetime",
            "documentation_url",
            "published",
            "endpoint_count",
        )
        read_only_fields = fields


class ImportResultSerializer(serializers.Serializer[ImportResult]):
    """What an import did: operations as "METHOD /path", scopes by name."""

    api = serializers.CharField(read_only=True, help_text="The API's slug.")
    changed = serializers.BooleanField(read_only=True, help_text="Whether anything in the catalogue changed.")
    created = serializers.ListField(child=serializers.CharField(), read_only=True, help_text="New endpoints.")
    updated = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Endpoints whose summary or scopes changed."
    )
    unchanged = serializers.ListField(child=serializers.CharField(), read_only=True)
    removed = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Endpoints the document no longer has."
    )
    scopes_created = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Scopes new to the catalogue, now of this API."
    )
    scopes_ignored = serializers.ListField(
        child=serializers.CharField(),
        read_only=True,
        help_text="Scopes the server itself defines (openid, ...): not catalogue scopes, left alone.",
    )
    summary = serializers.CharField(read_only=True, help_text="The counts and lists above in one sentence.")

    def to_representation(self, instance: ImportResult) -> dict[str, Any]:
        return {
            "api": instance.api.slug,
            "changed": instance.changed,
            "created": instance.created,
            "updated": instance.updated,
            "unchanged": instance.unchanged,
            "removed": instance.removed,
            "scopes_created": instance.scopes_created,
            "scopes_ignored": instance.scopes_ignored,
            "summary": instance.summary(),
        }


# ---- views --------------------------------------------------------------------------------


class OwnerApisView(MemberApiView):
    def my_apis(self) -> QuerySet[ApiResource]:
        return ApiResource.objects.filter(owner_id=self.my_organisation().pk)


@extend_schema_view(
    get=extend_schema(
        summary="The APIs the organisation owns",
        description="Every API whose access this server decides for the organisation, published in the "
        "public catalogue (/apis/) or not, with how many endpoints it documents.",
        tags=["apis"],
    ),
)
class OwnedApiListView(OwnerApisView, generics.ListAPIView):
    serializer_class = OwnedApiSerializer

    def get_queryset(self) -> QuerySet[ApiResource]:
        return self.my_apis().annotate(endpoint_count=Count("endpoints")).order_by("name", "pk")


EXAMPLE_DOCUMENT = {
    "openapi": "3.1.0",
    "info": {"title": "Orders", "version": "1.0.0"},
    "components": {
        "securitySchemes": {
            "oauth2": {
                "type": "oauth2",
                "flows": {
                    "clientCredentials": {
                        "tokenUrl": "https://auth.example.org/oauth/token",
                        "scopes": {"orders:read": "Read orders"},
                    }
                },
            }
        }
    },
    "paths": {"/orders": {"get": {"summary": "List orders", "security": [{"oauth2": ["orders:read"]}]}}},
}


@extend_schema_view(
    post=extend_schema(
        summary="Import the API's OpenAPI document",
        description="Makes the API's endpoints those of the OpenAPI 3.0 or 3.1 document, each with the "
        "OAuth scopes of its `security` requirement (or the document's top-level one): new operations are "
        "added, changed ones updated, operations the document no longer has removed. Scopes the catalogue "
        "lacks are created for this API (medium risk; an administrator sets their policy). All or nothing: "
        "a document the import refuses (not OpenAPI 3, a scope of another API or of no API, alternatives "
        "with different scopes, ...) is a 400 with the reason, and nothing changes. Importing the same "
        "document again changes nothing. Send JSON (`application/json`) or YAML (`application/yaml`, "
        f"`application/vnd.oai.openapi+yaml`), at most {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB, "
        "self-contained (only `#/...` references). Owners and admins of an active organisation only.",
        tags=["apis"],
        request={
            "application/json": OpenApiTypes.OBJECT,
            "application/yaml": OpenApiTypes.STR,
            "application/vnd.oai.openapi+yaml": OpenApiTypes.STR,
        },
        responses={200: ImportResultSerializer},
        examples=[OpenApiExample("A one-operation API", value=EXAMPLE_DOCUMENT, request_only=True)],
    ),
)
class OpenApiImportView(OwnerApisView):
    parser_classes = (JSONParser, OpenApiYAMLParser, OpenApiMediaTypeYAMLParser)
    serializer_class = ImportResultSerializer

    def post(self, request: Request, organisation_id: int, slug: str) -> Response:
        organisation = self.my_organisation()
        require_role(self.person, organisation, *MANAGE_ROLES)
        api = get_object_or_404(self.my_apis(), slug=slug)
        if organisation.status != Organisation.Status.ACTIVE:
            raise DomainError(f"The organisation is {organisation.get_status_display().lower()}; it changes no API.")
        self._check_size(request)
        document = request.data
        if not isinstance(document, dict):  # JSON whose top level is a list, a string, a number
            raise serializers.ValidationError(
                {"non_field_errors": [ErrorDetail("The document's top level is not a mapping.", code="invalid")]}
            )
        try:
            result = api_import_openapi(api=api, document=document, actor=self.person)
        except PermissionDenied:
            raise
        except DomainError as exc:
            # What the document says is refused: a field error of the whole body (pointer "#").
            raise serializers.ValidationError({"non_field_errors": [ErrorDetail(str(exc), code="invalid")]}) from exc
        return Response(ImportResultSerializer(result).data)

    @staticmethod
    def _check_size(request: Request) -> None:
        try:
            length = int(request.META.get("CONTENT_LENGTH") or 0)
        except ValueError:
            length = 0
        if length > MAX_DOCUMENT_BYTES:
            raise serializers.ValidationError(
                {
                    "non_field_errors": [
                        ErrorDetail(
                            f"The document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.", code="too_large"
                        )
                    ]
                }
            )
