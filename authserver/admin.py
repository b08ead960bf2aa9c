import ipaddress
import re
from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.contrib.admin.widgets import FilteredSelectMultiple
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import URLValidator
from django.db import models, transaction
from django.db.models import Count, QuerySet
from django.http import Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from limits import parse_many

from clients.models import Client
from onboarding.admin import ReadOnlyInline

from .audit import audit_record
from .catalogue import MAX_DOCUMENT_BYTES, SCOPE_TOKEN, api_import_openapi
from .errors import DomainError
from .models import ApiResource, AuditEvent, Endpoint, NetworkZone, RateLimitTier, Scope, SigningKey


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


# RFC 6749 §3.3 scope-token (authserver.catalogue, shared with the OpenAPI import).
_SCOPE_TOKEN = SCOPE_TOKEN


def _audit_value(value: Any) -> Any:
    """A form value as the audit log keeps it: rows by name, sets of rows as lists of names."""
    if isinstance(value, QuerySet | list | tuple | set):
        return [_audit_value(item) for item in value]
    if isinstance(value, models.Model):
        return str(value)
    return value


def audited_changes(form: forms.BaseForm, aliases: dict[str, str] | None = None) -> dict[str, Any]:
    """The fields an admin form changed, with their new values, under their audit names.

    audit_record drops keys that look like secrets ("token", ...); fields that only look
    like one (token_format) are recorded under an alias instead of being lost.
    """
    aliases = aliases or {}
    return {aliases.get(name, name): _audit_value(form.cleaned_data.get(name)) for name in form.changed_data}


class AuditedAdmin(admin.ModelAdmin):
    """Every create, change and delete through the admin is audited (``<event>.created`` ...)."""

    audit_event = ""
    audit_aliases: dict[str, str] = {}

    def audit_organisation(self, obj: Any) -> Any:
        return None

    def audit(self, request: HttpRequest, action: str, obj: Any, data: dict[str, Any] | None = None) -> None:
        audit_record(
            f"{self.audit_event}.{action}",
            actor=request.user,
            target=obj,
            organisation=self.audit_organisation(obj),
            data={"name": str(obj), **(data or {})},
        )

    def save_model(self, request: HttpRequest, obj: Any, form: forms.ModelForm, change: bool) -> None:
        super().save_model(request, obj, form, change)
        changes = audited_changes(form, self.audit_aliases)
        self.audit(request, "changed" if change else "created", obj, {"changed": changes})

    def delete_model(self, request: HttpRequest, obj: Any) -> None:
        self.audit(request, "deleted", obj)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> None:
        with transaction.atomic():  # the change list's delete action is not atomic by itself
            for obj in queryset:
                self.audit(request, "deleted", obj)
            super().delete_queryset(request, queryset)


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
            "api",
            "allowed_zones",
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
class ScopeAdmin(AuditedAdmin):
    """The scope catalogue the registration and issuance policies read; every change is audited."""

    form = ScopeForm
    audit_event = "scope"
    list_display = (
        "name",
        "api",
        "risk_level",
        "min_trust_level",
        "open_registration",
        "requires_approval",
        "updated_at",
    )
    list_filter = ("api", "risk_level", "min_trust_level", "open_registration", "requires_approval")
    list_select_related = ("api",)
    search_fields = ("name", "description")
    filter_horizontal = ("allowed_zones",)

    def audit_organisation(self, obj: Scope) -> Any:
        return obj.api.owner if obj.api is not None else None


# --- APIs and their endpoints ----------------------------------------------------------------


class ApiResourceForm(forms.ModelForm):
    documentation_url = forms.URLField(
        label="Documentation URL", max_length=2048, required=False, assume_scheme="https"
    )

    class Meta:
        model = ApiResource
        fields = (
            "name",
            "slug",
            "description",
            "audience",
            "owner",
            "token_format",
            "access_token_lifetime",
            "documentation_url",
            "introspectors",
            "published",
        )

    def clean_audience(self) -> str:
        """RFC 8707 §2: an absolute URI without a fragment; https (http only while DEBUG)."""
        value = (self.cleaned_data.get("audience") or "").strip()
        schemes = ["https", "http"] if settings.DEBUG else ["https"]
        message = (
            "Give the API's resource indicator as an absolute https URI without a fragment, "
            "like https://api.example.org/orders (RFC 8707 §2)."
        )
        try:
            URLValidator(schemes=schemes)(value)
        except ValidationError:
            raise ValidationError(message, code="invalid_audience") from None
        if "#" in value:
            raise ValidationError(message, code="invalid_audience")
        return value

    def clean_access_token_lifetime(self) -> int | None:
        value = self.cleaned_data.get("access_token_lifetime")
        if value is not None and value < 60:
            raise ValidationError("An access token lives at least 60 seconds; leave it empty for the server's.")
        return value


