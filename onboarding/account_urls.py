"""Sign-up, email verification and password reset, mounted at /accounts/ beside Django's login and logout."""

from django.contrib.auth import views as auth_views
from django.urls import path, reverse_lazy

from .views import accounts

# Django's password reset: the same answer whether or not the address has an account, a
# single-use expiring link (PASSWORD_RESET_TIMEOUT), and inactive accounts get no mail.
password_reset = [
    path(
        "password-reset/",
        auth_views.PasswordResetView.as_view(
            email_template_name="registration/email/password_reset.txt",
            subject_template_name="registration/email/password_reset_subject.txt",
            success_url=reverse_lazy("password_reset_done"),
        ),
        name="password_reset",
    ),
    path("password-reset/sent/", auth_views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path(
        "password-reset/<uidb64>/<token>/",
        auth_views.PasswordResetConfirmView.as_view(success_url=reverse_lazy("password_reset_complete")),
        name="password_reset_confirm",
    ),
    path("password-reset/done/", auth_views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
]

urlpatterns = [
    path("signup/", accounts.signup, name="accounts-signup"),
    path("signup/done/", accounts.signup_done, name="accounts-signup-done"),
    path("verify/resend/", accounts.resend_verification, name="accounts-verify-resend"),
    path("verify/confirm/", accounts.verify_confirm, name="accounts-verify-confirm"),
    path("verify/<str:token>/", accounts.verify, name="accounts-verify"),
    *password_reset,
]
