"""The portal's client pages, included under /portal/ as namespace ``portal-clients`` (authserver/urls.py)."""

from django.urls import path

from . import views

app_name = "portal-clients"

_CLIENT = "organisations/<int:organisation_id>/clients/<int:client_id>/"

urlpatterns = [
    path("organisations/<int:organisation_id>/clients/", views.client_list, name="list"),
    path("organisations/<int:organisation_id>/clients/new/", views.client_create, name="create"),
    path(_CLIENT, views.client_detail, name="detail"),
    path(f"{_CLIENT}secret/", views.client_secret_issue, name="secret-issue"),
    path(f"{_CLIENT}credentials/", views.client_credential_add, name="credential-add"),
    path(f"{_CLIENT}credentials/rotate/", views.client_credential_rotate_view, name="credential-rotate"),
    path(
        f"{_CLIENT}credentials/<int:credential_id>/end-overlap/",
        views.client_credential_end_overlap_view,
        name="credential-end-overlap",
    ),
    path(
        f"{_CLIENT}credentials/<int:credential_id>/revoke/",
        views.client_credential_revoke,
        name="credential-revoke",
    ),
    path(f"{_CLIENT}revoke/", views.client_revoke, name="revoke"),
]
