"""Sign-up, email verification and a fresh verification link (onboarding/accounts.py does the work)."""

from __future__ import annotations

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods

from .. import accounts
from ..forms import ResendVerificationForm, SignUpForm
from .access import add_service_error, form_status

VERIFICATION_SESSION_KEY = "_account_verification_token"


def safe_next(request: HttpRequest, value: str | None) -> str:
    """``next`` only if it stays on this site (no open redirect); the OAuth authorize URL qualifies."""
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return ""


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.user.is_authenticated:
        return redirect(next_url or settings.LOGIN_REDIRECT_URL)
    form = SignUpForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        try:
            accounts.user_sign_up(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                next_url=next_url,
            )
        except ValidationError as error:
            add_service_error(form, error)
        else:
            # The same page whether or not the address was registered already.
            return redirect("accounts-signup-done")
    return render(request, "registration/signup.html", {"form": form, "next": next_url}, status=form_status(form))


def signup_done(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/signup_done.html", {"hours": settings.ACCOUNT_VERIFICATION_MAX_AGE_HOURS})


def _with_next(url: str, next_url: str) -> str:
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


@require_GET
def verify(request: HttpRequest, token: str) -> HttpResponse:
    """The emailed link: keep its token in the session and continue at a URL without it.

    As Django's password reset does: the token leaves the address bar, later access logs and
    Referer headers.
    """
    request.session[VERIFICATION_SESSION_KEY] = token
    next_url = safe_next(request, request.GET.get("next"))
    return redirect(_with_next(reverse("accounts-verify-confirm"), next_url))


@require_http_methods(["GET", "POST"])
def verify_confirm(request: HttpRequest) -> HttpResponse:
    """GET asks for a click, POST verifies: mail scanners that follow links must not use up the link."""
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    token = str(request.session.get(VERIFICATION_SESSION_KEY, ""))
    try:
        if request.method == "GET":
            account = accounts.user_for_verification_token(token)
            return render(request, "registration/verify.html", {"account": account, "next": next_url})
        accounts.user_verify_email(token=token)
    except accounts.VerificationFailed:
        return render(request, "registration/verify_invalid.html", status=400)
    request.session.pop(VERIFICATION_SESSION_KEY, None)
    # No sign-in by link: whoever holds the link still needs the password.
    messages.success(request, "Your email address is confirmed. Sign in to continue.")
    return redirect(_with_next(reverse("login"), next_url))


@require_http_methods(["GET", "POST"])
def resend_verification(request: HttpRequest) -> HttpResponse:
    form = ResendVerificationForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        accounts.user_resend_verification(email=form.cleaned_data["email"])
        return redirect("accounts-signup-done")
    return render(request, "registration/resend_verification.html", {"form": form}, status=form_status(form))
