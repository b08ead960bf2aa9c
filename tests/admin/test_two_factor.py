"""The admin requires 2FA (django-otp): enrolment, login with password + TOTP, backup codes."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django_otp.plugins.otp_static.models import StaticDevice, StaticToken
from django_otp.plugins.otp_totp.models import TOTPDevice

from authserver.audit import AuditEvent
from authserver.twofactor.site import OTPRequiredAdminSite
from onboarding.models import KycApplication
from tests.factories import PASSWORD, OrganisationFactory, UserFactory

from .conftest import current_totp

SETUP_URL = "/accounts/2fa/setup/"


def admin_urls(application_pk: int, organisation_pk: int, user_pk: int) -> list[str]:
    """Every kind of admin page: index, app lists, each model's list and add page, change pages,
    the password change, the review queue's own views."""
    urls = [reverse("admin:index"), reverse("admin:password_change"), "/admin/no-such-page/"]
    app_labels = set()
    for model in admin.site._registry:
        opts = model._meta
        app_labels.add(opts.app_label)
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_changelist"))
        urls.append(reverse(f"admin:{opts.app_label}_{opts.model_name}_add"))
    urls += [reverse("admin:app_list", args=[label]) for label in sorted(app_labels)]
    urls += [
        reverse("admin:onboarding_kycapplication_change", args=[application_pk]),
        reverse("admin:onboarding_organisation_change", args=[organisation_pk]),
        reverse("admin:onboarding_user_change", args=[user_pk]),
        reverse("admin:onboarding_kycapplication_evidence", args=[application_pk, 1]),
    ]
    return urls


def test_the_default_admin_site_is_otp_only_and_keeps_every_registration():
    assert isinstance(admin.site._wrapped if hasattr(admin.site, "_wrapped") else admin.site, OTPRequiredAdminSite)
    assert admin.site.name == "admin"
    labels = {model._meta.label for model in admin.site._registry}
    # Ours, django-oauth-toolkit's Client admin (APPLICATION_ADMIN_CLASS) and django-otp's devices.
    assert {
        "onboarding.User",
        "onboarding.Organisation",
        "onboarding.KycApplication",
        "clients.Client",
        "oauth2_provider.AccessToken",
        "authserver.AuditEvent",
        "authserver.SigningKey",
        "otp_totp.TOTPDevice",
        "otp_static.StaticDevice",
    } <= labels
    from clients.admin import ClientAdmin
    from clients.models import Client

    assert type(admin.site._registry[Client]) is ClientAdmin


def test_staff_without_a_device_is_sent_to_enrolment_from_every_admin_url(client, staff):
    organisation = OrganisationFactory()
    application = KycApplication.objects.create(organisation=organisation, status=KycApplication.Status.SUBMITTED)
    client.force_login(staff)
    urls = admin_urls(application.pk, organisation.pk, staff.pk)
    assert len(urls) > 30
    for url in urls:
        response = client.get(url)
        assert response.status_code == 302, url
        final = client.get(url, follow=True)
        assert final.redirect_chain[-1][0].startswith(SETUP_URL), (url, final.redirect_chain)
        assert final.status_code == 200
        assert "Set up two-factor authentication" in final.content.decode()


def test_staff_without_a_device_cannot_post_a_decision(client, staff):
    application = KycApplication.objects.create(
        organisation=OrganisationFactory(), status=KycApplication.Status.SUBMITTED
    )
    client.force_login(staff)
    for view in ("start_review", "approve", "reject", "request_changes"):
        response = client.post(
            reverse(f"admin:onboarding_kycapplication_{view}", args=[application.pk]), {"reason": "x"}
        )
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    application.refresh_from_db()
    assert application.status == KycApplication.Status.SUBMITTED
    assert application.reviewer is None


def test_unverified_staff_with_a_device_gets_the_otp_login_not_the_admin(client, staff, staff_device):
    client.force_login(staff)  # password only: the session is not verified by the device
    response = client.get(reverse("admin:index"), follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("admin:login"))
    assert "otp_token" in response.content.decode()
    assert "Site administration" not in response.content.decode()


