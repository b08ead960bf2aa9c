"""A client's whole life in a real browser (issue 4, first acceptance item).

A member of an active organisation asks for an explicit-mode client with two scopes; an admin
signs in with password + TOTP, takes the request from the intake queue and grants one of the
two; the member issues the secret and sees it once (a reload does not show it again), gets a
token with it, rotates (old and new secret both work during the overlap), ends the overlap with
the portal's button (only the new secret works), rotates again and lets the lifecycle job end
that overlap when its time has come (time_machine: the live server runs in a thread of this
process), and finally revokes the client: a token it got a moment before introspects inactive
on the very next call.

Every step goes through the UI (clicks and form fills); the ORM only sets up (catalogue,
organisation, member, admin, resource server) and checks the end state. Token requests and
introspection are plain HTTP calls, as a client and a resource server make them. Screenshots
land in docs/screenshots/.
"""

from __future__ import annotations

import re
from datetime import timedelta

import requests
import time_machine
from django.utils import timezone
from django_otp.oath import totp
from django_otp.plugins.otp_totp.models import TOTPDevice
from playwright.sync_api import Page, expect

from authserver.audit import AuditEvent
from authserver.models import Scope
from authserver.oauth.client_auth import hash_client_secret
from clients.models import Client, ClientCredential, ClientIntake
from clients.services.credentials import credentials_expire_due
from onboarding.models import Membership, Organisation
from tests.factories import PASSWORD, OrganisationFactory, ScopeFactory, UserFactory

CLIENT_NAME = "Order sync"
ORGANISATION_NAME = "Voorbeeld Logistiek BV"
TIMEOUT = 10
# A short rotation overlap (the deployment's AUTHSERVER_CREDENTIAL_ROTATION_OVERLAP_SECONDS).
OVERLAP = timedelta(hours=1)


def current_totp(device: TOTPDevice) -> str:
    """The code an authenticator app shows now (as tests/admin/conftest.py computes it)."""
    return f"{totp(device.bin_key, device.step, device.t0, device.digits, device.drift):0{device.digits}d}"


def token_response(issuer: str, client_id: str, secret: str, scope: str = "orders:read") -> requests.Response:
    """client_credentials with client_secret_basic (RFC 6749 §4.4, §2.3.1)."""
    return requests.post(
        f"{issuer}/oauth/token",
        data={"grant_type": "client_credentials", "scope": scope},
        auth=(client_id, secret),
        timeout=TIMEOUT,
    )


def access_token(issuer: str, client_id: str, secret: str) -> str:
    response = token_response(issuer, client_id, secret)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["scope"] == "orders:read"
    assert "refresh_token" not in body  # client credentials get none (OAUTH-NL)
    return body["access_token"]


def refused(issuer: str, client_id: str, secret: str) -> bool:
    """The token endpoint refuses this secret as RFC 6749 §5.2 says: 401 invalid_client."""
    response = token_response(issuer, client_id, secret)
    return response.status_code == 401 and response.json()["error"] == "invalid_client"


