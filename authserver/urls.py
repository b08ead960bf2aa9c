"""URL map (DESIGN.md, URLs). OAuth views live under the ``oauth2_provider`` namespace so
django-oauth-toolkit's own reverse() calls resolve."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from clients import dcr

from . import catalogue_views, ratelimit
from .oauth import views as oauth
from .views import healthz, home, metrics, readyz

oauth_patterns = [
    path("authorize", oauth.AuthorizationView.as_view(), name="authorize"),
    path("token", oauth.TokenView.as_view(), name="token"),
    path("introspect", oauth.IntrospectView.as_view(), name="introspect"),
    path("revoke", oauth.RevokeView.as_view(), name="revoke-token"),
    path("userinfo", oauth.UserInfoView.as_view(), name="user-info"),
    path("logout", oauth.LogoutView.as_view(), name="rp-initiated-logout"),
    path("jwks", oauth.jwks, name="jwks-info"),
    # RFC 7591 / RFC 7592 dynamic registration (clients/dcr.py).
    path("register", dcr.RegistrationView.as_view(), name="register"),
    path("register/<str:client_id>", dcr.RegistrationManagementView.as_view(), name="register-client"),
]

urlpatterns = [
    path("", home, name="home"),
    path(".well-known/openid-configuration", oauth.discovery, name="openid-configuration"),
    path(".well-known/oauth-authorization-server", oauth.discovery, name="oauth-authorization-server"),
    path("oauth/", include((oauth_patterns, "oauth2_provider"))),
    # Sign-in attempts are limited per address and username (authserver/ratelimit.py).
    path("accounts/login/", ratelimit.limit_login(auth_views.LoginView.as_view()), name="login"),
    path("accounts/logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("accounts/", include("onboarding.account_urls")),
    # Before onboarding's portal: the client pages live under its organisation pages.
    path("portal/", include(("clients.urls", "portal-clients"))),
    path("portal/", include("onboarding.urls")),
    path("accounts/2fa/", include("authserver.twofactor.urls")),
    # Before admin.site.urls, which answers the same path (reverse("admin:login") still works).
    path("admin/login/", ratelimit.limit_login(admin.site.login)),
    path("admin/", admin.site.urls),
    # Each layer's API first; the kernel's api/ routes end in a catch-all 404 problem.
    path("api/v1/", include("onboarding.api.urls")),
    path("api/v1/", include("clients.api.urls")),
    path("api/v1/", include("authserver.api.catalogue_urls")),
    path("api/", include("authserver.api.urls")),
    # The public API catalogue (open documents, like discovery).
    path("apis/", catalogue_views.catalogue, name="catalogue"),
    path("apis/<slug:slug>/", catalogue_views.catalogue_api, name="catalogue-api"),
    path("apis.json", catalogue_views.catalogue_json, name="catalogue-json"),
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
]

# A database outage outside a view (middleware) answers 503 like one inside (authserver/views.py).
handler500 = "authserver.views.server_error"
