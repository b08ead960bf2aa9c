"""The representatives' portal: dashboard, organisations, members and invitations."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from authserver.errors import DomainError

from .. import selectors, services
from ..forms import InvitationForm, OrganisationForm
from ..models import Invitation, KycApplication, Membership, Organisation
from .access import MemberAccess, add_service_error, form_status, member_access, portal_user

ORGANISATION_STATUS_EXPLAINED = {
    Organisation.Status.PENDING: "Waiting for an approved application.",
    Organisation.Status.ACTIVE: "Approved: the organisation may register clients.",
    Organisation.Status.SUSPENDED: "Suspended: its clients cannot get tokens. Contact the administrators.",
    Organisation.Status.OFFBOARDED: "Offboarded: the organisation no longer takes part.",
}
# Where invitation_open keeps the emailed token for invitation_confirm.
INVITATION_SESSION_KEY = "_portal_invitation_token"


@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    user = portal_user(request)
    latest_application = KycApplication.objects.filter(organisation=OuterRef("organisation")).order_by("-created_at")
    memberships = selectors.memberships_for_user(user).annotate(
        application_status=Subquery(latest_application.values("status")[:1])
    )
    rows = [
        {
            "membership": membership,
            "organisation": membership.organisation,
            "application_status": (
                KycApplication.Status(membership.application_status).label if membership.application_status else ""
            ),
        }
        for membership in memberships
    ]
    invitations = (
        selectors.invitations_for_email(user.email).order_by("-created_at") if user.email else Invitation.objects.none()
    )
    return render(request, "portal/dashboard.html", {"rows": rows, "invitations": invitations})


@login_required
@require_http_methods(["GET", "POST"])
def organisation_create(request: HttpRequest) -> HttpResponse:
    user = portal_user(request)
    form = OrganisationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            organisation = services.organisation_create(**form.cleaned_data, actor=user, owner=user)
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            messages.success(request, f"{organisation.name} is registered. Next: apply to have it approved.")
            return redirect("portal:organisation", organisation_id=organisation.pk)
    return render(request, "portal/organisation_form.html", {"form": form}, status=form_status(form))


@login_required
@require_http_methods(["GET", "POST"])
def organisation_edit(request: HttpRequest, organisation_id: int) -> HttpResponse:
    """Correct the organisation's details; only while it is pending (the service enforces it)."""
    access = member_access(request, organisation_id)
    access.require_manager()
    organisation = access.organisation
    form = OrganisationForm(request.POST if request.method == "POST" else None, instance=organisation)
    if request.method == "POST" and form.is_valid():
        try:
            services.organisation_update(
                organisation_id=organisation.pk, actor=portal_user(request), **form.cleaned_data
            )
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            messages.success(request, "The organisation's details are saved.")
            return redirect("portal:organisation", organisation_id=organisation.pk)
    # A failed ModelForm changed the instance in memory; show the stored name in the heading.
    organisation.refresh_from_db()
    return render(
        request,
        "portal/organisation_form.html",
        {"form": form, "organisation": organisation},
        status=form_status(form),
    )


def _organisation_page(
    request: HttpRequest, access: MemberAccess, *, invite_form: InvitationForm | None = None
) -> HttpResponse:
    organisation = access.organisation
    invitations = selectors.invitations_open(organisation) if access.can_manage else Invitation.objects.none()
    applications = list(selectors.applications_for_organisation(organisation))
    if access.can_manage and invite_form is None:
        invite_form = InvitationForm()
    context = {
        "organisation": organisation,
        "membership": access.membership,
        "can_manage": access.can_manage,
        "members": selectors.organisation_members(organisation),
        "invitations": invitations,
        "invite_form": invite_form if access.can_manage else None,
        "applications": applications,
        "can_apply": access.can_manage
        and organisation.status != Organisation.Status.OFFBOARDED
        and not any(application.status in KycApplication.OPEN_STATUSES for application in applications),
        "status_explained": ORGANISATION_STATUS_EXPLAINED.get(Organisation.Status(organisation.status), ""),
        "can_edit": access.can_manage and organisation.status != Organisation.Status.OFFBOARDED,
    }
    return render(request, "portal/organisation_detail.html", context, status=form_status(invite_form))


