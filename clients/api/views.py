"""The members' clients API (/api/v1/organisations/{id}/clients...): register, look, rotate, revoke.

Every change is one call to a clients service (STYLE.md §1) inside one transaction, so a
refused request stores nothing; the views pick the objects the caller may see, map a
service's refusal to the request field it concerns, and turn results into JSON.

Who may do what (the same rules as the portal's client pages): a caller sees an
organisation's clients only through a live membership of it; any other organisation id,
existing or guessed, is a 404, and so is everything under it. Members with a role in
``clients.permissions.CLIENT_ROLES`` (every role: owners, admins and developers, since
developers build and operate clients) register and manage clients; revoking a whole client
needs ``CLIENT_REVOKE_ROLES`` (owners and admins), as in the portal (403 otherwise).

How refusals map (docs/decisions/0007-api-kernel.md): what the caller can fix in the request
(shape, redirect URIs, keys, certificates, scopes the policy will not give) is 400
``validation-error`` with a pointer to the field; the state of the client or organisation
(revoked client, suspended organisation, a secret that exists already) is 409 ``conflict``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django.shortcuts import get_object_or_404
from django.urls import reverse
from django.utils import timezone
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, serializers, status
from rest_framework.exceptions import ErrorDetail
from rest_framework.request import Request
from rest_framework.response import Response

from authserver.errors import DomainError, InvalidTransition
from onboarding.api.views import MemberApiView
from onboarding.models import Organisation
from onboarding.permissions import PermissionDenied, require_role

from .. import policy, services
from ..models import Client, ClientCredential
from ..permissions import CLIENT_REVOKE_ROLES, CLIENT_ROLES
from . import serializers as s

# A client in one of these states gets no new credential.
FINAL_STATUSES = (Client.Status.REVOKED, Client.Status.REJECTED, Client.Status.EXPIRED)
# The RFC 7591 errors of the registration policy that mean "the organisation's state", not the request.
STATE_ERRORS = ("access_denied",)


@contextmanager
def refusal_on(*path: str) -> Iterator[None]:
    """A service's refusal of what the request gave at ``path`` becomes a 400 field error there.

    Transition and permission refusals are about state and role, not the field: they pass.
    """
    try:
        yield
    except (InvalidTransition, PermissionDenied):
        raise
    except DomainError as exc:
        detail: Any = [ErrorDetail(str(exc), code="invalid")]
        for part in reversed(path):
            detail = {part: detail}
        raise serializers.ValidationError(detail) from exc


def _field_of_reason(reason: str) -> str:
    """The request field a registration policy reason is about (clients.policy's wording)."""
    text = reason.lower()
    if text.startswith(("scope", "open registration may not get")):
        return "scopes"
    if text.startswith("grant type") or "client_credentials clients" in text:
        return "grant_type"
    if text.startswith("redirect"):
        return "redirect_uris"
    if text.startswith("environment"):
        return "environment"
    return "non_field_errors"


class ClientsApiView(MemberApiView):
    # ---- what the caller may see ----------------------------------------------------------

    def require_manager(self) -> Organisation:
        organisation = self.my_organisation()
        require_role(self.person, organisation, *CLIENT_ROLES)
        return organisation

    def my_clients(self) -> QuerySet[Client]:
        return Client.objects.filter(organisation_id=self.my_organisation().pk)

    def my_client(self) -> Client:
        """The client of the URL, if it belongs to the caller's organisation; else 404."""
        return get_object_or_404(self.my_clients(), pk=self.kwargs["client_pk"])

    def client_detail(self, pk: int) -> Client:
        return get_object_or_404(self.my_clients().select_related("intake").prefetch_related("credentials"), pk=pk)

    def my_credential(self, client: Client) -> ClientCredential:
        return get_object_or_404(ClientCredential.objects.filter(client_id=client.pk), pk=self.kwargs["credential_id"])

    def validated(self, serializer_class: type[Any]) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


# ---- clients ------------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(summary="The organisation's clients", tags=["clients"]),
    post=extend_schema(
        summary="Register a client",
        description="The registration policy decides how it starts: active at once within a pre-approval "
        "(whitelist mode: an allowlist entry of the organisation), or pending (explicit mode) until an "
        "administrator grants all or part of the scopes; `reasons` says why it went to review. The first "
        "key or certificate may come along (`jwks`, `jwks_uri`, `certificate_pem`, `subject_dn`); a secret "
        "client that is active at once gets its secret in this response when `issue_secret` is true, and "
        "never again. Anything refused stores nothing: field errors (400) for the request, a conflict (409) "
        "when the organisation is not active.",
        tags=["clients"],
        request=s.ClientRegisterSerializer,
        responses={201: s.RegistrationSerializer},
    ),
)
class ClientListView(ClientsApiView, generics.ListAPIView):
    serializer_class = s.ClientSerializer

    def get_queryset(self) -> QuerySet[Client]:
        return self.my_clients().order_by("name", "pk")

    def post(self, request: Request, organisation_id: int) -> Response:
        organisation = self.require_manager()
        data = self.validated(s.ClientRegisterSerializer)
        with transaction.atomic():
            registration = self._register(organisation, data)
            client = registration.client
            self._add_first_credential(client, data)
            issued = None
            if data["issue_secret"] and client.status == Client.Status.ACTIVE:
                issued = services.client_credential_issue_secret(client=client, actor=self.person)
        context = {
            "reasons": registration.decision.reasons,
            "secret": issued.secret if issued else None,
            "secret_expires_at": issued.credential.expires_at if issued else None,
        }
        client = self.client_detail(client.pk)
        return Response(
            s.RegistrationSerializer(client, context=context).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("clients-api:client", args=[organisation.pk, client.pk])},
        )

    def _register(self, organisation: Organisation, data: dict[str, Any]) -> services.Registration:
        try:
            return services.client_register(
                channel=policy.MEMBER,
                organisation=organisation,
                name=data["name"],
                grant_type=data["grant_type"],
                scopes=data["scopes"],
                redirect_uris=data["redirect_uris"],
                post_logout_redirect_uris=data["post_logout_redirect_uris"],
                auth_method=data["token_endpoint_auth_method"],
                environment=data["environment"],
                software_id=data["software_id"],
                intake=services.IntakeDetails(
                    purpose=data["purpose"],
                    contact_name=data["contact_name"],
                    contact_email=data["contact_email"],
                    justifications=data["justifications"],
                ),
                metadata={
                    "software_version": data["software_version"],
                    "client_uri": data["client_uri"],
                    "contacts": data["contacts"],
                },
                actor=self.person,
            )
        except services.RegistrationRefused as exc:
            if exc.error in STATE_ERRORS:
                raise DomainError(str(exc)) from exc
            errors: dict[str, list[ErrorDetail]] = {}
            for reason in exc.reasons:
                errors.setdefault(_field_of_reason(reason), []).append(ErrorDetail(reason, code=exc.error))
            raise serializers.ValidationError(errors) from exc
        except (InvalidTransition, PermissionDenied):
            raise
        except DomainError as exc:
            # client_create's own checks of what was asked (the serializer checked most already).
            raise serializers.ValidationError({"non_field_errors": [str(exc)]}) from exc

    def _add_first_credential(self, client: Client, data: dict[str, Any]) -> None:
        for index, jwk in enumerate(data.get("jwks", {}).get("keys", [])):
            with refusal_on("jwks", "keys", str(index)):
                services.client_credential_add_public_key(client=client, jwk=jwk, actor=self.person)
        if "jwks_uri" in data:
            with refusal_on("jwks_uri"):
                services.client_credential_add_jwks_uri(client=client, jwks_uri=data["jwks_uri"], actor=self.person)
        for field in ("certificate_pem", "subject_dn"):
            if field in data:
                with refusal_on(field):
                    services.client_credential_add_certificate(client=client, actor=self.person, **{field: data[field]})


