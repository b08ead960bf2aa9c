"""The KYC application: draft, evidence, submission, and the conversation with the reviewer."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.forms import Form
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from authserver.errors import DomainError

from .. import selectors, services
from ..forms import EvidenceForm, KycApplicationForm, KycMessageForm
from ..models import Evidence, KycApplication
from .access import MemberAccess, add_service_error, application_of, form_status, member_access, portal_user

# Where the applicant may change the application, and where they can answer a reviewer (once submitted).
EDITABLE = KycApplication.EDITABLE_STATUSES
CONVERSATION_OPEN = tuple(status for status in KycApplication.OPEN_STATUSES if status != KycApplication.Status.DRAFT)
# What each status means for the applicant, in one sentence.
STATUS_EXPLAINED = {
    KycApplication.Status.DRAFT: "A draft: complete it, attach evidence and submit it.",
    KycApplication.Status.SUBMITTED: "Submitted: it waits for a reviewer.",
    KycApplication.Status.IN_REVIEW: "A reviewer is checking it.",
    KycApplication.Status.APPROVED: "Approved.",
    KycApplication.Status.REJECTED: "Rejected.",
    KycApplication.Status.CHANGES_REQUESTED: "The reviewer asks for changes: read the questions, answer, and resubmit.",
    KycApplication.Status.EXPIRED: "Expired: the draft was left untouched too long. Start a new application.",
}
# How the facts read from a document are labelled for the applicant (onboarding/evidence.py keys).
FACT_LABELS = {
    "serial_number": "Subject serialNumber (OIN)",
    "organisation": "Subject organisation (O)",
    "common_name": "Common name (CN)",
    "country": "Country (C)",
    "legal_identifier": "eIDAS legal identifier",
    "legal_name": "Legal name",
    "not_before": "Valid from",
    "not_after": "Valid until",
    "key_type": "Key type",
    "key_size": "Key size (bits)",
    "curve": "Curve",
    "signature_algorithm": "Signature algorithm",
    "issuer": "Issuer",
    "issuer_organisation": "Issuer organisation",
    "chains_to_trust_store": "Chains to a trusted root",
    "subject": "Subject",
    "format": "Format",
    "pdf_version": "PDF version",
    "size": "Size (bytes)",
}
# Shown as warnings, not as facts.
_NOT_FACTS = {"document", "warnings"}
FIELD_LABELS = {
    "oin": "OIN",
    "kvk_number": "KvK number",
    "rsin": "RSIN",
    "eidas_identifier": "eIDAS legal identifier",
    "name": "Legal name",
    "country": "Country",
}


@login_required
@require_http_methods(["GET", "POST"])
def application_create(request: HttpRequest, organisation_id: int) -> HttpResponse:
    access = member_access(request, organisation_id)
    access.require_manager()
    form = KycApplicationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            application = services.kyc_application_create(
                organisation_id=access.organisation.pk,
                actor=portal_user(request),
                requested_trust_level=form.cleaned_data["requested_trust_level"],
                motivation=form.cleaned_data["motivation"],
            )
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            messages.success(request, "The draft application is saved. Attach your evidence, then submit it.")
            return redirect("portal:application", organisation_id=access.organisation.pk, application_id=application.pk)
    return render(
        request,
        "portal/application_new.html",
        {"organisation": access.organisation, "form": form},
        status=form_status(form),
    )


def _display(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, bool):
        return "Yes" if value else "No"
    if isinstance(value, dict):
        return "; ".join(f"{key}: {_display(item)}" for key, item in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(_display(item) for item in value)
    return str(value)


def _evidence_rows(evidence: Evidence) -> dict[str, Any]:
    """What was read from a document beside what was claimed, for the template."""
    extracted = evidence.extracted if isinstance(evidence.extracted, dict) else {}
    mismatches = evidence.mismatches if isinstance(evidence.mismatches, list) else []
    warnings = (
        [str(item) for item in extracted.get("warnings", []) if item]
        if isinstance(extracted.get("warnings"), list)
        else []
    )
    if extracted.get("expired") is True:
        warnings.append("The certificate has expired.")
    if extracted.get("not_yet_valid") is True:
        warnings.append("The certificate is not valid yet.")
    if extracted.get("trust_store_configured") is True and extracted.get("chains_to_trust_store") is False:
        warnings.append("The certificate does not chain to a configured trusted root.")
    # Known facts in a reading order (jsonb does not keep the order they were stored in), then the rest.
    order = {key: index for index, key in enumerate(FACT_LABELS)}
    keys = sorted(
        (key for key in extracted if key not in _NOT_FACTS), key=lambda key: (order.get(key, len(order)), key)
    )
    return {
        "evidence": evidence,
        "facts": [(FACT_LABELS.get(key, key.replace("_", " ").capitalize()), _display(extracted[key])) for key in keys],
        "mismatches": [
            {
                "field": FIELD_LABELS.get(str(item.get("field", "")), str(item.get("field", ""))),
                "claimed": _display(item.get("claimed")),
                "found": _display(item.get("found")),
            }
            for item in mismatches
            if isinstance(item, dict)
        ],
        "warnings": warnings,
    }


def _application_page(
    request: HttpRequest,
    access: MemberAccess,
    application: KycApplication,
    *,
    edit_form: KycApplicationForm | None = None,
    evidence_form: EvidenceForm | None = None,
    message_form: KycMessageForm | None = None,
    submit_form: Form | None = None,
) -> HttpResponse:
    editable = access.can_manage and application.status in EDITABLE
    answerable = access.can_manage and application.status in CONVERSATION_OPEN
    if editable:
        edit_form = edit_form or KycApplicationForm(instance=application)
        evidence_form = evidence_form or EvidenceForm()
        submit_form = submit_form or Form()
    if answerable:
        message_form = message_form or KycMessageForm()
    evidence = selectors.evidence_for_application(application)
    context = {
        "organisation": access.organisation,
        "application": application,
        "status_explained": STATUS_EXPLAINED.get(KycApplication.Status(application.status), ""),
        "can_manage": access.can_manage,
        "editable": editable,
        "edit_form": edit_form if editable else None,
        "evidence_form": evidence_form if editable else None,
        "submit_form": submit_form if editable else None,
        "message_form": message_form if answerable else None,
        "evidence": [_evidence_rows(item) for item in evidence],
        "conversation": application.messages.select_related("author").order_by("created_at"),
        "resubmission": application.status == KycApplication.Status.CHANGES_REQUESTED,
    }
    return render(
        request,
        "portal/application_detail.html",
        context,
        status=form_status(edit_form, evidence_form, message_form, submit_form),
    )


def _refuse_if_closed(request: HttpRequest, application: KycApplication, open_statuses: tuple[str, ...]) -> bool:
    """True (with a message) when the application's status no longer allows this change."""
    if application.status in open_statuses:
        return False
    messages.error(request, f"The application is {application.get_status_display().lower()}; this cannot change now.")
    return True


