"""The portal's client pages, mounted under /portal/ (namespace ``portal-clients``).

Who may do what (onboarding.permissions roles):

- A person who is not a live member of the organisation gets 404 for every page, whatever
  ids they try (onboarding.views.access.member_access); a client of another organisation is a
  404 too.
- Every member (owner, administrator, developer) sees the organisation's clients, registers
  clients and looks after their credentials: issue the first secret, add keys or
  certificates, rotate, end an overlap, revoke one credential. Developers build the
  integrations, and revoking a leaked credential must not wait for a manager.
- Revoking a whole client (irreversible; every token of it dies) is for owners and
  administrators only: a developer gets 403.

A secret is shown exactly once. The POST that issues it redirects (PRG) to the client's page,
which shows it one time: the secret travels sealed (Fernet) in the session, and the key that
opens it travels in a short-lived cookie scoped to that page. Neither half alone reveals it;
the page pops the sealed value and deletes the cookie, so a reload shows nothing. The page is
``Cache-Control: no-store``.
"""

from __future__ import annotations

from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied as Forbidden
from django.core.exceptions import ValidationError
from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods, require_POST

from authserver.errors import DomainError
from onboarding.views.access import MemberAccess, add_service_error, form_status, member_access, portal_user

from . import policy
from . import services as client_services
from .forms import ClientRegistrationForm, ClientRevokeForm, CredentialForm
from .models import Client, ClientCredential, ClientIntake
from .permissions import CLIENT_REVOKE_ROLES, CLIENT_ROLES

# The one-time secret hand-over (see the module docstring).
SECRET_SESSION_KEY = "_portal_client_secret"
SECRET_COOKIE = "portal_client_secret_key"
SECRET_HANDOVER_SECONDS = 300

STATUS_EXPLAINED = {
    Client.Status.PENDING: "Waiting for review by an administrator; it cannot get tokens yet.",
    Client.Status.ACTIVE: "Active: it can get tokens.",
    Client.Status.SUSPENDED: "Suspended by an administrator: it gets no tokens. Contact the administrators.",
    Client.Status.REJECTED: "Rejected by an administrator.",
    Client.Status.EXPIRED: "Expired: it was not used for too long.",
    Client.Status.REVOKED: "Revoked: it and its credentials and tokens no longer work.",
}
# Clients whose credentials may still change.
LIVE_STATUSES = (Client.Status.PENDING, Client.Status.ACTIVE, Client.Status.SUSPENDED)
ROTATABLE_STATUSES = (Client.Status.ACTIVE, Client.Status.SUSPENDED)


def _access(request: HttpRequest, organisation_id: int) -> MemberAccess:
    access = member_access(request, organisation_id)
    if access.membership.role not in CLIENT_ROLES:  # pragma: no cover - every role may today
        raise Forbidden("Your role does not let you manage clients.")
    return access


def _client_of(access: MemberAccess, client_id: int) -> Client:
    """A client of this organisation only: another organisation's id is a 404."""
    return get_object_or_404(
        Client.objects.select_related("organisation", "allowlist_entry"), pk=client_id, organisation=access.organisation
    )


def _detail_url(client: Client) -> str:
    return reverse("portal-clients:detail", args=(client.organisation_id, client.pk))


# --- the one-time secret ----------------------------------------------------------------------


def _hand_over_secret(request: HttpRequest, response: HttpResponse, client: Client, secret: str) -> None:
    """Seal the secret into the session; the key to it goes to the browser for the next page only."""
    key = Fernet.generate_key()
    request.session[SECRET_SESSION_KEY] = {
        "client": client.pk,
        "sealed": Fernet(key).encrypt(secret.encode()).decode("ascii"),
    }
    response.set_cookie(
        SECRET_COOKIE,
        key.decode("ascii"),
        max_age=SECRET_HANDOVER_SECONDS,
        path=_detail_url(client),
        secure=settings.SESSION_COOKIE_SECURE,
        httponly=True,
        samesite="Strict",
    )


def _take_secret(request: HttpRequest, client: Client) -> tuple[str | None, bool]:
    """The secret handed over for this client, once; (None, True) when one was lost on the way."""
    stash = request.session.get(SECRET_SESSION_KEY)
    if not isinstance(stash, dict) or stash.get("client") != client.pk:
        return None, False
    del request.session[SECRET_SESSION_KEY]
    key = request.COOKIES.get(SECRET_COOKIE, "")
    try:
        secret = Fernet(key.encode()).decrypt(str(stash.get("sealed", "")), ttl=SECRET_HANDOVER_SECONDS)
    except (InvalidToken, ValueError, TypeError):
        return None, True
    return secret.decode(), False


