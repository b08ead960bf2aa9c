"""The representatives' portal, mounted at /portal/ (authserver/urls.py)."""

from django.urls import path

from .views import applications, portal

app_name = "portal"

urlpatterns = [
    path("", portal.dashboard, name="dashboard"),
    path("organisations/new/", portal.organisation_create, name="organisation-create"),
    path("organisations/<int:organisation_id>/", portal.organisation_detail, name="organisation"),
    path("organisations/<int:organisation_id>/edit/", portal.organisation_edit, name="organisation-edit"),
    path("organisations/<int:organisation_id>/invitations/", portal.invitation_create, name="invitation-create"),
    path(
        "organisations/<int:organisation_id>/invitations/<int:invitation_id>/revoke/",
        portal.invitation_revoke,
        name="invitation-revoke",
    ),
    path(
        "organisations/<int:organisation_id>/members/<int:membership_id>/end/",
        portal.membership_end,
        name="membership-end",
    ),
    path(
        "organisations/<int:organisation_id>/applications/new/",
        applications.application_create,
        name="application-create",
    ),
    path(
        "organisations/<int:organisation_id>/applications/<int:application_id>/",
        applications.application_detail,
        name="application",
    ),
    path(
        "organisations/<int:organisation_id>/applications/<int:application_id>/edit/",
        applications.application_update,
        name="application-update",
    ),
    path(
        "organisations/<int:organisation_id>/applications/<int:application_id>/evidence/",
        applications.evidence_upload,
        name="evidence-upload",
    ),
    path(
        "organisations/<int:organisation_id>/applications/<int:application_id>/submit/",
        applications.application_submit,
        name="application-submit",
    ),
    path(
        "organisations/<int:organisation_id>/applications/<int:application_id>/messages/",
        applications.message_add,
        name="message-add",
    ),
    path("invitations/accept/", portal.invitation_confirm, name="invitation-confirm"),
    path("invitations/<str:token>/", portal.invitation_open, name="invitation-accept"),
]
