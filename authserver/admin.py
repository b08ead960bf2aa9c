import re
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest

from .audit import audit_record
from .models import AuditEvent, Scope, SigningKey


@admin.register(SigningKey)
class SigningKeyAdmin(admin.ModelAdmin):
    list_display = ("kid", "alg", "status", "created_at", "activated_at", "retired_at")
    list_filter = ("alg", "status")
    readonly_fields = ("kid", "alg", "status", "public_jwk", "created_at", "activated_at", "retired_at")
    exclude = ("private_key_encrypted",)

    def has_add_permission(self, request):  # keys are created by the signingkey command/jobs
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the audit log is append-only (STYLE.md §4)."""

    list_display = ("created_at", "event", "actor_label", "target_label", "organisation", "ip_address")
    list_filter = ("event", "actor_type")
    search_fields = ("event", "actor_label", "target_label", "request_id")
    date_hierarchy = "created_at"

    def get_readonly_fields(self, request, obj=None):
        return [field.name for field in self.model._meta.fields]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


# RFC 6749 §3.3: scope-token = 1*( %x21 / %x23-5B / %x5D-7E ), printable ASCII but space, " and \.
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5B\x5D-\x7E]+")


class ScopeForm(forms.ModelForm):
    """The catalogue entry; open registration only for low-risk scopes (also a check constraint)."""

    allowed_organisation_kinds = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every kind"
    )
    allowed_environments = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, help_text="None ticked: every environment"
    )

    class Meta:
        model = Scope
        fields = (
            "name",
            "description",
            "risk_level",
            "min_trust_level",
            "allowed_organisation_kinds",
            "allowed_environments",
            "requires_approval",
            "open_registration",
        )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        from clients.models import Client
        from onboarding.models import Organisation

        super().__init__(*args, **kwargs)
        choices = {
            "allowed_organisation_kinds": Organisation.Kind.choices,
            "allowed_environments": Client.Environment.choices,
        }
        for name, options in choices.items():
            field = self.fields.get(name)
            if isinstance(field, forms.MultipleChoiceField):
                field.choices = options

    def clean_name(self) -> str:
        name = (self.cleaned_data.get("name") or "").strip()
        if not _SCOPE_TOKEN.fullmatch(name):
            raise ValidationError(
                'A scope name is printable ASCII without spaces, quotes (") or backslashes (RFC 6749 §3.3).',
                code="invalid_scope_name",
            )
        return name

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("open_registration") and cleaned.get("risk_level") not in (None, Scope.RiskLevel.LOW):
            self.add_error(
                "open_registration",
                "Only low-risk scopes may be given by open registration (no review). "
                "Set the risk level to low, or untick open registration.",
            )
        return cleaned


@admin.register(Scope)
class ScopeAdmin(admin.ModelAdmin):
    """The scope catalogue the registration policy reads; every change is audited."""

    form = ScopeForm
    list_display = ("name", "risk_level", "min_trust_level", "open_registration", "requires_approval", "updated_at")
    list_filter = ("risk_level", "min_trust_level", "open_registration", "requires_approval")
    search_fields = ("name", "description")

    def save_model(self, request: HttpRequest, obj: Scope, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        changed = {name: form.cleaned_data.get(name) for name in form.changed_data}
        audit_record(
            "scope.changed" if change else "scope.created",
            actor=request.user,
            target=obj,
            data={"name": obj.name, "changed": changed},
        )

    def delete_model(self, request: HttpRequest, obj: Scope) -> None:
        audit_record("scope.deleted", actor=request.user, target=obj, data={"name": obj.name})
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Scope]) -> None:
        for scope in queryset:
            audit_record("scope.deleted", actor=request.user, target=scope, data={"name": scope.name})
        super().delete_queryset(request, queryset)
