"""The portal's client pages: who may do what, registering in each mode, bad input as form
errors with nothing stored, the secret shown once, rotation, and revocation."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.contrib.sessions.models import Session
from django.test import Client as HttpClient
from jwcrypto.jwk import JWK

from authserver.audit import AuditEvent
from authserver.oauth.client_auth import hash_client_secret
from clients import services
from clients.models import Client, ClientCredential, ClientIntake
from clients.views import SECRET_COOKIE
from onboarding.models import Membership, Organisation
from tests.conftest import make_client_key, register_client
from tests.factories import OrganisationFactory, ScopeFactory
from tests.protocol.test_errors import basic, post_form

pytestmark = pytest.mark.django_db

SECRET_IN_PAGE = re.compile(r'id="client-secret" value="([^"]+)"')


@pytest.fixture
def catalogue(db) -> dict[str, Any]:
    return {
        "orders:read": ScopeFactory(name="orders:read", risk_level="low", description="Read the orders"),
        "orders:write": ScopeFactory(name="orders:write", risk_level="medium", description="Place orders"),
        "records:read": ScopeFactory(
            name="records:read", risk_level="high", min_trust_level="high", description="Read personal records"
        ),
    }


@pytest.fixture
def active_organisation(db) -> Organisation:
    return OrganisationFactory(
        name="Voorbeeld Software BV", status=Organisation.Status.ACTIVE, trust_level=Organisation.TrustLevel.SUBSTANTIAL
    )


@pytest.fixture
def member(make_member, active_organisation):
    """An owner of the active organisation."""
    return make_member(active_organisation, Membership.Role.OWNER)


@pytest.fixture
def browser(member) -> HttpClient:
    return member.client()


@pytest.fixture
def allowlist(active_organisation, catalogue):
    """Pre-approval: client-credentials clients with orders:read are active at once."""
    return services.allowlist_entry_create(
        actor=None,
        organisation=active_organisation,
        allowed_scopes=["orders:read"],
        grant_types=["client_credentials"],
        max_clients=5,
    )


def base(organisation: Organisation) -> str:
    return f"/portal/organisations/{organisation.pk}/clients/"


def registration(**overrides: Any) -> dict[str, Any]:
    """A client-credentials, private_key_jwt registration asking for orders:read."""
    data: dict[str, Any] = {
        "name": "Order sync",
        "grant_type": "client_credentials",
        "auth_method": "private_key_jwt",
        "application_type": "web",
        "redirect_uris": "",
        "environment": "test",
        "scopes": ["orders:read"],
        "justification__orders:read": "We copy orders into our ERP every night.",
        "purpose": "Nightly order synchronisation.",
        "contact_name": "Anne de Vries",
        "contact_email": "anne@voorbeeld.nl",
        "jwk": json.dumps(make_client_key().public_jwk),
        "jwks_uri": "",
        "certificate_pem": "",
        "subject_dn": "",
    }
    data.update(overrides)
    return data


def web_registration(**overrides: Any) -> dict[str, Any]:
    return registration(
        **{
            "name": "Order portal",
            "grant_type": "authorization_code",
            "redirect_uris": "https://app.voorbeeld.nl/callback",
            **overrides,
        }
    )


def secret_registration(**overrides: Any) -> dict[str, Any]:
    return registration(**{"auth_method": "client_secret_basic", "jwk": "", **overrides})


def nothing_stored() -> bool:
    return (
        not Client.objects.exists()
        and not ClientCredential.objects.exists()
        and not ClientIntake.objects.exists()
        and not AuditEvent.objects.filter(event__in=("client.registered", "client.created")).exists()
        and not AuditEvent.objects.filter(event__startswith="client.credential.").exists()
    )


def shown_secret(response) -> str | None:
    match = SECRET_IN_PAGE.search(response.content.decode())
    return match.group(1) if match else None


def register(browser: HttpClient, organisation: Organisation, data: dict[str, Any]) -> Client:
    response = browser.post(f"{base(organisation)}new/", data)
    assert response.status_code == 302, response.context["form"].errors if response.context else response
    client = Client.objects.get(name=data["name"])
    assert response["Location"] == f"{base(organisation)}{client.pk}/"
    return client


def token_request(client_id: str, secret: str):
    return post_form(HttpClient(), "/oauth/token", {"grant_type": "client_credentials"}, basic(client_id, secret))


# ---- who may do what -------------------------------------------------------------------------


@pytest.fixture
def victim_client(active_organisation, catalogue) -> Client:
    return register_client(
        active_organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    ).client


def client_pages(organisation: Organisation, client: Client) -> list[tuple[str, str, dict[str, Any]]]:
    credential = client.credentials.get()
    url = f"{base(organisation)}{client.pk}/"
    return [
        ("get", base(organisation), {}),
        ("get", f"{base(organisation)}new/", {}),
        ("post", f"{base(organisation)}new/", registration()),
        ("get", url, {}),
        ("post", f"{url}secret/", {}),
        ("post", f"{url}credentials/", {"add-jwk": json.dumps(make_client_key().public_jwk)}),
        ("post", f"{url}credentials/rotate/", {}),
        ("post", f"{url}credentials/{credential.pk}/end-overlap/", {}),
        ("post", f"{url}credentials/{credential.pk}/revoke/", {}),
        ("get", f"{url}revoke/", {}),
        ("post", f"{url}revoke/", {"confirm": "on"}),
    ]


def snapshot() -> tuple:
    return (
        list(Client.objects.order_by("pk").values_list("pk", "status", "scope")),
        list(ClientCredential.objects.order_by("pk").values_list("pk", "status", "expires_at")),
        ClientIntake.objects.count(),
    )


def test_every_client_page_is_a_404_to_non_members(
    make_member, active_organisation, other_organisation, victim_client, catalogue
):
    outsider = make_member(other_organisation, Membership.Role.OWNER).client()
    before = snapshot()
    for method, url, data in client_pages(active_organisation, victim_client):
        response = getattr(outsider, method)(url, data)
        assert response.status_code == 404, (method, url, response.status_code)
    # The victim's client and credential ids under the outsider's own organisation are 404s too.
    for method, url, data in client_pages(active_organisation, victim_client):
        own_url = url.replace(f"/organisations/{active_organisation.pk}/", f"/organisations/{other_organisation.pk}/")
        if f"/clients/{victim_client.pk}/" in own_url:
            assert getattr(outsider, method)(own_url, data).status_code == 404, (method, own_url)
    assert snapshot() == before


def test_client_pages_need_a_signed_in_user(client, active_organisation, victim_client):
    response = client.get(base(active_organisation))
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")
    assert client.post(f"{base(active_organisation)}{victim_client.pk}/revoke/", {"confirm": "on"}).status_code == 302
    assert Client.objects.get(pk=victim_client.pk).status == Client.Status.ACTIVE


def test_a_developer_manages_clients_but_cannot_revoke_one(make_member, active_organisation, catalogue, allowlist):
    developer = make_member(active_organisation, Membership.Role.DEVELOPER).client()
    client = register(developer, active_organisation, secret_registration())
    assert client.status == Client.Status.ACTIVE
    assert client.created_by is not None
    assert developer.post(f"{base(active_organisation)}{client.pk}/credentials/rotate/").status_code == 302
    assert client.credentials.count() == 2

    page = developer.get(f"{base(active_organisation)}{client.pk}/").content.decode()
    assert f"{base(active_organisation)}{client.pk}/revoke/" not in page, "no revoke link for a developer"
    assert developer.get(f"{base(active_organisation)}{client.pk}/revoke/").status_code == 403
    assert developer.post(f"{base(active_organisation)}{client.pk}/revoke/", {"confirm": "on"}).status_code == 403
    client.refresh_from_db()
    assert client.status == Client.Status.ACTIVE
    assert not AuditEvent.objects.filter(event="client.revoked").exists()


@pytest.mark.parametrize("role", [Membership.Role.OWNER, Membership.Role.ADMIN])
def test_owners_and_administrators_may_revoke_a_client(make_member, active_organisation, victim_client, role):
    manager = make_member(active_organisation, role).client()
    page = manager.get(f"{base(active_organisation)}{victim_client.pk}/").content.decode()
    assert f"{base(active_organisation)}{victim_client.pk}/revoke/" in page
    assert manager.post(f"{base(active_organisation)}{victim_client.pk}/revoke/", {"confirm": "on"}).status_code == 302
    assert Client.objects.get(pk=victim_client.pk).status == Client.Status.REVOKED


def test_an_ended_membership_sees_nothing(make_member, active_organisation, victim_client):
    from onboarding import services as onboarding_services

    owner = make_member(active_organisation, Membership.Role.OWNER)
    developer = make_member(active_organisation, Membership.Role.DEVELOPER)
    onboarding_services.membership_end(membership_id=developer.membership.pk, actor=owner.user)
    assert developer.client().get(f"{base(active_organisation)}{victim_client.pk}/").status_code == 404


# ---- the list and the organisation page --------------------------------------------------------


def test_the_organisation_page_links_to_its_clients(browser, active_organisation):
    page = browser.get(f"/portal/organisations/{active_organisation.pk}/").content.decode()
    assert f'href="{base(active_organisation)}"' in page


def test_the_list_shows_each_client_with_a_status_badge(
    browser, active_organisation, other_organisation, victim_client, catalogue
):
    pending = services.client_register(
        channel="member",
        organisation=active_organisation,
        name="Pending one",
        grant_type="client_credentials",
        scopes=["orders:write"],
        intake=services.IntakeDetails(purpose="x"),
    ).client
    elsewhere = register_client(
        other_organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    ).client
    response = browser.get(base(active_organisation))
    assert response.status_code == 200
    page = response.content.decode()
    assert f'href="{base(active_organisation)}{victim_client.pk}/"' in page
    assert f'href="{base(active_organisation)}{pending.pk}/"' in page
    assert '<span class="status status-active">Active</span>' in page
    assert '<span class="status status-pending">Pending review</span>' in page
    assert elsewhere.client_id not in page
    assert f"{base(active_organisation)}new/" in page


# ---- registering ---------------------------------------------------------------------------------


def test_the_form_lists_the_catalogue_with_risk_and_description(browser, active_organisation, catalogue, settings):
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = True
    page = browser.get(f"{base(active_organisation)}new/").content.decode()
    for scope in catalogue.values():
        assert f'value="{scope.name}"' in page
        assert scope.description in page
        assert f'name="justification__{scope.name}"' in page
    assert "High" in page
    assert "Medium" in page
    assert "Low" in page
    assert 'value="private_key_jwt"' in page
    assert 'value="client_secret_basic"' in page
    assert "<script" not in page


def test_secrets_are_not_offered_where_the_deployment_disables_them(browser, active_organisation, catalogue, settings):
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = False
    assert 'value="client_secret_basic"' not in browser.get(f"{base(active_organisation)}new/").content.decode()
    response = browser.post(f"{base(active_organisation)}new/", secret_registration())
    assert response.status_code == 400
    assert "Select a valid choice" in response.content.decode()
    assert nothing_stored()


def test_register_explicit_leaves_the_client_pending_with_an_intake(browser, member, active_organisation, catalogue):
    data = registration(
        scopes=["orders:read", "orders:write"],
        **{"justification__orders:write": "We place replacement orders.", "justification__records:read": "unused"},
    )
    client = register(browser, active_organisation, data)
    assert client.status == Client.Status.PENDING
    assert client.registration_mode == Client.RegistrationMode.EXPLICIT
    assert client.scope == "", "nothing is granted before review"
    assert client.token_endpoint_auth_method == "private_key_jwt"
    assert client.environment == "test"
    assert client.contacts == ["anne@voorbeeld.nl"]
    intake = client.intake
    assert intake.status == ClientIntake.Status.PENDING
    assert intake.requested == ["orders:read", "orders:write"]
    assert intake.justifications == {
        "orders:read": "We copy orders into our ERP every night.",
        "orders:write": "We place replacement orders.",
    }
    assert (intake.purpose, intake.contact_name, intake.contact_email) == (
        "Nightly order synchronisation.",
        "Anne de Vries",
        "anne@voorbeeld.nl",
    )
    assert intake.submitted_by == member.user
    assert client.credentials.get().kind == ClientCredential.Kind.PUBLIC_KEY, "the first key is registered"
    assert AuditEvent.objects.filter(event="client.registered", organisation=active_organisation).exists()

    response = browser.get(f"{base(active_organisation)}{client.pk}/")
    page = response.content.decode()
    assert "waits for an administrator" in page
    assert "Waiting for review" in page
    assert "orders:write" in page
    assert "We place replacement orders." in page
    assert "an administrator reviews it" in page


def test_register_within_an_allowlist_is_active_at_once(browser, active_organisation, allowlist):
    client = register(browser, active_organisation, registration())
    assert client.status == Client.Status.ACTIVE
    assert client.registration_mode == Client.RegistrationMode.WHITELIST
    assert client.scopes == ["orders:read"]
    assert client.allowlist_entry == allowlist
    assert not ClientIntake.objects.exists()
    page = browser.get(f"{base(active_organisation)}{client.pk}/").content.decode()
    assert f"allowlist entry #{allowlist.pk}" in page


def test_outside_the_allowlist_falls_back_to_review_and_says_why(browser, active_organisation, allowlist):
    client = register(browser, active_organisation, registration(scopes=["orders:read", "orders:write"]))
    assert client.status == Client.Status.PENDING
    assert "orders:write are outside the allowlist entry" in client.intake.policy_reason
    page = browser.get(f"{base(active_organisation)}{client.pk}/").content.decode()
    assert "orders:write are outside the allowlist entry" in page


def test_a_refused_registration_shows_the_reasons_and_stores_nothing(browser, active_organisation, catalogue):
    response = browser.post(f"{base(active_organisation)}new/", registration(scopes=["orders:read", "records:read"]))
    assert response.status_code == 400
    page = response.content.decode()
    assert "The registration was refused" in page
    assert "needs trust level high; the organisation has substantial" in page
    assert nothing_stored()


def test_a_pending_organisation_cannot_register(owner, pending_organisation, catalogue):
    response = owner.client().post(f"{base(pending_organisation)}new/", registration())
    assert response.status_code == 400
    assert "the organisation is pending, not active" in response.content.decode().lower()
    assert nothing_stored()


def _rsa_1024_jwk() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    return JWK.from_pyca(key.public_key()).export_public()


@pytest.mark.parametrize(
    ("data", "field", "message"),
    [
        (web_registration(redirect_uris="http://app.voorbeeld.nl/callback"), "redirect_uris", "must use https"),
        (web_registration(redirect_uris="https://app.voorbeeld.nl/cb#here"), "redirect_uris", "fragment"),
        (web_registration(redirect_uris=""), "redirect_uris", "at least one redirect URI"),
        (web_registration(redirect_uris="app.voorbeeld.nl/callback"), "redirect_uris", "not absolute"),
        (web_registration(redirect_uris="https://localhost/cb"), "redirect_uris", "not localhost"),
        (registration(redirect_uris="https://app.voorbeeld.nl/cb"), "redirect_uris", "has no redirect URIs"),
        (registration(jwk='{"kty": "RSA", "n": '), "jwk", "not valid JSON"),
        (registration(jwk='{"kty": "RSA", "n": "AQAB"}'), "jwk", "malformed JWK"),
        (registration(jwk=_rsa_1024_jwk()), "jwk", "at least 2048 bits"),
        (registration(jwk=""), "jwk", "public key (JWK) or a JWKS URI"),
        (registration(jwks_uri="http://keys.voorbeeld.nl/jwks.json"), "jwks_uri", "must use https"),
        (registration(auth_method="none"), "auth_method", "confidential"),
        (registration(auth_method="client_secret_basic"), "jwk", "not used with client_secret_basic"),
        (registration(auth_method="tls_client_auth", jwk=""), "certificate_pem", "certificate or its subject DN"),
        (registration(scopes=[]), "scopes", "Choose a scope"),
        (registration(grant_type="password"), "grant_type", "Select a valid choice"),
        (registration(name="   "), "name", "required"),
    ],
)
def test_bad_input_is_a_form_error_and_stores_nothing(browser, active_organisation, allowlist, data, field, message):
    response = browser.post(f"{base(active_organisation)}new/", data)
    assert response.status_code == 400
    form = response.context["form"]
    assert field in form.errors, form.errors
    assert message.lower() in " ".join(form.errors[field]).lower(), form.errors
    assert "There is a problem" in response.content.decode()
    assert not Client.objects.exists()
    assert not ClientCredential.objects.exists()


@pytest.mark.parametrize(
    "uri", ["https://127.0.0.1/jwks.json", "https://10.0.0.7/jwks.json", "https://169.254.169.254/latest/keys"]
)
def test_a_jwks_uri_at_a_loopback_or_private_address_is_refused(browser, active_organisation, allowlist, settings, uri):
    settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = False
    response = browser.post(f"{base(active_organisation)}new/", registration(jwk="", jwks_uri=uri))
    assert response.status_code == 400
    assert "which is not allowed" in " ".join(response.context["form"].non_field_errors())
    assert nothing_stored()


def test_a_private_jwk_is_refused(browser, active_organisation, allowlist):
    key = JWK.generate(kty="RSA", size=2048)
    response = browser.post(f"{base(active_organisation)}new/", registration(jwk=key.export_private()))
    assert response.status_code == 400
    assert "private key material" in " ".join(response.context["form"].errors["jwk"])
    assert not Client.objects.exists()


def test_an_expired_certificate_is_a_form_error(browser, active_organisation, allowlist, make_certificate):
    data = registration(
        auth_method="self_signed_tls_client_auth", jwk="", certificate_pem=make_certificate(days=-1).decode()
    )
    response = browser.post(f"{base(active_organisation)}new/", data)
    assert response.status_code == 400
    assert "expired" in " ".join(response.context["form"].errors["certificate_pem"])
    assert not Client.objects.exists()


def test_a_mutual_tls_client_registers_its_certificate(browser, active_organisation, allowlist, make_certificate):
    data = registration(auth_method="self_signed_tls_client_auth", jwk="", certificate_pem=make_certificate().decode())
    client = register(browser, active_organisation, data)
    credential = client.credentials.get()
    assert credential.kind == ClientCredential.Kind.CERTIFICATE
    assert credential.thumbprint
    page = browser.get(f"{base(active_organisation)}{client.pk}/").content.decode()
    assert f"…{credential.hint}" in page


def test_a_tls_client_auth_client_registers_its_subject_dn(browser, active_organisation, allowlist):
    dn = "CN=api.voorbeeld.nl,O=Voorbeeld Software BV,C=NL"
    bad = browser.post(
        f"{base(active_organisation)}new/", registration(auth_method="tls_client_auth", jwk="", subject_dn="not a DN")
    )
    assert bad.status_code == 400
    assert "RFC 4514" in " ".join(bad.context["form"].non_field_errors())
    assert nothing_stored()
    client = register(browser, active_organisation, registration(auth_method="tls_client_auth", jwk="", subject_dn=dn))
    credential = client.credentials.get()
    assert (credential.kind, credential.subject_dn) == (ClientCredential.Kind.CERTIFICATE, dn)


def test_only_a_native_app_may_use_a_loopback_or_its_own_scheme(browser, active_organisation, catalogue):
    native = web_registration(
        application_type="native", auth_method="none", jwk="", redirect_uris="http://127.0.0.1:8765/cb"
    )
    web = browser.post(f"{base(active_organisation)}new/", {**native, "application_type": "web"})
    assert "must use https" in " ".join(web.context["form"].errors["redirect_uris"])
    remote = browser.post(f"{base(active_organisation)}new/", {**native, "redirect_uris": "http://app.voorbeeld.nl/cb"})
    assert "loopback" in " ".join(remote.context["form"].errors["redirect_uris"])
    secret = browser.post(f"{base(active_organisation)}new/", {**native, "auth_method": "client_secret_basic"})
    assert "cannot keep a client secret" in " ".join(secret.context["form"].errors["auth_method"])
    assert not Client.objects.exists()

    client = register(
        browser, active_organisation, {**native, "redirect_uris": "http://127.0.0.1:8765/cb\nnl.voorbeeld.app:/cb"}
    )
    assert client.is_public
    assert client.application_type == Client.ApplicationType.NATIVE
    assert client.redirect_uris.split() == ["http://127.0.0.1:8765/cb", "nl.voorbeeld.app:/cb"]
    page = browser.get(f"{base(active_organisation)}{client.pk}/").content.decode()
    assert "Native application" in page
    assert "no credential" in page


# ---- the secret, shown once ----------------------------------------------------------------------


def test_the_secret_is_shown_once_and_stored_only_as_a_hash(browser, active_organisation, allowlist):
    response = browser.post(f"{base(active_organisation)}new/", secret_registration(), follow=True)
    assert response.status_code == 200
    secret = shown_secret(response)
    assert secret
    assert len(secret) >= 32
    assert "no-store" in response["Cache-Control"]
    client = Client.objects.get()
    credential = client.credentials.get()
    assert credential.secret_hash == hash_client_secret(secret)
    assert credential.hint == secret[-4:]
    assert not any(secret in str(event.data) for event in AuditEvent.objects.all())
    assert not any(secret in session.session_data for session in Session.objects.all())
    assert not any(secret in str(session.get_decoded()) for session in Session.objects.all())

    again = browser.get(f"{base(active_organisation)}{client.pk}/")
    assert again.status_code == 200
    assert shown_secret(again) is None
    assert secret not in again.content.decode()
    assert token_request(client.client_id, secret).status_code == 200


def test_the_secret_is_lost_without_the_cookie_half(browser, active_organisation, allowlist):
    response = browser.post(f"{base(active_organisation)}new/", secret_registration())
    assert response.cookies[SECRET_COOKIE]["httponly"]
    assert response.cookies[SECRET_COOKIE]["path"] == response["Location"]
    del browser.cookies[SECRET_COOKIE]
    page = browser.get(response["Location"])
    assert shown_secret(page) is None
    assert "could not be shown" in page.content.decode()


def test_a_pending_secret_client_gets_its_first_secret_after_approval(browser, active_organisation, catalogue):
    client = register(browser, active_organisation, secret_registration())
    assert client.status == Client.Status.PENDING
    assert not client.credentials.exists(), "no secret before approval"
    url = f"{base(active_organisation)}{client.pk}/"
    assert f"{url}secret/" not in browser.get(url).content.decode()
    refused = browser.post(f"{url}secret/", follow=True)
    assert "Only an active client gets a secret." in refused.content.decode()
    refused = browser.post(f"{url}credentials/rotate/", follow=True)
    assert "Only an active or suspended client" in refused.content.decode()
    assert not client.credentials.exists()

    services.client_intake_approve(intake_id=client.intake.pk, reviewer=None, granted_scopes=["orders:read"])
    assert f"{url}secret/" in browser.get(url).content.decode()
    response = browser.post(f"{url}secret/", follow=True)
    secret = shown_secret(response)
    assert secret is not None
    assert token_request(client.client_id, secret).status_code == 200

    # Only the first secret comes from here; later ones from rotation.
    second = browser.post(f"{url}secret/", follow=True)
    assert shown_secret(second) is None
    assert "rotate it" in second.content.decode()
    assert client.credentials.count() == 1


def test_the_reason_for_a_rejection_is_shown(browser, active_organisation, catalogue):
    client = register(browser, active_organisation, registration())
    services.client_intake_reject(intake_id=client.intake.pk, reviewer=None, reason="Use the test environment first.")
    page = browser.get(f"{base(active_organisation)}{client.pk}/").content.decode()
    assert "Reason for rejection" in page
    assert "Use the test environment first." in page
    assert "Rotate" not in page
    assert "Add a key" not in page


# ---- rotation, overlap, revocation --------------------------------------------------------------


def test_rotate_a_secret_then_both_authenticate(browser, active_organisation, allowlist):
    first = shown_secret(browser.post(f"{base(active_organisation)}new/", secret_registration(), follow=True))
    client = Client.objects.get()
    url = f"{base(active_organisation)}{client.pk}/"
    response = browser.post(f"{url}credentials/rotate/", follow=True)
    second = shown_secret(response)
    assert first
    assert second
    assert first != second
    assert "keeps working until" in response.content.decode()
    assert shown_secret(browser.get(url)) is None

    old, new = client.credentials.order_by("created_at", "pk")
    assert (old.status, new.status) == (ClientCredential.Status.EXPIRING, ClientCredential.Status.ACTIVE)
    assert new.replaces == old
    for secret in (first, second):
        answer = token_request(client.client_id, secret)
        assert answer.status_code == 200, answer.content
        assert answer.json()["access_token"]

    # End the overlap now: only the new secret works.
    assert browser.post(f"{url}credentials/{old.pk}/end-overlap/").status_code == 302
    old.refresh_from_db()
    assert old.status == ClientCredential.Status.EXPIRED
    assert token_request(client.client_id, first).status_code == 401
    assert token_request(client.client_id, second).status_code == 200
    assert AuditEvent.objects.filter(event="client.credential.overlap_ended").exists()


def test_rotate_a_key_and_add_one(browser, active_organisation, allowlist):
    client = register(browser, active_organisation, registration())
    url = f"{base(active_organisation)}{client.pk}/"
    new_key = make_client_key()
    assert browser.post(f"{url}credentials/rotate/", {"rotate-jwk": json.dumps(new_key.public_jwk)}).status_code == 302
    old, new = client.credentials.order_by("created_at", "pk")
    assert (old.status, new.status) == ("expiring", "active")
    assert new.kid == new_key.kid

    extra = make_client_key("ES256")
    assert browser.post(f"{url}credentials/", {"add-jwk": json.dumps(extra.public_jwk)}).status_code == 302
    assert client.credentials.filter(kid=extra.kid, status="active").exists()

    # jwks and jwks_uri never both (RFC 7591 §2); a rotation with nothing to rotate to is a form error.
    response = browser.post(f"{url}credentials/", {"add-jwks_uri": "https://keys.voorbeeld.nl/jwks.json"})
    assert response.status_code == 400
    assert "rotate to a JWKS URI instead" in response.content.decode()
    response = browser.post(f"{url}credentials/rotate/", {"rotate-jwk": ""})
    assert response.status_code == 400
    assert "public key (JWK) or a JWKS URI" in response.content.decode()
    response = browser.post(f"{url}credentials/", {"add-jwk": _rsa_1024_jwk()})
    assert response.status_code == 400
    assert "at least 2048 bits" in response.content.decode()
    assert client.credentials.count() == 3


def test_revoke_one_credential(browser, active_organisation, allowlist):
    secret = shown_secret(browser.post(f"{base(active_organisation)}new/", secret_registration(), follow=True))
    client = Client.objects.get()
    credential = client.credentials.get()
    url = f"{base(active_organisation)}{client.pk}/"
    assert browser.post(f"{url}credentials/{credential.pk}/revoke/").status_code == 302
    credential.refresh_from_db()
    assert credential.status == ClientCredential.Status.REVOKED
    assert token_request(client.client_id, secret).status_code == 401
    assert AuditEvent.objects.filter(event="client.credential.revoked").exists()
    # Revoking it again is a message, not a 500.
    again = browser.post(f"{url}credentials/{credential.pk}/revoke/", follow=True)
    assert again.status_code == 200
    assert "is revoked" in again.content.decode()


def test_revoke_the_client_after_confirmation(browser, active_organisation, allowlist, resource_server):
    secret = shown_secret(browser.post(f"{base(active_organisation)}new/", secret_registration(), follow=True))
    client = Client.objects.get(name="Order sync")
    token = token_request(client.client_id, secret).json()["access_token"]
    url = f"{base(active_organisation)}{client.pk}/"

    assert browser.get(f"{url}revoke/").status_code == 200
    unconfirmed = browser.post(f"{url}revoke/", {})
    assert unconfirmed.status_code == 400
    assert "Tick the box" in unconfirmed.content.decode()
    assert Client.objects.get(pk=client.pk).status == Client.Status.ACTIVE

    assert browser.post(f"{url}revoke/", {"confirm": "on"}).status_code == 302
    client.refresh_from_db()
    assert client.status == Client.Status.REVOKED
    assert set(client.credentials.values_list("status", flat=True)) == {"revoked"}
    introspection = post_form(
        HttpClient(), "/oauth/introspect", {"token": token}, basic(resource_server.client_id, resource_server.secret)
    )
    assert introspection.json()["active"] is False
    assert token_request(client.client_id, secret).status_code == 401
    page = browser.get(url).content.decode()
    assert "Revoked" in page
    assert f"{url}revoke/" not in page
    assert "Rotate" not in page
    # A revoked client cannot be revoked again; no 500.
    assert browser.post(f"{url}revoke/", {"confirm": "on"}).status_code == 302
