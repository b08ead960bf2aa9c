"""/api/v1/organisations/{id}/apis...: the API owners' operations (included from authserver/urls.py).

Paths have no trailing slash (ADR /core/no-trailing-slash); an API is named by its catalogue slug.
"""

from django.urls import path

import authserver.api.converters  # noqa: F401  (registers the <id:...> converter)

from . import catalogue

app_name = "apis-api"

API = "organisations/<id:organisation_id>/apis/<slug:slug>"

urlpatterns = [
    path("organisations/<id:organisation_id>/apis", catalogue.OwnedApiListView.as_view(), name="apis"),
    path(f"{API}/openapi", catalogue.OpenApiImportView.as_view(), name="openapi"),
]
