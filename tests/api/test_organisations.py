"""/api/v1/organisations, members and invitations: happy paths by session and by token, and refusals."""

from __future__ import annotations

import pytest
from django.core import mail

from authserver.audit import AuditEvent
from onboarding import services
from onboarding.models import Invitation, Membership, Organisation

from .conftest import API, OIN, assert_problem, field_errors, session_client

pytestmark = pytest.mark.django_db


def new_organisation(**overrides):
    data = {
        "name": "Waterschap Nieuw",
        "kind": "private",
        "kvk_number": "12345678",
        "contact_email": "info@waterschap.example",
    }
    data.update(overrides)
    return data


# ---- list and create ----------------------------------------------------------------------


def test_list_shows_only_my_organisations(caller, owner, org, outsider, other_org):
    response = caller(owner.user).get(f"{API}/organisations")
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    body = response.json()
    assert body["count"] == 1
    [listed] = body["results"]
    assert listed["id"] == org.pk
    assert listed["oin"] == OIN
    assert listed["my_role"] == "owner"
    assert listed["status"] == "pending"


def test_an_ended_membership_shows_nothing(caller, owner, developer, org):
    services.membership_end(membership_id=developer.membership.pk, actor=owner.user)
    assert caller(developer.user).get(f"{API}/organisations").json()["count"] == 0
    assert_problem(caller(developer.user).get(f"{API}/organisations/{org.pk}"), 404)