def test_anonymous_and_non_staff_users_are_refused(client, db):
    assert client.get(reverse("admin:index"))["Location"].startswith(reverse("admin:login"))
    client.force_login(UserFactory())
    response = client.get(reverse("admin:index"), follow=True)
    assert response.redirect_chain[-1][0].startswith(reverse("admin:login"))
    assert "not authorized" in response.content.decode()
    # Enrolment is for staff.
    assert client.get(SETUP_URL).status_code == 403
    assert not TOTPDevice.objects.exists()


def test_enrolment_end_to_end_with_a_real_totp_token(client, staff):
    client.force_login(staff)
    page = client.get(reverse("admin:index"), follow=True)
    assert page.redirect_chain[-1][0].startswith(SETUP_URL)
    html = page.content.decode()
    assert '<svg role="img"' in html  # the QR code, inline
    device = TOTPDevice.objects.get(user=staff)
    assert not device.confirmed
    assert page.context["secret"].replace(" ", "") in html.replace(" ", "")
    assert "otpauth://" not in html  # the secret is in the QR code and the text, no URL leaked around
    # Reloading the page reuses the pending device rather than piling up new ones.
    client.get(SETUP_URL)
    assert TOTPDevice.objects.filter(user=staff).count() == 1

    response = client.post(SETUP_URL, {"token": current_totp(device), "next": "/admin/"})
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/2fa/backup-codes/")
    device.refresh_from_db()
    assert device.confirmed

    codes_page = client.get(response["Location"])
    codes = codes_page.context["codes"]
    assert len(codes) == 10
    stored = set(StaticToken.objects.filter(device__user=staff).values_list("token", flat=True))
    assert stored == set(codes)
    assert all(code in codes_page.content.decode() for code in codes)
    # Shown once.
    again = client.get("/accounts/2fa/backup-codes/")
    assert again.context["codes"] is None
    assert codes[0] not in again.content.decode()

    # The session is verified now: the admin opens.
    index = client.get(reverse("admin:index"))
    assert index.status_code == 200
    assert "Site administration" in index.content.decode() or "Administration" in index.content.decode()
    events = set(AuditEvent.objects.filter(actor_user=staff).values_list("event", flat=True))
    assert {"otp.device.confirmed", "otp.backup_codes.issued"} <= events


def test_enrolment_refuses_a_wrong_token_and_throttles_guessing(client, staff):
    client.force_login(staff)
    client.get(SETUP_URL)
    device = TOTPDevice.objects.get(user=staff)
    right = current_totp(device)
    wrong = f"{(int(right) + 1) % 1_000_000:06d}"

    response = client.post(SETUP_URL, {"token": wrong})
    assert response.status_code == 200
    assert "not right" in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed
    assert device.throttling_failure_count == 1

    # Right away, even the right code is refused: django-otp's throttling is on.
    response = client.post(SETUP_URL, {"token": right})
    assert "Too many wrong codes" in response.content.decode()
    device.refresh_from_db()
    assert not device.confirmed

    # Not a 6-digit code at all: a field error, no verification attempt.
    response = client.post(SETUP_URL, {"token": "12ab"})
    assert "6-digit" in response.content.decode()

    with time_machine.travel(timezone.now() + timedelta(seconds=90), tick=False):
        response = client.post(SETUP_URL, {"token": current_totp(device)})
    assert response.status_code == 302
    device.refresh_from_db()
    assert device.confirmed


def test_staff_with_a_device_cannot_enrol_another_without_verifying(client, staff, staff_device):
    """A stolen password alone must not add the thief's authenticator."""
    client.force_login(staff)
    for url in (SETUP_URL, "/accounts/2fa/", "/accounts/2fa/backup-codes/"):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("admin:login"))
    response = client.post("/accounts/2fa/backup-codes/")
    assert response["Location"].startswith(reverse("admin:login"))
    assert TOTPDevice.objects.filter(user=staff).count() == 1
    assert not StaticDevice.objects.filter(user=staff).exists()


def test_enrolment_needs_login(client, db):
    response = client.get(SETUP_URL)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def login_form(user, device, token):
    return {
        "username": user.username,
        "password": PASSWORD,
        "otp_device": device.persistent_id,
        "otp_token": token,
        "next": "/admin/",
    }


