"""The admins' side of client registration: the intake queue, client suspension, reinstatement
and revocation, allowlist entries and initial access tokens.

As in onboarding/admin.py, every state change goes through a clients service with the admin as
actor (STYLE.md §1); the admin collects a small form and shows what the service said. Bad input
is a form error; a service's refusal (DomainError, ValidationError) is an error message. Never a
500. Records the services create (allowlist entries, initial access tokens) are read-only once
created: they change only through their revoke actions.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import models
from django.db.models import Case, Count, Q, QuerySet, Value, When
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.text import Truncator

from authserver.audit import audit_record
from authserver.errors import DomainError
from onboarding.admin import ReasonForm, refusal_text
from onboarding.models import Organisation

from . import policy, services
from .models import AllowlistEntry, Client, ClientCredential, ClientIntake, InitialAccessToken

DECISION_TEMPLATE = "admin/clients/decision_form.html"
# Rejected and revoked clients no longer count against an allowlist entry's max_clients.
_NOT_COUNTED = (Client.Status.REJECTED, Client.Status.REVOKED)
# A host name as RFC 7591 redirect URIs carry it (no scheme, port or path); matched exactly.
_HOST = re.compile(r"(?=.{1,253}\Z)[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*")


# --- Shared form fields and helpers ----------------------------------------------------------


def split_words(value: str) -> list[str]:
    """Space-, comma- or newline-separated words, in order, without duplicates."""
    return list(dict.fromkeys(word for word in re.split(r"[\s,]+", value or "") if word))


def known_scopes(names: list[str]) -> set[str]:
    """The names the server knows: the scope catalogue, plus the OIDC and portal scopes of settings."""
    return set(services.catalogue_rules(names)) | set(settings.OAUTH2_PROVIDER["SCOPES"])


def clean_catalogue_scopes(value: str) -> list[str]:
    names = split_words(value)
    if not names:
        raise ValidationError("Give at least one scope.", code="required")
    unknown = [name for name in names if name not in services.catalogue_rules(names)]
    if unknown:
        raise ValidationError(
            "Not in the scope catalogue: %(names)s. Add them to the catalogue first, or correct the names.",
            code="unknown_scope",
            params={"names": ", ".join(unknown)},
        )
    return names


def clean_hosts(value: str) -> list[str]:
    hosts = [host.lower() for host in split_words(value)]
    bad = [host for host in hosts if not _HOST.fullmatch(host)]
    if bad:
        raise ValidationError(
            "Give host names only, like app.example.org (no scheme, port or path): %(bad)s",
            code="invalid_host",
            params={"bad": ", ".join(bad)},
        )
    return hosts


def clean_future(value: Any) -> Any:
    if value is not None and value <= timezone.now():
        raise ValidationError("The expiry must lie in the future.", code="past")
    return value


class ServiceCreatedAdmin(admin.ModelAdmin):
    """Records a service creates: the add form calls the service; afterwards read-only.

    A refusal the form could not foresee (e.g. the organisation was suspended meanwhile) rolls
    the add back and becomes an error message on the add page.
    """

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The change list needs it for the actions; a single record is read-only.
        return obj is None and super().has_change_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # revoke instead: the record stays, and so does its audit trail

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        try:
            return super().add_view(request, form_url, extra_context)
        except (DomainError, ValidationError) as exc:
            self.message_user(request, refusal_text(exc), messages.ERROR)
            return HttpResponseRedirect(request.get_full_path())

    @staticmethod
    def adopt(obj: models.Model, created: models.Model) -> None:
        """Make the admin's unsaved instance the row the service created (for the log and redirect)."""
        for field in created._meta.concrete_fields:
            setattr(obj, field.attname, getattr(created, field.attname))
        obj._state.adding = False
        obj._state.db = created._state.db

    def revoke_each(
        self, request: HttpRequest, queryset: QuerySet[Any], revoke: Callable[[Any], Any], *, nouns: tuple[str, str]
    ) -> None:
        done = 0
        for row in queryset:
            if row.revoked_at is not None:
                continue
            try:
                revoke(row)
            except (DomainError, ValidationError) as exc:
                self.message_user(request, f"{row}: {refusal_text(exc)}", messages.ERROR)
            else:
                done += 1
        self.message_user(request, f"{done} {nouns[done != 1]} revoked.", messages.SUCCESS)