# --- pages ------------------------------------------------------------------------------------


@login_required
def client_list(request: HttpRequest, organisation_id: int) -> HttpResponse:
    access = _access(request, organisation_id)
    organisation = access.organisation
    clients = Client.objects.filter(organisation=organisation).order_by("-created", "-pk")
    return render(
        request,
        "clients/client_list.html",
        {
            "organisation": organisation,
            "membership": access.membership,
            "clients": clients,
            "organisation_active": organisation.is_active,
        },
    )


def _add_credential(client: Client, material: dict[str, Any], actor: Any) -> None:
    """Register the key material a form collected (clients.forms.KeyMaterialMixin.key_material)."""
    if "jwk" in material:
        client_services.client_credential_add_public_key(client=client, jwk=material["jwk"], actor=actor)
    elif "jwks_uri" in material:
        # Resolved and fetched (SSRF-checked) before it is stored: it must serve a valid key.
        client_services.client_credential_add_jwks_uri(client=client, jwks_uri=material["jwks_uri"], actor=actor)
    elif "certificate_pem" in material or "subject_dn" in material:
        client_services.client_credential_add_certificate(
            client=client,
            certificate_pem=material.get("certificate_pem") or None,
            subject_dn=material.get("subject_dn") or None,
            actor=actor,
        )


@login_required
@require_http_methods(["GET", "POST"])
def client_create(request: HttpRequest, organisation_id: int) -> HttpResponse:
    access = _access(request, organisation_id)
    organisation = access.organisation
    user = portal_user(request)
    initial = {"contact_name": user.get_full_name(), "contact_email": user.email}
    form = ClientRegistrationForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            # One transaction: a refusal, or a key the service refuses, stores nothing at all.
            with transaction.atomic():
                registration = client_services.client_register(
                    channel=policy.MEMBER,
                    organisation=organisation,
                    name=data["name"],
                    grant_type=data["grant_type"],
                    scopes=data["scopes"],
                    redirect_uris=data["redirect_uris"],
                    auth_method=data["auth_method"],
                    environment=data["environment"],
                    intake=client_services.IntakeDetails(
                        purpose=data["purpose"],
                        contact_name=data["contact_name"],
                        contact_email=data["contact_email"],
                        justifications=form.justifications(),
                    ),
                    metadata={
                        "application_type": data["application_type"],
                        "contacts": [data["contact_email"]] if data["contact_email"] else [],
                    },
                    actor=user,
                )
                client = registration.client
                _add_credential(client, form.key_material(), user)
                issued = None
                if client.uses_client_secret and client.status == Client.Status.ACTIVE:
                    issued = client_services.client_credential_issue_secret(client=client, actor=user)
        except client_services.RegistrationRefused as refusal:
            form.add_error(None, "The registration was refused:")
            for reason in refusal.reasons:
                form.add_error(None, f"{reason[:1].upper()}{reason[1:]}.")
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            if client.status == Client.Status.ACTIVE:
                messages.success(request, f"{client.name} is registered and active: {_mode_explained(client)}")
            else:
                messages.success(
                    request, f"{client.name} is registered and waits for an administrator's review before it works."
                )
            response = redirect(_detail_url(client))
            if issued is not None:
                _hand_over_secret(request, response, client, issued.secret)
            return response
    return render(
        request,
        "clients/client_form.html",
        {"organisation": organisation, "form": form},
        status=form_status(form),
    )


def _mode_explained(client: Client, intake: ClientIntake | None = None) -> str:
    """Why the client started as it did, in one or two sentences."""
    mode = client.registration_mode
    if mode == Client.RegistrationMode.WHITELIST:
        if client.allowlist_entry_id:
            source = f"allowlist entry #{client.allowlist_entry_id}"
        else:
            source = "the initial access token it was registered with"
        return f"it fits {source} (scopes, grant type, environment, redirect hosts), so it was active at once."
    if mode == Client.RegistrationMode.EXPLICIT:
        if intake is None:
            return "reviewed by an administrator."
        if intake.status == ClientIntake.Status.PENDING:
            why = intake.policy_reason or "no pre-approval (allowlist entry) covers it"
            return f"an administrator reviews it, because {why}."
        return f"{intake.get_status_display().lower()} by an administrator."
    if mode == Client.RegistrationMode.OPEN:
        return "registered through open dynamic registration, with low-risk scopes only."
    return "registered by an administrator."


