"""The representatives' REST API (/api/v1/): organisations, members, invitations, applications.

Every change is one call to an onboarding service (STYLE.md §1); the views only pick the
objects the caller may see and turn results into JSON. A caller sees an organisation only
through a live membership of it: any other id, existing or guessed, is a 404, for the
organisation and for everything under it. Role rules (developers only look) are the
services' to enforce; their PermissionDenied becomes a 403 problem.
"""

from __future__ import annotations

from typing import Any

from django.db.models import OuterRef, QuerySet, Subquery
from django.http import Http404
from django.shortcuts import get_object_or_404
from django.urls import reverse
from drf_spectacular.utils import OpenApiResponse, extend_schema, extend_schema_view
from rest_framework import generics, status
from rest_framework.parsers import MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response

from authserver.api.authentication import BearerTokenAuthentication, SessionAuthentication
from authserver.api.parsers import JSONParser
from authserver.api.permissions import PersonWithScope
from authserver.api.views import ApiMixin

from .. import selectors, services
from ..models import Evidence, KycApplication, KycMessage, Membership, Organisation, User
from ..permissions import PermissionDenied, live_memberships
from . import serializers as s

# OAUTH-NL §4: the scope every endpoint of this API needs (documented in the OpenAPI document).
PORTAL_SCOPE = "portal"


class MemberApiView(ApiMixin, generics.GenericAPIView):
    """A person's API under /api/v1/ (portal scope); the base of every layer's member views."""

    authentication_classes = (BearerTokenAuthentication, SessionAuthentication)
    permission_classes = (PersonWithScope,)
    parser_classes: tuple[type[Any], ...] = (JSONParser,)
    required_scopes = (PORTAL_SCOPE,)
    problem_exceptions = {PermissionDenied: (403, "forbidden")}

    @property
    def person(self) -> User:
        user = self.request.user
        assert isinstance(user, User)  # PersonWithScope let only a person through
        return user

    def my_organisations(self) -> QuerySet[Organisation]:
        return selectors.organisations_for_user(self.person)

    def my_organisation(self) -> Organisation:
        """The organisation of the URL (``organisation_id``), if the caller is a live member; else 404."""
        cached = getattr(self, "_organisation", None)
        if cached is None:
            cached = self._organisation = get_object_or_404(self.my_organisations(), pk=self.kwargs["organisation_id"])
        return cached


class OnboardingApiView(MemberApiView):
    # ---- what the caller may see (onboarding.selectors) ---------------------------------

    def my_organisations(self) -> QuerySet[Organisation]:
        my_role = live_memberships().filter(user_id=self.person.pk, organisation_id=OuterRef("pk")).values("role")[:1]
        return super().my_organisations().annotate(my_role=Subquery(my_role))

    def my_application(self) -> KycApplication:
        """The application of the URL, if the caller is a live member of its organisation; else 404."""
        cached = getattr(self, "_application", None)
        if cached is None:
            try:
                cached = selectors.application_for_user(user=self.person, application_id=self.kwargs["application_id"])
            except KycApplication.DoesNotExist:
                raise Http404 from None
            self._application = cached
        return cached

    def validated(self, serializer_class: type[Any], *, partial: bool = False) -> dict[str, Any]:
        serializer = serializer_class(data=self.request.data, partial=partial, context=self.get_serializer_context())
        serializer.is_valid(raise_exception=True)
        return dict(serializer.validated_data)


# ---- organisations ----------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(summary="Your organisations", tags=["organisations"]),
    post=extend_schema(
        summary="Create an organisation, with you as its owner",
        description="The organisation starts as pending; an approved KYC application activates it.",
        tags=["organisations"],
        request=s.OrganisationWriteSerializer,
        responses={201: s.OrganisationSerializer},
    ),
)
class OrganisationListView(OnboardingApiView, generics.ListAPIView):
    serializer_class = s.OrganisationSerializer

    def get_queryset(self) -> QuerySet[Organisation]:
        return self.my_organisations().order_by("name", "pk")

    def post(self, request: Request) -> Response:
        data = self.validated(s.OrganisationWriteSerializer)
        organisation = services.organisation_create(**data, actor=self.person, owner=self.person)
        created = get_object_or_404(self.my_organisations(), pk=organisation.pk)
        return Response(
            s.OrganisationSerializer(created).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("onboarding-api:organisation", args=[organisation.pk])},
        )


