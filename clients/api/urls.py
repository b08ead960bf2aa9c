"""/api/v1/organisations/{id}/clients...: the members' client operations (included from authserver/urls.py).

Paths have no trailing slash (ADR /core/no-trailing-slash); ids match 1 to 18 digits only. A
client is named by its database ``id`` in paths (the OAuth ``client_id`` is in its body).
"""

from django.urls import path

import authserver.api.converters  # noqa: F401  (registers the <id:...> converter)

from . import views

app_name = "clients-api"

CLIENT = "organisations/<id:organisation_id>/clients/<id:client_pk>"

urlpatterns = [
    path("organisations/<id:organisation_id>/clients", views.ClientListView.as_view(), name="clients"),
    path(CLIENT, views.ClientDetailView.as_view(), name="client"),
    path(f"{CLIENT}/credentials", views.CredentialListView.as_view(), name="credentials"),
    path(f"{CLIENT}/credentials/rotate", views.CredentialRotateView.as_view(), name="credentials-rotate"),
    path(f"{CLIENT}/credentials/<id:credential_id>", views.CredentialDetailView.as_view(), name="credential"),
    path(
        f"{CLIENT}/credentials/<id:credential_id>/revoke",
        views.CredentialRevokeView.as_view(),
        name="credential-revoke",
    ),
    path(
        f"{CLIENT}/credentials/<id:credential_id>/end-overlap",
        views.CredentialEndOverlapView.as_view(),
        name="credential-end-overlap",
    ),
]