def _credential_rows(client: Client) -> list[dict[str, Any]]:
    live = client.status in LIVE_STATUSES
    return [
        {
            "credential": credential,
            "can_revoke": live and credential.status in ClientCredential.USABLE_STATUSES,
            "can_end_overlap": live and credential.status == ClientCredential.Status.EXPIRING,
        }
        for credential in client.credentials.all()
    ]


def _detail_page(
    request: HttpRequest,
    access: MemberAccess,
    client: Client,
    *,
    add_form: CredentialForm | None = None,
    rotate_form: CredentialForm | None = None,
    secret: str | None = None,
) -> HttpResponse:
    intake = ClientIntake.objects.filter(client=client).select_related("decided_by").first()
    credentials = _credential_rows(client)
    key_based = not client.is_public and not client.uses_client_secret
    usable_kinds = {row["credential"].kind for row in credentials if row["credential"].is_usable()}
    has_usable_secret = ClientCredential.Kind.SECRET in usable_kinds
    if key_based and client.status in LIVE_STATUSES and add_form is None:
        add_form = CredentialForm(client=client, prefix="add")
    can_rotate = client.status in ROTATABLE_STATUSES and not client.is_public and bool(usable_kinds)
    if can_rotate and rotate_form is None:
        rotate_form = CredentialForm(client=client, prefix="rotate", rotating=True)
    context = {
        "organisation": access.organisation,
        "membership": access.membership,
        "client": client,
        "intake": intake,
        "status_explained": STATUS_EXPLAINED.get(Client.Status(client.status), ""),
        "mode_explained": _mode_explained(client, intake),
        "requested_scopes": intake.requested if intake else [],
        "justifications": intake.justifications if intake else {},
        "redirect_uris": client.redirect_uris.split(),
        "credentials": credentials,
        "secret": secret,
        "can_issue_secret": (
            client.status == Client.Status.ACTIVE
            and client.uses_client_secret
            and settings.AUTHSERVER_CLIENT_SECRETS_ENABLED
            and not has_usable_secret
        ),
        "add_form": add_form if key_based and client.status in LIVE_STATUSES else None,
        # A form that came back with errors is shown whatever the state, so its errors are seen.
        "rotate_form": rotate_form if can_rotate or (rotate_form is not None and rotate_form.is_bound) else None,
        "can_revoke_client": access.membership.role in CLIENT_REVOKE_ROLES
        and Client.Status.REVOKED in Client.TRANSITIONS[client.status],
    }
    response = render(request, "clients/client_detail.html", context, status=form_status(add_form, rotate_form))
    return response


@login_required
@never_cache
def client_detail(request: HttpRequest, organisation_id: int, client_id: int) -> HttpResponse:
    access = _access(request, organisation_id)
    client = _client_of(access, client_id)
    secret, lost = _take_secret(request, client)
    if lost:
        messages.warning(
            request,
            "The new secret could not be shown (the page was opened too late or in another browser). "
            "Rotate the secret to get a new one.",
        )
    response = _detail_page(request, access, client, secret=secret)
    if SECRET_COOKIE in request.COOKIES:
        response.delete_cookie(SECRET_COOKIE, path=_detail_url(client), samesite="Strict")
    return response


def _refuse(request: HttpRequest, client: Client, error: Exception) -> HttpResponse:
    if isinstance(error, ValidationError):
        messages.error(request, " ".join(error.messages))
    else:
        messages.error(request, str(error) or "This cannot be done now.")
    return redirect(_detail_url(client))


@login_required
@require_POST
def client_secret_issue(request: HttpRequest, organisation_id: int, client_id: int) -> HttpResponse:
    """The first secret of an active secret client (later ones come from rotation)."""
    access = _access(request, organisation_id)
    client = _client_of(access, client_id)
    if client.status != Client.Status.ACTIVE:
        return _refuse(request, client, DomainError("Only an active client gets a secret."))
    if client.credentials.filter(
        kind=ClientCredential.Kind.SECRET, status__in=ClientCredential.USABLE_STATUSES
    ).exists():
        return _refuse(request, client, DomainError("The client has a secret already; rotate it to get a new one."))
    try:
        issued = client_services.client_credential_issue_secret(client=client, actor=portal_user(request))
    except DomainError as error:
        return _refuse(request, client, error)
    messages.success(request, "A secret is issued. Copy it now: it is shown only this once.")
    response = redirect(_detail_url(client))
    _hand_over_secret(request, response, client, issued.secret)
    return response


