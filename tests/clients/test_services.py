"""Client services: registration rules, credentials (issue, revoke) and revoking a client."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from django.core.exceptions import ValidationError
from jwcrypto.jwk import JWK
from oauth2_provider.models import AccessToken, RefreshToken

from authserver.errors import DomainError, InvalidTransition
from authserver.models import AuditEvent
from authserver.oauth.client_auth import hash_client_secret
from clients.models import Client, ClientCredential
from clients.services import (
    client_create,
    client_credential_add_public_key,
    client_credential_issue_secret,
    client_credential_revoke,
    client_revoke,
)
from onboarding.models import Organisation

from ..conftest import REDIRECT_URI, make_client_key
from ..factories import UserFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 2, 2, 10, 0, tzinfo=UTC)


def create(organisation, **overrides) -> Client:
    arguments = {
        "organisation": organisation,
        "name": "Orders service",
        "grant_type": "client_credentials",
        "scopes": ["orders:read"],
        "auth_method": Client.AuthMethod.CLIENT_SECRET_BASIC,
    }
    return client_create(**{**arguments, **overrides})


def nothing_created() -> bool:
    return not Client.objects.exists() and not AuditEvent.objects.filter(event__startswith="client.").exists()


# --- client_create --------------------------------------------------------------------------


def test_create_registers_a_confidential_client_and_audits_it(organisation):
    staff = UserFactory(is_staff=True)

    client = create(organisation, scopes=["orders:read", "orders:write", "orders:read"], actor=staff)

    client.refresh_from_db()
    assert client.authorization_grant_type == Client.GRANT_CLIENT_CREDENTIALS
    assert client.client_type == Client.CLIENT_CONFIDENTIAL
    assert client.status == Client.Status.ACTIVE
    assert client.scope == "orders:read orders:write"
    assert client.client_secret == ""  # secrets live in ClientCredential, hashed
    event = AuditEvent.objects.get(event="client.created")
    assert (event.target_id, event.organisation, event.actor_user) == (str(client.pk), organisation, staff)
    assert event.data == {
        "grant_type": "client_credentials",
        "auth_method": "client_secret_basic",
        "scopes": ["orders:read", "orders:write"],
        "mode": "manual",
        "status": "active",
    }


def test_create_defaults_to_private_key_jwt(organisation):
    client = client_create(organisation=organisation, name="Orders", grant_type="client_credentials")

    assert client.token_endpoint_auth_method == Client.AuthMethod.PRIVATE_KEY_JWT
    assert not client.uses_client_secret


@pytest.mark.parametrize(
    "grant_type",
    ["implicit", "password", "refresh_token", "authorization-code", "client_credentials authorization_code", ""],
)
def test_create_allows_exactly_one_supported_grant_type(organisation, grant_type):
    with pytest.raises(DomainError, match="one per client"):
        create(organisation, grant_type=grant_type)

    assert nothing_created()


def test_a_client_credentials_client_must_be_confidential(organisation):
    with pytest.raises(DomainError, match="must be confidential"):
        create(organisation, auth_method=Client.AuthMethod.NONE)

    assert nothing_created()


def test_a_public_client_authenticates_with_none(organisation):
    client = create(
        organisation,
        grant_type="authorization_code",
        auth_method=Client.AuthMethod.NONE,
        redirect_uris=[REDIRECT_URI],
    )

    assert client.is_public
    assert client.token_endpoint_auth_method == Client.AuthMethod.NONE
    with pytest.raises(DomainError, match="not a secret"):
        client_credential_issue_secret(client=client)


@pytest.mark.parametrize(
    ("client_type", "auth_method"),
    [
        (Client.CLIENT_PUBLIC, Client.AuthMethod.CLIENT_SECRET_BASIC),
        (Client.CLIENT_PUBLIC, Client.AuthMethod.PRIVATE_KEY_JWT),
        (Client.CLIENT_CONFIDENTIAL, Client.AuthMethod.NONE),
    ],
)
def test_the_model_ties_public_clients_to_auth_method_none(organisation, client_type, auth_method):
    client = Client(
        organisation=organisation,
        name="Portal",
        authorization_grant_type=Client.GRANT_AUTHORIZATION_CODE,
        client_type=client_type,
        token_endpoint_auth_method=auth_method,
        redirect_uris=REDIRECT_URI,
    )

    with pytest.raises(ValidationError) as excinfo:
        client.full_clean(exclude=["user"])
    assert "token_endpoint_auth_method" in excinfo.value.message_dict


@pytest.mark.parametrize(
    ("redirect_uris", "message"),
    [
        ([], "cannot be empty"),
        (["http://rp.example.org/callback"], "redirect_uris"),
        ([f"{REDIRECT_URI}#fragment"], "fragment is not allowed"),
    ],
)
def test_an_authorization_code_client_needs_https_redirect_uris_without_fragment(organisation, redirect_uris, message):
    with pytest.raises(DomainError, match=message):
        create(organisation, grant_type="authorization_code", redirect_uris=redirect_uris)

    assert nothing_created()


@pytest.mark.parametrize("auth_method", [Client.AuthMethod.CLIENT_SECRET_BASIC, Client.AuthMethod.CLIENT_SECRET_POST])
def test_secret_clients_are_refused_when_the_deployment_disables_secrets(organisation, settings, auth_method):
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = False

    with pytest.raises(DomainError, match="AUTHSERVER_CLIENT_SECRETS_ENABLED"):
        create(organisation, auth_method=auth_method)

    assert nothing_created()
    assert create(organisation, auth_method=Client.AuthMethod.PRIVATE_KEY_JWT).pk


def test_no_new_secret_is_issued_when_the_deployment_disables_secrets(organisation, settings):
    client = create(organisation)
    settings.AUTHSERVER_CLIENT_SECRETS_ENABLED = False

    with pytest.raises(DomainError, match="AUTHSERVER_CLIENT_SECRETS_ENABLED"):
        client_credential_issue_secret(client=client)

    assert not client.credentials.exists()


def test_create_refuses_a_taken_client_id(organisation):
    create(organisation, client_id="orders-service")

    with pytest.raises(DomainError, match="is taken"):
        create(organisation, client_id="orders-service")

    assert Client.objects.count() == 1


# --- credentials ----------------------------------------------------------------------------


def test_issue_secret_returns_it_once_and_stores_only_its_hash(organisation, settings, time_machine):
    time_machine.move_to(NOW, tick=False)
    client = create(organisation)

    issued = client_credential_issue_secret(client=client)

    credential = ClientCredential.objects.get(pk=issued.credential.pk)
    assert len(issued.secret) >= 32
    assert credential.secret_hash == hash_client_secret(issued.secret)
    assert issued.secret not in (credential.secret_hash, credential.hint, str(credential))
    assert credential.hint == issued.secret[-4:]
    assert credential.kind == ClientCredential.Kind.SECRET
    assert credential.status == ClientCredential.Status.ACTIVE
    assert credential.expires_at == NOW + timedelta(days=settings.AUTHSERVER_CLIENT_SECRET_LIFETIME_DAYS)
    assert credential.is_usable()
    event = AuditEvent.objects.get(event="client.credential.issued")
    assert (event.target_id, event.organisation) == (str(credential.pk), organisation)
    assert event.data == {"client_id": client.client_id, "kind": "secret"}
    assert issued.secret not in str(event.data)


def test_two_issued_secrets_differ_and_both_work_during_rotation(organisation):
    client = create(organisation)

    first = client_credential_issue_secret(client=client)
    second = client_credential_issue_secret(client=client)

    assert first.secret != second.secret
    assert all(credential.is_usable() for credential in client.credentials.all())


@pytest.mark.parametrize("secret", ["x" * 31, ""])
def test_a_given_secret_must_be_long(organisation, secret):
    client = create(organisation)

    with pytest.raises(DomainError, match="at least 32 characters"):
        client_credential_issue_secret(client=client, secret=secret)

    assert not client.credentials.exists()


def test_a_private_key_jwt_client_gets_no_secret(cc_jwt):
    with pytest.raises(DomainError, match="not a secret"):
        client_credential_issue_secret(client=cc_jwt.client)

    assert not cc_jwt.client.credentials.filter(kind=ClientCredential.Kind.SECRET).exists()


def test_add_public_key_stores_the_public_half_and_audits_it(organisation):
    client = create(organisation, auth_method=Client.AuthMethod.PRIVATE_KEY_JWT)
    key = make_client_key("ES256")

    credential = client_credential_add_public_key(client=client, jwk=key.public_jwk)

    assert credential.kind == ClientCredential.Kind.PUBLIC_KEY
    assert credential.kid == key.kid
    assert "d" not in credential.public_jwk
    event = AuditEvent.objects.get(event="client.credential.issued")
    assert event.data == {"client_id": client.client_id, "kind": "public_key", "kid": key.kid}


def test_add_public_key_refuses_private_material_and_a_duplicate_kid(cc_jwt):
    private = JWK.generate(kty="EC", crv="P-256").export_private(as_dict=True)
    with pytest.raises(DomainError, match="private key material"):
        client_credential_add_public_key(client=cc_jwt.client, jwk=private)
    with pytest.raises(DomainError, match="usable key with kid"):
        client_credential_add_public_key(client=cc_jwt.client, jwk=cc_jwt.key.public_jwk)

    assert cc_jwt.client.credentials.count() == 1


def test_revoke_credential_stops_it_at_once_and_audits_it(cc_basic, time_machine):
    time_machine.move_to(NOW, tick=False)
    credential = cc_basic.client.credentials.get()

    client_credential_revoke(credential_id=credential.pk)

    credential.refresh_from_db()
    assert (credential.status, credential.revoked_at) == (ClientCredential.Status.REVOKED, NOW)
    assert not credential.is_usable()
    event = AuditEvent.objects.get(event="client.credential.revoked")
    assert event.target_id == str(credential.pk)
    assert event.data == {"client_id": cc_basic.client_id, "kind": "secret"}


def test_a_revoked_credential_cannot_be_revoked_again(cc_basic):
    credential = cc_basic.client.credentials.get()
    client_credential_revoke(credential_id=credential.pk)

    with pytest.raises(InvalidTransition):
        client_credential_revoke(credential_id=credential.pk)

    assert AuditEvent.objects.filter(event="client.credential.revoked").count() == 1


# --- client_revoke --------------------------------------------------------------------------


def test_client_revoke_revokes_credentials_and_ends_every_token(web_client, user, time_machine):
    time_machine.move_to(NOW, tick=False)
    client = web_client.client
    with_refresh = AccessToken.objects.create(
        user=user, application=client, token=secrets.token_urlsafe(), expires=NOW + timedelta(hours=1)
    )
    refresh = RefreshToken.objects.create(
        user=user, application=client, token=secrets.token_urlsafe(), access_token=with_refresh
    )
    AccessToken.objects.create(
        user=user, application=client, token=secrets.token_urlsafe(), expires=NOW + timedelta(hours=1)
    )
    other_client_token = AccessToken.objects.create(
        user=user,
        application=create(client.organisation),
        token=secrets.token_urlsafe(),
        expires=NOW + timedelta(hours=1),
    )

    client_revoke(client_id=client.pk)

    client.refresh_from_db()
    refresh.refresh_from_db()
    assert client.status == Client.Status.REVOKED
    assert not client.is_usable(None)
    assert set(client.credentials.values_list("status", flat=True)) == {ClientCredential.Status.REVOKED}
    assert not AccessToken.objects.filter(application=client).exists()
    assert refresh.revoked == NOW
    assert AccessToken.objects.filter(pk=other_client_token.pk).exists()
    event = AuditEvent.objects.get(event="client.revoked")
    assert (event.target_id, event.organisation) == (str(client.pk), client.organisation)


def test_a_revoked_client_stays_revoked(cc_basic):
    client_revoke(client_id=cc_basic.client.pk)

    with pytest.raises(InvalidTransition):
        client_revoke(client_id=cc_basic.client.pk)

    assert AuditEvent.objects.filter(event="client.revoked").count() == 1


# --- is_usable ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("organisation_status", "usable"),
    [
        (Organisation.Status.ACTIVE, True),
        (Organisation.Status.SUSPENDED, False),
        (Organisation.Status.PENDING, False),
        (Organisation.Status.OFFBOARDED, False),
    ],
)
def test_a_client_is_usable_only_while_its_organisation_is_active(cc_basic, organisation_status, usable):
    Organisation.objects.filter(pk=cc_basic.client.organisation_id).update(status=organisation_status)

    client = Client.objects.get(pk=cc_basic.client.pk)

    assert client.is_usable(None) is usable


def test_a_suspended_client_is_not_usable(cc_basic):
    Client.objects.filter(pk=cc_basic.client.pk).update(status=Client.Status.SUSPENDED)

    assert not Client.objects.get(pk=cc_basic.client.pk).is_usable(None)


@pytest.mark.parametrize("final", ["revoke", "reject"])
def test_a_client_that_ended_gets_no_new_credential(organisation, final):
    from clients.services import client_credential_add_public_key, client_credential_issue_secret

    client = client_create(
        organisation=organisation, name="x", grant_type="client_credentials", auth_method="client_secret_basic"
    )
    if final == "revoke":
        client_revoke(client_id=client.pk)
    else:
        Client.objects.filter(pk=client.pk).update(status=Client.Status.REJECTED)
    client.refresh_from_db()

    with pytest.raises(DomainError, match=f"is {client.status}"):
        client_credential_issue_secret(client=client)
    with pytest.raises(DomainError, match="no new credential"):
        client_credential_add_public_key(client=client, jwk={"kty": "RSA"})
    assert not client.credentials.exclude(status="revoked").exists()
