"""The RFC 7591 registration endpoint and the RFC 7592 client configuration endpoint.

``/oauth/register`` (POST) and ``/oauth/register/<client_id>`` (GET, PUT, DELETE). They build
on django-oauth-toolkit's dynamic registration views (its ``DCR_ENABLED`` switch, CSRF
exemption, and ``DCR_REGISTRATION_PERMISSION_CLASSES``, set to our
``InitialAccessTokenOrOpenRegistration``), but answer every method themselves: DOT keeps the
registration token as an access token, a secret on the application, knows no
``private_key_jwt`` and deletes the application on DELETE, where we keep hashed
credentials (ClientCredential), a keyed hash of the registration token on the client, the
registration policy (clients.policy) and an audited revocation.

Behaviour (docs: README "Dynamic client registration"):
- Requests are JSON (``application/json``); anything else is refused with RFC 7591 §3.2.2's
  400 ``invalid_client_metadata``, the status RFC 7591 gives every registration error.
- ``Authorization: Bearer <initial access token>`` registers within that token's bounds
  (whitelist mode, or explicit review outside them); no Authorization header is open mode,
  rate limited per caller IP (``AUTHSERVER_REGISTRATION_RATE_LIMIT``; over it: 429,
  ``Retry-After`` and ``{"error": "too_many_requests"}``).
- A client sent to explicit review is still answered 201, with the non-standard member
  ``"status": "pending"``; it gets no token until an administrator approves it.
"""

from __future__ import annotations

import json
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.core.exceptions import RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.utils import parse_bearer_token
from oauth2_provider.views import dynamic_client_registration as dot_dcr

from authserver import ratelimit
from authserver.endpoints import backchannel_base

from .dcr_metadata import INVALID_METADATA, MetadataError, parse_client_metadata
from .models import Client, ClientCredential
from .services.dcr import (
    client_for_registration_token,
    client_register_dynamic,
    client_registration_delete,
    client_registration_update,
)
from .services.registration import RegistrationRefused
from .software_statements import SoftwareStatementError, verify_software_statement

JSON = "application/json"
MAX_BODY_BYTES = 64 * 1024
RATE_LIMITED = "too_many_requests"
# RFC 7591 §3.2.2 errors are 400; the others are RFC 6750 §3.1's.
ERROR_STATUS = {"access_denied": 403, "invalid_token": 401}
# Members only the server sets (RFC 7592 §2.2: the client MUST NOT send them; ignored).
SERVER_MEMBERS = ("registration_access_token", "registration_client_uri", "client_secret_expires_at")


def registration_error(
    error: str, description: str, status: int | None = None, headers: dict[str, str] | None = None
) -> JsonResponse:
    """RFC 7591 §3.2.2 / RFC 6750 §3.1 error: JSON with error and error_description."""
    status = status or ERROR_STATUS.get(error, 400)
    response = JsonResponse({"error": error, "error_description": description}, status=status)
    if status == 401 and "WWW-Authenticate" not in (headers or {}):
        response["WWW-Authenticate"] = f'Bearer realm="authserver", error="{error}"'
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def _invalid_token(description: str) -> JsonResponse:
    return registration_error("invalid_token", description, status=401)


class InitialAccessTokenOrOpenRegistration:
    """DOT permission class: an initial access token (RFC 7591 §3), or anyone while open mode is on.

    Whether the token is good, and what it allows, the registration policy decides.
    """

    def has_permission(self, request: HttpRequest) -> bool:
        if request.headers.get("Authorization"):
            return True
        return bool(settings.AUTHSERVER_OPEN_REGISTRATION_ENABLED)


def _permitted(request: HttpRequest) -> bool:
    classes = oauth2_settings.DCR_REGISTRATION_PERMISSION_CLASSES
    return bool(classes) and all(cls().has_permission(request) for cls in classes)


