"""The admins' side of onboarding: the KYC review queue and organisation decisions.

Every decision goes through the onboarding services with ``reviewer=request.user`` (STYLE.md
§1); the admin only collects a small form and shows what the service said. Refusals
(DomainError, InvalidTransition, PermissionDenied, ValidationError) become error messages,
never a 500.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.admin.utils import unquote
from django.contrib.auth.admin import UserAdmin
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import content_disposition_header

from authserver.audit import audit_record
from authserver.errors import DomainError

from . import services
from .models import Evidence, KycApplication, KycApproval, KycMessage, Membership, Organisation, User
from .review import claims_of, evidence_comparisons

admin.site.register(User, UserAdmin)

# Trust level high needs two different admins (four eyes); everything else one.
HIGH = Organisation.TrustLevel.HIGH


def approvals_required(application: KycApplication) -> int:
    return 2 if application.requested_trust_level == HIGH else 1


def refusal_text(exc: Exception) -> str:
    """The message a service refusal carries; safe to show (DomainError's contract)."""
    if isinstance(exc, ValidationError) and not isinstance(exc, DomainError):
        return " ".join(exc.messages)
    return str(exc) or exc.__class__.__name__


# --- Forms of the decision views -------------------------------------------------------------


class StartReviewForm(forms.Form):
    pass


class ApproveForm(forms.Form):
    note = forms.CharField(
        label="Note (optional)", required=False, max_length=4000, widget=forms.Textarea(attrs={"rows": 2})
    )


class MessageForm(forms.Form):
    body = forms.CharField(
        label="Message",
        max_length=4000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "Write a message."},
    )


class ReasonForm(forms.Form):
    reason = forms.CharField(
        label="Reason",
        max_length=4000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 3}),
        error_messages={"required": "A reason is required."},
    )


# --- The review queue ------------------------------------------------------------------------


class SubmittedAgeFilter(admin.SimpleListFilter):
    """How long an application has waited since it was submitted."""

    title = "age since submitted"
    parameter_name = "age"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("lt7", "Less than 7 days"), ("7-30", "7 to 30 days"), ("gt30", "More than 30 days")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        now = timezone.now()
        week, month = now - timedelta(days=7), now - timedelta(days=30)
        match self.value():
            case "lt7":
                return queryset.filter(submitted_at__gt=week)
            case "7-30":
                return queryset.filter(submitted_at__lte=week, submitted_at__gte=month)
            case "gt30":
                return queryset.filter(submitted_at__lt=month)
        return queryset


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class EvidenceInline(ReadOnlyInline):
    model = Evidence
    verbose_name_plural = "evidence"
    fields = ("kind", "download", "size", "sha256", "valid_until", "uploaded_by", "uploaded_at")
    readonly_fields = fields

    @admin.display(description="file")
    def download(self, obj: Evidence) -> str:
        url = reverse("admin:onboarding_kycapplication_evidence", args=[obj.application_id, obj.pk])
        return format_html('<a href="{}">{}</a> (download)', url, obj.filename)


class KycMessageInline(ReadOnlyInline):
    model = KycMessage
    fields = ("created_at", "from_reviewer", "author", "body")
    readonly_fields = fields
    verbose_name = "message"
    verbose_name_plural = "conversation with the applicant"


class KycApprovalInline(ReadOnlyInline):
    model = KycApproval
    fields = ("reviewer", "note", "created_at")
    readonly_fields = fields