@login_required
def organisation_detail(request: HttpRequest, organisation_id: int) -> HttpResponse:
    return _organisation_page(request, member_access(request, organisation_id))


@login_required
@require_POST
def invitation_create(request: HttpRequest, organisation_id: int) -> HttpResponse:
    access = member_access(request, organisation_id)
    access.require_manager()
    form = InvitationForm(request.POST)
    if form.is_valid():
        try:
            services.invitation_create(
                organisation_id=access.organisation.pk,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
                actor=portal_user(request),
            )
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            messages.success(request, f"An invitation is on its way to {form.cleaned_data['email']}.")
            return redirect("portal:organisation", organisation_id=access.organisation.pk)
    return _organisation_page(request, access, invite_form=form)


@login_required
@require_POST
def invitation_revoke(request: HttpRequest, organisation_id: int, invitation_id: int) -> HttpResponse:
    access = member_access(request, organisation_id)
    access.require_manager()
    invitation = get_object_or_404(Invitation, pk=invitation_id, organisation=access.organisation)
    try:
        services.invitation_revoke(invitation_id=invitation.pk, actor=portal_user(request))
    except DomainError as error:
        messages.error(request, str(error))
    else:
        messages.success(request, f"The invitation to {invitation.email} is withdrawn.")
    return redirect("portal:organisation", organisation_id=access.organisation.pk)


@login_required
@require_POST
def membership_end(request: HttpRequest, organisation_id: int, membership_id: int) -> HttpResponse:
    """End someone's membership (owner or admin), or one's own (leave)."""
    access = member_access(request, organisation_id)
    membership = get_object_or_404(
        Membership, pk=membership_id, organisation=access.organisation, ended_at__isnull=True
    )
    leaving = membership.pk == access.membership.pk
    if not leaving:
        access.require_manager()
    try:
        services.membership_end(membership_id=membership.pk, actor=portal_user(request))
    except DomainError as error:
        messages.error(request, str(error))
        return redirect("portal:organisation", organisation_id=access.organisation.pk)
    if leaving:
        messages.success(request, f"You left {access.organisation.name}.")
        return redirect("portal:dashboard")
    messages.success(request, f"{membership.user.get_username()} is no longer a member.")
    return redirect("portal:organisation", organisation_id=access.organisation.pk)


@login_required
@require_GET
def invitation_open(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link: keep its token in the session and continue at a URL without it.

    As Django's password reset does: the token leaves the address bar, later access logs and
    Referer headers. login_required comes first, so the link survives signing in (``?next=``).
    """
    request.session[INVITATION_SESSION_KEY] = token
    return redirect("portal:invitation-confirm")


@login_required
@require_http_methods(["GET", "POST"])
def invitation_confirm(request: HttpRequest) -> HttpResponse:
    """GET asks for a click, POST accepts: the token is single-use, so link scanners must not spend it."""
    token = str(request.session.get(INVITATION_SESSION_KEY, ""))
    error = "" if token else "Open the link in the invitation email again."
    if request.method == "POST" and token:
        try:
            membership = services.invitation_accept(token=token, user=portal_user(request))
        except (ValidationError, DomainError) as refusal:
            error = " ".join(refusal.messages) if isinstance(refusal, ValidationError) else str(refusal)
        else:
            request.session.pop(INVITATION_SESSION_KEY, None)
            messages.success(
                request, f"You are now a member of {membership.organisation.name} ({membership.get_role_display()})."
            )
            return redirect("portal:organisation", organisation_id=membership.organisation_id)
    return render(request, "portal/invitation_accept.html", {"error": error}, status=400 if error else 200)