def test_create_makes_me_the_owner(caller, user):
    response = caller(user).post(f"{API}/organisations", new_organisation(), format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    organisation = Organisation.objects.get(pk=body["id"])
    assert response["Location"] == f"{API}/organisations/{organisation.pk}"
    assert body["status"] == "pending"
    assert body["trust_level"] == "low"
    assert body["my_role"] == "owner"
    assert organisation.kvk_number == "12345678"
    assert Membership.objects.filter(user=user, organisation=organisation, role="owner").exists()
    assert AuditEvent.objects.filter(event="organisation.created", organisation=organisation).exists()


def test_status_and_trust_level_cannot_be_chosen(user):
    response = session_client(user).post(
        f"{API}/organisations", new_organisation(status="active", trust_level="high"), format="json"
    )
    assert response.status_code == 201
    organisation = Organisation.objects.get(pk=response.json()["id"])
    assert organisation.status == "pending"
    assert organisation.trust_level == "low"


@pytest.mark.parametrize(
    ("overrides", "field", "words"),
    [
        ({"kind": "government", "kvk_number": "", "oin": "12345678123456789000"}, "oin", "prefix"),
        ({"kvk_number": "1234567"}, "kvk_number", "8 digits"),
        ({"rsin": "123456789"}, "rsin", "11-test"),
        ({"kind": "government", "kvk_number": ""}, "oin", "OIN"),
        ({"kind": "foreign", "kvk_number": "", "eidas_identifier": "not an identifier"}, "eidas_identifier", "eIDAS"),
        ({"kind": "municipality"}, "kind", "valid choice"),
        ({"name": ""}, "name", "blank"),
        ({"contact_email": "not-an-email"}, "contact_email", "email"),
        ({"name": "x" * 256}, "name", "255"),
    ],
)
def test_bad_input_is_a_field_error_and_nothing_is_stored(user, overrides, field, words):
    before = Organisation.objects.count()
    response = session_client(user).post(f"{API}/organisations", new_organisation(**overrides), format="json")
    body = assert_problem(response, 400, type_slug="validation-error")
    errors = field_errors(body)
    assert field in errors, body
    assert any(words.lower() in message.lower() for message in errors[field]), errors
    assert next(e for e in body["errors"] if e["field"] == field)["pointer"] == f"#/{field}"
    assert Organisation.objects.count() == before
    assert not Membership.objects.filter(user=user).exists()


@pytest.mark.parametrize(
    ("field", "value"),
    [("oin", OIN), ("kvk_number", "87654321")],
)
def test_a_duplicate_identifier_is_a_field_error(user, org, other_org, field, value):
    other_org.kvk_number = "87654321"
    other_org.save()
    data = new_organisation(kvk_number="11223344")
    data[field] = value
    if field == "oin":
        data["kind"] = "government"
    before = Organisation.objects.count()
    body = assert_problem(
        session_client(user).post(f"{API}/organisations", data, format="json"), 400, type_slug="validation-error"
    )
    assert "exists already" in " ".join(field_errors(body)[field])
    assert Organisation.objects.count() == before


@pytest.mark.parametrize(
    "body",
    [[], "just a string", 42, None, {"name": ["a", "list"], "kind": "private"}, {"name": "a\x00b", "kind": "private"}],
)
def test_odd_json_is_a_validation_problem(user, body):
    response = session_client(user).post(f"{API}/organisations", body, format="json")
    assert_problem(response, 400, type_slug="validation-error")
    assert not Organisation.objects.filter(memberships__user=user).exists()


def test_malformed_json_is_an_invalid_request(user):
    response = session_client(user).post(f"{API}/organisations", '{"name": ', content_type="application/json")
    assert_problem(response, 400, type_slug="invalid-request")


# ---- one organisation ---------------------------------------------------------------------


def test_detail(caller, developer, org):
    response = caller(developer.user).get(f"{API}/organisations/{org.pk}")
    assert response.status_code == 200
    assert response.json()["name"] == "Gemeente Voorbeeld"
    assert response.json()["my_role"] == "developer"


@pytest.mark.parametrize("method", ["get", "patch"])
def test_another_organisation_is_not_found_even_by_guessing(caller, outsider, org, method):
    api = caller(outsider.user)
    for organisation_id in (org.pk, org.pk + 1000, 10**18 - 1):
        response = getattr(api, method)(f"{API}/organisations/{organisation_id}", {"name": "Mine now"}, format="json")
        body = assert_problem(response, 404)
        assert str(org.name) not in body["detail"]
    org.refresh_from_db()
    assert org.name == "Gemeente Voorbeeld"


def test_an_id_too_large_for_the_database_is_not_found(user):
    assert_problem(session_client(user).get(f"{API}/organisations/{'9' * 30}"), 404)


def test_patch(caller, owner, org):
    response = caller(owner.user).patch(
        f"{API}/organisations/{org.pk}", {"contact_phone": "+31 70 123 4567", "name": "Gemeente Nieuw"}, format="json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["name"] == "Gemeente Nieuw"
    org.refresh_from_db()
    assert org.contact_phone == "+31 70 123 4567"
    assert AuditEvent.objects.filter(event="organisation.updated", organisation=org).exists()


def test_patch_by_a_developer_is_forbidden(caller, developer, org):
    response = caller(developer.user).patch(f"{API}/organisations/{org.pk}", {"name": "Hijacked"}, format="json")
    body = assert_problem(response, 403, type_slug="forbidden")
    assert "owners or administrators" in body["detail"]
    org.refresh_from_db()
    assert org.name == "Gemeente Voorbeeld"


def test_patch_with_a_bad_oin_changes_nothing(owner, org):
    response = session_client(owner.user).patch(
        f"{API}/organisations/{org.pk}", {"oin": "00000005111222333000", "name": "Renamed"}, format="json"
    )
    body = assert_problem(response, 400, type_slug="validation-error")
    assert "oin" in field_errors(body)
    org.refresh_from_db()
    assert (org.oin, org.name) == (OIN, "Gemeente Voorbeeld")


def test_identity_of_an_active_organisation_is_a_conflict(owner, org):
    org.status = Organisation.Status.ACTIVE
    org.save()
    response = session_client(owner.user).patch(f"{API}/organisations/{org.pk}", {"name": "Renamed"}, format="json")
    body = assert_problem(response, 409, type_slug="conflict")
    assert "cannot change" in body["detail"]


# ---- members ------------------------------------------------------------------------------


def test_members(caller, owner, developer, org, outsider):
    response = caller(developer.user).get(f"{API}/organisations/{org.pk}/members")
    assert response.status_code == 200
    members = {member["username"]: member for member in response.json()["results"]}
    assert set(members) == {owner.user.username, developer.user.username}
    assert members[owner.user.username]["role"] == "owner"
    assert_problem(caller(outsider.user).get(f"{API}/organisations/{org.pk}/members"), 404)


def test_end_a_membership(caller, owner, developer, org):
    url = f"{API}/organisations/{org.pk}/members/{developer.membership.pk}"
    response = caller(owner.user).delete(url)
    assert response.status_code == 204
    assert response["Cache-Control"] == "no-store"
    developer.membership.refresh_from_db()
    assert developer.membership.ended_at is not None
    assert_problem(caller(owner.user).delete(url), 404)


def test_a_developer_cannot_remove_others_but_can_leave(caller, owner, developer, org):
    api = caller(developer.user)
    assert_problem(
        api.delete(f"{API}/organisations/{org.pk}/members/{owner.membership.pk}"), 403, type_slug="forbidden"
    )
    owner.membership.refresh_from_db()
    assert owner.membership.ended_at is None
    assert api.delete(f"{API}/organisations/{org.pk}/members/{developer.membership.pk}").status_code == 204


def test_the_last_owner_cannot_leave(owner, org):
    response = session_client(owner.user).delete(f"{API}/organisations/{org.pk}/members/{owner.membership.pk}")
    assert_problem(response, 409, type_slug="conflict")


def test_a_membership_of_another_organisation_is_not_found(owner, org, outsider):
    # The owner of org guesses the outsider's membership id under their own organisation.
    response = session_client(owner.user).delete(f"{API}/organisations/{org.pk}/members/{outsider.membership.pk}")
    assert_problem(response, 404)
    outsider.membership.refresh_from_db()
    assert outsider.membership.ended_at is None


# ---- invitations --------------------------------------------------------------------------


def test_invite(caller, owner, org, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = caller(owner.user).post(
            f"{API}/organisations/{org.pk}/invitations", {"email": "New@Example.org", "role": "admin"}, format="json"
        )
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["email"] == "new@example.org"
    assert body["role"] == "admin"
    assert "token" not in body
    assert "token_hash" not in body
    invitation = Invitation.objects.get(pk=body["id"])
    assert invitation.organisation == org
    assert [message.to for message in mail.outbox] == [["new@example.org"]]


def test_a_developer_cannot_invite(caller, developer, org):
    response = caller(developer.user).post(
        f"{API}/organisations/{org.pk}/invitations", {"email": "friend@example.org"}, format="json"
    )
    assert_problem(response, 403, type_slug="forbidden")
    assert not Invitation.objects.exists()


def test_an_outsider_cannot_invite(outsider, org):
    response = session_client(outsider.user).post(
        f"{API}/organisations/{org.pk}/invitations", {"email": "friend@example.org"}, format="json"
    )
    assert_problem(response, 404)
    assert not Invitation.objects.exists()


def test_invite_with_a_bad_email(owner, org):
    response = session_client(owner.user).post(
        f"{API}/organisations/{org.pk}/invitations", {"email": "nobody", "role": "king"}, format="json"
    )
    body = assert_problem(response, 400, type_slug="validation-error")
    assert set(field_errors(body)) == {"email", "role"}


def test_accept_an_invitation(caller, owner, org, make_member, other_org):
    invitee = make_member(other_org).user
    _invitation, token = services.invitation_create(
        organisation_id=org.pk, email=invitee.email, role="developer", actor=owner.user
    )
    api = caller(invitee)
    response = api.post(f"{API}/invitations/accept", {"token": token}, format="json")
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["organisation"] == org.pk
    assert body["role"] == "developer"
    assert api.get(f"{API}/organisations").json()["count"] == 2
    # Single use.
    assert_problem(api.post(f"{API}/invitations/accept", {"token": token}, format="json"), 409, type_slug="conflict")


def test_an_invitation_for_someone_else_is_forbidden(owner, org, user):
    _invitation, token = services.invitation_create(
        organisation_id=org.pk, email="someone.else@example.org", role="developer", actor=owner.user
    )
    response = session_client(user).post(f"{API}/invitations/accept", {"token": token}, format="json")
    assert_problem(response, 403, type_slug="forbidden")
    assert not Membership.objects.filter(user=user).exists()


def test_an_unknown_invitation_token(user):
    response = session_client(user).post(f"{API}/invitations/accept", {"token": "guess"}, format="json")
    assert_problem(response, 409, type_slug="conflict")
    response = session_client(user).post(f"{API}/invitations/accept", {}, format="json")
    assert "token" in field_errors(assert_problem(response, 400, type_slug="validation-error"))
