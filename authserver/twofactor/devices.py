"""The staff member's OTP devices: a TOTP authenticator app and a set of static backup codes."""

from __future__ import annotations

from typing import Any

import qrcode
import qrcode.image.svg
from django.db import transaction
from django_otp import user_has_device
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from authserver.audit import audit_record

BACKUP_CODE_COUNT = 10
TOTP_DEVICE_NAME = "Authenticator app"
BACKUP_DEVICE_NAME = "Backup codes"


def is_verified(user: Any) -> bool:
    """Whether this request's session was verified by an OTP device (set by OTPMiddleware)."""
    check = getattr(user, "is_verified", None)
    return bool(check and check())


def has_confirmed_device(user: Any) -> bool:
    return bool(user.is_authenticated and user_has_device(user, confirmed=True))


def pending_totp_device(user: Any) -> TOTPDevice:
    """The user's unconfirmed TOTP device, created on first use and reused until confirmed."""
    with transaction.atomic():
        device = TOTPDevice.objects.select_for_update().filter(user=user, confirmed=False).order_by("-id").first()
        if device is None:
            device = TOTPDevice.objects.create(user=user, name=TOTP_DEVICE_NAME, confirmed=False)
    return device


def totp_secret(device: TOTPDevice) -> str:
    """The base32 secret for manual entry, in groups of four for reading aloud."""
    from base64 import b32encode

    secret = b32encode(device.bin_key).decode().rstrip("=")
    return " ".join(secret[i : i + 4] for i in range(0, len(secret), 4))


def totp_qr_svg(device: TOTPDevice) -> str:
    """The device's otpauth:// URI as an inline SVG QR code (no image request, no JS)."""
    image = qrcode.make(device.config_url, image_factory=qrcode.image.svg.SvgPathImage, box_size=8)
    svg = image.to_string(encoding="unicode")
    return str(svg).replace("<svg ", '<svg role="img" aria-label="QR code for your authenticator app" ', 1)


@transaction.atomic
def totp_device_confirm(*, device_id: int, user: Any, token: str) -> tuple[TOTPDevice | None, str]:
    """Confirm the user's pending TOTP device with a token from the app.

    Returns (device, "") on success, else (None, reason). Wrong tokens count towards
    django-otp's throttling, so guessing slows down exponentially.
    """
    device = TOTPDevice.objects.select_for_update().filter(pk=device_id, user=user, confirmed=False).first()
    if device is None:
        return None, "This authenticator was already set up or no longer exists; start again."
    allowed, extra = device.verify_is_allowed()
    if not allowed:
        failures = (extra or {}).get("failure_count", 0)
        return None, f"Too many wrong codes ({failures}); wait a little and try again."
    if not device.verify_token(token):
        return None, "That code is not right. Check the time on your phone and enter the current code."
    device.confirmed = True
    device.save(update_fields=["confirmed"])
    # Other half-finished enrolments (another browser tab) would only confuse later.
    TOTPDevice.objects.filter(user=user, confirmed=False).delete()
    audit_record("otp.device.confirmed", actor=user, target=device, data={"device": "totp"})
    return device, ""


@transaction.atomic
def backup_codes_issue(*, user: Any) -> list[str]:
    """Replace the user's backup codes with ten new single-use codes; returns them once."""
    device, _ = StaticDevice.objects.select_for_update().get_or_create(
        user=user, name=BACKUP_DEVICE_NAME, defaults={"confirmed": True}
    )
    if not device.confirmed:
        device.confirmed = True
        device.save(update_fields=["confirmed"])
    device.token_set.all().delete()
    codes = [StaticToken.random_token() for _ in range(BACKUP_CODE_COUNT)]
    StaticToken.objects.bulk_create([StaticToken(device=device, token=code) for code in codes])
    audit_record("otp.backup_codes.issued", actor=user, target=device, data={"count": len(codes)})
    return codes