@admin.register(KycApplication)
class KycApplicationAdmin(admin.ModelAdmin):
    """The review queue. Read-only: state changes only through the decision views below."""

    change_form_template = "admin/onboarding/kycapplication/change_form.html"
    list_display = ("organisation", "status", "trust_level", "submitted_at", "reviewer", "approvals")
    list_filter = ("status", SubmittedAgeFilter, "requested_trust_level")
    list_select_related = ("organisation", "reviewer")
    search_fields = ("organisation__name", "organisation__oin", "organisation__kvk_number")
    ordering = ("submitted_at", "id")  # oldest waiting first; drafts (no submitted_at) last
    fields = (
        "organisation",
        "status",
        "requested_trust_level",
        "motivation",
        "created_by",
        "created_at",
        "submitted_at",
        "reviewer",
        "decided_at",
        "decision_reason",
    )
    readonly_fields = fields
    inlines = [EvidenceInline, KycApprovalInline, KycMessageInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[KycApplication]:
        return super().get_queryset(request).annotate(approvals_count=Count("approvals", distinct=True))

    @admin.display(description="trust level", ordering="requested_trust_level")
    def trust_level(self, obj: KycApplication) -> str:
        return obj.get_requested_trust_level_display()

    @admin.display(description="approvals", ordering="approvals_count")
    def approvals(self, obj: KycApplication) -> str:
        count = getattr(obj, "approvals_count", None)
        if count is None:
            count = obj.approvals.count()
        return f"{count} of {approvals_required(obj)}"

    # Applications are created by applicants and changed by services only.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def can_decide(self, request: HttpRequest) -> bool:
        """Staff with the change permission decide; the view permission only reads."""
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    # --- URLs ---

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        site = self.admin_site
        decisions: dict[str, Callable[..., HttpResponse]] = {
            "start-review": self.start_review_view,
            "approve": self.approve_view,
            "reject": self.reject_view,
            "request-changes": self.request_changes_view,
            "message": self.message_view,
        }
        custom = [
            path(f"<path:object_id>/{slug}/", site.admin_view(view), name=f"{info}_{slug.replace('-', '_')}")
            for slug, view in decisions.items()
        ]
        custom.append(
            path(
                "<path:object_id>/evidence/<int:evidence_id>/",
                site.admin_view(self.evidence_download_view),
                name=f"{info}_evidence",
            )
        )
        # Before the defaults: their "<path:object_id>/" catch-all would swallow these.
        return custom + super().get_urls()

    # --- The change view: claims beside evidence, decision forms ---

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        application = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if application is not None:
            context.update(self.review_context(request, application))
        return super().change_view(request, object_id, form_url, extra_context=context)

    def review_context(self, request: HttpRequest, application: KycApplication) -> dict[str, Any]:
        organisation = application.organisation
        approvals = list(application.approvals.select_related("reviewer"))
        status = application.status
        can_decide = self.can_decide(request)
        info = f"admin:{self.opts.app_label}_{self.opts.model_name}"
        return {
            "kyc_claims": claims_of(organisation),
            "kyc_evidence": evidence_comparisons(application),
            "kyc_approvals": approvals,
            "kyc_approvals_required": approvals_required(application),
            "kyc_four_eyes": application.requested_trust_level == HIGH,
            "kyc_can_start_review": can_decide and status == KycApplication.Status.SUBMITTED,
            "kyc_can_decide": can_decide and status == KycApplication.Status.IN_REVIEW,
            "kyc_can_message": can_decide and status in KycApplication.OPEN_STATUSES,
            "kyc_urls": {
                name: reverse(f"{info}_{name}", args=[application.pk])
                for name in ("start_review", "approve", "reject", "request_changes", "message")
            },
            "kyc_approve_form": ApproveForm(),
            "kyc_reason_form": ReasonForm(),
        }

    # --- Decision views (POST only, CSRF-protected by admin_view) ---

    def _decide(
        self,
        request: HttpRequest,
        object_id: str,
        form_class: type[forms.Form],
        decide: Callable[..., KycApplication],
        succeeded: Callable[[KycApplication], str],
    ) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        application = self.get_object(request, unquote(object_id))
        if application is None:
            raise Http404("No such application.")
        if not self.can_decide(request):
            raise PermissionDenied
        change_url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[application.pk])
        form = form_class(request.POST)
        if not form.is_valid():
            for errors in form.errors.values():
                self.message_user(request, " ".join(str(e) for e in errors), messages.ERROR)
            return HttpResponseRedirect(change_url)
        try:
            application = decide(application_id=application.pk, reviewer=request.user, **form.cleaned_data)
        except (DomainError, ValidationError) as exc:
            self.message_user(request, refusal_text(exc), messages.ERROR)
        else:
            self.message_user(request, succeeded(application), messages.SUCCESS)
        return HttpResponseRedirect(change_url)

    def start_review_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decide(
            request,
            object_id,
            StartReviewForm,
            services.kyc_application_start_review,
            lambda app: "Review started. You are the reviewer.",
        )

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        def succeeded(app: KycApplication) -> str:
            if app.status == KycApplication.Status.APPROVED:
                return (
                    f"Approved: {app.organisation} is {app.organisation.get_status_display().lower()} "
                    f"with trust level {app.get_requested_trust_level_display().lower()}."
                )
            count = app.approvals.count()
            return (
                f"Approval recorded: {count} of {approvals_required(app)} approvals. "
                "Trust level high needs a second admin to approve (four eyes)."
            )

        return self._decide(request, object_id, ApproveForm, services.kyc_application_approve, succeeded)

    def reject_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decide(
            request,
            object_id,
            ReasonForm,
            services.kyc_application_reject,
            lambda app: f"Rejected. {app.organisation} will be told the reason.",
        )

    def request_changes_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return self._decide(
            request,
            object_id,
            ReasonForm,
            services.kyc_application_request_changes,
            lambda app: f"Changes requested. {app.organisation} will be asked to answer.",
        )

    def message_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """A question to the applicant that does not change the application's status."""

        def send(*, application_id: int, reviewer: Any, body: str) -> KycApplication:
            services.kyc_message_add(application_id=application_id, author=reviewer, body=body)
            return KycApplication.objects.get(pk=application_id)

        return self._decide(request, object_id, MessageForm, send, lambda app: "Message sent to the applicant.")

    def evidence_download_view(self, request: HttpRequest, object_id: str, evidence_id: int) -> HttpResponse:
        application = self.get_object(request, unquote(object_id))
        if application is None or not self.has_view_permission(request, application):
            raise Http404("No such application.")
        evidence = get_object_or_404(Evidence, pk=evidence_id, application=application)
        # Always an attachment, and never a type a browser would render (uploaded content).
        response = HttpResponse(bytes(evidence.content), content_type=download_content_type(evidence))
        response["Content-Disposition"] = content_disposition_header(True, evidence.filename) or "attachment"
        response["Cache-Control"] = "no-store"
        # Who looked at an organisation's documents is worth knowing later.
        audit_record(
            "kyc.evidence.downloaded",
            actor=request.user,
            target=evidence,
            organisation=application.organisation,
            data={"application": application.pk, "sha256": evidence.sha256},
        )
        return response


