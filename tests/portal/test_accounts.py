"""Sign-up with email verification, and login (Django's LoginView, ?next= kept for OAuth)."""

from __future__ import annotations

import datetime as dt
import re
from urllib.parse import urlsplit

import pytest
import time_machine
from django.core import mail
from django.test import Client

from authserver.audit import AuditEvent
from onboarding.models import User
from tests.factories import PASSWORD, UserFactory

pytestmark = pytest.mark.django_db

GOOD = {
    "username": "anne",
    "email": "anne@example.org",
    "password1": "a long and unusual passphrase",
    "password2": "a long and unusual passphrase",
}


def sign_up(client: Client, capture, **overrides: str):
    with capture(execute=True):
        return client.post("/accounts/signup/", {**GOOD, **overrides})


def later(*, hours: int):
    return time_machine.travel(dt.datetime.now(dt.UTC) + dt.timedelta(hours=hours))


def open_link(client: Client, link: str) -> str:
    """Follow the emailed link: it keeps the token in the session and sends on to a URL without it."""
    response = client.get(link)
    assert response.status_code == 302
    confirm_url = response["Location"]
    assert confirm_url.startswith("/accounts/verify/confirm/")
    assert link.split("/accounts/verify/")[1].split("/")[0] not in confirm_url, "the token leaves the URL"
    return confirm_url


def verify(client: Client, link: str):
    return client.post(open_link(client, link))


def link_in(message) -> str:
    match = re.search(r"https?://\S+/accounts/verify/\S+", message.body)
    assert match, message.body
    parts = urlsplit(match.group(0))
    return f"{parts.path}?{parts.query}" if parts.query else parts.path


def test_signup_page_is_a_labelled_form_with_csrf(client):
    response = client.get("/accounts/signup/")
    assert response.status_code == 200
    html = response.content.decode()
    assert "csrfmiddlewaretoken" in html
    for field in ("username", "email", "password1", "password2"):
        assert f'for="id_{field}"' in html


def test_signup_creates_an_inactive_account_and_mails_a_link(client, django_capture_on_commit_callbacks):
    response = sign_up(client, django_capture_on_commit_callbacks)
    assert response.status_code == 302
    assert response["Location"] == "/accounts/signup/done/"
    user = User.objects.get(username="anne")
    assert not user.is_active
    assert user.check_password(GOOD["password1"])
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["anne@example.org"]
    assert "/accounts/verify/" in mail.outbox[0].body
    assert AuditEvent.objects.filter(event="account.signed_up", target_id=str(user.pk)).exists()