class DecisionAdmin(admin.ModelAdmin):
    """Pages with a small form that end in one service call (suspend, revoke, approve...).

    GET shows the page; a POST with an invalid form shows it again with the form's errors; a
    valid one calls the service and redirects with its message (refusals as error messages).
    """

    def decision(
        self,
        request: HttpRequest,
        *,
        form: forms.Form,
        perform: Callable[[dict[str, Any]], str],
        done_url: str,
        title: str,
        opts: Any,
        original: Any,
        submit: str,
        summary: list[tuple[str, Any]] | None = None,
        warning: str = "",
        danger: bool = False,
    ) -> HttpResponse:
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        if request.method == "POST" and form.is_valid():
            try:
                message = perform(form.cleaned_data)
            except (DomainError, ValidationError) as exc:
                self.message_user(request, refusal_text(exc), messages.ERROR)
            else:
                self.message_user(request, message, messages.SUCCESS)
            return HttpResponseRedirect(done_url)
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": opts,
            "original": original,
            "form": form,
            "summary": summary or [],
            "warning": warning,
            "submit": submit,
            "danger": danger,
            "cancel_url": done_url,
        }
        return TemplateResponse(request, DECISION_TEMPLATE, context)


# --- The intake queue (explicit mode) --------------------------------------------------------