def _read_json_object(request: HttpRequest) -> tuple[dict[str, Any] | None, JsonResponse | None]:
    """The request body as a JSON object (RFC 7591 §3.1), or the error to answer with."""
    if request.content_type != JSON:
        return None, registration_error(INVALID_METADATA, f"Send the client metadata as {JSON} (RFC 7591 §3.1).")
    charset = (request.content_params or {}).get("charset", "utf-8").lower()
    if charset not in ("utf-8", "utf8"):
        return None, registration_error(INVALID_METADATA, "JSON must be encoded in UTF-8 (RFC 8259 §8.1).")
    try:
        body = request.body
    except RequestDataTooBig:
        body = b"\0" * (MAX_BODY_BYTES + 1)
    if len(body) > MAX_BODY_BYTES:
        return None, registration_error(INVALID_METADATA, f"The request body is larger than {MAX_BODY_BYTES} bytes.")

    def no_constants(name: str) -> Any:
        raise ValueError(f"{name} is not JSON")

    try:
        data = json.loads(body.decode("utf-8"), parse_constant=no_constants)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None, registration_error(INVALID_METADATA, "The request body is not valid JSON.")
    if not isinstance(data, dict):
        return None, registration_error(INVALID_METADATA, "The request body must be a JSON object.")
    return data, None