@extend_schema_view(
    get=extend_schema(summary="One of your organisations", tags=["organisations"]),
    patch=extend_schema(
        summary="Change an organisation's details",
        description="Owners and admins, while the organisation is pending.",
        tags=["organisations"],
        request=s.OrganisationWriteSerializer,
        responses={200: s.OrganisationSerializer},
    ),
)
class OrganisationDetailView(OnboardingApiView, generics.RetrieveAPIView):
    serializer_class = s.OrganisationSerializer

    def get_object(self) -> Organisation:
        return self.my_organisation()

    def patch(self, request: Request, organisation_id: int) -> Response:
        organisation = self.my_organisation()
        data = self.validated(s.OrganisationWriteSerializer, partial=True)
        services.organisation_update(organisation_id=organisation.pk, actor=self.person, **data)
        updated = get_object_or_404(self.my_organisations(), pk=organisation.pk)
        return Response(s.OrganisationSerializer(updated).data)


# ---- members and invitations ------------------------------------------------------------


@extend_schema_view(get=extend_schema(summary="The organisation's members", tags=["members"]))
class MemberListView(OnboardingApiView, generics.ListAPIView):
    serializer_class = s.MemberSerializer

    def get_queryset(self) -> QuerySet[Membership]:
        return selectors.organisation_members(self.my_organisation())


@extend_schema_view(
    delete=extend_schema(
        summary="End a membership",
        description="Owners and admins end others' memberships; anyone may leave. The last owner cannot.",
        tags=["members"],
        responses={204: OpenApiResponse(description="The membership ended.")},
    )
)
class MemberDetailView(OnboardingApiView):
    serializer_class = s.MemberSerializer

    def delete(self, request: Request, organisation_id: int, membership_id: int) -> Response:
        organisation = self.my_organisation()
        membership = get_object_or_404(live_memberships(), pk=membership_id, organisation_id=organisation.pk)
        services.membership_end(membership_id=membership.pk, actor=self.person)
        return Response(status=status.HTTP_204_NO_CONTENT)


@extend_schema_view(
    post=extend_schema(
        summary="Invite someone by email",
        description="Owners and admins. The invitation link goes to the address only; it expires and works once.",
        tags=["members"],
        request=s.InvitationCreateSerializer,
        responses={201: s.InvitationSerializer},
    )
)
class InvitationCreateView(OnboardingApiView):
    serializer_class = s.InvitationSerializer

    def post(self, request: Request, organisation_id: int) -> Response:
        organisation = self.my_organisation()
        data = self.validated(s.InvitationCreateSerializer)
        invitation, _token = services.invitation_create(
            organisation_id=organisation.pk, email=data["email"], role=data["role"], actor=self.person
        )
        return Response(s.InvitationSerializer(invitation).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    post=extend_schema(
        summary="Accept an invitation",
        description="The token from the invitation email; the invitation must be addressed to your email address.",
        tags=["members"],
        request=s.InvitationAcceptSerializer,
        responses={201: s.MyMembershipSerializer},
    )
)
class InvitationAcceptView(OnboardingApiView):
    serializer_class = s.MyMembershipSerializer

    def post(self, request: Request) -> Response:
        data = self.validated(s.InvitationAcceptSerializer)
        membership = services.invitation_accept(token=data["token"], user=self.person)
        membership = Membership.objects.select_related("organisation").get(pk=membership.pk)
        return Response(s.MyMembershipSerializer(membership).data, status=status.HTTP_201_CREATED)


# ---- applications -----------------------------------------------------------------------


@extend_schema_view(
    get=extend_schema(summary="The organisation's KYC applications", tags=["applications"]),
    post=extend_schema(
        summary="Start a KYC application (a draft)",
        tags=["applications"],
        request=s.ApplicationWriteSerializer,
        responses={201: s.ApplicationSerializer},
    ),
)
class ApplicationListView(OnboardingApiView, generics.ListAPIView):
    serializer_class = s.ApplicationSerializer

    def get_queryset(self) -> QuerySet[KycApplication]:
        return selectors.applications_for_organisation(self.my_organisation())

    def post(self, request: Request, organisation_id: int) -> Response:
        organisation = self.my_organisation()
        data = self.validated(s.ApplicationWriteSerializer)
        application = services.kyc_application_create(organisation_id=organisation.pk, actor=self.person, **data)
        return Response(
            s.ApplicationSerializer(application).data,
            status=status.HTTP_201_CREATED,
            headers={"Location": reverse("onboarding-api:application", args=[application.pk])},
        )


