"""/api/: the OpenAPI document, its pages, and a problem-details 404 for every unmatched path.

Included from authserver/urls.py *after* each layer's ``api/v1/`` routes, because the last
pattern here matches everything left under /api/.
"""

from django.urls import path, re_path

from . import views

app_name = "api"

urlpatterns = [
    path("schema", views.SchemaView.as_view(), name="schema"),
    path("v1/openapi.json", views.SchemaJSONView.as_view(), name="openapi-json"),
    path("docs", views.DocsView.as_view(), name="docs"),
    path("problems/<slug:slug>", views.ProblemTypeView.as_view(), name="problem-type"),
    # [\s\S], not ".": a path with a newline (%0A) got Django's HTML 404 (tests/faults/test_fuzz_api.py).
    re_path(r"^[\s\S]*$", views.NotFoundView.as_view(), name="not-found"),
]