def _with_software_statement(data: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """Merge a verified software statement's claims over the request (RFC 7591 §3.1.1)."""
    if data.get("software_statement") is None:
        return data, ""
    statement = verify_software_statement(data["software_statement"])
    return {**data, **statement.metadata}, statement.issuer


def registration_client_uri(client: Client) -> str:
    return f"{backchannel_base()}/oauth/register/{client.client_id}"


def client_information(client: Client) -> dict[str, Any]:
    """The registered metadata as stored (RFC 7591 §3.2.1, RFC 7592 §3); never a secret."""
    authorization_code = client.authorization_grant_type == Client.GRANT_AUTHORIZATION_CODE
    document: dict[str, Any] = {
        "client_id": client.client_id,
        "client_id_issued_at": int(client.created.timestamp()),
        "client_name": client.name,
        "grant_types": ["authorization_code", "refresh_token"] if authorization_code else ["client_credentials"],
        "response_types": ["code"] if authorization_code else [],
        "redirect_uris": client.redirect_uris.split(),
        "token_endpoint_auth_method": client.token_endpoint_auth_method,
        "application_type": client.application_type,
        "scope": client.scope,
        "subject_type": client.subject_type,
    }
    optional = {
        "post_logout_redirect_uris": client.post_logout_redirect_uris.split(),
        "client_uri": client.client_uri,
        "contacts": list(client.contacts or []),
        "software_id": client.software_id,
        "software_version": client.software_version,
        "id_token_signed_response_alg": client.algorithm,
    }
    document.update({name: value for name, value in optional.items() if value})
    credentials = client.credentials.filter(
        kind__in=(ClientCredential.Kind.PUBLIC_KEY, ClientCredential.Kind.JWKS_URI),
        status__in=ClientCredential.USABLE_STATUSES,
    ).order_by("created_at", "pk")
    keys = [c.public_jwk for c in credentials if c.kind == ClientCredential.Kind.PUBLIC_KEY and c.public_jwk]
    if keys:
        document["jwks"] = {"keys": keys}
    jwks_uris = [c.jwks_uri for c in credentials if c.kind == ClientCredential.Kind.JWKS_URI]
    if jwks_uris:
        document["jwks_uri"] = jwks_uris[-1]
    if client.status != Client.Status.ACTIVE:
        # Not in RFC 7591: a pending client waits for review; it gets no token until approved.
        document["status"] = client.status
    document["registration_client_uri"] = registration_client_uri(client)
    return document


def _refused(exc: RegistrationRefused | MetadataError | SoftwareStatementError) -> JsonResponse:
    if isinstance(exc, SoftwareStatementError):
        return registration_error(exc.error, exc.description)
    return registration_error(exc.error, "; ".join(exc.reasons) or exc.error)


def _no_store(response: HttpResponse) -> HttpResponse:
    # RFC 7591 §3.2.1 / RFC 6749 §5.1: credentials in the response; never cached.
    response["Cache-Control"] = "no-store"
    response["Pragma"] = "no-cache"
    return response


class _JsonMethodsMixin:
    def http_method_not_allowed(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        allowed = ", ".join(m.upper() for m in self.http_method_names if m != "options")  # type: ignore[attr-defined]
        return registration_error("invalid_request", f"Use {allowed}.", status=405, headers={"Allow": allowed})


@method_decorator([csrf_exempt, login_not_required], name="dispatch")
class RegistrationView(_JsonMethodsMixin, dot_dcr.DynamicClientRegistrationView):
    """RFC 7591 §3: POST /oauth/register."""

    http_method_names = ["post"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _no_store(super().dispatch(request, *args, **kwargs))

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        token: str | None = None
        if request.headers.get("Authorization"):
            token = parse_bearer_token(request.headers["Authorization"])
            if token is None:
                return _invalid_token("Send the initial access token as 'Authorization: Bearer <token>'.")
        if not _permitted(request):
            return registration_error(
                "access_denied",
                "Open registration is off here: send an initial access token (RFC 7591 §3).",
                status=401,
                headers={"WWW-Authenticate": 'Bearer realm="authserver"'},
            )
        if token is None:
            allowed, retry_after = ratelimit.hit(
                settings.AUTHSERVER_REGISTRATION_RATE_LIMIT,
                "register",
                ratelimit.address_key(ratelimit.caller_address(request)),
            )
            if not allowed:
                return registration_error(
                    RATE_LIMITED,
                    f"Too many registrations from this address; try again in {retry_after} seconds.",
                    status=429,
                    headers={"Retry-After": str(retry_after)},
                )
        data, problem = _read_json_object(request)
        if problem is not None:
            return problem
        assert data is not None
        try:
            merged, issuer = _with_software_statement(data)
            metadata = parse_client_metadata(merged, secrets_enabled=settings.AUTHSERVER_CLIENT_SECRETS_ENABLED)
            registered = client_register_dynamic(
                metadata=metadata, initial_access_token=token, software_statement_issuer=issuer
            )
        except (SoftwareStatementError, MetadataError, RegistrationRefused) as exc:
            return _refused(exc)
        client = registered.client
        document = client_information(client)
        document["registration_access_token"] = registered.registration.registration_token
        if registered.secret is not None:
            expires_at = registered.secret.credential.expires_at
            document["client_secret"] = registered.secret.secret
            document["client_secret_expires_at"] = int(expires_at.timestamp()) if expires_at else 0
        return JsonResponse(document, status=201)


@method_decorator([csrf_exempt, login_not_required], name="dispatch")
class RegistrationManagementView(_JsonMethodsMixin, dot_dcr.DynamicClientRegistrationManagementView):
    """RFC 7592 §2: GET, PUT and DELETE /oauth/register/<client_id> with the registration access token."""

    http_method_names = ["get", "put", "delete"]

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return _no_store(super().dispatch(request, *args, **kwargs))

    @staticmethod
    def _authenticate(request: HttpRequest, client_id: str) -> tuple[Client | None, str]:
        token = parse_bearer_token(request.headers.get("Authorization", ""))
        return client_for_registration_token(client_id, token), token or ""

    @staticmethod
    def _unauthenticated() -> JsonResponse:
        # The same answer for an unknown client and a wrong token (RFC 7592 §2).
        return _invalid_token("The registration access token is missing, wrong or no longer valid.")

    def get(self, request: HttpRequest, client_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        client, token = self._authenticate(request, client_id)
        if client is None:
            return self._unauthenticated()
        document = client_information(client)
        document["registration_access_token"] = token  # RFC 7592 §3: the caller's own, unchanged
        return JsonResponse(document)

    def put(self, request: HttpRequest, client_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        client, _token = self._authenticate(request, client_id)
        if client is None:
            return self._unauthenticated()
        data, problem = _read_json_object(request)
        if problem is not None:
            return problem
        assert data is not None
        if data.get("client_id") != client.client_id:
            return registration_error(
                INVALID_METADATA, "The request must carry the client's own client_id (RFC 7592 §2.2)."
            )
        presented_secret = data.get("client_secret")
        if presented_secret is not None and not isinstance(presented_secret, str):
            return registration_error(INVALID_METADATA, "client_secret must be a string")
        data = {name: value for name, value in data.items() if name not in SERVER_MEMBERS}
        try:
            merged, issuer = _with_software_statement(data)
            metadata = parse_client_metadata(merged, secrets_enabled=settings.AUTHSERVER_CLIENT_SECRETS_ENABLED)
            client, new_token = client_registration_update(
                client_id=client.pk,
                metadata=metadata,
                software_statement_issuer=issuer,
                presented_secret=presented_secret,
                actor=client,
            )
        except (SoftwareStatementError, MetadataError, RegistrationRefused) as exc:
            return _refused(exc)
        document = client_information(client)
        document["registration_access_token"] = new_token
        return JsonResponse(document)

    def delete(self, request: HttpRequest, client_id: str, *args: Any, **kwargs: Any) -> HttpResponse:
        client, _token = self._authenticate(request, client_id)
        if client is None:
            return self._unauthenticated()
        client_registration_delete(client_id=client.pk, actor=client)
        response = HttpResponse(status=204)
        del response["Content-Type"]
        return response
