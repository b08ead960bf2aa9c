"""Admin fixtures: staff with and without a confirmed OTP device, sessions verified by it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from django.test import Client
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from onboarding import services
from onboarding.models import Evidence, KycApplication, Organisation
from tests.factories import UserFactory
from tests.onboarding.certificates import OIN, ORGANISATION_NAME, make_leaf


def current_totp(device: TOTPDevice) -> str:
    """The code an authenticator app would show now for this device."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):0{device.digits}d}"


def make_staff(**kwargs):
    kwargs.setdefault("is_staff", True)
    kwargs.setdefault("is_superuser", True)
    return UserFactory(**kwargs)


def verified_client(user) -> Client:
    """A browser signed in as ``user`` whose session a confirmed TOTP device verified."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="Authenticator app", confirmed=True
    )
    browser = Client()
    browser.force_login(user)
    session = browser.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return browser


@pytest.fixture
def staff(db):
    """A superuser with no OTP device yet."""
    return make_staff()


@pytest.fixture
def staff_device(staff) -> TOTPDevice:
    return TOTPDevice.objects.create(user=staff, name="Authenticator app", confirmed=True)


@pytest.fixture
def admin_browser(staff, staff_device) -> Client:
    return verified_client(staff)


@pytest.fixture
def second_admin(db):
    return make_staff()


@pytest.fixture
def second_admin_browser(second_admin) -> Client:
    return verified_client(second_admin)


@dataclass
class Applicant:
    organisation: Organisation
    owner: object
    application: KycApplication


def submitted_application(
    *,
    name: str = ORGANISATION_NAME,
    oin: str = OIN,
    certificate_name: str | None = None,
    trust_level: str = Organisation.TrustLevel.SUBSTANTIAL,
) -> Applicant:
    """A government organisation that applied through the services with a PKIoverheid-like certificate."""
    owner = UserFactory()
    organisation = services.organisation_create(
        name=name, kind=Organisation.Kind.GOVERNMENT, oin=oin, contact_email="info@example.org", owner=owner
    )
    application = services.kyc_application_create(
        organisation_id=organisation.pk, actor=owner, requested_trust_level=trust_level
    )
    certificate = make_leaf(oin=oin, organisation=certificate_name or name, key="p256")
    services.evidence_attach(
        application_id=application.pk,
        kind=Evidence.Kind.CERTIFICATE,
        filename="organisation.pem",
        content=certificate.pem,
        content_type="application/x-pem-file",
        actor=owner,
    )
    application = services.kyc_application_submit(application_id=application.pk, actor=owner)
    return Applicant(organisation=organisation, owner=owner, application=application)


@pytest.fixture
def applicant(db) -> Applicant:
    return submitted_application()