@login_required
def application_detail(request: HttpRequest, organisation_id: int, application_id: int) -> HttpResponse:
    access = member_access(request, organisation_id)
    return _application_page(request, access, application_of(access, application_id))


@login_required
@require_POST
def application_update(request: HttpRequest, organisation_id: int, application_id: int) -> HttpResponse:
    access = member_access(request, organisation_id)
    access.require_manager()
    application = application_of(access, application_id)
    if _refuse_if_closed(request, application, EDITABLE):
        return redirect("portal:application", organisation_id=access.organisation.pk, application_id=application.pk)
    form = KycApplicationForm(request.POST, instance=application)
    if form.is_valid():
        try:
            services.kyc_application_update(
                application_id=application.pk,
                actor=portal_user(request),
                requested_trust_level=form.cleaned_data["requested_trust_level"],
                motivation=form.cleaned_data["motivation"],
            )
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            messages.success(request, "The application is saved.")
            return redirect("portal:application", organisation_id=access.organisation.pk, application_id=application.pk)
    application.refresh_from_db()
    return _application_page(request, access, application, edit_form=form)


@login_required
@require_POST
def evidence_upload(request: HttpRequest, organisation_id: int, application_id: int) -> HttpResponse:
    access = member_access(request, organisation_id)
    access.require_manager()
    application = application_of(access, application_id)
    if _refuse_if_closed(request, application, EDITABLE):
        return redirect("portal:application", organisation_id=access.organisation.pk, application_id=application.pk)
    form = EvidenceForm(request.POST, request.FILES)
    if form.is_valid():
        upload = form.cleaned_data["file"]
        try:
            evidence = services.evidence_attach(
                application_id=application.pk,
                kind=form.cleaned_data["kind"],
                filename=str(upload.name or "upload")[:255],
                content=form.content(),
                content_type=str(upload.content_type or "application/octet-stream")[:100],
                actor=portal_user(request),
            )
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            if evidence.mismatches:
                messages.warning(
                    request, f"{evidence.filename} is attached, but it disagrees with what you entered; see below."
                )
            else:
                messages.success(request, f"{evidence.filename} is attached.")
            return redirect("portal:application", organisation_id=access.organisation.pk, application_id=application.pk)
    return _application_page(request, access, application, evidence_form=form)


@login_required
@require_POST
def application_submit(request: HttpRequest, organisation_id: int, application_id: int) -> HttpResponse:
    access = member_access(request, organisation_id)
    access.require_manager()
    application = application_of(access, application_id)
    if _refuse_if_closed(request, application, EDITABLE):
        return redirect("portal:application", organisation_id=access.organisation.pk, application_id=application.pk)
    form = Form(request.POST)
    try:
        services.kyc_application_submit(application_id=application.pk, actor=portal_user(request))
    except (ValidationError, DomainError) as error:
        form.is_valid()
        add_service_error(form, error)
        application.refresh_from_db()
        return _application_page(request, access, application, submit_form=form)
    messages.success(request, "The application is submitted. A reviewer will look at it; you will get an email.")
    return redirect("portal:application", organisation_id=access.organisation.pk, application_id=application.pk)


@login_required
@require_POST
def message_add(request: HttpRequest, organisation_id: int, application_id: int) -> HttpResponse:
    access = member_access(request, organisation_id)
    access.require_manager()
    application = application_of(access, application_id)
    if _refuse_if_closed(request, application, CONVERSATION_OPEN):
        return redirect("portal:application", organisation_id=access.organisation.pk, application_id=application.pk)
    form = KycMessageForm(request.POST)
    if form.is_valid():
        try:
            services.kyc_message_add(
                application_id=application.pk, author=portal_user(request), body=form.cleaned_data["body"]
            )
        except (ValidationError, DomainError) as error:
            add_service_error(form, error)
        else:
            messages.success(request, "Your answer is sent to the reviewer.")
            return redirect("portal:application", organisation_id=access.organisation.pk, application_id=application.pk)
    return _application_page(request, access, application, message_form=form)
