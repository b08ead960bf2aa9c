"""Privilege escalation between organisations and roles (RFC 6819 §5.1.5.x's "malicious
organisation member"): another organisation's clients are a 404 everywhere, a role does only
what it may, and a staff account gets no extra power outside the admin without a verified
second factor."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from authserver.audit import AuditEvent
from clients.models import Client, ClientCredential
from onboarding import services as onboarding_services
from onboarding.models import Invitation, Membership, Organisation

from ..api.conftest import bearer_client, mint_token, session_client
from ..conftest import REDIRECT_URI, register_client
from ..factories import OrganisationFactory, UserFactory
from .conftest import add_member, browser_for, otp_verified_browser

pytestmark = pytest.mark.django_db

API = "/api/v1"


@pytest.fixture
def victim_client(organisation):
    """A client of the victim organisation, with a secret credential."""
    return register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    )


@pytest.fixture
def portal_app(db) -> Client:
    """The portal's own authorization-code client: a person's ``portal`` token comes from it."""
    return register_client(
        OrganisationFactory(name="Operator"),
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "portal"],
        redirect_uris=[REDIRECT_URI],
    ).client


def state(organisation: Organisation) -> tuple[Any, ...]:
    """Everything an escalation could change, to prove a refused request changed nothing."""
    organisation.refresh_from_db()
    return (
        organisation.name,
        organisation.contact_email,
        organisation.status,
        tuple(Client.objects.order_by("pk").values_list("pk", "status", "name")),
        tuple(ClientCredential.objects.order_by("pk").values_list("pk", "status")),
        tuple(Membership.objects.order_by("pk").values_list("pk", "role", "ended_at")),
        Invitation.objects.count(),
        AuditEvent.objects.count(),
    )


def portal_client_urls(organisation_id: int, client: Client, credential_id: int) -> list[tuple[str, str, dict]]:
    base = f"/portal/organisations/{organisation_id}/clients"
    one = f"{base}/{client.pk}"
    return [
        ("get", f"{base}/", {}),
        ("get", f"{one}/", {}),
        ("post", f"{one}/secret/", {}),
        ("post", f"{one}/credentials/", {"jwks_uri": "https://attacker.example/jwks"}),
        ("post", f"{one}/credentials/rotate/", {}),
        ("post", f"{one}/credentials/{credential_id}/end-overlap/", {}),
        ("post", f"{one}/credentials/{credential_id}/revoke/", {}),
        ("get", f"{one}/revoke/", {}),
        ("post", f"{one}/revoke/", {"confirm": "on"}),
    ]


def api_client_calls(organisation_id: int, client: Client, credential_id: int) -> list[tuple[str, str, dict]]:
    base = f"{API}/organisations/{organisation_id}/clients"
    one = f"{base}/{client.pk}"
    return [
        ("get", base, {}),
        ("post", base, {"name": "x", "grant_type": "client_credentials", "scopes": ["orders:read"]}),
        ("get", one, {}),
        ("delete", one, {}),
        ("get", f"{one}/credentials", {}),
        ("post", f"{one}/credentials", {"kind": "secret"}),
        ("post", f"{one}/credentials/rotate", {}),
        ("get", f"{one}/credentials/{credential_id}", {}),
        ("post", f"{one}/credentials/{credential_id}/revoke", {}),
        ("post", f"{one}/credentials/{credential_id}/end-overlap", {}),
    ]


# ---- between organisations ------------------------------------------------------------------


def test_another_organisations_client_pages_are_404_to_an_owner_elsewhere(organisation, victim_client):
    attacker_org = OrganisationFactory(name="Attacker BV")
    attacker = add_member(attacker_org, Membership.Role.OWNER)
    credential = ClientCredential.objects.get(client=victim_client.client)
    browser = browser_for(attacker)
    before = state(organisation)
    # The victim's organisation id, and the victim's client id under the attacker's own
    # organisation (whose own list the attacker may of course see).
    urls = portal_client_urls(organisation.pk, victim_client.client, credential.pk)
    urls += portal_client_urls(attacker_org.pk, victim_client.client, credential.pk)[1:]
    for method, url, data in urls:
        response = getattr(browser, method)(url, data)
        assert response.status_code == 404, (method, url, response.status_code)
    assert state(organisation) == before
    assert (
        victim_client.client_id not in browser.get(f"/portal/organisations/{attacker_org.pk}/clients/").content.decode()
    )


@pytest.mark.parametrize("transport", ["session", "bearer"])
def test_another_organisations_clients_are_404_in_the_rest_api(organisation, victim_client, portal_app, transport):
    attacker_org = OrganisationFactory(name="Attacker BV")
    attacker = add_member(attacker_org, Membership.Role.OWNER)
    api = session_client(attacker) if transport == "session" else bearer_client(mint_token(portal_app, attacker))
    credential = ClientCredential.objects.get(client=victim_client.client)
    before = state(organisation)
    calls = api_client_calls(organisation.pk, victim_client.client, credential.pk)
    calls += api_client_calls(attacker_org.pk, victim_client.client, credential.pk)[2:]
    for method, url, data in calls:
        response = getattr(api, method)(url, data, format="json")
        assert response.status_code == 404, (method, url, response.status_code, response.content[:300])
        assert response["Content-Type"] == "application/problem+json"
    assert state(organisation) == before
    listed = api.get(f"{API}/organisations")
    assert listed.status_code == 200
    assert organisation.name not in listed.content.decode()
    assert attacker_org.name in listed.content.decode()


@pytest.mark.parametrize("transport", ["session", "bearer"])
def test_another_organisations_onboarding_data_is_404_in_the_rest_api(organisation, portal_app, transport):
    """Its details, members, KYC application, evidence and the conversation with the reviewer."""
    victim_owner = add_member(organisation, Membership.Role.OWNER)
    application = onboarding_services.kyc_application_create(
        organisation_id=organisation.pk, actor=victim_owner, motivation="Private motivation."
    )
    victim_membership = Membership.objects.get(user=victim_owner)
    attacker = add_member(OrganisationFactory(name="Attacker BV"), Membership.Role.OWNER)
    api = session_client(attacker) if transport == "session" else bearer_client(mint_token(portal_app, attacker))
    org_url = f"{API}/organisations/{organisation.pk}"
    app_url = f"{API}/applications/{application.pk}"
    calls = [
        ("get", org_url, {}),
        ("patch", org_url, {"contact_email": "attacker@example.org"}),
        ("get", f"{org_url}/members", {}),
        ("delete", f"{org_url}/members/{victim_membership.pk}", {}),
        ("post", f"{org_url}/invitations", {"email": "attacker@example.org", "role": "owner"}),
        ("get", f"{org_url}/applications", {}),
        ("post", f"{org_url}/applications", {"requested_trust_level": "high"}),
        ("get", app_url, {}),
        ("patch", app_url, {"motivation": "changed"}),
        ("post", f"{app_url}/submit", {}),
        ("get", f"{app_url}/evidence", {}),
        ("get", f"{app_url}/messages", {}),
        ("post", f"{app_url}/messages", {"body": "hello"}),
    ]
    before = state(organisation)
    for method, url, data in calls:
        response = getattr(api, method)(url, data, format="json")
        assert response.status_code == 404, (method, url, response.status_code, response.content[:300])
        assert "Private motivation" not in response.content.decode()
    assert state(organisation) == before


def test_a_token_without_the_portal_scope_or_without_a_person_gets_403(organisation, portal_app):
    owner = add_member(organisation, Membership.Role.OWNER)
    url = f"{API}/organisations/{organisation.pk}"
    wrong_scope = bearer_client(mint_token(portal_app, owner, scope="openid"))
    assert wrong_scope.get(url).status_code == 403
    machine = bearer_client(mint_token(portal_app, None))
    assert machine.get(url).status_code == 403
    assert bearer_client(mint_token(portal_app, owner)).get(url).status_code == 200


# ---- between roles ------------------------------------------------------------------------------


@pytest.mark.parametrize("transport", ["session", "bearer"])
def test_a_developer_cannot_do_what_only_managers_may(organisation, victim_client, portal_app, transport):
    owner = add_member(organisation, Membership.Role.OWNER)
    developer = add_member(organisation, Membership.Role.DEVELOPER)
    api = session_client(developer) if transport == "session" else bearer_client(mint_token(portal_app, developer))
    owner_membership = Membership.objects.get(user=owner)
    before = state(organisation)
    org_url = f"{API}/organisations/{organisation.pk}"
    refused = [
        api.patch(org_url, {"contact_email": "attacker@example.org"}, format="json"),
        api.delete(f"{org_url}/members/{owner_membership.pk}"),
        api.post(f"{org_url}/invitations", {"email": "friend@example.org", "role": "owner"}, format="json"),
        api.delete(f"{org_url}/clients/{victim_client.client.pk}"),
    ]
    assert [response.status_code for response in refused] == [403, 403, 403, 403], [r.content for r in refused]
    assert state(organisation) == before


def test_an_admin_member_cannot_make_an_owner(organisation):
    admin = add_member(organisation, Membership.Role.ADMIN)
    api = session_client(admin)
    before = Invitation.objects.count()
    response = api.post(
        f"{API}/organisations/{organisation.pk}/invitations",
        {"email": "boss@example.org", "role": "owner"},
        format="json",
    )
    assert response.status_code == 403, response.content
    assert Invitation.objects.count() == before
    allowed = api.post(
        f"{API}/organisations/{organisation.pk}/invitations",
        {"email": "dev@example.org", "role": "developer"},
        format="json",
    )
    assert allowed.status_code == 201, allowed.content


def test_a_developer_cannot_revoke_the_client_in_the_portal(organisation, victim_client):
    developer = add_member(organisation, Membership.Role.DEVELOPER)
    browser = browser_for(developer)
    url = f"/portal/organisations/{organisation.pk}/clients/{victim_client.client.pk}/revoke/"
    assert browser.post(url, {"confirm": "on"}).status_code == 403
    assert browser.post(f"/portal/organisations/{organisation.pk}/edit/", {"name": "Hijacked"}).status_code == 403
    victim_client.client.refresh_from_db()
    assert victim_client.client.status == Client.Status.ACTIVE


# ---- staff: no extra power without a verified second factor -------------------------------------


def staff_escalations(api: APIClient, organisation: Organisation, owner_membership: Membership) -> list[int]:
    org_url = f"{API}/organisations/{organisation.pk}"
    return [
        api.patch(org_url, {"contact_email": "staff@example.org"}, format="json").status_code,
        api.delete(f"{org_url}/members/{owner_membership.pk}").status_code,
    ]


@pytest.mark.parametrize("transport", ["session", "bearer"])
def test_staff_without_a_verified_second_factor_is_only_a_developer_outside_the_admin(
    organisation, portal_app, transport
):
    """A staff account that is also a developer of an organisation: its password alone (a
    session no OTP device verified), or a portal access token, must not lend it the reviewers'
    powers, such as ending the owner's membership or editing the organisation."""
    owner = add_member(organisation, Membership.Role.OWNER)
    staff_developer = add_member(organisation, Membership.Role.DEVELOPER, is_staff=True)
    owner_membership = Membership.objects.get(user=owner)
    api = (
        session_client(staff_developer)
        if transport == "session"
        else bearer_client(mint_token(portal_app, staff_developer))
    )
    before = state(organisation)
    assert staff_escalations(api, organisation, owner_membership) == [403, 403]
    assert state(organisation) == before


