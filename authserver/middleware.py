"""Request context and the response headers every OAuth response needs."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from .context import RequestContext, reset_request_context, set_request_context

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


class RequestContextMiddleware:
    """Gives every request an id (echoed as X-Request-ID) for logs and the audit log.

    The caller address is the socket peer; trusting X-Forwarded-For from configured proxies
    is the network-zone issue's work.
    """

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get("X-Request-ID", "")
        request_id = incoming if _REQUEST_ID.match(incoming) else uuid.uuid4().hex
        token = set_request_context(RequestContext(request_id=request_id, ip_address=request.META.get("REMOTE_ADDR")))
        try:
            response = self.get_response(request)
        finally:
            reset_request_context(token)
        response["X-Request-ID"] = request_id
        return response