class ApproveIntakeForm(forms.Form):
    granted_scopes = forms.MultipleChoiceField(
        label="Scopes to grant",
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Grant at least one scope, or reject the request with a reason."},
    )
    note = forms.CharField(
        label="Note (optional, sent to the requester)",
        required=False,
        max_length=4000,
        widget=forms.Textarea(attrs={"rows": 2}),
    )

    def __init__(self, *args: Any, requested: list[str], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["granted_scopes"]
        assert isinstance(field, forms.MultipleChoiceField)
        field.choices = [(name, name) for name in requested]
        field.initial = list(requested)  # all checked: the reviewer unticks what is refused


@dataclass(frozen=True)
class RequestedScope:
    """One requested scope as the reviewer sees it: the catalogue beside the justification."""

    name: str
    description: str
    risk_level: str
    min_trust_level: str
    justification: str
    problems: list[str]
    in_catalogue: bool


def requested_scopes_of(intake: ClientIntake) -> list[RequestedScope]:
    from authserver.models import Scope  # the catalogue (runtime layer); read-only here

    client = intake.client
    organisation = client.organisation
    names = intake.requested
    rows = {row.name: row for row in Scope.objects.filter(name__in=names)}
    rules = services.catalogue_rules(names)
    facts = policy.OrganisationFacts(
        status=organisation.status, trust_level=organisation.trust_level, kind=organisation.kind
    )
    result = []
    for name in names:
        row = rows.get(name)
        result.append(
            RequestedScope(
                name=name,
                description=row.description if row else "",
                risk_level=row.get_risk_level_display() if row else "",
                min_trust_level=row.get_min_trust_level_display() if row else "",
                justification=str((intake.justifications or {}).get(name, "")),
                problems=policy.scope_refusals((name,), rules, facts, client.environment),
                in_catalogue=row is not None,
            )
        )
    return result


@admin.register(ClientIntake)
class ClientIntakeAdmin(DecisionAdmin):
    """The explicit-mode queue: pending requests first, oldest first. Read-only; decisions go
    through client_intake_approve / client_intake_reject."""

    change_form_template = "admin/clients/clientintake/change_form.html"
    list_display = (
        "client_name",
        "organisation",
        "grant_type",
        "environment",
        "requested_scopes",
        "submitted_by",
        "submitted_at",
        "status",
        "policy_reason_short",
    )
    list_filter = ("status", "client__environment", "client__authorization_grant_type")
    list_select_related = ("client__organisation", "submitted_by")
    search_fields = ("client__name", "client__client_id", "client__organisation__name", "purpose")
    fields = (
        "client",
        "status",
        "purpose",
        "contact_name",
        "contact_email",
        "requested_scopes",
        "policy_reason",
        "submitted_by",
        "submitted_at",
        "decided_by",
        "decided_at",
        "decision_reason",
        "granted_scopes",
    )
    readonly_fields = fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[ClientIntake]:
        # ModelAdmin.get_queryset orders before an alias could exist, so build it here.
        pending_first = Case(When(status=ClientIntake.Status.PENDING, then=Value(0)), default=Value(1))
        queryset = ClientIntake.objects.alias(queue_position=pending_first)
        return queryset.order_by(*self.get_ordering(request))

    def get_ordering(self, request: HttpRequest) -> list[str]:
        return ["queue_position", "submitted_at", "pk"]

    @admin.display(description="client", ordering="client__name")
    def client_name(self, obj: ClientIntake) -> str:
        return obj.client.name

    @admin.display(description="organisation", ordering="client__organisation__name")
    def organisation(self, obj: ClientIntake) -> str:
        return str(obj.client.organisation)

    @admin.display(description="grant type", ordering="client__authorization_grant_type")
    def grant_type(self, obj: ClientIntake) -> str:
        return obj.client.get_authorization_grant_type_display()

    @admin.display(description="environment", ordering="client__environment")
    def environment(self, obj: ClientIntake) -> str:
        return obj.client.get_environment_display()

    @admin.display(description="policy reason")
    def policy_reason_short(self, obj: ClientIntake) -> str:
        return Truncator(obj.policy_reason).chars(80)

    # Intakes are created by client_register and decided by the services only.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def can_decide(self, request: HttpRequest) -> bool:
        """Staff with the change permission decide; the view permission only reads."""
        return request.user.has_perm(f"{self.opts.app_label}.change_{self.opts.model_name}")

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        custom = [
            path("<path:object_id>/approve/", wrap(self.approve_view), name=f"{info}_approve"),
            path("<path:object_id>/reject/", wrap(self.reject_view), name=f"{info}_reject"),
        ]
        return custom + super().get_urls()  # before the "<path:object_id>/" catch-all

    def change_url(self, intake: ClientIntake) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[intake.pk])

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        intake = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if intake is not None:
            info = f"admin:{self.opts.app_label}_{self.opts.model_name}"
            organisation = intake.client.organisation
            context.update(
                {
                    "intake": intake,
                    "intake_scopes": requested_scopes_of(intake),
                    "intake_organisation": organisation,
                    "intake_can_decide": self.can_decide(request) and intake.status == ClientIntake.Status.PENDING,
                    "intake_approve_url": reverse(f"{info}_approve", args=[intake.pk]),
                    "intake_reject_url": reverse(f"{info}_reject", args=[intake.pk]),
                    "intake_organisation_url": reverse("admin:onboarding_organisation_change", args=[organisation.pk]),
                }
            )
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _pending(self, request: HttpRequest, object_id: str) -> ClientIntake | HttpResponse:
        intake = self.get_object(request, unquote(object_id))
        if intake is None:
            raise Http404("No such intake.")
        if not self.can_decide(request):
            raise PermissionDenied
        if intake.status != ClientIntake.Status.PENDING:
            self.message_user(
                request, f"This request is {intake.get_status_display().lower()} already.", messages.ERROR
            )
            return HttpResponseRedirect(self.change_url(intake))
        return intake

    def approve_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        intake = self._pending(request, object_id)
        if isinstance(intake, HttpResponse):
            return intake
        form = ApproveIntakeForm(request.POST if request.method == "POST" else None, requested=intake.requested)

        def approve(data: dict[str, Any]) -> str:
            decided = services.client_intake_approve(
                intake_id=intake.pk, reviewer=request.user, granted_scopes=data["granted_scopes"], note=data["note"]
            )
            refused = [s for s in decided.requested if s not in decided.granted_scopes.split()]
            return (
                f"Approved: {decided.client.name} is active with {decided.granted_scopes}"
                + (f" (not granted: {' '.join(refused)})" if refused else "")
                + ". The requester is told by email."
            )

        return self.decision(
            request,
            form=form,
            perform=approve,
            done_url=self.change_url(intake),
            title=f"Approve {intake.client.name}",
            opts=self.opts,
            original=intake,
            submit="Approve",
            summary=[("Organisation", intake.client.organisation), ("Requested scopes", intake.requested_scopes)],
        )

    def reject_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        intake = self._pending(request, object_id)
        if isinstance(intake, HttpResponse):
            return intake
        form = ReasonForm(request.POST if request.method == "POST" else None)

        def reject(data: dict[str, Any]) -> str:
            decided = services.client_intake_reject(intake_id=intake.pk, reviewer=request.user, reason=data["reason"])
            return f"Rejected: {decided.client.name}. The requester is told the reason by email."

        return self.decision(
            request,
            form=form,
            perform=reject,
            done_url=self.change_url(intake),
            title=f"Reject {intake.client.name}",
            opts=self.opts,
            original=intake,
            submit="Reject",
            summary=[("Organisation", intake.client.organisation), ("Requested scopes", intake.requested_scopes)],
            danger=True,
        )