def test_staff_with_a_verified_second_factor_keeps_the_reviewers_powers(organisation):
    """The rule is the second factor, not the channel: the same account, OTP-verified, may act."""
    owner = add_member(organisation, Membership.Role.OWNER)
    staff_developer = add_member(organisation, Membership.Role.DEVELOPER, is_staff=True)
    browser = otp_verified_browser(staff_developer)
    api = APIClient()
    api.cookies = browser.cookies
    response = api.patch(
        f"{API}/organisations/{organisation.pk}", {"contact_email": "staff@example.org"}, format="json"
    )
    assert response.status_code == 200, response.content
    organisation.refresh_from_db()
    assert organisation.contact_email == "staff@example.org"
    assert AuditEvent.objects.filter(event="organisation.updated", actor_user=staff_developer).exists()
    assert Membership.objects.get(user=owner).ended_at is None


def test_a_staff_session_without_a_verified_second_factor_cannot_use_the_admin(client, organisation):
    staff = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(staff)
    for url in ("/admin/", f"/admin/onboarding/organisation/{organisation.pk}/change/", "/admin/clients/client/"):
        response = client.get(url)
        assert response.status_code == 302, (url, response.status_code)
        assert response["Location"].startswith(("/admin/login/", "/accounts/2fa/")), response["Location"]
    verified = otp_verified_browser(staff)
    assert verified.get("/admin/").status_code == 200
