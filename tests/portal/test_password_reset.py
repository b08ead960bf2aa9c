"""Password reset: no account enumeration, a single-use link, inactive accounts get nothing."""

from __future__ import annotations

import re

from django.core import mail

from tests.factories import UserFactory

RESET = "/accounts/password-reset/"
NEW_PASSWORD = "a fresh and long passphrase 2026"


def _link() -> str:
    [message] = mail.outbox
    return re.search(r"https?://[^/\s]+(/accounts/password-reset/\S+/)", message.body).group(1)


def test_known_and_unknown_addresses_get_the_same_answer(client, db):
    UserFactory(email="known@example.org")
    known = client.post(RESET, {"email": "known@example.org"})
    unknown = client.post(RESET, {"email": "nobody@example.org"})
    assert known.status_code == unknown.status_code == 302
    assert known["Location"] == unknown["Location"] == "/accounts/password-reset/sent/"
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["known@example.org"]


def test_the_link_sets_a_new_password_once(client, db):
    user = UserFactory(email="anne@example.org")
    client.post(RESET, {"email": "anne@example.org"})
    link = _link()

    form_page = client.get(link, follow=True)
    assert b"Choose a new password" in form_page.content
    done = client.post(form_page.redirect_chain[-1][0], {"new_password1": NEW_PASSWORD, "new_password2": NEW_PASSWORD})
    assert done.status_code == 302
    assert done["Location"] == "/accounts/password-reset/done/"
    user.refresh_from_db()
    assert user.check_password(NEW_PASSWORD)

    again = client.get(link, follow=True)
    assert b"This link cannot be used" in again.content


def test_an_unverified_account_gets_no_reset_mail(client, db):
    UserFactory(email="pending@example.org", is_active=False)
    response = client.post(RESET, {"email": "pending@example.org"})
    assert response.status_code == 302
    assert mail.outbox == []


def test_a_weak_new_password_is_a_form_error(client, db):
    UserFactory(email="anne@example.org")
    client.post(RESET, {"email": "anne@example.org"})
    form_page = client.get(_link(), follow=True)
    response = client.post(form_page.redirect_chain[-1][0], {"new_password1": "short", "new_password2": "short"})
    assert response.status_code == 200
    assert b"too short" in response.content