@extend_schema_view(
    get=extend_schema(summary="A client, its review and its credentials", tags=["clients"]),
    delete=extend_schema(
        summary="Revoke a client",
        description="At once and for good: every credential and every token of the client stops working "
        "(introspection answers inactive). The client stays visible with status revoked.",
        tags=["clients"],
        responses={204: OpenApiResponse(description="The client is revoked.")},
    ),
)
class ClientDetailView(ClientsApiView, generics.RetrieveAPIView):
    serializer_class = s.ClientDetailSerializer

    def get_object(self) -> Client:
        return self.client_detail(self.kwargs["client_pk"])

    def delete(self, request: Request, organisation_id: int, client_pk: int) -> Response:
        require_role(self.person, self.my_organisation(), *CLIENT_REVOKE_ROLES)
        client = self.my_client()
        services.client_revoke(client_id=client.pk, actor=self.person)
        return Response(status=status.HTTP_204_NO_CONTENT)


# ---- credentials --------------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(summary="A client's credentials", tags=["credentials"]),
    post=extend_schema(
        summary="Add a credential",
        description="Of the kind the client's authentication method uses: `public_key` (a JWK) or `jwks_uri` "
        "for private_key_jwt, `certificate` for mutual TLS, and for secret clients their first `secret` once "
        "the client is active: the secret is in this response only. Further secrets come by rotation. A "
        "revoked, rejected or expired client gets nothing (409).",
        tags=["credentials"],
        request=s.CredentialCreateSerializer,
        responses={201: s.IssuedCredentialSerializer},
    ),
)
class CredentialListView(ClientsApiView, generics.ListAPIView):
    serializer_class = s.CredentialSerializer

    def get_queryset(self) -> QuerySet[ClientCredential]:
        return ClientCredential.objects.filter(client_id=self.my_client().pk).order_by("-created_at", "-pk")

    def post(self, request: Request, organisation_id: int, client_pk: int) -> Response:
        self.require_manager()
        client = self.my_client()
        data = self.validated(s.CredentialCreateSerializer)
        kind = data["kind"]
        if kind not in s.KINDS_BY_METHOD.get(client.token_endpoint_auth_method, ()):
            raise serializers.ValidationError(
                {"kind": [f"This client authenticates with {client.token_endpoint_auth_method}; it uses no {kind}."]}
            )
        expires_at = data.get("expires_at")
        secret = None
        with transaction.atomic():
            # Locked, so two first secrets cannot be issued side by side.
            client = Client.objects.select_for_update().select_related("organisation").get(pk=client.pk)
            if client.status in FINAL_STATUSES:
                raise DomainError(f"The client is {client.status}; it gets no new credentials.")
            if kind == ClientCredential.Kind.SECRET:
                credential, secret = self._first_secret(client, expires_at)
            elif kind == ClientCredential.Kind.PUBLIC_KEY:
                with refusal_on("jwk"):
                    credential = services.client_credential_add_public_key(
                        client=client, jwk=data["jwk"], expires_at=expires_at, actor=self.person
                    )
            elif kind == ClientCredential.Kind.JWKS_URI:
                with refusal_on("jwks_uri"):
                    credential = services.client_credential_add_jwks_uri(
                        client=client, jwks_uri=data["jwks_uri"], expires_at=expires_at, actor=self.person
                    )
            else:
                field = "certificate_pem" if "certificate_pem" in data else "subject_dn"
                with refusal_on(field):
                    credential = services.client_credential_add_certificate(
                        client=client, expires_at=expires_at, actor=self.person, **{field: data[field]}
                    )
        return Response(
            s.IssuedCredentialSerializer(credential, context={"secret": secret}).data,
            status=status.HTTP_201_CREATED,
            headers={
                "Location": reverse("clients-api:credential", args=[client.organisation_id, client.pk, credential.pk])
            },
        )

    def _first_secret(self, client: Client, expires_at: datetime | None) -> tuple[ClientCredential, str]:
        if client.status != Client.Status.ACTIVE:
            raise DomainError(f"The client is {client.status}; it gets its secret once it is active.")
        now = timezone.now()
        usable = [c for c in client.credentials.filter(kind=ClientCredential.Kind.SECRET) if c.is_usable(now)]
        if usable:
            raise DomainError(
                "The client has a usable secret already; rotate (POST .../credentials/rotate) for a new one."
            )
        with refusal_on("kind"):
            issued = services.client_credential_issue_secret(client=client, expires_at=expires_at, actor=self.person)
        return issued.credential, issued.secret