# --- Clients ---------------------------------------------------------------------------------


class ClientCredentialInline(admin.TabularInline):
    model = ClientCredential
    extra = 0
    fields = ("kind", "status", "hint", "kid", "created_at", "expires_at", "revoked_at", "last_used_at", "revoke")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.display(description="")
    def revoke(self, obj: ClientCredential) -> str:
        if obj.pk is None or obj.status == ClientCredential.Status.REVOKED:
            return ""
        url = reverse("admin:clients_client_credential_revoke", args=[obj.client_id, obj.pk])
        return format_html('<a class="button" href="{}">Revoke</a>', url)


class ClientAdminForm(forms.ModelForm):
    """Scopes an admin grants by hand must exist; secrets only where the deployment allows them."""

    class Meta:
        model = Client
        # The ones it checks; ClientAdmin's get_form passes the full list (all but ``exclude``).
        fields = ("scope", "token_endpoint_auth_method")

    def clean_scope(self) -> str:
        names = split_words(self.cleaned_data.get("scope") or "")
        before = set(self.instance.scopes) if self.instance.pk else set()
        added = [name for name in names if name not in before]
        unknown = [name for name in added if name not in known_scopes(added)]
        if unknown:
            raise ValidationError(
                "Not in the scope catalogue: %(names)s.", code="unknown_scope", params={"names": ", ".join(unknown)}
            )
        return " ".join(names)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        method = cleaned.get("token_endpoint_auth_method")
        secret_methods = (Client.AuthMethod.CLIENT_SECRET_BASIC, Client.AuthMethod.CLIENT_SECRET_POST)
        if (
            method in secret_methods
            and method != (self.instance.token_endpoint_auth_method if self.instance.pk else None)
            and not settings.AUTHSERVER_CLIENT_SECRETS_ENABLED
        ):
            self.add_error(
                "token_endpoint_auth_method",
                "This deployment does not allow client secrets (AUTHSERVER_CLIENT_SECRETS_ENABLED).",
            )
        return cleaned


