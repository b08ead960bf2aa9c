"""Guessing attacks (RFC 6819 §4.3.2, §5.1.4.2.3, §5.2.3.x; RFC 9700 §4.10): passwords spread over
many addresses, one address spraying many accounts, client secrets at the token endpoint, and
second-factor codes. Each is stopped before a guess can be confirmed, and the right answer
does not get through once the limit is reached."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.urls import reverse
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice

from ..factories import PASSWORD, UserFactory
from ..protocol.test_errors import basic, post_form

pytestmark = pytest.mark.django_db


def sign_in(browser, username: str, password: str, path: str = "/accounts/login/", **extra: Any):
    return browser.post(path, {"username": username, "password": password}, **extra)


def assert_refused_page(response: Any) -> None:
    assert response.status_code == 429, (response.status_code, response.content[:300])
    assert int(response["Retry-After"]) > 0


def test_guessing_one_password_from_many_addresses_is_stopped_per_username(client, user, settings):
    settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_USERNAME = "5/minute"
    settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP = "1000/minute"
    for attempt in range(5):
        response = sign_in(client, user.username, f"guess {attempt}", REMOTE_ADDR=f"198.51.100.{attempt + 1}")
        assert response.status_code == 200
    # The sixth guess, from yet another address and in another spelling, is the right one: refused.
    refused = sign_in(client, f" {user.username.upper()}", PASSWORD, REMOTE_ADDR="198.51.100.99")
    assert_refused_page(refused)
    assert "_auth_user_id" not in client.session
    # A forged X-Forwarded-For from an untrusted peer changes nothing.
    forged = sign_in(client, user.username, PASSWORD, REMOTE_ADDR="198.51.100.100", HTTP_X_FORWARDED_FOR="192.0.2.1")
    assert_refused_page(forged)


def test_an_unknown_username_is_limited_exactly_like_a_known_one(client, user, settings):
    """The limit itself must not tell whether an account exists."""
    settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_USERNAME = "2/minute"
    settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP = "1000/minute"
    statuses = {}
    for username in (user.username, "nobody-by-this-name"):
        statuses[username] = [sign_in(client, username, "wrong").status_code for _ in range(3)]
    assert statuses[user.username] == statuses["nobody-by-this-name"] == [200, 200, 429]


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/"])
def test_spraying_many_accounts_from_one_address_is_stopped_per_address(client, settings, path):
    settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_IP = "4/minute"
    victims = [UserFactory() for _ in range(5)]
    statuses = [sign_in(client, victim.username, "Summer2026!", path=path).status_code for victim in victims]
    assert statuses == [200, 200, 200, 200, 429]
    assert_refused_page(sign_in(client, victims[0].username, PASSWORD, path=path))


def test_guessing_a_client_secret_is_stopped_per_address(client, cc_basic, settings):
    settings.AUTHSERVER_RATE_LIMIT_TOKEN_PER_IP = "5/minute"
    for attempt in range(5):
        response = post_form(
            client, "/oauth/token", {"grant_type": "client_credentials"}, basic(cc_basic.client_id, f"guess-{attempt}")
        )
        assert response.status_code == 401
    right = post_form(
        client, "/oauth/token", {"grant_type": "client_credentials"}, basic(cc_basic.client_id, cc_basic.secret)
    )
    assert right.status_code == 429, right.content
    assert right.json()["error"] == "too_many_requests"
    assert int(right["Retry-After"]) > 0
    assert "access_token" not in right.json()
    # The client itself, calling from its own address, is not locked out by the attacker.
    own = client.post(
        "/oauth/token",
        "grant_type=client_credentials",
        content_type="application/x-www-form-urlencoded",
        HTTP_AUTHORIZATION=basic(cc_basic.client_id, cc_basic.secret),
        REMOTE_ADDR="192.0.2.200",
    )
    assert own.status_code == 200, own.content


def current_code(device: TOTPDevice, shift: int = 0) -> str:
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift) + shift:06d}"[-6:]


def test_guessing_a_second_factor_code_is_throttled(client, settings, time_machine):
    """With the password known (phished), codes are guessed: django-otp's throttling makes each
    failure double the wait, and during the wait even the right code is refused."""
    settings.AUTHSERVER_RATE_LIMIT_LOGIN_PER_USERNAME = "1000/minute"
    time_machine.move_to(timezone.now(), tick=False)
    staff = UserFactory(is_staff=True, is_superuser=True)
    device = TOTPDevice.objects.create(user=staff, name="Authenticator app", confirmed=True)
    login_url = reverse("admin:login")

    def attempt(code: str):
        return client.post(
            login_url,
            {"username": staff.username, "password": PASSWORD, "otp_device": device.persistent_id, "otp_token": code},
        )

    for failures in range(1, 4):
        assert attempt(current_code(device, shift=1)).status_code == 200
        if failures < 3:  # wait out the throttle (1, then 2 seconds): each guess is a real try
            time_machine.shift(timedelta(seconds=2 ** (failures - 1)))
    device.refresh_from_db()
    assert device.throttling_failure_count == 3
    refused = attempt(current_code(device))
    assert refused.status_code == 200
    assert client.get("/admin/").status_code == 302  # not signed in to the admin

    time_machine.shift(timedelta(seconds=2**3 + 1))
    accepted = attempt(current_code(device))
    assert accepted.status_code == 302, accepted.content.decode()[:500]
    assert client.get("/admin/").status_code == 200
