"""Enrolment pages at /accounts/2fa/: set up an authenticator app, then keep backup codes."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_http_methods
from django_otp import devices_for_user
from django_otp import login as otp_login
from django_otp.plugins.otp_static.models import StaticDevice

from .devices import (
    backup_codes_issue,
    has_confirmed_device,
    is_verified,
    pending_totp_device,
    totp_device_confirm,
    totp_qr_svg,
    totp_secret,
)
from .forms import TokenForm

# Fresh backup codes wait here between the POST that made them and the one page showing them.
BACKUP_CODES_SESSION_KEY = "twofactor_backup_codes"

View = Callable[..., HttpResponse]


def _next_url(request: HttpRequest) -> str:
    target = request.POST.get(REDIRECT_FIELD_NAME) or request.GET.get(REDIRECT_FIELD_NAME, "")
    if target and url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
        return target
    return reverse("admin:index")


def _with_next(url: str, request: HttpRequest) -> str:
    return f"{url}?{urlencode({REDIRECT_FIELD_NAME: _next_url(request)})}"


def staff_enrolment(view: View) -> View:
    """Signed-in staff only. Once a device is confirmed, changes need a verified session:
    otherwise a stolen password alone could enrol the thief's own authenticator."""

    @wraps(view)
    def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if not request.user.is_staff:
            raise PermissionDenied("Two-factor enrolment is for staff accounts.")
        if has_confirmed_device(request.user) and not is_verified(request.user):
            messages.info(request, "Verify with your authenticator app or a backup code first.")
            login_url = reverse("admin:login")
            return redirect(f"{login_url}?{urlencode({REDIRECT_FIELD_NAME: request.get_full_path()})}")
        return view(request, *args, **kwargs)

    return login_required(never_cache(wrapped))


@staff_enrolment
def overview(request: HttpRequest) -> HttpResponse:
    if not has_confirmed_device(request.user):
        return redirect(_with_next(reverse("two-factor-setup"), request))
    backup = StaticDevice.objects.filter(user=request.user, confirmed=True).first()
    return render(
        request,
        "twofactor/overview.html",
        {
            "devices": [d for d in devices_for_user(request.user) if not isinstance(d, StaticDevice)],
            "backup_codes_left": backup.token_set.count() if backup else 0,
            "next": _next_url(request),
        },
    )


@staff_enrolment
@require_http_methods(["GET", "POST"])
def setup(request: HttpRequest) -> HttpResponse:
    device = pending_totp_device(request.user)
    form = TokenForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        confirmed, reason = totp_device_confirm(
            device_id=device.pk, user=request.user, token=form.cleaned_data["token"]
        )
        if confirmed is not None:
            # The session gains a privilege: give it a new key (as django.contrib.auth.login does).
            request.session.cycle_key()
            otp_login(request, confirmed)
            backup = StaticDevice.objects.filter(user=request.user, confirmed=True).first()
            if backup is None or not backup.token_set.exists():
                request.session[BACKUP_CODES_SESSION_KEY] = backup_codes_issue(user=request.user)
                return redirect(_with_next(reverse("two-factor-backup-codes"), request))
            messages.success(request, "Your authenticator app is set up.")
            return redirect(_next_url(request))
        form.add_error("token", reason)
    return render(
        request,
        "twofactor/setup.html",
        {
            "form": form,
            "qr_svg": totp_qr_svg(device),
            "secret": totp_secret(device),
            "next": _next_url(request),
        },
    )


@staff_enrolment
@require_http_methods(["GET", "POST"])
def backup_codes(request: HttpRequest) -> HttpResponse:
    if not is_verified(request.user):
        return redirect(_with_next(reverse("two-factor-setup"), request))
    if request.method == "POST":
        request.session[BACKUP_CODES_SESSION_KEY] = backup_codes_issue(user=request.user)
        return redirect(_with_next(reverse("two-factor-backup-codes"), request))
    # Shown once: the codes leave the session as they are displayed.
    codes = request.session.pop(BACKUP_CODES_SESSION_KEY, None)
    return render(request, "twofactor/backup_codes.html", {"codes": codes, "next": _next_url(request)})