class EndpointInline(ReadOnlyInline):
    """The API's endpoints as a list; they change through the OpenAPI import or their own page."""

    model = Endpoint
    fields = ("method", "path", "summary", "scopes")
    readonly_fields = fields
    show_change_link = True

    def get_queryset(self, request: HttpRequest) -> QuerySet[Endpoint]:
        return super().get_queryset(request).prefetch_related("required_scopes")

    @admin.display(description="scopes needed")
    def scopes(self, obj: Endpoint) -> str:
        return ", ".join(scope.name for scope in obj.required_scopes.all()) or "—"


class OpenApiImportForm(forms.Form):
    document = forms.FileField(
        label="OpenAPI document",
        help_text="OpenAPI 3.0 or 3.1, JSON or YAML. Its operations become the API's endpoints; "
        "their security requirements, the scopes each needs.",
        error_messages={"required": "Choose the OpenAPI document to import."},
    )
    claim_scopes = forms.BooleanField(
        label="Claim catalogue scopes of no API for this API",
        required=False,
        help_text="Tokens that carry such a scope are then for this API. Without it, the import is refused "
        "when the document names one.",
    )

    def clean_document(self) -> bytes:
        upload = self.cleaned_data["document"]
        if upload.size > MAX_DOCUMENT_BYTES:
            raise ValidationError(f"The document is larger than {MAX_DOCUMENT_BYTES // (1024 * 1024)} MB.")
        return upload.read()


