"""Signing keys: encryption at rest, the lifecycle services, the periodic rotation and the JWKS."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from cryptography.fernet import Fernet, InvalidToken
from django.db import IntegrityError, transaction

from authserver import services
from authserver.errors import DomainError, InvalidTransition
from authserver.models import AuditEvent, SigningKey
from authserver.oauth.keys import decrypt_private_key, keyring, public_jwk_for
from authserver.selectors import published_signing_keys

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)
Status = SigningKey.Status


def key_states() -> set[tuple[str, str, str]]:
    return set(SigningKey.objects.values_list("alg", "kid", "status"))


def audit_events() -> Counter[str]:
    return Counter(AuditEvent.objects.values_list("event", flat=True))


def key_in(status: str, alg: str = "RS256") -> SigningKey:
    """A key brought to ``status`` through the services, as production does."""
    key = services.signing_key_create(alg=alg)
    if status in (Status.ACTIVE, Status.RETIRED):
        key = services.signing_key_activate(key_id=key.pk)
    if status == Status.RETIRED:
        key = services.signing_key_retire(key_id=key.pk)
    return key


def jwks_kids() -> set[str]:
    keyring.clear()  # the keyring caches per process; these tests change keys under it
    return {jwk["kid"] for jwk in keyring.jwks()["keys"]}


@pytest.fixture
def rotation(settings):
    """One algorithm keeps the rotation arithmetic readable; the periods are the defaults."""
    settings.AUTHSERVER_SIGNING_ALGORITHMS = ["RS256"]
    return {
        "age": timedelta(days=settings.AUTHSERVER_SIGNING_KEY_ROTATION_DAYS),
        "prepublish": timedelta(seconds=settings.AUTHSERVER_SIGNING_KEY_PREPUBLISH_SECONDS),
        "retention": timedelta(seconds=settings.AUTHSERVER_SIGNING_KEY_RETENTION_SECONDS),
    }


# --- create -------------------------------------------------------------------------------


def test_create_stores_the_private_key_only_encrypted_under_the_kek(settings):
    key = services.signing_key_create(alg="RS256")

    stored = bytes(SigningKey.objects.get(pk=key.pk).private_key_encrypted)
    assert b"PRIVATE KEY" not in stored
    assert not stored.startswith(b"-----BEGIN")
    pem = Fernet(settings.AUTHSERVER_KEY_ENCRYPTION_KEYS[0].encode()).decrypt(stored)
    assert pem.startswith(b"-----BEGIN PRIVATE KEY-----")
    # The decrypted private key is the one behind the published public JWK.
    assert public_jwk_for(decrypt_private_key(stored), "RS256") == key.public_jwk
    assert key.status == Status.NEXT
    assert key.public_jwk["kid"] == key.kid
    assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key.public_jwk)
    event = AuditEvent.objects.get(event="signing_key.created")
    assert event.target_id == str(key.pk)
    assert event.data == {"alg": "RS256", "kid": key.kid}


def test_a_different_kek_cannot_decrypt_a_stored_key(settings):
    key = services.signing_key_create(alg="ES256")
    stored = bytes(key.private_key_encrypted)

    with pytest.raises(InvalidToken):
        Fernet(Fernet.generate_key()).decrypt(stored)
    settings.AUTHSERVER_KEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    with pytest.raises(InvalidToken):
        decrypt_private_key(stored)


def test_an_older_kek_still_decrypts_after_the_kek_rotates(settings):
    key = services.signing_key_create(alg="ES256")
    settings.AUTHSERVER_KEY_ENCRYPTION_KEYS = [Fernet.generate_key().decode(), *settings.AUTHSERVER_KEY_ENCRYPTION_KEYS]

    assert public_jwk_for(decrypt_private_key(key.private_key_encrypted), "ES256") == key.public_jwk


def test_create_active_signs_at_once():
    key = services.signing_key_create(alg="PS256", status=Status.ACTIVE)

    key.refresh_from_db()
    assert key.status == Status.ACTIVE
    assert key.activated_at is not None
    assert audit_events() == Counter({"signing_key.created": 1, "signing_key.activated": 1})


@pytest.mark.parametrize(("alg", "status"), [("HS256", Status.NEXT), ("none", Status.NEXT), ("RS256", Status.RETIRED)])
def test_create_refuses_what_is_not_a_new_signing_key(alg, status):
    with pytest.raises(DomainError):
        services.signing_key_create(alg=alg, status=status)

    assert not SigningKey.objects.exists()
    assert not AuditEvent.objects.exists()


# --- activate, retire, the one-active constraint --------------------------------------------


def test_activate_retires_the_previous_active_key(time_machine):
    time_machine.move_to(T0, tick=False)
    previous = key_in(Status.ACTIVE)
    upcoming = services.signing_key_create(alg="RS256")
    other_alg = key_in(Status.ACTIVE, alg="ES256")
    time_machine.move_to(T0 + timedelta(hours=1), tick=False)
    before = audit_events()

    services.signing_key_activate(key_id=upcoming.pk)

    previous.refresh_from_db()
    upcoming.refresh_from_db()
    other_alg.refresh_from_db()
    assert (previous.status, previous.retired_at) == (Status.RETIRED, T0 + timedelta(hours=1))
    assert (upcoming.status, upcoming.activated_at) == (Status.ACTIVE, T0 + timedelta(hours=1))
    assert other_alg.status == Status.ACTIVE  # one active key per algorithm, not overall
    assert audit_events() - before == Counter({"signing_key.retired": 1, "signing_key.activated": 1})
    assert AuditEvent.objects.get(event="signing_key.retired").target_id == str(previous.pk)
    assert AuditEvent.objects.filter(event="signing_key.activated", target_id=str(upcoming.pk)).exists()


def test_the_database_allows_one_active_key_per_algorithm():
    key_in(Status.ACTIVE)
    upcoming = services.signing_key_create(alg="RS256")

    with pytest.raises(IntegrityError), transaction.atomic():
        SigningKey.objects.filter(pk=upcoming.pk).update(status=Status.ACTIVE)

    upcoming.refresh_from_db()
    assert upcoming.status == Status.NEXT


def test_retire_stops_signing_and_is_audited(time_machine):
    time_machine.move_to(T0, tick=False)
    key = key_in(Status.ACTIVE)

    services.signing_key_retire(key_id=key.pk)

    key.refresh_from_db()
    assert (key.status, key.retired_at) == (Status.RETIRED, T0)
    assert AuditEvent.objects.filter(event="signing_key.retired", target_id=str(key.pk)).count() == 1


# --- rotate ---------------------------------------------------------------------------------


def test_rotate_promotes_next_prepublishes_a_new_one_and_keeps_the_old_one_published(rotation, time_machine):
    time_machine.move_to(T0, tick=False)
    old = key_in(Status.ACTIVE)
    upcoming = services.signing_key_create(alg="RS256")
    rotated_at = T0 + timedelta(days=1)
    time_machine.move_to(rotated_at, tick=False)
    before = audit_events()

    active = services.signing_key_rotate(alg="RS256")

    old.refresh_from_db()
    assert active.pk == upcoming.pk
    assert active.status == Status.ACTIVE
    assert (old.status, old.retired_at) == (Status.RETIRED, rotated_at)
    new_next = SigningKey.objects.get(alg="RS256", status=Status.NEXT)
    assert new_next.pk not in (old.pk, upcoming.pk)
    assert audit_events() - before == Counter(
        {"signing_key.retired": 1, "signing_key.activated": 1, "signing_key.created": 1, "signing_key.rotated": 1}
    )
    assert jwks_kids() == {old.kid, upcoming.kid, new_next.kid}

    time_machine.move_to(rotated_at + rotation["retention"] - SECOND, tick=False)
    assert old.kid in jwks_kids()

    time_machine.move_to(rotated_at + rotation["retention"] + SECOND, tick=False)
    assert jwks_kids() == {upcoming.kid, new_next.kid}


def test_rotate_without_a_next_key_creates_and_activates_one():
    old = key_in(Status.ACTIVE)

    active = services.signing_key_rotate(alg="RS256")

    old.refresh_from_db()
    assert active.pk != old.pk
    assert active.status == Status.ACTIVE
    assert old.status == Status.RETIRED
    assert SigningKey.objects.filter(alg="RS256", status=Status.NEXT).count() == 1


# --- ensure_active --------------------------------------------------------------------------


def test_ensure_active_creates_an_active_key_when_there_is_none():
    key = services.signing_key_ensure_active(alg="ES256")

    assert key.status == Status.ACTIVE
    assert list(SigningKey.objects.values_list("pk", "status")) == [(key.pk, Status.ACTIVE)]
    assert audit_events() == Counter({"signing_key.created": 1, "signing_key.activated": 1})


def test_ensure_active_promotes_the_oldest_next_key(time_machine):
    time_machine.move_to(T0, tick=False)
    oldest = services.signing_key_create(alg="RS256")
    time_machine.move_to(T0 + timedelta(days=1), tick=False)
    services.signing_key_create(alg="RS256")

    key = services.signing_key_ensure_active(alg="RS256")

    assert key.pk == oldest.pk
    assert key.status == Status.ACTIVE
    assert SigningKey.objects.count() == 2


def test_ensure_active_leaves_an_active_key_alone():
    active = key_in(Status.ACTIVE)
    states, events = key_states(), audit_events()

    assert services.signing_key_ensure_active(alg="RS256").pk == active.pk
    assert key_states() == states
    assert audit_events() == events


# --- the transition table -------------------------------------------------------------------

ALL_MOVES = [(current, target) for current in Status.values for target in Status.values]
ALLOWED_MOVES = [move for move in ALL_MOVES if move[1] in SigningKey.TRANSITIONS[move[0]]]
REFUSED_MOVES = [move for move in ALL_MOVES if move not in ALLOWED_MOVES]


def _move_id(move: tuple[str, str]) -> str:
    return "->".join(move)


def test_the_transition_table_covers_every_status():
    assert set(SigningKey.TRANSITIONS) == set(Status.values)


@pytest.mark.parametrize("move", ALLOWED_MOVES, ids=_move_id)
def test_every_allowed_move_works(move):
    current, target = move
    key = SigningKey(status=current)

    key.transition_to(target)

    assert key.status == target


@pytest.mark.parametrize("move", REFUSED_MOVES, ids=_move_id)
def test_every_other_move_raises(move):
    current, target = move
    key = SigningKey(status=current)

    with pytest.raises(InvalidTransition):
        key.transition_to(target)
    assert key.status == current


# The service that makes each move; every allowed move has one.
SERVICE_FOR = {
    Status.ACTIVE: lambda key: services.signing_key_activate(key_id=key.pk),
    Status.RETIRED: lambda key: services.signing_key_retire(key_id=key.pk),
}


@pytest.mark.parametrize("move", ALLOWED_MOVES, ids=_move_id)
def test_every_allowed_move_has_an_audited_service(move):
    current, target = move
    key = key_in(current)
    events = AuditEvent.objects.count()

    SERVICE_FOR[target](key)

    key.refresh_from_db()
    assert key.status == target
    assert AuditEvent.objects.count() > events


@pytest.mark.parametrize(
    "move",
    [move for move in REFUSED_MOVES if move[1] in SERVICE_FOR],
    ids=_move_id,
)
def test_services_refuse_every_other_move_and_change_nothing(move):
    current, target = move
    key = key_in(current)
    states, events = key_states(), audit_events()

    with pytest.raises(InvalidTransition):
        SERVICE_FOR[target](key)

    assert key_states() == states
    assert audit_events() == events


# --- the periodic job -----------------------------------------------------------------------


def test_rotate_due_prepublishes_a_next_key_for_every_algorithm(settings):
    settings.AUTHSERVER_SIGNING_ALGORITHMS = ["RS256", "PS256", "ES256"]
    services.signing_key_ensure_active(alg="RS256")
    before = audit_events()

    assert services.signing_keys_rotate_due() == 3

    assert set(SigningKey.objects.filter(status=Status.NEXT).values_list("alg", flat=True)) == {
        "RS256",
        "PS256",
        "ES256",
    }
    assert audit_events() - before == Counter({"signing_key.created": 3})


def test_rotate_due_rotates_only_after_the_rotation_age(rotation, time_machine):
    time_machine.move_to(T0, tick=False)
    old = services.signing_key_ensure_active(alg="RS256")
    assert services.signing_keys_rotate_due() == 1
    upcoming = SigningKey.objects.get(status=Status.NEXT)
    states, events = key_states(), audit_events()

    time_machine.move_to(T0 + rotation["age"] - SECOND, tick=False)
    assert services.signing_keys_rotate_due() == 0
    assert key_states() == states
    assert audit_events() == events

    time_machine.move_to(T0 + rotation["age"] + SECOND, tick=False)
    assert services.signing_keys_rotate_due() == 1

    old.refresh_from_db()
    upcoming.refresh_from_db()
    assert old.status == Status.RETIRED
    assert upcoming.status == Status.ACTIVE
    assert SigningKey.objects.filter(status=Status.NEXT).exclude(pk=upcoming.pk).count() == 1
    assert audit_events() - events == Counter(
        {"signing_key.retired": 1, "signing_key.activated": 1, "signing_key.created": 1, "signing_key.rotated": 1}
    )


def test_rotate_due_waits_until_the_next_key_was_published_long_enough(rotation, time_machine):
    time_machine.move_to(T0, tick=False)
    old = services.signing_key_ensure_active(alg="RS256")
    published_at = T0 + rotation["age"] - timedelta(days=1)
    time_machine.move_to(published_at, tick=False)
    assert services.signing_keys_rotate_due() == 1  # the first next key, one day before rotation is due
    states = key_states()

    # Due by age, but relying parties have seen the next key for a day only.
    time_machine.move_to(T0 + rotation["age"] + SECOND, tick=False)
    assert services.signing_keys_rotate_due() == 0
    time_machine.move_to(published_at + rotation["prepublish"] - SECOND, tick=False)
    assert services.signing_keys_rotate_due() == 0
    assert key_states() == states

    time_machine.move_to(published_at + rotation["prepublish"] + SECOND, tick=False)
    assert services.signing_keys_rotate_due() == 1
    old.refresh_from_db()
    assert old.status == Status.RETIRED


def test_rotate_due_activates_a_prepublished_key_when_none_is_active(rotation, time_machine):
    time_machine.move_to(T0, tick=False)
    assert services.signing_keys_rotate_due() == 1
    first = SigningKey.objects.get()
    assert first.status == Status.NEXT  # published first: nobody has seen it yet

    time_machine.move_to(T0 + rotation["prepublish"] - SECOND, tick=False)
    assert services.signing_keys_rotate_due() == 0

    time_machine.move_to(T0 + rotation["prepublish"] + SECOND, tick=False)
    assert services.signing_keys_rotate_due() == 1
    first.refresh_from_db()
    assert first.status == Status.ACTIVE
    assert SigningKey.objects.filter(status=Status.NEXT).count() == 1


def test_rotate_due_twice_in_a_row_gives_the_same_state(rotation, time_machine):
    time_machine.move_to(T0, tick=False)
    services.signing_key_ensure_active(alg="RS256")
    services.signing_keys_rotate_due()
    time_machine.move_to(T0 + rotation["age"] + SECOND, tick=False)
    assert services.signing_keys_rotate_due() == 1
    states, events = key_states(), audit_events()

    assert services.signing_keys_rotate_due() == 0

    assert key_states() == states
    assert audit_events() == events


# --- what the JWKS publishes ----------------------------------------------------------------


def test_published_keys_are_next_active_and_recently_retired(rotation, time_machine):
    time_machine.move_to(T0, tick=False)
    retired = key_in(Status.RETIRED)
    active = key_in(Status.ACTIVE)
    upcoming = services.signing_key_create(alg="RS256")
    long_gone_at = T0 + rotation["retention"] + SECOND

    assert {key.kid for key in published_signing_keys()} == {retired.kid, active.kid, upcoming.kid}
    assert jwks_kids() == {retired.kid, active.kid, upcoming.kid}

    time_machine.move_to(long_gone_at, tick=False)
    assert {key.kid for key in published_signing_keys()} == {active.kid, upcoming.kid}
    assert jwks_kids() == {active.kid, upcoming.kid}
    assert SigningKey.objects.filter(pk=retired.pk).exists()  # unpublished, not deleted


def test_jwks_publishes_public_members_only():
    key_in(Status.ACTIVE)
    services.signing_key_create(alg="ES256")

    keyring.clear()
    for jwk in keyring.jwks()["keys"]:
        assert {"kid", "kty", "alg", "use"} <= set(jwk)
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(jwk)