def test_login_with_password_and_totp_reaches_the_admin(client, staff, staff_device):
    response = client.post(reverse("admin:login"), login_form(staff, staff_device, current_totp(staff_device)))
    assert response.status_code == 302, response.content.decode()
    assert response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get(reverse("admin:authserver_auditevent_changelist")).status_code == 200


def test_login_with_password_only_or_a_wrong_token_is_refused(client, staff, staff_device):
    response = client.post(reverse("admin:login"), {"username": staff.username, "password": PASSWORD})
    assert response.status_code == 200
    assert "Please enter your OTP token" in response.content.decode()
    right = current_totp(staff_device)
    response = client.post(
        reverse("admin:login"), login_form(staff, staff_device, f"{(int(right) + 1) % 1_000_000:06d}")
    )
    assert response.status_code == 200
    assert "Invalid token" in response.content.decode()
    staff_device.refresh_from_db()
    assert staff_device.throttling_failure_count == 1
    assert client.get("/admin/").status_code == 302


def test_login_without_any_device_points_to_enrolment(client, staff):
    response = client.post(reverse("admin:login"), {"username": staff.username, "password": PASSWORD, "otp_token": "1"})
    assert response.status_code == 200
    assert "no two-factor device yet" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_static_backup_code_works_once(client, staff, staff_device):
    backup = StaticDevice.objects.create(user=staff, name="Backup codes", confirmed=True)
    backup.token_set.create(token="k7sm2qpa")
    backup.token_set.create(token="zz4q2w7e")

    response = client.post(reverse("admin:login"), login_form(staff, backup, "k7sm2qpa"))
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    assert list(backup.token_set.values_list("token", flat=True)) == ["zz4q2w7e"]

    client.logout()
    with time_machine.travel(timezone.now() + timedelta(minutes=5), tick=False):
        response = client.post(reverse("admin:login"), login_form(staff, backup, "k7sm2qpa"))
    assert response.status_code == 200
    assert "Invalid token" in response.content.decode()
    assert client.get("/admin/").status_code == 302


def test_a_verified_admin_can_make_new_backup_codes(staff, staff_device):
    from .conftest import verified_client

    browser = verified_client(staff)
    response = browser.post("/accounts/2fa/backup-codes/", {"next": "/admin/"})
    assert response.status_code == 302
    codes = browser.get(response["Location"]).context["codes"]
    assert len(codes) == 10
    overview = browser.get("/accounts/2fa/")
    assert overview.status_code == 200
    assert "10 unused backup codes left" in overview.content.decode()


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x"])
def test_enrolment_never_redirects_off_site(client, staff, target):
    client.force_login(staff)
    client.get(SETUP_URL)
    device = TOTPDevice.objects.get(user=staff)
    response = client.post(SETUP_URL, {"token": current_totp(device), "next": target})
    assert "evil.example" not in response["Location"]


def test_login_in_one_step_picks_the_device_the_code_fits(client, staff, staff_device):
    backup = StaticDevice.objects.create(user=staff, name="Backup codes", confirmed=True)
    backup.token_set.create(token="k7sm2qpa")
    form = {
        "username": staff.username,
        "password": PASSWORD,
        "otp_token": current_totp(staff_device),
        "next": "/admin/",
    }
    response = client.post(reverse("admin:login"), form)
    assert response.status_code == 302
    assert client.get("/admin/").status_code == 200
    backup.refresh_from_db()
    assert backup.throttling_failure_count == 0  # the backup codes were not tried

    client.logout()
    response = client.post(reverse("admin:login"), {**form, "otp_token": "k7sm2qpa"})
    assert response.status_code == 302
    assert not backup.token_set.exists()
    staff_device.refresh_from_db()
    assert staff_device.throttling_failure_count == 0


def test_login_page_explains_the_code_and_links_to_enrolment(client, db):
    html = client.get(reverse("admin:login")).content.decode()
    assert "Code from your authenticator app, or a backup code" in html
    assert "/accounts/2fa/" in html