@extend_schema_view(get=extend_schema(summary="A credential", tags=["credentials"]))
class CredentialDetailView(ClientsApiView, generics.RetrieveAPIView):
    serializer_class = s.CredentialSerializer

    def get_object(self) -> ClientCredential:
        return self.my_credential(self.my_client())


@extend_schema_view(
    post=extend_schema(
        summary="Rotate the client's credential",
        description="A new credential, active at once; the active ones it replaces stay usable as `expiring` "
        "until the overlap ends (`overlap_seconds`, else the deployment's default), so nothing breaks while "
        "the new one is rolled out. Secret clients send no body (or `{}`) and find the new secret in this "
        "response only; private_key_jwt clients send `jwk` or `jwks_uri`, mutual-TLS clients "
        "`certificate_pem` or `subject_dn`. Only active or suspended clients rotate (409).",
        tags=["credentials"],
        request=s.RotateSerializer,
        responses={201: s.RotationSerializer},
    )
)
class CredentialRotateView(ClientsApiView):
    serializer_class = s.RotationSerializer

    def post(self, request: Request, organisation_id: int, client_pk: int) -> Response:
        self.require_manager()
        client = self.my_client()
        data = self.validated(s.RotateSerializer)
        if client.status not in (Client.Status.ACTIVE, Client.Status.SUSPENDED):
            raise DomainError(f"The client is {client.status}; only active or suspended clients rotate.")
        if client.token_endpoint_auth_method == Client.AuthMethod.NONE:
            raise DomainError("A public client (auth method none) has no credential to rotate.")
        material = [field for field in ("jwk", "jwks_uri", "certificate_pem", "subject_dn") if field in data]
        with transaction.atomic(), refusal_on(*(material[:1] or ["non_field_errors"])):
            result = services.client_credential_rotate(client_id=client.pk, actor=self.person, **data)
        body = {"credential": result.credential, "overlapping": list(result.overlapping)}
        return Response(
            s.RotationSerializer(body, context={"secret": result.secret}).data, status=status.HTTP_201_CREATED
        )


