"""Credential rotation with overlap (docs/decisions/0004), ending an overlap, reinstating a
client, the client's last use, and rotation races against the real PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from django.db import connection, transaction
from django.test import Client as HttpClient
from django.test.utils import CaptureQueriesContext
from jwcrypto.jwk import JWK

from authserver.errors import DomainError, InvalidTransition
from authserver.models import AuditEvent
from clients.models import Client, ClientCredential
from clients.services import (
    RotationResult,
    client_create,
    client_credential_add_certificate,
    client_credential_add_jwks_uri,
    client_credential_add_public_key,
    client_credential_end_overlap,
    client_credential_issue_secret,
    client_credential_revoke,
    client_credential_rotate,
    client_reinstate,
    client_revoke,
    client_suspend,
    credentials_expire_due,
)
from onboarding.models import Organisation

from ..conftest import REDIRECT_URI, make_client_key, register_client
from ..factories import OrganisationFactory, UserFactory
from ..mtls import make_ca, make_cert, name
from ..protocol.test_errors import basic, obtain_code, post_form, token_aud
from .test_jwks_uri import JwksServer, make_server_cert

# A moment after the fixtures' clients were made (they are made in real time).
T0 = (datetime.now(UTC) + timedelta(days=1)).replace(microsecond=0)
HOUR = timedelta(hours=1)
SECOND = timedelta(seconds=1)
PROXY = "10.1.2.3"
Status = ClientCredential.Status


REQUESTS, ROTATIONS = 30, 10  # the interleaving test
SMALL_RSA_KEY = JWK.from_pyca(rsa.generate_private_key(65537, 1024).public_key()).export_public(as_dict=True)


@pytest.fixture(autouse=True)
def trusted_proxy(settings):
    settings.AUTHSERVER_TRUSTED_PROXIES = ["10.1.2.0/24"]


def cc_token(http, client_id: str, secret: str):
    return post_form(http, "/oauth/token", {"grant_type": "client_credentials"}, basic(client_id, secret))


# --- one kit per credential kind: a client, a way to authenticate, what a rotation needs ------


@dataclass
class Kit:
    client: Client
    # Token request with the client's first credential.
    first: Callable[[Any], Any]
    # What client_credential_rotate needs for a new credential (a secret needs nothing).
    rotate_kwargs: dict[str, Any] = field(default_factory=dict)
    # Token request with the credential a rotation issued.
    second: Callable[[Any, RotationResult], Any] = lambda http, result: None


def secret_kit(organisation: Organisation) -> Kit:
    registered = register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    )
    assert registered.secret is not None
    first_secret = registered.secret
    return Kit(
        client=registered.client,
        first=lambda http: cc_token(http, registered.client_id, first_secret),
        second=lambda http, result: cc_token(http, registered.client_id, result.secret or ""),
    )


def public_key_kit(organisation: Organisation) -> Kit:
    registered = register_client(
        organisation, grant_type="client_credentials", auth_method="private_key_jwt", scopes=["orders:read"]
    )
    first_key, second_key = registered.key, make_client_key("ES256")
    assert first_key is not None

    def with_key(key):
        def request(http, *_: Any):
            form = {
                "grant_type": "client_credentials",
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": key.assertion(registered.client_id, token_aud()),
            }
            return post_form(http, "/oauth/token", form)

        return request

    return Kit(
        client=registered.client,
        first=with_key(first_key),
        rotate_kwargs={"jwk": second_key.public_jwk},
        second=with_key(second_key),
    )


def via_proxy(cert) -> dict[str, str]:
    return {"REMOTE_ADDR": PROXY, "HTTP_X_SSL_CLIENT_VERIFY": "SUCCESS", "HTTP_X_SSL_CLIENT_CERT": cert.escaped}


def mtls_token(client: Client, cert) -> Callable[..., Any]:
    def request(http, *_: Any):
        form = {"grant_type": "client_credentials", "client_id": client.client_id}
        return http.post(
            "/oauth/token", urlencode(form), content_type="application/x-www-form-urlencoded", **via_proxy(cert)
        )

    return request


def certificate_kit(organisation: Organisation) -> Kit:
    client = client_create(
        organisation=organisation,
        name="mtls self-signed",
        grant_type="client_credentials",
        scopes=["orders:read"],
        auth_method=Client.AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH,
    )
    first, second = make_cert(name("first"), days=90), make_cert(name("second"), days=90)
    client_credential_add_certificate(client=client, certificate_pem=first.pem)
    return Kit(
        client=client,
        first=mtls_token(client, first),
        rotate_kwargs={"certificate_pem": second.pem},
        second=mtls_token(client, second),
    )


def subject_dn_kit(organisation: Organisation) -> Kit:
    client = client_create(
        organisation=organisation,
        name="mtls pki",
        grant_type="client_credentials",
        scopes=["orders:read"],
        auth_method=Client.AuthMethod.TLS_CLIENT_AUTH,
    )
    ca = make_ca()
    first = make_cert(name("orders-2026.voorbeeld.nl"), issuer=ca, days=90)
    second = make_cert(name("orders-2027.voorbeeld.nl"), issuer=ca, days=90)
    client_credential_add_certificate(client=client, subject_dn=first.subject_dn)
    return Kit(
        client=client,
        first=mtls_token(client, first),
        rotate_kwargs={"subject_dn": second.subject_dn},
        second=mtls_token(client, second),
    )


KITS = {
    "secret": secret_kit,
    "public_key": public_key_kit,
    "certificate": certificate_kit,
    "subject_dn": subject_dn_kit,
}


@pytest.fixture(params=list(KITS))
def kit(request, organisation, time_machine) -> Kit:
    time_machine.move_to(T0, tick=False)
    return KITS[request.param](organisation)


def credentials(client: Client) -> list[ClientCredential]:
    return list(ClientCredential.objects.filter(client=client).order_by("pk"))


def statuses(client: Client) -> list[str]:
    return [c.status for c in credentials(client)]


def audit_text() -> str:
    return json.dumps(list(AuditEvent.objects.values("event", "data", "target_label")), default=str)


# --- client_credential_rotate ----------------------------------------------------------------

pytestmark = pytest.mark.django_db


def test_rotation_puts_the_old_credential_in_overlap_and_activates_the_new_one(kit, client, settings, time_machine):
    settings.AUTHSERVER_CREDENTIAL_ROTATION_OVERLAP_SECONDS = 6 * 3600
    (old,) = credentials(kit.client)
    actor = UserFactory()

    result = client_credential_rotate(client_id=kit.client.pk, actor=actor, **kit.rotate_kwargs)

    old.refresh_from_db()
    new = result.credential
    assert (old.status, new.status) == (Status.EXPIRING, Status.ACTIVE)
    assert old.expires_at == T0 + 6 * HOUR  # the overlap, sooner than its own expiry
    assert new.replaces == old
    assert new.kind == old.kind
    assert result.overlapping == (old,)
    assert result.overlap_ends_at == T0 + 6 * HOUR
    assert (result.secret is not None) == (new.kind == ClientCredential.Kind.SECRET)
    event = AuditEvent.objects.get(event="client.credential.rotated")
    assert (event.actor_user, event.target_id, event.organisation) == (actor, str(new.pk), kit.client.organisation)
    assert event.data == {
        "client_id": kit.client.client_id,
        "kind": new.kind,
        "replaces": old.pk,
        "overlapping": [old.pk],
        "ended": [],
        "overlap_seconds": 6 * 3600,
        "overlap_ends_at": (T0 + 6 * HOUR).isoformat(),
    }
    assert AuditEvent.objects.filter(event="client.credential.issued", target_id=str(new.pk)).exists()

    # Both work during the overlap...
    assert kit.first(client).status_code == 200
    assert kit.second(client, result).status_code == 200
    # ...until the overlap ends, even before the job records it...
    time_machine.move_to(T0 + 6 * HOUR + SECOND, tick=False)
    assert kit.first(client).status_code == 401
    assert kit.second(client, result).status_code == 200
    # ...which it then does, once.
    assert credentials_expire_due() == 1
    old.refresh_from_db()
    assert old.status == Status.EXPIRED
    assert credentials_expire_due() == 0


def test_a_rotated_secret_is_returned_once_and_stored_only_as_a_hash(organisation, cc_basic):
    result = client_credential_rotate(client_id=cc_basic.client.pk)

    assert result.secret is not None
    assert len(result.secret) >= 32
    stored = ClientCredential.objects.filter(pk=result.credential.pk).values()[0]
    assert result.secret not in json.dumps(stored, default=str)
    assert stored["hint"] == result.secret[-4:]
    assert result.secret not in audit_text()
    assert cc_basic.secret not in audit_text()


def test_the_overlap_never_extends_an_old_credential(cc_basic, time_machine, settings):
    time_machine.move_to(T0, tick=False)
    (old,) = credentials(cc_basic.client)
    ClientCredential.objects.filter(pk=old.pk).update(expires_at=T0 + HOUR)

    client_credential_rotate(client_id=cc_basic.client.pk, overlap_seconds=24 * 3600)

    old.refresh_from_db()
    assert (old.status, old.expires_at) == (Status.EXPIRING, T0 + HOUR)


def test_the_overlap_defaults_to_the_setting(cc_basic, time_machine, settings):
    time_machine.move_to(T0, tick=False)
    settings.AUTHSERVER_CREDENTIAL_ROTATION_OVERLAP_SECONDS = 7 * 24 * 3600

    result = client_credential_rotate(client_id=cc_basic.client.pk)

    assert result.overlapping[0].expires_at == T0 + timedelta(days=7)


def test_no_overlap_ends_the_old_credential_at_once(client, cc_basic, time_machine):
    time_machine.move_to(T0, tick=False)

    result = client_credential_rotate(client_id=cc_basic.client.pk, overlap_seconds=0)

    assert statuses(cc_basic.client) == [Status.EXPIRED, Status.ACTIVE]
    assert result.overlapping == ()
    assert AuditEvent.objects.get(event="client.credential.rotated").data["ended"] == [result.credential.replaces_id]
    assert cc_token(client, cc_basic.client_id, cc_basic.secret).status_code == 401
    assert cc_token(client, cc_basic.client_id, result.secret).status_code == 200


def test_every_active_credential_goes_into_overlap_and_a_dead_one_expires(cc_basic, time_machine):
    time_machine.move_to(T0, tick=False)
    second = client_credential_issue_secret(client=cc_basic.client).credential
    dead = client_credential_issue_secret(client=cc_basic.client, expires_at=T0 + HOUR).credential
    time_machine.move_to(T0 + 2 * HOUR, tick=False)

    result = client_credential_rotate(client_id=cc_basic.client.pk, overlap_seconds=3600)

    first = credentials(cc_basic.client)[0]
    for row in (second, dead):
        row.refresh_from_db()
    assert (first.status, second.status, dead.status) == (Status.EXPIRING, Status.EXPIRING, Status.EXPIRED)
    assert dead.expires_at == T0 + HOUR
    assert set(result.overlapping) == {first, second}
    assert result.credential.replaces == dead  # the newest of the ones it replaced
    assert [c.status for c in credentials(cc_basic.client)].count(Status.ACTIVE) == 1


def test_rotating_again_keeps_one_active_credential_and_every_secret_working(client, cc_basic):
    results = [client_credential_rotate(client_id=cc_basic.client.pk) for _ in range(3)]

    assert statuses(cc_basic.client) == [Status.EXPIRING] * 3 + [Status.ACTIVE]
    for secret in [cc_basic.secret, *(r.secret for r in results)]:
        assert cc_token(client, cc_basic.client_id, secret).status_code == 200
    chain = [r.credential.replaces_id for r in results]
    assert chain == [c.pk for c in credentials(cc_basic.client)[:3]]


def test_a_suspended_client_may_rotate(cc_basic):
    client_suspend(client_id=cc_basic.client.pk)

    client_credential_rotate(client_id=cc_basic.client.pk)

    assert statuses(cc_basic.client) == [Status.EXPIRING, Status.ACTIVE]


def test_an_open_client_gets_the_short_credential_lifetime(organisation, time_machine, settings):
    time_machine.move_to(T0, tick=False)
    settings.AUTHSERVER_OPEN_CREDENTIAL_LIFETIME_DAYS = 14
    registered = register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid"],
        redirect_uris=[REDIRECT_URI],
        registration_mode=Client.RegistrationMode.OPEN,
    )

    result = client_credential_rotate(client_id=registered.client.pk)

    assert result.credential.expires_at == T0 + timedelta(days=14)


def test_an_open_mtls_client_keeps_the_sooner_of_certificate_and_open_lifetime(organisation, time_machine, settings):
    time_machine.move_to(T0, tick=False)
    settings.AUTHSERVER_OPEN_CREDENTIAL_LIFETIME_DAYS = 30
    client = client_create(
        organisation=organisation,
        name="open mtls",
        grant_type="authorization_code",
        redirect_uris=[REDIRECT_URI],
        auth_method=Client.AuthMethod.SELF_SIGNED_TLS_CLIENT_AUTH,
        registration_mode=Client.RegistrationMode.OPEN,
    )
    client_credential_add_certificate(client=client, certificate_pem=make_cert(name("a"), days=60).pem)
    short = make_cert(name("b"), days=10)

    result = client_credential_rotate(client_id=client.pk, certificate_pem=short.pem)

    assert result.credential.expires_at == short.certificate.not_valid_after_utc


@pytest.mark.parametrize(
    "status", [Client.Status.PENDING, Client.Status.REJECTED, Client.Status.EXPIRED, Client.Status.REVOKED]
)
def test_only_active_or_suspended_clients_rotate(cc_basic, status):
    Client.objects.filter(pk=cc_basic.client.pk).update(status=status)
    before = (statuses(cc_basic.client), AuditEvent.objects.count())

    with pytest.raises(DomainError, match=f"is {status}"):
        client_credential_rotate(client_id=cc_basic.client.pk)

    assert (statuses(cc_basic.client), AuditEvent.objects.count()) == before


def test_a_public_client_has_nothing_to_rotate(organisation):
    client = client_create(
        organisation=organisation,
        name="SPA",
        grant_type="authorization_code",
        auth_method=Client.AuthMethod.NONE,
        redirect_uris=[REDIRECT_URI],
    )

    with pytest.raises(DomainError, match="public"):
        client_credential_rotate(client_id=client.pk)

    assert not ClientCredential.objects.exists()


@pytest.mark.parametrize(
    ("fixture", "kwargs", "message"),
    [
        ("cc_basic", {"jwk": {"kty": "RSA"}}, "generated secret"),
        ("cc_basic", {"overlap_seconds": -1}, "negative"),
        ("cc_jwt", {}, "give a JWK or a jwks_uri"),
        ("cc_jwt", {"certificate_pem": "x"}, "give a JWK or a jwks_uri"),
        ("cc_jwt", {"jwk": {"kty": "oct", "k": "c2VjcmV0"}}, "private key material"),
        ("cc_jwt", {"jwk": SMALL_RSA_KEY}, "at least 2048 bits"),
    ],
)
def test_refused_rotations_store_nothing(request, fixture, kwargs, message):
    registered = request.getfixturevalue(fixture)
    before = (list(ClientCredential.objects.values()), AuditEvent.objects.count())

    with pytest.raises(DomainError, match=message):
        client_credential_rotate(client_id=registered.client.pk, **kwargs)

    assert (list(ClientCredential.objects.values()), AuditEvent.objects.count()) == before


def test_rotating_to_the_same_key_is_refused_and_the_old_key_stays_active(cc_jwt):
    before = list(ClientCredential.objects.values())

    with pytest.raises(DomainError, match="kid"):
        client_credential_rotate(client_id=cc_jwt.client.pk, jwk=cc_jwt.key.public_jwk)

    assert list(ClientCredential.objects.values()) == before
    assert statuses(cc_jwt.client) == [Status.ACTIVE]


def test_an_mtls_client_needs_a_valid_certificate_or_dn(organisation, time_machine):
    time_machine.move_to(T0, tick=False)
    kit = certificate_kit(organisation)
    short_lived = make_cert(name("short"), days=1)
    time_machine.move_to(T0 + 2 * timedelta(days=1), tick=False)

    with pytest.raises(DomainError, match="certificate or a subject DN"):
        client_credential_rotate(client_id=kit.client.pk)
    with pytest.raises(DomainError, match="expired"):
        client_credential_rotate(client_id=kit.client.pk, certificate_pem=short_lived.pem)

    assert statuses(kit.client) == [Status.ACTIVE]


# --- private_key_jwt: from jwks to jwks_uri and back (RFC 7591 §2: never both, but in overlap) ---


@pytest.fixture
def jwks_server(settings, tmp_path):
    ca = make_ca("rotation jwks_uri CA")
    cert_file, key_file = make_server_cert(ca).write(tmp_path, "server")
    (tmp_path / "ca.pem").write_text(ca.pem)
    settings.AUTHSERVER_JWKS_URI_CA_BUNDLE = str(tmp_path / "ca.pem")
    settings.AUTHSERVER_JWKS_URI_ALLOW_PRIVATE = True
    server = JwksServer(str(cert_file), str(key_file))
    yield server
    server.close()


def assertion_token(http, client: Client, key):
    form = {
        "grant_type": "client_credentials",
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": key.assertion(client.client_id, token_aud()),
    }
    return post_form(http, "/oauth/token", form)


@pytest.mark.parametrize("direction", ["jwk to jwks_uri", "jwks_uri to jwk"])
def test_a_key_client_rotates_between_jwks_and_jwks_uri(client, organisation, jwks_server, time_machine, direction):
    old_key, new_key = make_client_key(), make_client_key()
    registered = client_create(
        organisation=organisation,
        name="keys",
        grant_type="client_credentials",
        scopes=["orders:read"],
        auth_method=Client.AuthMethod.PRIVATE_KEY_JWT,
    )
    if direction == "jwk to jwks_uri":
        client_credential_add_public_key(client=registered, jwk=old_key.public_jwk)
        rotation = {"jwks_uri": jwks_server.serve_keys("jwks.json", new_key.public_jwk)}
    else:
        client_credential_add_jwks_uri(
            client=registered, jwks_uri=jwks_server.serve_keys("jwks.json", old_key.public_jwk)
        )
        rotation = {"jwk": new_key.public_jwk}
    assert assertion_token(client, registered, old_key).status_code == 200

    result = client_credential_rotate(client_id=registered.pk, overlap_seconds=3600, **rotation)

    assert statuses(registered) == [Status.EXPIRING, Status.ACTIVE]
    assert result.credential.replaces == result.overlapping[0]
    assert result.credential.kind != result.overlapping[0].kind
    assert assertion_token(client, registered, old_key).status_code == 200
    assert assertion_token(client, registered, new_key).status_code == 200
    time_machine.move_to(result.overlap_ends_at + SECOND, tick=False)
    assert credentials_expire_due() == 1
    assert assertion_token(client, registered, old_key).status_code == 401
    assert assertion_token(client, registered, new_key).status_code == 200


# --- client_credential_end_overlap -----------------------------------------------------------


def test_ending_an_overlap_stops_the_old_credential_at_once(client, cc_basic, time_machine):
    time_machine.move_to(T0, tick=False)
    result = client_credential_rotate(client_id=cc_basic.client.pk)
    (old,) = result.overlapping
    staff = UserFactory()
    time_machine.move_to(T0 + HOUR, tick=False)

    ended = client_credential_end_overlap(credential_id=old.pk, actor=staff)

    assert (ended.status, ended.expires_at) == (Status.EXPIRED, T0 + HOUR)
    event = AuditEvent.objects.get(event="client.credential.overlap_ended")
    assert (event.actor_user, event.target_id) == (staff, str(old.pk))
    assert cc_token(client, cc_basic.client_id, cc_basic.secret).status_code == 401
    assert cc_token(client, cc_basic.client_id, result.secret).status_code == 200
    assert credentials_expire_due() == 0  # nothing left for the job


def test_only_an_overlap_can_end(cc_basic):
    (active,) = credentials(cc_basic.client)

    with pytest.raises(DomainError, match="active"):
        client_credential_end_overlap(credential_id=active.pk, actor=None)

    assert statuses(cc_basic.client) == [Status.ACTIVE]
    assert not AuditEvent.objects.filter(event="client.credential.overlap_ended").exists()


def test_ending_the_last_usable_credential_is_refused(cc_basic):
    result = client_credential_rotate(client_id=cc_basic.client.pk)
    client_credential_revoke(credential_id=result.credential.pk)

    with pytest.raises(DomainError, match="no other usable credential"):
        client_credential_end_overlap(credential_id=result.overlapping[0].pk, actor=None)

    assert statuses(cc_basic.client) == [Status.EXPIRING, Status.REVOKED]


# --- client_reinstate ------------------------------------------------------------------------


def test_a_suspended_client_is_reinstated_and_works_again(client, cc_basic):
    staff = UserFactory(is_staff=True)
    client_suspend(client_id=cc_basic.client.pk, actor=staff)
    assert cc_token(client, cc_basic.client_id, cc_basic.secret).status_code == 401

    reinstated = client_reinstate(client_id=cc_basic.client.pk, actor=staff, reason="cleared")

    assert reinstated.status == Client.Status.ACTIVE
    event = AuditEvent.objects.get(event="client.reinstated")
    assert (event.actor_user, event.data) == (staff, {"client_id": cc_basic.client_id, "reason": "cleared"})
    assert cc_token(client, cc_basic.client_id, cc_basic.secret).status_code == 200


@pytest.mark.parametrize("status", [Client.Status.ACTIVE, Client.Status.REVOKED])
def test_only_a_suspended_client_is_reinstated(cc_basic, status):
    if status == Client.Status.REVOKED:
        client_revoke(client_id=cc_basic.client.pk)

    with pytest.raises(InvalidTransition):
        client_reinstate(client_id=cc_basic.client.pk, actor=None)

    assert not AuditEvent.objects.filter(event="client.reinstated").exists()


def test_a_client_of_an_inactive_organisation_is_not_reinstated(cc_basic):
    client_suspend(client_id=cc_basic.client.pk)
    Organisation.objects.filter(pk=cc_basic.client.organisation_id).update(status=Organisation.Status.SUSPENDED)

    with pytest.raises(DomainError, match="organisation is suspended"):
        client_reinstate(client_id=cc_basic.client.pk, actor=None)

    cc_basic.client.refresh_from_db()
    assert cc_basic.client.status == Client.Status.SUSPENDED


# --- Client.last_used_at ---------------------------------------------------------------------


def client_updates(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].startswith('UPDATE "clients_client"')]


def test_a_token_records_the_clients_last_use_once_an_hour(
    client, cc_basic, time_machine, django_capture_on_commit_callbacks
):
    time_machine.move_to(T0, tick=False)

    def token() -> list[str]:
        with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks(execute=True):
            assert cc_token(client, cc_basic.client_id, cc_basic.secret).status_code == 200
        cc_basic.client.refresh_from_db()
        return client_updates(queries)

    assert len(token()) == 1
    assert cc_basic.client.last_used_at == T0
    time_machine.move_to(T0 + 50 * timedelta(minutes=1), tick=False)
    assert token() == []  # within the hour: no write at all
    assert cc_basic.client.last_used_at == T0
    time_machine.move_to(T0 + HOUR + SECOND, tick=False)
    assert len(token()) == 1
    assert cc_basic.client.last_used_at == T0 + HOUR + SECOND


def test_a_public_client_records_its_last_use(
    client, organisation, user, time_machine, django_capture_on_commit_callbacks
):
    time_machine.move_to(T0, tick=True)
    registered = register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="none",
        scopes=["openid", "orders:read"],
        redirect_uris=[REDIRECT_URI],
    )
    code, verifier = obtain_code(client, user, registered)
    form = {
        "grant_type": "authorization_code",
        "client_id": registered.client_id,
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }

    with django_capture_on_commit_callbacks(execute=True):
        response = post_form(client, "/oauth/token", form)

    assert response.status_code == 200, response.content
    registered.client.refresh_from_db()
    assert registered.client.last_used_at is not None
    assert T0 <= registered.client.last_used_at < T0 + timedelta(minutes=5)


# --- races against the real database --------------------------------------------------------


def run_threads(*targets: Callable[[], None]) -> None:
    """Run each target in its own thread (own database connection); re-raise the first failure."""
    errors: list[BaseException] = []

    def wrap(target: Callable[[], None]) -> Callable[[], None]:
        def run() -> None:
            try:
                target()
            except BaseException as exc:  # handed to the test thread
                errors.append(exc)
            finally:
                connection.close()

        return run

    threads = [threading.Thread(target=wrap(target)) for target in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive(), "a thread hung (deadlock?)"
    if errors:
        raise errors[0]


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_rotations_end_consistent_and_every_secret_works(time_machine, settings):
    settings.AUTHSERVER_CREDENTIAL_ROTATION_OVERLAP_SECONDS = 3600
    registered = register_client(
        OrganisationFactory(), grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    )
    http = HttpClient()
    assert cc_token(http, registered.client_id, registered.secret).status_code == 200
    barrier = threading.Barrier(2, timeout=30)
    results: list[RotationResult] = []

    def rotate() -> None:
        barrier.wait()
        results.append(client_credential_rotate(client_id=registered.client.pk))

    run_threads(rotate, rotate)

    rows = credentials(registered.client)
    assert [r.status for r in rows].count(Status.ACTIVE) == 1
    assert [r.status for r in rows].count(Status.EXPIRING) == 2  # the first, and the first rotation's
    assert len(rows) == 3  # no credential lost
    newest = max(results, key=lambda r: r.credential.pk)
    assert newest.credential.status == Status.ACTIVE
    assert newest.credential.replaces_id == min(results, key=lambda r: r.credential.pk).credential.pk
    for secret in [registered.secret, *(r.secret for r in results)]:
        assert cc_token(http, registered.client_id, secret).status_code == 200

    time_machine.move_to(datetime.now(UTC) + HOUR + SECOND, tick=False)
    assert credentials_expire_due() == 2
    assert cc_token(http, registered.client_id, newest.secret).status_code == 200
    for secret in [registered.secret, *(r.secret for r in results if r is not newest)]:
        assert cc_token(http, registered.client_id, secret).status_code == 401
    assert credentials_expire_due() == 0


@pytest.mark.django_db(transaction=True)
def test_a_token_request_during_a_rotation_succeeds_with_the_old_or_the_new_secret():
    registered = register_client(
        OrganisationFactory(), grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    )
    http = HttpClient()
    assert cc_token(http, registered.client_id, registered.secret).status_code == 200
    rotated, commit = threading.Event(), threading.Event()
    results: list[RotationResult] = []
    seen: dict[str, int] = {}

    def rotate() -> None:
        with transaction.atomic():
            results.append(client_credential_rotate(client_id=registered.client.pk))
            rotated.set()
            assert commit.wait(timeout=30)

    def request_meanwhile() -> None:
        assert rotated.wait(timeout=30)
        try:
            # The rotation holds its locks and has not committed: the old secret works, the new
            # one does not exist yet for anyone else.
            seen["old"] = cc_token(HttpClient(), registered.client_id, registered.secret).status_code
            seen["new"] = cc_token(HttpClient(), registered.client_id, results[0].secret).status_code
        finally:
            commit.set()

    run_threads(rotate, request_meanwhile)

    assert seen == {"old": 200, "new": 401}
    assert cc_token(http, registered.client_id, registered.secret).status_code == 200
    assert cc_token(http, registered.client_id, results[0].secret).status_code == 200


@pytest.mark.django_db(transaction=True)
def test_token_requests_and_rotations_interleave_without_failures_or_deadlocks():
    """Each request uses the newest secret (the ACTIVE credential a rotation locks next) and
    makes its credential's and its client's last use stale first, so it writes both rows while
    rotations lock them: the lock orders must not cross (PostgreSQL would abort one)."""
    registered = register_client(
        OrganisationFactory(), grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    )
    http = HttpClient()
    assert cc_token(http, registered.client_id, registered.secret).status_code == 200
    barrier = threading.Barrier(2, timeout=30)
    answers: list[int] = []
    results: list[RotationResult] = []

    def requests() -> None:
        own = HttpClient()
        barrier.wait()
        for _ in range(REQUESTS):
            secret = results[-1].secret if results else registered.secret
            ClientCredential.objects.filter(client=registered.client).update(last_used_at=None)
            Client.objects.filter(pk=registered.client.pk).update(last_used_at=None)
            answers.append(cc_token(own, registered.client_id, secret).status_code)

    def rotations() -> None:
        barrier.wait()
        for _ in range(ROTATIONS):
            results.append(client_credential_rotate(client_id=registered.client.pk))

    run_threads(requests, rotations)

    assert answers == [200] * REQUESTS
    assert statuses(registered.client) == [Status.EXPIRING] * ROTATIONS + [Status.ACTIVE]
    assert cc_token(http, registered.client_id, results[-1].secret).status_code == 200


def lock_waiters() -> int:
    """Backends of this test database waiting for a lock (PostgreSQL's own view)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'"
        )
        return cursor.fetchone()[0]


