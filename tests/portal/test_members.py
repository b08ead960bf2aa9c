"""Inviting members, withdrawing invitations, ending memberships, accepting an invitation."""

from __future__ import annotations

import pytest
from django.core import mail
from django.test import Client

from onboarding import services
from onboarding.models import Invitation, Membership
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def invite_url(organisation) -> str:
    return f"/portal/organisations/{organisation.pk}/invitations/"


def test_owner_invites_a_member_by_email(owner, pending_organisation, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = owner.client().post(invite_url(pending_organisation), {"email": "Bram@Example.org", "role": "admin"})
    assert response.status_code == 302
    invitation = Invitation.objects.get(organisation=pending_organisation)
    assert (invitation.email, invitation.role) == ("bram@example.org", "admin")
    assert len(mail.outbox) == 1
    assert "/portal/invitations/" in mail.outbox[0].body
    page = owner.client().get(f"/portal/organisations/{pending_organisation.pk}/")
    assert "bram@example.org" in page.content.decode(), "the open invitation is listed"


def test_admin_invites_developers_but_not_owners(admin_member, pending_organisation):
    client = admin_member.client()
    assert (
        client.post(invite_url(pending_organisation), {"email": "c@example.org", "role": "developer"}).status_code
        == 302
    )
    response = client.post(invite_url(pending_organisation), {"email": "d@example.org", "role": "owner"})
    assert response.status_code == 400
    assert response.context["invite_form"].non_field_errors()
    assert not Invitation.objects.filter(email="d@example.org").exists()


@pytest.mark.parametrize(
    ("data", "field"),
    [
        ({"email": "not an email", "role": "developer"}, "email"),
        ({"email": "", "role": "developer"}, "email"),
        ({"email": "x@example.org", "role": "superuser"}, "role"),
    ],
)
def test_bad_invitation_input_is_a_field_error(owner, pending_organisation, data, field):
    response = owner.client().post(invite_url(pending_organisation), data)
    assert response.status_code == 400
    assert response.context["invite_form"].errors[field]
    assert not Invitation.objects.exists()


def test_inviting_a_member_again_is_a_field_error(owner, developer, pending_organisation):
    response = owner.client().post(invite_url(pending_organisation), {"email": developer.user.email, "role": "admin"})
    assert response.status_code == 400
    assert response.context["invite_form"].errors["email"]
    assert not Invitation.objects.exists()


def test_developer_sees_no_invite_form_and_cannot_post_one(developer, pending_organisation):
    page = developer.client().get(f"/portal/organisations/{pending_organisation.pk}/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "Send invitation" not in html
    assert invite_url(pending_organisation) not in html
    response = developer.client().post(invite_url(pending_organisation), {"email": "x@example.org", "role": "owner"})
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_owner_withdraws_an_invitation(owner, pending_organisation):
    invitation, _token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="x@example.org", role="developer", actor=owner.user
    )
    url = f"/portal/organisations/{pending_organisation.pk}/invitations/{invitation.pk}/revoke/"
    assert owner.client().post(url).status_code == 302
    invitation.refresh_from_db()
    assert invitation.revoked_at is not None
    # Twice is a message, not an error page.
    response = owner.client().post(url, follow=True)
    assert response.status_code == 200
    assert "Only an open invitation" in response.content.decode()


def test_developer_cannot_withdraw_an_invitation(owner, developer, pending_organisation):
    invitation, _token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="x@example.org", role="developer", actor=owner.user
    )
    url = f"/portal/organisations/{pending_organisation.pk}/invitations/{invitation.pk}/revoke/"
    assert developer.client().post(url).status_code == 403
    invitation.refresh_from_db()
    assert invitation.revoked_at is None


def test_owner_ends_a_membership_and_a_developer_leaves(owner, developer, admin_member, pending_organisation):
    base = f"/portal/organisations/{pending_organisation.pk}/members"
    assert owner.client().post(f"{base}/{admin_member.membership.pk}/end/").status_code == 302
    admin_member.membership.refresh_from_db()
    assert admin_member.membership.ended_at is not None

    response = developer.client().post(f"{base}/{developer.membership.pk}/end/")
    assert response.status_code == 302
    assert response["Location"] == "/portal/"
    developer.membership.refresh_from_db()
    assert developer.membership.ended_at is not None
    # Gone: the organisation's pages are a 404 for the former member now.
    assert developer.client().get(f"/portal/organisations/{pending_organisation.pk}/").status_code == 404


def test_developer_cannot_end_someone_elses_membership(owner, developer, pending_organisation):
    url = f"/portal/organisations/{pending_organisation.pk}/members/{owner.membership.pk}/end/"
    assert developer.client().post(url).status_code == 403
    owner.membership.refresh_from_db()
    assert owner.membership.ended_at is None


def test_the_last_owner_cannot_leave(owner, pending_organisation):
    url = f"/portal/organisations/{pending_organisation.pk}/members/{owner.membership.pk}/end/"
    response = owner.client().post(url, follow=True)
    assert response.status_code == 200
    assert "last owner" in response.content.decode()
    owner.membership.refresh_from_db()
    assert owner.membership.ended_at is None


def test_accepting_an_invitation_needs_login_then_a_click(client, owner, pending_organisation):
    invitee = UserFactory(email="bram@example.org")
    _invitation, token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="bram@example.org", role="developer", actor=owner.user
    )
    url = f"/portal/invitations/{token}/"
    anonymous = client.get(url)
    assert anonymous.status_code == 302
    assert anonymous["Location"].startswith("/accounts/login/?next=/portal/invitations/")

    client.force_login(invitee)
    opened = client.get(url)
    assert opened.status_code == 302
    confirm_url = opened["Location"]
    assert confirm_url == "/portal/invitations/accept/", "the token leaves the URL"
    page = client.get(confirm_url)
    assert page.status_code == 200
    assert "csrfmiddlewaretoken" in page.content.decode()
    assert not Membership.objects.filter(user=invitee).exists(), "GET accepts nothing"

    response = client.post(confirm_url)
    assert response.status_code == 302
    assert response["Location"] == f"/portal/organisations/{pending_organisation.pk}/"
    membership = Membership.objects.get(user=invitee)
    assert membership.role == "developer"

    client.get(url)
    again = client.post(confirm_url)
    assert again.status_code == 400
    assert "used already" in again.content.decode()
    assert Membership.objects.filter(user=invitee).count() == 1


def test_invitation_for_another_address_or_a_bad_token_is_refused(client, owner, pending_organisation):
    _invitation, token = services.invitation_create(
        organisation_id=pending_organisation.pk, email="bram@example.org", role="admin", actor=owner.user
    )
    stranger = UserFactory(email="eve@example.org")
    client.force_login(stranger)
    client.get(f"/portal/invitations/{token}/")
    response = client.post("/portal/invitations/accept/")
    assert response.status_code == 400
    assert "another email address" in response.content.decode()
    client.get("/portal/invitations/not-a-real-token/")
    assert client.post("/portal/invitations/accept/").status_code == 400
    assert not Membership.objects.filter(user=stranger).exists()
    # Without having opened a link there is nothing to accept.
    fresh = Client()
    fresh.force_login(stranger)
    assert fresh.post("/portal/invitations/accept/").status_code == 400