_DOWNLOAD_TYPES = {
    "application/pdf",
    "application/json",
    "application/pkix-cert",
    "application/x-x509-ca-cert",
    "application/x-pem-file",
}


def download_content_type(evidence: Evidence) -> str:
    content_type = (evidence.content_type or "").split(";")[0].strip().lower()
    return content_type if content_type in _DOWNLOAD_TYPES else "application/octet-stream"


# --- Organisations ---------------------------------------------------------------------------


class MembershipInline(ReadOnlyInline):
    model = Membership
    fields = ("user", "role", "created_at", "expires_at", "ended_at")
    readonly_fields = fields


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "oin", "kvk_number", "status", "trust_level", "next_review_at")
    list_filter = ("status", "kind", "trust_level")
    search_fields = ("name", "oin", "kvk_number")
    # Status and trust level change through the services (approval, suspend, reactivate).
    readonly_fields = ("status", "trust_level", "next_review_at")
    inlines = [MembershipInline]
    actions = ["suspend_selected", "reactivate_selected"]

    @admin.action(description="Suspend selected organisations (with a reason)", permissions=["change"])
    def suspend_selected(self, request: HttpRequest, queryset: QuerySet[Organisation]) -> HttpResponse | None:
        return self._with_reason(
            request, queryset, services.organisation_suspend, title="Suspend organisations", verb="suspended"
        )

    @admin.action(description="Reactivate selected organisations (with a reason)", permissions=["change"])
    def reactivate_selected(self, request: HttpRequest, queryset: QuerySet[Organisation]) -> HttpResponse | None:
        return self._with_reason(
            request, queryset, services.organisation_reactivate, title="Reactivate organisations", verb="reactivated"
        )

    def _with_reason(
        self,
        request: HttpRequest,
        queryset: QuerySet[Organisation],
        service: Callable[..., Organisation],
        *,
        title: str,
        verb: str,
    ) -> HttpResponse | None:
        """An action with an intermediate page asking for the reason, then one service call each."""
        form = ReasonForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            done: list[str] = []
            for organisation in queryset:
                try:
                    service(organisation_id=organisation.pk, actor=request.user, reason=form.cleaned_data["reason"])
                except (DomainError, ValidationError) as exc:
                    self.message_user(request, f"{organisation}: {refusal_text(exc)}", messages.ERROR)
                else:
                    done.append(str(organisation))
            if done:
                self.message_user(request, f"{len(done)} {verb}: {', '.join(done)}.", messages.SUCCESS)
            return None  # back to the change list
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.opts,
            "queryset": queryset,
            "form": form,
            "action": request.POST.get("action", ""),
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "admin/onboarding/organisation/action_with_reason.html", context)
