"""The admin site: django-otp's OTPAdminSite, reachable only with a verified session."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib.auth import REDIRECT_FIELD_NAME
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django_otp.admin import OTPAdminAuthenticationForm, OTPAdminSite
from django_otp.models import Device
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from .devices import has_confirmed_device, is_verified


class OTPLoginForm(OTPAdminAuthenticationForm):
    """Password and a code, in one step: a 6-digit code is checked against the user's
    authenticator app, anything else against their backup codes.

    django-otp asks for an explicit device rather than trying the code on every device (a miss
    would count as a failure on each). Picking the one device the code's shape fits keeps that
    property; with several authenticator apps the user chooses from the list as before.
    """

    def confirm_login_allowed(self, user: Any) -> None:
        super().confirm_login_allowed(user)
        if not has_confirmed_device(user):
            raise ValidationError(
                "This account has no two-factor device yet. Sign in at /accounts/login/ and set one up "
                "at /accounts/2fa/ first.",
                code="no_device",
            )

    def _chosen_device(self, user: Any) -> Device | None:
        device = super()._chosen_device(user)
        if device is not None or self.cleaned_data.get("otp_device"):
            return device
        token = (self.cleaned_data.get("otp_token") or "").strip()
        model: type[Device] = TOTPDevice if token.isdigit() and len(token) in (6, 8) else StaticDevice
        candidates = list(model.objects.select_for_update().filter(user=user, confirmed=True)[:2])
        return candidates[0] if len(candidates) == 1 else None


class OTPRequiredAdminSite(OTPAdminSite):
    """Staff reach the admin only with a session verified by a confirmed OTP device.

    OTPAdminSite.has_permission adds ``request.user.is_verified()`` to the staff check, so
    every admin view (they all go through ``admin_view``) sends an unverified user to the login
    page; a signed-in staff user without any confirmed device is sent on to enrolment.
    """

    site_header = "authserver administration"
    site_title = "authserver admin"
    index_title = "Administration"
    login_form = OTPLoginForm
    login_template = "admin/otp_login.html"

    def __init__(self, name: str = "admin") -> None:
        # Keep the "admin" namespace: reverse("admin:...") is used throughout.
        super().__init__(name)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        user = request.user
        if user.is_active and user.is_staff and not is_verified(user) and not has_confirmed_device(user):
            target = request.GET.get(REDIRECT_FIELD_NAME, "")
            if not url_has_allowed_host_and_scheme(target, {request.get_host()}, request.is_secure()):
                target = reverse("admin:index", current_app=self.name)
            return redirect(f"{reverse('two-factor-setup')}?{urlencode({REDIRECT_FIELD_NAME: target})}")
        return super().login(request, extra_context)
