from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from .models import Organisation, User

admin.site.register(User, UserAdmin)


@admin.register(Organisation)
class OrganisationAdmin(admin.ModelAdmin):
    list_display = ("name", "kind", "oin", "kvk_number", "status", "trust_level")
    list_filter = ("status", "kind", "trust_level")
    search_fields = ("name", "oin", "kvk_number")
    readonly_fields = ("status",)