@login_required
@require_POST
def client_credential_add(request: HttpRequest, organisation_id: int, client_id: int) -> HttpResponse:
    access = _access(request, organisation_id)
    client = _client_of(access, client_id)
    if client.status not in LIVE_STATUSES or client.is_public or client.uses_client_secret:
        return _refuse(request, client, DomainError("Keys and certificates can be added to live key-based clients."))
    form = CredentialForm(request.POST, client=client, prefix="add")
    if form.is_valid():
        try:
            _add_credential(client, form.key_material(), portal_user(request))
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            messages.success(request, "The credential is added; it works alongside the others.")
            return redirect(_detail_url(client))
    return _detail_page(request, access, client, add_form=form)


@login_required
@require_POST
def client_credential_rotate_view(request: HttpRequest, organisation_id: int, client_id: int) -> HttpResponse:
    access = _access(request, organisation_id)
    client = _client_of(access, client_id)
    if client.status not in ROTATABLE_STATUSES or client.is_public:
        return _refuse(request, client, DomainError("Only an active or suspended client with credentials rotates."))
    form = CredentialForm(request.POST, client=client, prefix="rotate", rotating=True)
    if form.is_valid():
        try:
            result = client_services.client_credential_rotate(
                client_id=client.pk, actor=portal_user(request), **form.key_material()
            )
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            if result.overlap_ends_at is not None and result.overlapping:
                until = f"{timezone.localtime(result.overlap_ends_at):%d %B %Y %H:%M %Z}"
                messages.success(request, f"Rotated. The previous credential keeps working until {until}.")
            else:
                messages.success(request, "Rotated. The new credential is active.")
            response = redirect(_detail_url(client))
            if result.secret:
                _hand_over_secret(request, response, client, result.secret)
            return response
    return _detail_page(request, access, client, rotate_form=form)


def _credential_of(client: Client, credential_id: int) -> ClientCredential:
    return get_object_or_404(ClientCredential, pk=credential_id, client=client)


@login_required
@require_POST
def client_credential_end_overlap_view(
    request: HttpRequest, organisation_id: int, client_id: int, credential_id: int
) -> HttpResponse:
    access = _access(request, organisation_id)
    client = _client_of(access, client_id)
    credential = _credential_of(client, credential_id)
    try:
        client_services.client_credential_end_overlap(credential_id=credential.pk, actor=portal_user(request))
    except DomainError as error:
        return _refuse(request, client, error)
    messages.success(request, f"The overlap of {credential} has ended; it no longer works.")
    return redirect(_detail_url(client))


@login_required
@require_POST
def client_credential_revoke(
    request: HttpRequest, organisation_id: int, client_id: int, credential_id: int
) -> HttpResponse:
    access = _access(request, organisation_id)
    client = _client_of(access, client_id)
    credential = _credential_of(client, credential_id)
    if credential.status not in ClientCredential.USABLE_STATUSES:
        return _refuse(request, client, DomainError(f"{credential} is {credential.get_status_display().lower()}."))
    try:
        client_services.client_credential_revoke(credential_id=credential.pk, actor=portal_user(request))
    except DomainError as error:
        return _refuse(request, client, error)
    messages.success(request, f"{credential} is revoked; it stopped working at once.")
    return redirect(_detail_url(client))


@login_required
@require_http_methods(["GET", "POST"])
def client_revoke(request: HttpRequest, organisation_id: int, client_id: int) -> HttpResponse:
    """Ask for confirmation, then revoke the client, its credentials and its tokens (managers only)."""
    access = _access(request, organisation_id)
    client = _client_of(access, client_id)
    if access.membership.role not in CLIENT_REVOKE_ROLES:
        raise Forbidden("Only an owner or administrator of this organisation may revoke a client.")
    if Client.Status.REVOKED not in Client.TRANSITIONS[client.status]:
        return _refuse(request, client, DomainError(f"The client is {client.get_status_display().lower()}."))
    form = ClientRevokeForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            client_services.client_revoke(client_id=client.pk, actor=portal_user(request))
        except DomainError as error:
            add_service_error(form, error)
        else:
            messages.success(request, f"{client.name} is revoked, with all its credentials and tokens.")
            return redirect(_detail_url(client))
    return render(
        request,
        "clients/client_revoke.html",
        {"organisation": access.organisation, "client": client, "form": form},
        status=form_status(form),
    )