def wait_until(condition: Callable[[], bool]) -> None:
    """Poll a database state another thread brings about (not a wait for time to pass)."""
    deadline = time.monotonic() + 30
    while not condition():
        assert time.monotonic() < deadline, "the expected lock wait never happened"
        time.sleep(0.01)


@pytest.mark.django_db(transaction=True)
def test_a_rotation_never_waits_for_a_token_request():
    """The worst interleaving, forced: a token request has written its credential's last use
    and is about to insert its token when a rotation locks the client and its credentials. A
    client-credentials request holds no lock while it waits (its writes are single autocommitted
    statements, no transaction), so the rotation goes through at once and the request then
    finishes: no deadlock is possible, and a rotation is never held up by token traffic."""
    from authserver import hotcache

    registered = register_client(
        OrganisationFactory(), grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    )
    assert cc_token(HttpClient(), registered.client_id, registered.secret).status_code == 200
    ClientCredential.objects.filter(client=registered.client).update(last_used_at=None)
    Client.objects.filter(pk=registered.client.pk).update(last_used_at=None)
    hotcache.replace_generation()  # the updates above bypass signals: the next request re-reads
    table_locked, release = threading.Event(), threading.Event()
    answers: list[int] = []
    results: list[RotationResult] = []

    def hold_token_table() -> None:
        # Holds new access tokens back, so the request stops right after client authentication.
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("LOCK TABLE oauth2_provider_accesstoken IN SHARE MODE")
            table_locked.set()
            assert release.wait(timeout=60)

    def token_request() -> None:
        assert table_locked.wait(timeout=30)
        answers.append(cc_token(HttpClient(), registered.client_id, registered.secret).status_code)

    def rotate() -> None:
        wait_until(lambda: lock_waiters() >= 1)  # the request waits at its token insert
        results.append(client_credential_rotate(client_id=registered.client.pk))

    def conduct() -> None:
        try:
            wait_until(lambda: bool(results))  # the rotation finished while the request waited
            assert lock_waiters() == 1
        finally:
            release.set()

    run_threads(hold_token_table, token_request, rotate, conduct)

    assert answers == [200]
    assert statuses(registered.client) == [Status.EXPIRING, Status.ACTIVE]
    registered.client.refresh_from_db()
    assert registered.client.last_used_at is not None
    http = HttpClient()
    for secret in (registered.secret, results[0].secret):
        assert cc_token(http, registered.client_id, secret).status_code == 200