@extend_schema_view(
    post=extend_schema(
        summary="Revoke a credential",
        description="At once: the next request with it fails. No request body.",
        tags=["credentials"],
        request=None,
        responses={200: s.CredentialSerializer},
    )
)
class CredentialRevokeView(ClientsApiView):
    serializer_class = s.CredentialSerializer

    def post(self, request: Request, organisation_id: int, client_pk: int, credential_id: int) -> Response:
        self.require_manager()
        credential = self.my_credential(self.my_client())
        credential = services.client_credential_revoke(credential_id=credential.pk, actor=self.person)
        return Response(s.CredentialSerializer(credential).data)


@extend_schema_view(
    post=extend_schema(
        summary="End a rotation overlap now",
        description="The expiring credential stops working at once (status expired), when the client has "
        "another usable credential. No request body.",
        tags=["credentials"],
        request=None,
        responses={200: s.CredentialSerializer},
    )
)
class CredentialEndOverlapView(ClientsApiView):
    serializer_class = s.CredentialSerializer

    def post(self, request: Request, organisation_id: int, client_pk: int, credential_id: int) -> Response:
        self.require_manager()
        credential = self.my_credential(self.my_client())
        credential = services.client_credential_end_overlap(credential_id=credential.pk, actor=self.person)
        return Response(s.CredentialSerializer(credential).data)