def introspect(issuer: str, resource_server, token: str) -> dict:
    response = requests.post(
        f"{issuer}/oauth/introspect",
        data={"token": token},
        auth=(resource_server.client_id, resource_server.secret),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    return response.json()


def fact(page: Page, term: str):
    """The value beside ``term`` in the client page's facts list."""
    return page.locator("dl.facts").first.locator(f'dt:text-is("{term}") + dd')


def shown_secret(page: Page) -> str:
    """The secret the page shows once, read from its read-only field."""
    field = page.get_by_role("alert").get_by_label("Client secret")
    expect(field).to_be_visible()
    secret = field.input_value()
    assert len(secret) >= 32, "a client secret carries at least 128 bits"
    return secret


def credential_row(page: Page, secret: str):
    """The credentials table's row of the secret ending in ``secret``'s hint."""
    table = page.get_by_role("table", name=f"Credentials of {CLIENT_NAME}")
    return table.get_by_role("row").filter(has_text=f"…{secret[-4:]}")


def test_member_requests_a_client_admin_grants_part_and_the_secret_lives_its_life(
    browser, page, live_server, issuer, resource_server, resource_server_api, settings, screenshot
):
    # --- set-up: catalogue, an active organisation with a member, an admin with 2FA -------------
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = True
    settings.AUTHSERVER_CREDENTIAL_ROTATION_OVERLAP_SECONDS = int(OVERLAP.total_seconds())
    ScopeFactory(name="orders:read", risk_level=Scope.RiskLevel.MEDIUM, description="Read the orders")
    ScopeFactory(
        name="orders:write",
        risk_level=Scope.RiskLevel.HIGH,
        min_trust_level="substantial",
        description="Place and change orders",
    )
    organisation = OrganisationFactory(
        name=ORGANISATION_NAME, status=Organisation.Status.ACTIVE, trust_level=Organisation.TrustLevel.SUBSTANTIAL
    )
    member = UserFactory(username="bram.jansen", first_name="Bram", last_name="Jansen")
    Membership.objects.create(user=member, organisation=organisation, role=Membership.Role.OWNER)
    admin = UserFactory(username="reviewer", first_name="Ruud", last_name="Bakker", is_staff=True, is_superuser=True)
    device = TOTPDevice.objects.create(user=admin, name="Authenticator app", confirmed=True)

    # --- 1. The member signs in and asks for an explicit client with two scopes ---------------
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill(member.username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("main").get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("heading", name="Your organisations")).to_be_visible()
    page.get_by_role("link", name=ORGANISATION_NAME).click()
    page.get_by_role("link", name=f"Clients of {ORGANISATION_NAME}").click()
    expect(page.get_by_role("heading", name=f"Clients of {ORGANISATION_NAME}")).to_be_visible()
    expect(page.get_by_text("No clients yet.")).to_be_visible()
    page.get_by_role("link", name="Register a client").click()
    expect(page.get_by_role("heading", name=f"Register a client for {ORGANISATION_NAME}")).to_be_visible()

    page.get_by_label("Name:", exact=True).fill(CLIENT_NAME)
    page.get_by_role("radio", name=re.compile(r"^Client credentials")).check()
    page.get_by_role("radio", name=re.compile(r"^client_secret_basic")).check()
    page.get_by_role("checkbox", name="orders:read").check()
    page.get_by_label("Why the client needs orders:read").fill("We copy new orders into our ERP every night.")
    page.get_by_role("checkbox", name="orders:write").check()
    page.get_by_label("Why the client needs orders:write").fill("We confirm the orders we shipped.")
    page.get_by_label("Purpose").fill("Nightly synchronisation of orders between the API and our ERP.")
    page.get_by_label("Contact email").fill("integraties@voorbeeld-logistiek.nl")
    screenshot(page, "client-register")
    page.get_by_role("button", name="Register the client").click()

    expect(page.get_by_role("heading", name=CLIENT_NAME, exact=True)).to_be_visible()
    expect(page.get_by_role("status")).to_contain_text(
        f"{CLIENT_NAME} is registered and waits for an administrator's review before it works."
    )
    expect(fact(page, "Status")).to_contain_text("Pending review")
    expect(fact(page, "How it started")).to_contain_text("Reviewed by an administrator")
    expect(page.get_by_role("button", name="Issue a secret")).to_have_count(0)
    client_id = fact(page, "Client ID").inner_text().strip()
    assert client_id

    # --- 2. The admin (password + TOTP) grants orders:read, not orders:write -------------------
    admin_context = browser.new_context(base_url=live_server.url, viewport={"width": 1440, "height": 900})
    try:
        admin_page = admin_context.new_page()
        admin_page.set_default_timeout(15000)
        admin_page.goto("/admin/")
        expect(admin_page).to_have_url(re.compile(r"/admin/login/"))
        admin_page.get_by_label("Username").fill(admin.username)
        admin_page.get_by_label("Password").fill(PASSWORD)
        admin_page.get_by_label("Code from your authenticator app").fill(current_totp(device))
        admin_page.get_by_role("button", name="Log in").click()
        expect(admin_page.get_by_role("heading", name="Administration")).to_be_visible()

        admin_page.get_by_role("main").get_by_role("link", name="Client intakes").click()
        expect(admin_page).to_have_url(re.compile(r"/admin/clients/clientintake/"))
        queue_row = admin_page.get_by_role("row").filter(has=admin_page.get_by_role("link", name=CLIENT_NAME))
        expect(queue_row).to_contain_text(ORGANISATION_NAME)
        expect(queue_row).to_contain_text("Waiting for review")
        queue_row.get_by_role("link", name=CLIENT_NAME).click()

        expect(admin_page.get_by_role("heading", name=f"Request: {CLIENT_NAME} (Waiting for review)")).to_be_visible()
        scopes = admin_page.locator("table.intake-scopes")
        expect(scopes.locator('tr[data-scope="orders:read"]')).to_contain_text("We copy new orders into our ERP")
        expect(scopes.locator('tr[data-scope="orders:write"]')).to_contain_text("We confirm the orders we shipped.")
        expect(admin_page.get_by_role("checkbox", name="orders:read")).to_be_checked()
        admin_page.get_by_role("checkbox", name="orders:write").uncheck()
        admin_page.get_by_label("Note (optional, sent to the requester)").fill(
            "Reading is fine; writing needs a separate agreement."
        )
        screenshot(admin_page, "client-intake-review")
        admin_page.get_by_role("button", name="Approve the ticked scopes").click()
        expect(
            admin_page.get_by_text(
                f"Approved: {CLIENT_NAME} is active with orders:read (not granted: orders:write). "
                "The requester is told by email."
            )
        ).to_be_visible()
        expect(admin_page.get_by_role("heading", name=f"Request: {CLIENT_NAME} (Approved)")).to_be_visible()
    finally:
        admin_context.close()

    # --- 3. The member sees the client active and the secret once ------------------------------
    page.reload()
    expect(fact(page, "Status")).to_contain_text("Active")
    expect(fact(page, "Granted scopes")).to_have_text("orders:read")
    expect(page.get_by_text("No credentials yet.")).to_be_visible()
    page.get_by_role("button", name="Issue a secret").click()
    expect(page.get_by_role("status")).to_contain_text("A secret is issued. Copy it now: it is shown only this once.")
    first_secret = shown_secret(page)
    expect(credential_row(page, first_secret)).to_contain_text("Active")
    screenshot(page, "client-secret-once")

    page.reload()
    expect(page.get_by_role("heading", name=CLIENT_NAME, exact=True)).to_be_visible()
    expect(page.get_by_label("Client secret")).to_have_count(0)
    assert first_secret not in page.content()
    expect(page.get_by_role("button", name="Issue a secret")).to_have_count(0)  # it has one: rotate instead

    # The secret works, within the granted scopes only.
    first_token = access_token(issuer, client_id, first_secret)
    assert introspect(issuer, resource_server, first_token)["active"] is True
    write = token_response(issuer, client_id, first_secret, scope="orders:write")
    assert write.status_code == 400, write.text
    assert write.json()["error"] == "invalid_scope"

    # --- 4. Rotate: both secrets work during the overlap; "end overlap now": only the new one --
    page.get_by_role("button", name="Rotate the secret").click()
    expect(page.get_by_role("status")).to_contain_text("Rotated. The previous credential keeps working until")
    second_secret = shown_secret(page)
    assert second_secret != first_secret
    expect(credential_row(page, first_secret)).to_contain_text("Expiring (rotation overlap)")
    expect(credential_row(page, second_secret)).to_contain_text("Active")
    screenshot(page, "client-rotated")

    access_token(issuer, client_id, first_secret)
    access_token(issuer, client_id, second_secret)

    credential_row(page, first_secret).get_by_role("button", name=re.compile(r"^End overlap now")).click()
    expect(page.get_by_role("status")).to_contain_text("has ended; it no longer works.")
    expect(page.get_by_label("Client secret")).to_have_count(0)
    expect(credential_row(page, first_secret)).to_contain_text("Expired")
    expect(credential_row(page, second_secret)).to_contain_text("Active")
    assert refused(issuer, client_id, first_secret)
    access_token(issuer, client_id, second_secret)

    # --- 5. Rotate again; this time the overlap runs out and the lifecycle job ends it ---------
    page.get_by_role("button", name="Rotate the secret").click()
    expect(page.get_by_role("status")).to_contain_text("Rotated. The previous credential keeps working until")
    third_secret = shown_secret(page)
    assert third_secret not in (first_secret, second_secret)
    access_token(issuer, client_id, second_secret)
    access_token(issuer, client_id, third_secret)

    # The live server runs in a thread of this process, so it sees the travelled clock too.
    with time_machine.travel(timezone.now() + OVERLAP + timedelta(minutes=1), tick=True):
        # Past its date but before the job runs, the old secret is refused already...
        assert refused(issuer, client_id, second_secret)
        # ...and the job records the end of the overlap (idempotent: a second run finds nothing).
        assert credentials_expire_due() == 1
        assert credentials_expire_due() == 0
        assert refused(issuer, client_id, second_secret)
        access_token(issuer, client_id, third_secret)

    page.reload()
    expect(credential_row(page, second_secret)).to_contain_text("Expired")
    expect(credential_row(page, third_secret)).to_contain_text("Active")
    expect(page.get_by_role("button", name=re.compile(r"^End overlap now"))).to_have_count(0)

    # --- 6. Revoke the client: its live token introspects inactive on the very next call -------
    live_token = access_token(issuer, client_id, third_secret)
    assert introspect(issuer, resource_server, live_token)["active"] is True

    page.get_by_role("link", name=f"Revoke {CLIENT_NAME}…").click()
    expect(page.get_by_role("heading", name=f"Revoke {CLIENT_NAME}?")).to_be_visible()
    page.get_by_label(re.compile(r"^I understand")).check()
    page.get_by_role("button", name="Revoke the client").click()
    expect(page.get_by_role("status")).to_contain_text(
        f"{CLIENT_NAME} is revoked, with all its credentials and tokens."
    )
    expect(fact(page, "Status")).to_contain_text("Revoked")

    assert introspect(issuer, resource_server, live_token) == {"active": False}
    assert refused(issuer, client_id, third_secret)

    # --- End state ----------------------------------------------------------------------------
    client = Client.objects.get(client_id=client_id)
    assert client.organisation == organisation
    assert client.status == Client.Status.REVOKED
    assert client.registration_mode == Client.RegistrationMode.EXPLICIT
    assert client.scopes == ["orders:read"]
    intake = ClientIntake.objects.get(client=client)
    assert intake.status == ClientIntake.Status.APPROVED
    assert intake.requested == ["orders:read", "orders:write"]
    assert intake.granted_scopes == "orders:read"
    assert intake.decided_by == admin
    credentials = list(client.credentials.order_by("created_at", "pk"))
    assert [c.kind for c in credentials] == [ClientCredential.Kind.SECRET] * 3
    # Revoking the client revokes every credential it ever had, the expired ones too.
    assert [c.status for c in credentials] == [ClientCredential.Status.REVOKED] * 3
    assert credentials[1].replaces == credentials[0]
    assert credentials[2].replaces == credentials[1]
    # The secrets read from the page are the ones stored, as (peppered) hashes only; no secret
    # ever reached the audit log.
    secrets = [first_secret, second_secret, third_secret]
    assert [c.secret_hash for c in credentials] == [hash_client_secret(secret) for secret in secrets]
    assert [c.hint for c in credentials] == [secret[-4:] for secret in secrets]
    audit_dump = " ".join(str(data) for data in AuditEvent.objects.values_list("data", flat=True))
    assert all(secret not in audit_dump for secret in secrets)
    events = set(AuditEvent.objects.filter(organisation=organisation).values_list("event", flat=True))
    assert {"client.credential.rotated", "client.credential.overlap_ended", "client.credential.expired"} <= events