class ClientAdmin(DecisionAdmin):
    """Registered by django-oauth-toolkit (OAUTH2_PROVIDER["APPLICATION_ADMIN_CLASS"]).

    Status changes only through the buttons (suspend, reinstate, revoke: the services); a scope
    change by hand is audited (``client.scope.changed``). No delete: revoke keeps the record.
    """

    form = ClientAdminForm
    change_form_template = "admin/clients/client/change_form.html"
    list_display = ("client_id", "name", "organisation", "authorization_grant_type", "status", "environment")
    list_filter = ("status", "authorization_grant_type", "registration_mode", "environment")
    search_fields = ("client_id", "name", "organisation__name")
    readonly_fields = (
        "client_id",
        "status",
        "registration_mode",
        "allowlist_entry",
        "created_by",
        "created",
        "updated",
    )
    exclude = ("client_secret", "hash_client_secret", "user", "cimd_expires_at")
    inlines = [ClientCredentialInline]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: Client, form: forms.ModelForm, change: bool) -> None:
        before = str(form.initial.get("scope") or "").split() if change else []
        super().save_model(request, obj, form, change)
        if not change:
            audit_record(
                "client.created",
                actor=request.user,
                target=obj,
                organisation=obj.organisation,
                data={
                    "client_id": obj.client_id,
                    "grant_type": obj.authorization_grant_type,
                    "auth_method": obj.token_endpoint_auth_method,
                    "scopes": obj.scopes,
                    "mode": obj.registration_mode,
                    "status": obj.status,
                    "channel": "admin",
                },
            )
        elif "scope" in form.changed_data and before != obj.scopes:
            audit_record(
                "client.scope.changed",
                actor=request.user,
                target=obj,
                organisation=obj.organisation,
                data={
                    "client_id": obj.client_id,
                    "before": before,
                    "after": obj.scopes,
                    "added": [s for s in obj.scopes if s not in before],
                    "removed": [s for s in before if s not in obj.scopes],
                },
            )

    # --- Buttons: suspend, reinstate, revoke; revoke one credential ---

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        wrap = self.admin_site.admin_view
        custom = [
            # First: "<path:object_id>/revoke/" would match it too, with a longer object id.
            path(
                "<path:object_id>/credentials/<int:credential_id>/revoke/",
                wrap(self.credential_revoke_view),
                name=f"{info}_credential_revoke",
            ),
            path("<path:object_id>/suspend/", wrap(self.suspend_view), name=f"{info}_suspend"),
            path("<path:object_id>/reinstate/", wrap(self.reinstate_view), name=f"{info}_reinstate"),
            path("<path:object_id>/revoke/", wrap(self.revoke_view), name=f"{info}_revoke"),
        ]
        return custom + super().get_urls()  # before the "<path:object_id>/" catch-all

    def change_url(self, client: Client) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[client.pk])

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        client = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if client is not None and self.has_change_permission(request, client):
            info = f"admin:{self.opts.app_label}_{self.opts.model_name}"
            allowed = Client.TRANSITIONS[client.status]
            buttons = []
            if Client.Status.SUSPENDED in allowed:
                buttons.append(("Suspend", reverse(f"{info}_suspend", args=[client.pk])))
            if client.status == Client.Status.SUSPENDED:
                buttons.append(("Reinstate", reverse(f"{info}_reinstate", args=[client.pk])))
            if Client.Status.REVOKED in allowed:
                buttons.append(("Revoke", reverse(f"{info}_revoke", args=[client.pk])))
            context["client_buttons"] = buttons
        return super().change_view(request, object_id, form_url, extra_context=context)

    def _client(self, request: HttpRequest, object_id: str) -> Client:
        client = self.get_object(request, unquote(object_id))
        if client is None:
            raise Http404("No such client.")
        if not self.has_change_permission(request, client):
            raise PermissionDenied
        return client

    def suspend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        client = self._client(request, object_id)

        def suspend(data: dict[str, Any]) -> str:
            services.client_suspend(client_id=client.pk, actor=request.user, reason=data["reason"])
            return f"Suspended {client.name}: it gets no tokens, and the tokens it held are revoked."

        return self.decision(
            request,
            form=ReasonForm(request.POST if request.method == "POST" else None),
            perform=suspend,
            done_url=self.change_url(client),
            title=f"Suspend {client.name}",
            opts=self.opts,
            original=client,
            submit="Suspend",
            summary=[("Client ID", client.client_id), ("Organisation", client.organisation)],
            warning="Its tokens are revoked at once; its credentials stay, so it can be reinstated.",
            danger=True,
        )

    def reinstate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        client = self._client(request, object_id)

        def perform(data: dict[str, Any]) -> str:
            services.client_reinstate(client_id=client.pk, actor=request.user, reason=data["reason"])
            return f"Reinstated {client.name}: it is active again."

        return self.decision(
            request,
            form=ReasonForm(request.POST if request.method == "POST" else None),
            perform=perform,
            done_url=self.change_url(client),
            title=f"Reinstate {client.name}",
            opts=self.opts,
            original=client,
            submit="Reinstate",
            summary=[("Client ID", client.client_id), ("Organisation", client.organisation)],
        )

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        client = self._client(request, object_id)
        usable = client.credentials.filter(status__in=ClientCredential.USABLE_STATUSES).count()

        def revoke(data: dict[str, Any]) -> str:
            services.client_revoke(client_id=client.pk, actor=request.user)
            return f"Revoked {client.name}: its credentials and tokens no longer work."

        return self.decision(
            request,
            form=forms.Form(request.POST if request.method == "POST" else None),
            perform=revoke,
            done_url=self.change_url(client),
            title=f"Revoke {client.name}",
            opts=self.opts,
            original=client,
            submit="Yes, revoke this client",
            summary=[
                ("Client ID", client.client_id),
                ("Organisation", client.organisation),
                ("Status", client.get_status_display()),
                ("Usable credentials", usable),
            ],
            warning="Revoking cannot be undone: every credential and every token of this client stops working at once.",
            danger=True,
        )

    def credential_revoke_view(self, request: HttpRequest, object_id: str, credential_id: int) -> HttpResponse:
        client = self._client(request, object_id)
        credential = get_object_or_404(ClientCredential, pk=credential_id, client=client)

        def revoke(data: dict[str, Any]) -> str:
            services.client_credential_revoke(credential_id=credential.pk, actor=request.user)
            return f"Revoked {credential} of {client.name}."

        return self.decision(
            request,
            form=forms.Form(request.POST if request.method == "POST" else None),
            perform=revoke,
            done_url=self.change_url(client),
            title=f"Revoke {credential}",
            opts=self.opts,
            original=client,
            submit="Yes, revoke this credential",
            summary=[
                ("Client", f"{client.name} ({client.client_id})"),
                ("Credential", credential),
                ("Status", credential.get_status_display()),
                ("Created", credential.created_at),
                ("Expires", credential.expires_at or "never"),
            ],
            warning="The credential stops working on the next request. This cannot be undone.",
            danger=True,
        )


