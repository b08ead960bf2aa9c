"""The audit log: who did what to what, no secret ever, and append-only."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from authserver.audit import AuditEvent, audit_record
from authserver.context import RequestContext, reset_request_context, set_request_context

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "key",
    [
        "secret",
        "client_secret",
        "Client_Secret",
        "password",
        "new_password",
        "access_token",
        "refresh_token",
        "client_assertion",
        "private_key",
        "private_key_encrypted",
        "code_verifier",
        "otp",
        "otp_code",
    ],
)
def test_secret_looking_keys_are_dropped(key):
    event = audit_record("test.event", data={key: "s3cr3t-value", "kid": "key-1"})

    event.refresh_from_db()
    assert event.data == {"kid": "key-1"}


def test_secrets_are_dropped_at_any_depth():
    event = audit_record(
        "test.event",
        data={
            "client": {"client_id": "orders", "client_secret": "s3cr3t-value", "keys": {"private_key": "pem"}},
            "credentials": [{"kind": "secret", "secret": "s3cr3t-value"}, "plain"],
        },
    )

    event.refresh_from_db()
    assert event.data == {
        "client": {"client_id": "orders", "keys": {}},
        "credentials": [{"kind": "secret"}, "plain"],
    }
    assert "s3cr3t-value" not in str(event.data)


def test_values_that_are_not_json_are_stored_as_text():
    moment = datetime(2026, 1, 1, tzinfo=UTC)

    event = audit_record("test.event", data={"at": moment, "scopes": ["a", "b"], "count": 2, "none": None})

    event.refresh_from_db()
    assert event.data == {"at": str(moment), "scopes": ["a", "b"], "count": 2, "none": None}


def test_a_system_event_has_no_actor():
    event = audit_record("test.event")

    assert (event.actor_type, event.actor_label, event.actor_user) == (AuditEvent.ActorType.SYSTEM, "system", None)


def test_a_user_actor_and_a_target(user, organisation):
    event = audit_record("organisation.reviewed", actor=user, target=organisation, organisation=organisation)

    event.refresh_from_db()
    assert (event.actor_type, event.actor_user, event.actor_label) == (
        AuditEvent.ActorType.USER,
        user,
        user.username,
    )
    assert (event.target_type, event.target_id, event.target_label) == (
        "onboarding.organisation",
        str(organisation.pk),
        organisation.name,
    )
    assert event.organisation == organisation


def test_a_client_actor(cc_basic):
    event = audit_record("token.issued", actor=cc_basic.client)

    assert (event.actor_type, event.actor_label, event.actor_user) == (
        AuditEvent.ActorType.CLIENT,
        cc_basic.client_id,
        None,
    )


def test_the_request_context_is_recorded():
    token = set_request_context(RequestContext(request_id="req-123", ip_address="192.0.2.10"))
    try:
        event = audit_record("test.event")
    finally:
        reset_request_context(token)

    event.refresh_from_db()
    assert (event.request_id, event.ip_address) == ("req-123", "192.0.2.10")


def test_an_audit_event_cannot_be_changed():
    event = audit_record("test.event", data={"kid": "key-1"})
    event.event = "test.rewritten"
    event.data = {"kid": "key-2"}

    with pytest.raises(RuntimeError, match="append-only"):
        event.save()

    stored = AuditEvent.objects.get(pk=event.pk)
    assert (stored.event, stored.data) == ("test.event", {"kid": "key-1"})


def test_an_audit_event_cannot_be_deleted():
    event = audit_record("test.event")

    with pytest.raises(RuntimeError, match="append-only"):
        event.delete()

    assert AuditEvent.objects.filter(pk=event.pk).exists()


def test_a_failed_change_leaves_no_audit_row(organisation):
    from authserver.errors import DomainError
    from onboarding.services import organisation_create

    with pytest.raises(DomainError):
        organisation_create(name="Copy", kvk_number=organisation.kvk_number)

    assert not AuditEvent.objects.exists()
