"""Attacks through the user's browser (RFC 9700 §4.7, §4.11; RFC 6819 §4.4.1.8, §4.4.1.9):
cross-site request forgery on consent, the portal, the admin, the REST API and the sign-in and
sign-out forms; clickjacking of every page a user acts on; and user enumeration through sign-in,
password reset and the client configuration endpoint."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from django.contrib.auth.hashers import get_hasher
from django.core import mail
from django.test import Client as Browser
from oauth2_provider.models import get_grant_model
from rest_framework.test import APIClient

from authserver.audit import AuditEvent
from authserver.models import Scope
from clients.models import Client
from onboarding.models import Invitation, Membership, Organisation

from ..conftest import register_client
from ..factories import PASSWORD, UserFactory
from ..protocol.test_errors import authorize_params
from .conftest import add_member, browser_for, otp_verified_browser

pytestmark = pytest.mark.django_db

Grant = get_grant_model()
CSRF_INPUT = re.compile(rb'<input type="hidden" name="csrfmiddlewaretoken" value="[^"]+">')


# ---- CSRF ----------------------------------------------------------------------------------------


def assert_csrf_refusal(response: Any) -> None:
    assert response.status_code == 403, (response.status_code, response.content[:300])
    assert "CSRF" in response.content.decode() or response.get("Content-Type", "").startswith("application/problem")


def test_consent_cannot_be_forged_cross_site(user, web_client):
    """A page elsewhere auto-submits the consent form for a signed-in user: no code."""
    browser = browser_for(user, enforce_csrf_checks=True)
    params = authorize_params(web_client)
    assert browser.get("/oauth/authorize", params).status_code == 200
    assert_csrf_refusal(browser.post("/oauth/authorize", {**params, "allow": "Allow"}))
    assert not Grant.objects.exists()


def test_portal_changes_cannot_be_forged_cross_site(organisation):
    owner = add_member(organisation, Membership.Role.OWNER)
    victim = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    ).client
    browser = browser_for(owner, enforce_csrf_checks=True)
    base = f"/portal/organisations/{organisation.pk}"
    forged = [
        (f"{base}/edit/", {"name": "Hijacked", "kind": "private", "kvk_number": "87654321", "country": "NL"}),
        (f"{base}/invitations/", {"email": "spy@example.org", "role": "owner"}),
        (f"{base}/clients/{victim.pk}/revoke/", {"confirm": "on"}),
        (f"{base}/clients/{victim.pk}/secret/", {}),
        (f"{base}/clients/new/", {"name": "Forged", "grant_type": "client_credentials"}),
    ]
    audit_before = AuditEvent.objects.count()
    for url, data in forged:
        assert_csrf_refusal(browser.post(url, data))
    victim.refresh_from_db()
    assert victim.status == Client.Status.ACTIVE
    assert not Invitation.objects.exists()
    assert Organisation.objects.get(pk=organisation.pk).name == organisation.name
    assert AuditEvent.objects.count() == audit_before


def test_admin_changes_cannot_be_forged_cross_site(organisation):
    staff = UserFactory(is_staff=True, is_superuser=True)
    browser = otp_verified_browser(staff, enforce_csrf_checks=True)
    assert browser.get("/admin/").status_code == 200
    assert_csrf_refusal(
        browser.post("/admin/authserver/scope/add/", {"name": "forged:write", "description": "x", "risk_level": "low"})
    )
    assert not Scope.objects.filter(name="forged:write").exists()
    assert_csrf_refusal(
        browser.post(
            "/admin/onboarding/organisation/",
            {"action": "delete_selected", "_selected_action": [organisation.pk], "post": "yes"},
        )
    )
    assert Organisation.objects.filter(pk=organisation.pk).exists()


def test_the_rest_api_refuses_a_session_request_without_the_csrf_token(organisation):
    owner = add_member(organisation, Membership.Role.OWNER)
    api = APIClient(enforce_csrf_checks=True)
    api.force_login(owner)
    response = api.patch(
        f"/api/v1/organisations/{organisation.pk}", {"contact_email": "forged@example.org"}, format="json"
    )
    assert response.status_code == 403, response.content
    assert response["Content-Type"] == "application/problem+json"
    assert "csrf" in response.json()["detail"].lower()
    organisation.refresh_from_db()
    assert organisation.contact_email != "forged@example.org"


@pytest.mark.parametrize(
    ("path", "data"),
    [
        ("/accounts/login/", {"username": "attacker", "password": "attackers password"}),
        ("/accounts/logout/", {}),
        ("/oauth/logout", {"allow": "Logout"}),
        ("/accounts/password-reset/", {"email": "someone@example.org"}),
    ],
    ids=["login", "logout", "rp-logout", "password-reset"],
)
def test_sign_in_and_sign_out_cannot_be_forged_cross_site(user, path, data):
    """Login CSRF (signing the victim in as the attacker) and forced logout are refused too."""
    browser = browser_for(user, enforce_csrf_checks=True)
    assert_csrf_refusal(browser.post(path, data))
    assert browser.get("/portal/").status_code == 200  # still signed in, as themselves
    assert not mail.outbox


# Endpoints a browser's cookies do not authenticate: they take client credentials or bearer
# tokens in headers or the body (RFC 6749 §3.2, RFC 7591, OIDC userinfo), so CSRF cannot ride on them.
CSRF_EXEMPT = {
    "TokenView",
    "RevokeView",
    "IntrospectView",
    "UserInfoView",
    "RegistrationView",
    "RegistrationManagementView",
}


def test_only_the_cookieless_protocol_endpoints_are_exempt_from_csrf():
    import ast
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    exempt = set()
    for package in ("authserver", "clients", "onboarding"):
        for path in (root / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef | ast.FunctionDef) and any(
                    "csrf_exempt" in ast.unparse(decorator) for decorator in node.decorator_list
                ):
                    exempt.add(node.name)
    assert exempt == CSRF_EXEMPT


def test_the_session_cookie_is_http_only_and_same_site(client, user):
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302
    cookie = response.cookies["sessionid"]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Lax"


# ---- clickjacking (RFC 6819 §4.4.1.9, RFC 9700 §4.11.1) --------------------------------------------


def test_no_page_a_user_acts_on_can_be_framed(user, web_client, organisation):
    owner = add_member(organisation, Membership.Role.OWNER)
    staff = UserFactory(is_staff=True, is_superuser=True)
    anonymous = Browser()
    signed_in = browser_for(user)
    member = browser_for(owner)
    admin = otp_verified_browser(staff)
    pages = [
        (signed_in, "/oauth/authorize", authorize_params(web_client)),
        (
            signed_in,
            "/oauth/logout",
            {"client_id": web_client.client_id, "post_logout_redirect_uri": "https://rp.example.org/signed-out"},
        ),
        (anonymous, "/accounts/login/", {}),
        (anonymous, "/accounts/signup/", {}),
        (anonymous, "/accounts/password-reset/", {}),
        (anonymous, "/admin/login/", {}),
        (member, "/portal/", {}),
        (member, f"/portal/organisations/{organisation.pk}/", {}),
        (member, f"/portal/organisations/{organisation.pk}/clients/", {}),
        (admin, "/admin/", {}),
        (admin, "/accounts/2fa/", {}),
    ]
    for browser, path, params in pages:
        response = browser.get(path, params)
        assert response.status_code == 200, (path, response.status_code)
        assert response["X-Frame-Options"] == "DENY", path
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"], path


def test_no_view_opts_out_of_the_frame_headers():
    """The only way to frame a page would be a view marked exempt: there is none."""
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    opt_out = re.compile(r"xframe_options_(exempt|sameorigin)\b(?!\", False\))|\.xframe_options_exempt\s*=")
    offenders = [
        f"{path.relative_to(root)}: {line.strip()}"
        for package in ("authserver", "clients", "onboarding")
        for path in (root / package).rglob("*.py")
        for line in path.read_text().splitlines()
        if opt_out.search(line)
    ]
    assert offenders == []


# ---- user enumeration (RFC 6819 §4.4.1.x, OWASP ASVS V2.2) -------------------------------------------


def page_without_csrf(response: Any) -> bytes:
    return CSRF_INPUT.sub(b"", response.content)


def test_sign_in_says_the_same_for_an_unknown_user_a_wrong_password_and_an_inactive_account(client, monkeypatch):
    known = UserFactory(username="alice-7f3e")
    inactive = UserFactory(username="bob-c21d", is_active=False)
    hasher = type(get_hasher())
    work: list[str] = []
    depth = [0]
    for name in ("encode", "verify"):
        original = getattr(hasher, name)

        def counted(self, *args, _original=original, _name=name, **kwargs):
            # Only the outermost call counts (MD5's verify encodes once more inside).
            if depth[0] == 0:
                work.append(_name)
            depth[0] += 1
            try:
                return _original(self, *args, **kwargs)
            finally:
                depth[0] -= 1

        monkeypatch.setattr(hasher, name, counted)

    answers = []
    for username, password in (
        ("carol-9a0b", "wrong password 1"),
        (known.username, "wrong password 1"),
        (inactive.username, PASSWORD),
    ):
        work.clear()
        response = Browser().post("/accounts/login/", {"username": username, "password": password})
        answers.append((response.status_code, page_without_csrf(response).replace(username.encode(), b"USER")))
        # The same password-hashing work either way: timing does not tell the cases apart.
        assert len(work) == 1, (username, work)
    assert answers[0][0] == 200
    assert answers[0] == answers[1] == answers[2]


def test_password_reset_says_the_same_for_known_and_unknown_addresses(client):
    UserFactory(email="known@example.org")
    answers = []
    for email in ("known@example.org", "unknown@example.org"):
        response = Browser().post("/accounts/password-reset/", {"email": email}, follow=True)
        answers.append((response.status_code, response.redirect_chain, page_without_csrf(response)))
    assert answers[0] == answers[1]
    assert len(mail.outbox) == 1
    assert mail.outbox[0].to == ["known@example.org"]


def test_the_client_configuration_endpoint_does_not_confirm_a_client_exists(client, cc_basic):
    """RFC 7592: an unknown client_id and a wrong registration token get the same answer."""
    answers = []
    for client_id in (cc_basic.client_id, "no-such-client"):
        response = client.get(f"/oauth/register/{client_id}", HTTP_AUTHORIZATION="Bearer not-the-token")
        answers.append((response.status_code, json.loads(response.content), response.get("WWW-Authenticate")))
    assert answers[0] == answers[1]
    assert answers[0][0] == 401