# --- Allowlist entries (whitelist mode) ------------------------------------------------------


class AllowlistEntryForm(forms.ModelForm):
    allowed_scopes = forms.CharField(
        label="Allowed scopes", help_text="Space separated, from the scope catalogue", max_length=4000
    )
    grant_types = forms.MultipleChoiceField(
        choices=[(grant, grant) for grant in policy.GRANT_TYPES],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: both",
    )
    allowed_redirect_hosts = forms.CharField(
        label="Allowed redirect hosts",
        required=False,
        max_length=4000,
        help_text="Host names, exact, space separated; empty: any host",
    )
    environments = forms.MultipleChoiceField(
        choices=Client.Environment.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every environment",
    )
    max_clients = forms.IntegerField(min_value=1, initial=1, help_text="How many clients may register with it")

    class Meta:
        model = AllowlistEntry
        fields = (
            "organisation",
            "software_id",
            "allowed_scopes",
            "grant_types",
            "allowed_redirect_hosts",
            "environments",
            "max_clients",
            "expires_at",
            "note",
        )

    def clean_allowed_scopes(self) -> list[str]:
        return clean_catalogue_scopes(self.cleaned_data.get("allowed_scopes", ""))

    def clean_allowed_redirect_hosts(self) -> list[str]:
        return clean_hosts(self.cleaned_data.get("allowed_redirect_hosts", ""))

    def clean_expires_at(self) -> Any:
        return clean_future(self.cleaned_data.get("expires_at"))

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if not cleaned.get("organisation") and not (cleaned.get("software_id") or "").strip():
            raise ValidationError("Name an organisation or a software id (or both).", code="unnamed")
        return cleaned


