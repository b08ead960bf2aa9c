from django.contrib import admin

from .models import AuditEvent, SigningKey


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
