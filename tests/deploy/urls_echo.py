"""The project's URLs with /healthz replaced by a view that shows what nginx forwarded."""

from django.http import HttpRequest, JsonResponse
from django.urls import path

from authserver.urls import urlpatterns as project_urlpatterns


def echo(request: HttpRequest) -> JsonResponse:
    forwarded = {key: value for key, value in request.META.items() if key.startswith(("HTTP_X", "HTTP_FORWARDED"))}
    return JsonResponse(
        {"headers": forwarded, "remote_addr": request.META.get("REMOTE_ADDR"), "is_secure": request.is_secure()}
    )


urlpatterns = [path("healthz", echo), *project_urlpatterns]
