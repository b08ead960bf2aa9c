"""DOT's own URLs under /o/: token/, introspect/, revoke_token/ (and the rest it ships)."""

from django.urls import include, path

urlpatterns = [path("o/", include("oauth2_provider.urls", namespace="oauth2_provider"))]
