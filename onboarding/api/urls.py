"""/api/v1/: the representatives' operations (included from authserver/urls.py).

Paths have no trailing slash (ADR /core/no-trailing-slash); ids match 1 to 18 digits only.
"""

from django.urls import path

import authserver.api.converters  # noqa: F401  (registers the <id:...> converter)

from . import views

app_name = "onboarding-api"

urlpatterns = [
    path("organisations", views.OrganisationListView.as_view(), name="organisations"),
    path("organisations/<id:organisation_id>", views.OrganisationDetailView.as_view(), name="organisation"),
    path("organisations/<id:organisation_id>/members", views.MemberListView.as_view(), name="members"),
    path(
        "organisations/<id:organisation_id>/members/<id:membership_id>",
        views.MemberDetailView.as_view(),
        name="member",
    ),
    path("organisations/<id:organisation_id>/invitations", views.InvitationCreateView.as_view(), name="invitations"),
    path(
        "organisations/<id:organisation_id>/applications",
        views.ApplicationListView.as_view(),
        name="organisation-applications",
    ),
    path("applications/<id:application_id>", views.ApplicationDetailView.as_view(), name="application"),
    path("applications/<id:application_id>/submit", views.ApplicationSubmitView.as_view(), name="application-submit"),
    path("applications/<id:application_id>/evidence", views.EvidenceListView.as_view(), name="evidence"),
    path("applications/<id:application_id>/messages", views.MessageListView.as_view(), name="messages"),
    path("invitations/accept", views.InvitationAcceptView.as_view(), name="invitation-accept"),
]
