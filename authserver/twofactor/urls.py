from django.urls import path

from . import views

urlpatterns = [
    path("", views.overview, name="two-factor"),
    path("setup/", views.setup, name="two-factor-setup"),
    path("backup-codes/", views.backup_codes, name="two-factor-backup-codes"),
]