@admin.register(ApiResource)
class ApiResourceAdmin(AuditedAdmin):
    form = ApiResourceForm
    audit_event = "api"
    audit_aliases = {"token_format": "format", "access_token_lifetime": "access_lifetime_seconds"}
    change_form_template = "catalogue/admin/apiresource_change_form.html"
    import_template = "catalogue/admin/import_openapi.html"
    list_display = ("name", "slug", "audience", "owner", "token_format", "published", "updated_at")
    list_filter = ("published", "token_format")
    list_select_related = ("owner",)
    search_fields = ("name", "slug", "audience", "owner__name")
    prepopulated_fields = {"slug": ("name",)}
    filter_horizontal = ("introspectors",)
    inlines = [EndpointInline]
    actions = ["import_openapi"]

    def audit_organisation(self, obj: ApiResource) -> Any:
        return obj.owner

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "introspectors":
            # OAUTH-NL: resource servers introspect with credentials of their own.
            kwargs["queryset"] = Client.objects.filter(is_resource_server=True).order_by("name")
            kwargs["help_text"] = "Resource-server clients only: they may introspect tokens for this API."
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def get_urls(self) -> list[URLPattern]:
        info = f"{self.opts.app_label}_{self.opts.model_name}"
        custom = [
            path(
                "<path:object_id>/import-openapi/",
                self.admin_site.admin_view(self.import_openapi_view),
                name=f"{info}_import_openapi",
            )
        ]
        return custom + super().get_urls()  # before the "<path:object_id>/" catch-all

    def import_url(self, api: ApiResource) -> str:
        return reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_import_openapi", args=[api.pk])

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        api = self.get_object(request, unquote(object_id))
        context = dict(extra_context or {})
        if api is not None and self.has_change_permission(request, api):
            context["import_openapi_url"] = self.import_url(api)
        return super().change_view(request, object_id, form_url, extra_context=context)

    @admin.action(description="Import an OpenAPI document into the selected API", permissions=["change"])
    def import_openapi(self, request: HttpRequest, queryset: QuerySet[ApiResource]) -> HttpResponse | None:
        apis = list(queryset[:2])
        if len(apis) != 1:
            self.message_user(request, "Select exactly one API to import a document into.", messages.ERROR)
            return None
        return HttpResponseRedirect(self.import_url(apis[0]))

    def import_openapi_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Upload an OpenAPI document; bad documents are form errors and store nothing."""
        if request.method not in ("GET", "HEAD", "POST"):
            return HttpResponseNotAllowed(["GET", "POST"])
        api = self.get_object(request, unquote(object_id))
        if api is None:
            raise Http404("No such API.")
        if not self.has_change_permission(request, api):
            raise PermissionDenied
        change_url = reverse(f"admin:{self.opts.app_label}_{self.opts.model_name}_change", args=[api.pk])
        form = OpenApiImportForm(request.POST, request.FILES) if request.method == "POST" else OpenApiImportForm()
        if request.method == "POST" and form.is_valid():
            try:
                result = api_import_openapi(
                    api=api,
                    document=form.cleaned_data["document"],
                    actor=request.user,
                    claim_scopes=form.cleaned_data["claim_scopes"],
                )
            except DomainError as exc:
                form.add_error("document", f"Nothing was imported: {exc}")
            else:
                self.message_user(request, f"Imported into {api.name}: {result.summary()}", messages.SUCCESS)
                return HttpResponseRedirect(change_url)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Import an OpenAPI document into {api.name}",
            "opts": self.opts,
            "original": api,
            "form": form,
            "cancel_url": change_url,
            "endpoint_count": api.endpoints.count(),
        }
        return TemplateResponse(request, self.import_template, context)


class EndpointForm(forms.ModelForm):
    class Meta:
        model = Endpoint
        fields = ("api", "method", "path", "summary", "required_scopes")

    def clean_path(self) -> str:
        value = (self.cleaned_data.get("path") or "").strip()
        if not value.startswith("/") or any(char.isspace() for char in value):
            raise ValidationError(
                "A path starts with a slash and has no spaces, as in the OpenAPI document: /orders/{id}"
            )
        return value

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        api, scopes = cleaned.get("api"), cleaned.get("required_scopes")
        if api is not None and scopes:
            foreign = [f"{scope.name} (of {scope.api})" for scope in scopes if scope.api_id not in (None, api.pk)]
            if foreign:
                self.add_error(
                    "required_scopes",
                    f"Scopes of another API: {', '.join(foreign)}. A token for {api} cannot carry them.",
                )
        return cleaned


@admin.register(Endpoint)
class EndpointAdmin(AuditedAdmin):
    form = EndpointForm
    audit_event = "api.endpoint"
    list_display = ("api", "method", "path", "summary", "scopes")
    list_filter = ("api", "method")
    list_select_related = ("api",)
    search_fields = ("path", "summary", "api__name")
    filter_horizontal = ("required_scopes",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Endpoint]:
        return super().get_queryset(request).prefetch_related("required_scopes")

    def audit_organisation(self, obj: Endpoint) -> Any:
        return obj.api.owner

    @admin.display(description="scopes needed")
    def scopes(self, obj: Endpoint) -> str:
        return ", ".join(scope.name for scope in obj.required_scopes.all()) or "—"


# --- Network zones and rate-limit tiers ------------------------------------------------------


class ClientChoiceField(forms.ModelMultipleChoiceField):
    def label_from_instance(self, obj: Any) -> str:
        return f"{obj.name} ({obj.client_id}, {obj.get_environment_display().lower()})"


class NetworkZoneForm(forms.ModelForm):
    cidrs = forms.CharField(
        label="Networks",
        widget=forms.Textarea(attrs={"rows": 4}),
        help_text="One network per line in CIDR notation: 192.0.2.0/24, 2001:db8::/32. "
        "An address alone is one host. Stored normalised (192.0.2.7/24 becomes 192.0.2.0/24).",
        error_messages={"required": "Give at least one network: a zone without one contains no address."},
    )
    clients = ClientChoiceField(
        queryset=Client.objects.order_by("name"),
        required=False,
        widget=FilteredSelectMultiple("clients", is_stacked=False),
        help_text="Clients of the zone's environment. A client bound to zones gets tokens only from their networks.",
    )

    class Meta:
        model = NetworkZone
        fields = ("name", "description", "environment", "cidrs", "clients")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if self.instance.pk is not None and not self.is_bound:
            self.initial["cidrs"] = "\n".join(self.instance.cidrs or [])

    def clean_cidrs(self) -> list[str]:
        entries = [entry for entry in re.split(r"[\s,]+", self.cleaned_data.get("cidrs") or "") if entry]
        networks: list[str] = []
        bad: list[str] = []
        for entry in entries:
            try:
                network = str(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                bad.append(entry)
                continue
            if network not in networks:
                networks.append(network)
        if bad:
            raise ValidationError(
                "Not a network in CIDR notation: %(bad)s. Write it like 192.0.2.0/24 or 2001:db8::/32.",
                code="invalid_cidr",
                params={"bad": ", ".join(bad)},
            )
        if not networks:
            raise ValidationError("Give at least one network: a zone without one contains no address.")
        return networks

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        environment, clients = cleaned.get("environment"), cleaned.get("clients")
        if environment and clients:
            others = [
                f"{c.name} ({c.get_environment_display().lower()})" for c in clients if c.environment != environment
            ]
            if others:
                self.add_error(
                    "clients",
                    f"Only clients of the zone's environment ({environment}) may be bound to it: {', '.join(others)}.",
                )
        return cleaned


@admin.register(NetworkZone)
class NetworkZoneAdmin(AuditedAdmin):
    form = NetworkZoneForm
    audit_event = "network_zone"
    list_display = ("name", "environment", "networks", "updated_at")
    list_filter = ("environment",)
    search_fields = ("name", "description")

    @admin.display(description="networks")
    def networks(self, obj: NetworkZone) -> str:
        return ", ".join(obj.cidrs or []) or "—"


def clean_rate(value: str, *, required: bool = True) -> str:
    """A rate in the ``limits`` notation ("600/minute", "10/second;1000/hour"); a form error otherwise."""
    value = (value or "").strip()
    if not value and not required:
        return ""
    try:
        items = parse_many(value)
    except ValueError:
        items = []
    if not items:
        raise ValidationError(
            "Not a rate: %(value)s. Write it like 600/minute, 10 per second or 100/minute;5000/day.",
            code="invalid_rate",
            params={"value": value or "(empty)"},
        )
    if any(item.amount < 1 for item in items):
        raise ValidationError("A rate allows at least 1 request per at least 1 unit of time.", code="invalid_rate")
    return value


class RateLimitTierForm(forms.ModelForm):
    clients = ClientChoiceField(
        queryset=Client.objects.order_by("name"),
        required=False,
        widget=FilteredSelectMultiple("clients", is_stacked=False),
        help_text="A tier on a client wins over one on its organisation.",
    )

    class Meta:
        model = RateLimitTier
        fields = (
            "name",
            "description",
            "token_rate",
            "introspection_rate",
            "organisation_token_rate",
            "clients",
            "organisations",
        )

    def clean_token_rate(self) -> str:
        return clean_rate(self.cleaned_data.get("token_rate", ""))

    def clean_introspection_rate(self) -> str:
        return clean_rate(self.cleaned_data.get("introspection_rate", ""))

    def clean_organisation_token_rate(self) -> str:
        return clean_rate(self.cleaned_data.get("organisation_token_rate", ""), required=False)


@admin.register(RateLimitTier)
class RateLimitTierAdmin(AuditedAdmin):
    form = RateLimitTierForm
    audit_event = "rate_limit_tier"
    audit_aliases = {
        "token_rate": "issuance_rate",
        "introspection_rate": "introspection_rate",
        "organisation_token_rate": "organisation_issuance_rate",
    }
    list_display = ("name", "token_rate", "introspection_rate", "organisation_token_rate", "assigned")
    search_fields = ("name", "description")
    filter_horizontal = ("organisations",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[RateLimitTier]:
        counts = {
            "client_count": Count("clients", distinct=True),
            "organisation_count": Count("organisations", distinct=True),
        }
        return super().get_queryset(request).annotate(**counts)

    @admin.display(description="assigned to")
    def assigned(self, obj: RateLimitTier) -> str:
        clients = getattr(obj, "client_count", None)
        organisations = getattr(obj, "organisation_count", None)
        if clients is None or organisations is None:
            clients, organisations = obj.clients.count(), obj.organisations.count()
        return f"{clients} clients, {organisations} organisations"