def test_unverified_account_cannot_sign_in_and_is_told_nothing_specific(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    response = client.post("/accounts/login/", {"username": "anne", "password": GOOD["password1"]})
    assert response.status_code == 200
    assert "_auth_user_id" not in client.session
    wrong = client.post("/accounts/login/", {"username": "nobody", "password": "whatever it is"})
    # The same message as for an unknown user: nothing says the account exists.
    assert response.context["form"].non_field_errors() == wrong.context["form"].non_field_errors()


def test_verification_link_activates_once_then_login_goes_to_the_portal(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    link = link_in(mail.outbox[0])

    confirm_url = open_link(client, link)
    confirm = client.get(confirm_url)
    assert confirm.status_code == 200
    assert "csrfmiddlewaretoken" in confirm.content.decode()
    assert not User.objects.get(username="anne").is_active, "GET alone (a mail scanner) verifies nothing"

    response = client.post(confirm_url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert User.objects.get(username="anne").is_active
    assert AuditEvent.objects.filter(event="account.email_verified").count() == 1

    assert verify(client, link).status_code == 400, "a link works once"
    assert client.get(open_link(client, link)).status_code == 400
    assert Client().post(confirm_url).status_code == 400, "without the link's session there is nothing to confirm"

    login = client.post("/accounts/login/", {"username": "anne", "password": GOOD["password1"]})
    assert login.status_code == 302
    assert login["Location"] == "/portal/"


def test_used_link_does_not_reactivate_an_account_staff_deactivated(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    link = link_in(mail.outbox[0])
    verify(client, link)
    User.objects.filter(username="anne").update(is_active=False)
    assert verify(client, link).status_code == 400
    assert not User.objects.get(username="anne").is_active


def test_expired_and_tampered_links_are_refused(client, django_capture_on_commit_callbacks, settings):
    sign_up(client, django_capture_on_commit_callbacks)
    link = link_in(mail.outbox[0])
    assert verify(client, link.replace("/verify/", "/verify/x")).status_code == 400
    assert verify(client, "/accounts/verify/not-a-token/").status_code == 400
    with later(hours=settings.ACCOUNT_VERIFICATION_MAX_AGE_HOURS + 1):
        assert verify(client, link).status_code == 400
    assert not User.objects.get(username="anne").is_active


def test_signup_with_a_registered_email_reads_the_same_and_stores_nothing(client, django_capture_on_commit_callbacks):
    existing = UserFactory(email="anne@example.org")
    response = sign_up(client, django_capture_on_commit_callbacks, username="someone-else", email="ANNE@example.org")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/signup/done/"
    assert not User.objects.filter(username="someone-else").exists()
    # The address's owner hears of it; the stranger learns nothing.
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == [existing.email]
    assert "/accounts/verify/" not in mail.outbox[0].body


def test_signup_with_the_email_of_an_unverified_account_resends_its_link(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    sign_up(client, django_capture_on_commit_callbacks, username="anne2")
    assert not User.objects.filter(username="anne2").exists()
    assert len(mail.outbox) == 2
    assert "/accounts/verify/" in mail.outbox[1].body
    verify(client, link_in(mail.outbox[1]))
    assert User.objects.get(username="anne").is_active


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"password2": "something different entirely"}, "password2"),
        ({"password1": "password123", "password2": "password123"}, "password2"),
        ({"password1": "short", "password2": "short"}, "password2"),
        ({"email": "not an address"}, "email"),
        ({"username": "has spaces!"}, "username"),
        ({"username": ""}, "username"),
    ],
)
def test_bad_signup_input_is_a_field_error_and_stores_nothing(client, overrides, field):
    response = client.post("/accounts/signup/", {**GOOD, **overrides})
    assert response.status_code == 400
    assert response.context["form"].errors[field]
    assert not User.objects.exists()
    assert not mail.outbox


def test_taken_username_is_a_neutral_field_error(client):
    UserFactory(username="Anne")
    response = client.post("/accounts/signup/", GOOD)
    assert response.status_code == 400
    assert response.context["form"].errors["username"] == ["This username is not available; choose another."]
    assert User.objects.count() == 1


def test_next_survives_signup_verification_and_login(client, django_capture_on_commit_callbacks):
    target = "/oauth/authorize?client_id=abc&response_type=code"
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/signup/", {**GOOD, "next": target})
    response = verify(client, link_in(mail.outbox[0]))
    assert response.status_code == 302
    login_url = response["Location"]
    assert login_url.startswith("/accounts/login/?next=")
    login = client.post(login_url, {"username": "anne", "password": GOOD["password1"], "next": target})
    assert login["Location"] == target


def test_an_offsite_next_is_dropped(client, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        client.post("/accounts/signup/", {**GOOD, "next": "https://evil.example/steal"})
    assert "evil.example" not in mail.outbox[0].body


def test_resend_says_the_same_whether_or_not_the_address_is_known(client, django_capture_on_commit_callbacks):
    sign_up(client, django_capture_on_commit_callbacks)
    mail.outbox.clear()
    known = client.post("/accounts/verify/resend/", {"email": "anne@example.org"})
    unknown = client.post("/accounts/verify/resend/", {"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["anne@example.org"]


def test_login_page_keeps_next_for_the_oauth_flow(client):
    user = UserFactory()
    target = "/oauth/authorize?client_id=abc"
    page = client.get("/accounts/login/", {"next": target})
    assert page.status_code == 200
    assert 'name="next"' in page.content.decode()
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD, "next": target})
    assert response.status_code == 302
    assert response["Location"] == target


def test_portal_requires_login(client):
    response = client.get("/portal/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/portal/"


def test_forms_refuse_posts_without_a_csrf_token():
    client = Client(enforce_csrf_checks=True)
    assert client.post("/accounts/signup/", GOOD).status_code == 403
    assert not User.objects.exists()


def test_an_account_staff_created_inactive_is_never_activated_by_email(client):
    UserFactory(email="kept@example.org", is_active=False)
    client.post("/accounts/verify/resend/", {"email": "kept@example.org"})
    assert not mail.outbox