@admin.register(AllowlistEntry)
class AllowlistEntryAdmin(ServiceCreatedAdmin):
    form = AllowlistEntryForm
    list_display = (
        "__str__",
        "organisation",
        "software_id",
        "allowed_scopes",
        "redirect_hosts",
        "max_clients",
        "used",
        "expires_at",
        "revoked_at",
    )
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("organisation",)
    search_fields = ("organisation__name", "software_id", "allowed_scopes")
    actions = ["revoke_selected"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[AllowlistEntry]:
        used = Count("clients", filter=~Q(clients__status__in=_NOT_COUNTED), distinct=True)
        return super().get_queryset(request).annotate(used_count=used)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = AllowlistEntryForm.Meta.fields
        return fields if obj is None else (*fields, "created_by", "created_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return () if obj is None else self.get_fields(request, obj)

    @admin.display(description="redirect hosts")
    def redirect_hosts(self, obj: AllowlistEntry) -> str:
        return " ".join(obj.allowed_redirect_hosts or []) or "any"

    @admin.display(description="used", ordering="used_count")
    def used(self, obj: AllowlistEntry) -> int:
        count = getattr(obj, "used_count", None)
        return count if count is not None else obj.clients.exclude(status__in=_NOT_COUNTED).count()

    def save_model(self, request: HttpRequest, obj: AllowlistEntry, form: forms.ModelForm, change: bool) -> None:
        if change:
            raise PermissionDenied  # read-only once created
        data = form.cleaned_data
        entry = services.allowlist_entry_create(
            actor=request.user,
            allowed_scopes=data["allowed_scopes"],
            organisation=data.get("organisation"),
            software_id=(data.get("software_id") or "").strip(),
            grant_types=data.get("grant_types") or [],
            allowed_redirect_hosts=data.get("allowed_redirect_hosts") or [],
            environments=data.get("environments") or [],
            max_clients=data["max_clients"],
            expires_at=data.get("expires_at"),
            note=data.get("note") or "",
        )
        self.adopt(obj, entry)

    @admin.action(description="Revoke selected allowlist entries", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[AllowlistEntry]) -> None:
        self.revoke_each(
            request,
            queryset,
            lambda entry: services.allowlist_entry_revoke(entry_id=entry.pk, actor=request.user),
            nouns=("allowlist entry", "allowlist entries"),
        )


# --- Initial access tokens (RFC 7591 §3) -----------------------------------------------------


class InitialAccessTokenForm(forms.ModelForm):
    scopes = forms.CharField(
        label="Scopes",
        max_length=4000,
        help_text="Space separated, from the scope catalogue: the most a client registered with it may get",
    )
    allowed_redirect_hosts = forms.CharField(
        label="Allowed redirect hosts",
        required=False,
        max_length=4000,
        help_text="Host names, exact, space separated; empty: any host",
    )
    max_uses = forms.IntegerField(min_value=1, initial=1, help_text="How many registrations it allows")

    class Meta:
        model = InitialAccessToken
        fields = ("organisation", "scopes", "allowed_redirect_hosts", "max_uses", "expires_at")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The read-only view of an issued token has none of these fields.
        if "organisation" in self.fields:
            organisation = self.fields["organisation"]
            organisation.help_text = "Only active organisations get initial access tokens"
            organisation.error_messages["invalid_choice"] = (
                "Choose an active organisation: initial access tokens are issued to active organisations only."
            )
        if "expires_at" in self.fields:
            self.fields["expires_at"].required = False
            self.fields[
                "expires_at"
            ].help_text = f"Empty: {settings.AUTHSERVER_INITIAL_ACCESS_TOKEN_LIFETIME_DAYS} days from now"

    def clean_scopes(self) -> list[str]:
        return clean_catalogue_scopes(self.cleaned_data.get("scopes", ""))

    def clean_allowed_redirect_hosts(self) -> list[str]:
        return clean_hosts(self.cleaned_data.get("allowed_redirect_hosts", ""))

    def clean_expires_at(self) -> Any:
        return clean_future(self.cleaned_data.get("expires_at"))


@admin.register(InitialAccessToken)
class InitialAccessTokenAdmin(ServiceCreatedAdmin):
    """Issue through initial_access_token_issue: the clear token is shown once, on the page that
    answers the issuing POST; only its keyed hash is stored, so no page can show it again."""

    form = InitialAccessTokenForm
    list_display = ("hint_label", "organisation", "scopes", "uses_of_max", "expires_at", "revoked_at", "created_by")
    list_filter = (("revoked_at", admin.EmptyFieldListFilter),)
    list_select_related = ("organisation", "created_by")
    search_fields = ("organisation__name", "hint", "scopes")
    actions = ["revoke_selected"]
    issued_template = "admin/clients/initialaccesstoken/issued.html"
    _ISSUED = "_clients_issued_initial_access_token"  # request attribute: lives for one response

    def get_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        fields = InitialAccessTokenForm.Meta.fields
        if obj is None:
            return fields
        return ("hint", *fields, "uses", "last_used_at", "created_by", "created_at", "revoked_at")

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> tuple[str, ...]:
        return () if obj is None else self.get_fields(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "organisation":
            kwargs["queryset"] = Organisation.objects.filter(status=Organisation.Status.ACTIVE)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    @admin.display(description="token", ordering="hint")
    def hint_label(self, obj: InitialAccessToken) -> str:
        return f"…{obj.hint}"

    @admin.display(description="uses", ordering="uses")
    def uses_of_max(self, obj: InitialAccessToken) -> str:
        return f"{obj.uses} of {obj.max_uses}"

    def save_model(self, request: HttpRequest, obj: InitialAccessToken, form: forms.ModelForm, change: bool) -> None:
        if change:
            raise PermissionDenied  # read-only once issued
        data = form.cleaned_data
        issued = services.initial_access_token_issue(
            organisation=data["organisation"],
            scopes=data["scopes"],
            actor=request.user,
            max_uses=data["max_uses"],
            allowed_redirect_hosts=data.get("allowed_redirect_hosts") or [],
            expires_at=data.get("expires_at"),
        )
        self.adopt(obj, issued.token)
        setattr(request, self._ISSUED, issued.value)

    def response_add(
        self, request: HttpRequest, obj: InitialAccessToken, post_url_continue: str | None = None
    ) -> HttpResponse:
        value = getattr(request, self._ISSUED, None)
        if value is None:
            return super().response_add(request, obj, post_url_continue)
        context = {
            **self.admin_site.each_context(request),
            "title": "Initial access token issued",
            "opts": self.opts,
            "original": obj,
            "token_value": value,
            "change_url": reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[obj.pk]),
        }
        response = TemplateResponse(request, self.issued_template, context)
        response["Cache-Control"] = "no-store"
        return response

    @admin.action(description="Revoke selected initial access tokens", permissions=["change"])
    def revoke_selected(self, request: HttpRequest, queryset: QuerySet[InitialAccessToken]) -> None:
        self.revoke_each(
            request,
            queryset,
            lambda token: services.initial_access_token_revoke(token_id=token.pk, actor=request.user),
            nouns=("initial access token", "initial access tokens"),
        )
