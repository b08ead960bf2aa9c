"""Sign-up and email verification, mounted at /accounts/ beside Django's login and logout."""

from django.urls import path

from .views import accounts

urlpatterns = [
    path("signup/", accounts.signup, name="accounts-signup"),
    path("signup/done/", accounts.signup_done, name="accounts-signup-done"),
    path("verify/resend/", accounts.resend_verification, name="accounts-verify-resend"),
    path("verify/confirm/", accounts.verify_confirm, name="accounts-verify-confirm"),
    path("verify/<str:token>/", accounts.verify, name="accounts-verify"),
]
