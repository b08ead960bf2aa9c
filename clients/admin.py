from django.contrib import admin

from .models import ClientCredential


class ClientCredentialInline(admin.TabularInline):
    model = ClientCredential
    extra = 0
    fields = ("kind", "status", "hint", "kid", "created_at", "expires_at", "revoked_at", "last_used_at")
    readonly_fields = fields
    can_delete = False

    def has_add_permission(self, request, obj=None):
        return False


class ClientAdmin(admin.ModelAdmin):
    """Registered by django-oauth-toolkit (OAUTH2_PROVIDER["APPLICATION_ADMIN_CLASS"])."""

    list_display = ("client_id", "name", "organisation", "authorization_grant_type", "status", "environment")
    list_filter = ("status", "authorization_grant_type", "registration_mode", "environment")
    search_fields = ("client_id", "name", "organisation__name")
    readonly_fields = ("client_id", "status", "created", "updated")
    exclude = ("client_secret", "hash_client_secret", "user", "cimd_expires_at")
    inlines = [ClientCredentialInline]