@extend_schema_view(
    get=extend_schema(summary="A KYC application", tags=["applications"]),
    patch=extend_schema(
        summary="Change a draft application",
        description="Owners and admins, while the application is a draft or changes were requested.",
        tags=["applications"],
        request=s.ApplicationWriteSerializer,
        responses={200: s.ApplicationSerializer},
    ),
)
class ApplicationDetailView(OnboardingApiView, generics.RetrieveAPIView):
    serializer_class = s.ApplicationSerializer

    def get_object(self) -> KycApplication:
        return self.my_application()

    def patch(self, request: Request, application_id: int) -> Response:
        application = self.my_application()
        data = self.validated(s.ApplicationWriteSerializer, partial=True)
        application = services.kyc_application_update(application_id=application.pk, actor=self.person, **data)
        return Response(s.ApplicationSerializer(application).data)


@extend_schema_view(
    post=extend_schema(
        summary="Submit an application for review",
        description="Owners and admins; a draft (or one with changes requested) with evidence. No request body.",
        tags=["applications"],
        request=None,
        responses={200: s.ApplicationSerializer},
    )
)
class ApplicationSubmitView(OnboardingApiView):
    serializer_class = s.ApplicationSerializer

    def post(self, request: Request, application_id: int) -> Response:
        application = self.my_application()
        application = services.kyc_application_submit(application_id=application.pk, actor=self.person)
        return Response(s.ApplicationSerializer(application).data)


@extend_schema_view(
    get=extend_schema(summary="The evidence attached to an application", tags=["applications"]),
    post=extend_schema(
        summary="Upload evidence (multipart/form-data)",
        description="Owners and admins, while the application can change. A malformed certificate, a "
        "certificate whose OIN differs from the organisation's, or a file that is not a PDF where one is "
        "needed is refused with a field error on `file`, and nothing is stored.",
        tags=["applications"],
        request={"multipart/form-data": s.EvidenceUploadSerializer},
        responses={201: s.EvidenceSerializer},
    ),
)
class EvidenceListView(OnboardingApiView, generics.ListAPIView):
    serializer_class = s.EvidenceSerializer
    parser_classes = (MultiPartParser,)

    def get_queryset(self) -> QuerySet[Evidence]:
        return selectors.evidence_for_application(self.my_application())

    def post(self, request: Request, application_id: int) -> Response:
        application = self.my_application()
        data = self.validated(s.EvidenceUploadSerializer)
        upload = data["file"]
        evidence = services.evidence_attach(
            application_id=application.pk,
            kind=data["kind"],
            filename=upload.name or "upload",
            content=upload.read(),
            content_type=upload.content_type or "application/octet-stream",
            actor=self.person,
        )
        return Response(s.EvidenceSerializer(evidence).data, status=status.HTTP_201_CREATED)


@extend_schema_view(
    get=extend_schema(summary="The conversation with the reviewer", tags=["applications"]),
    post=extend_schema(
        summary="Answer the reviewer",
        tags=["applications"],
        request=s.MessageCreateSerializer,
        responses={201: s.MessageSerializer},
    ),
)
class MessageListView(OnboardingApiView, generics.ListAPIView):
    serializer_class = s.MessageSerializer

    def get_queryset(self) -> QuerySet[KycMessage]:
        application = self.my_application()
        return (
            KycMessage.objects.filter(application_id=application.pk)
            .select_related("author")
            .order_by("created_at", "pk")
        )

    def post(self, request: Request, application_id: int) -> Response:
        application = self.my_application()
        data = self.validated(s.MessageCreateSerializer)
        message = services.kyc_message_add(application_id=application.pk, author=self.person, body=data["body"])
        return Response(s.MessageSerializer(message).data, status=status.HTTP_201_CREATED)
