"""Selectors: what a member can reach is scoped to their live memberships; the reviewers' queue."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone

from onboarding import selectors
from onboarding.models import KycApplication, Membership, Organisation

from ..factories import InvitationFactory, KycApplicationFactory, MembershipFactory, OrganisationFactory, UserFactory

pytestmark = pytest.mark.django_db

T0 = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_a_user_reaches_only_their_live_organisations(user):
    mine, other, left = OrganisationFactory(), OrganisationFactory(), OrganisationFactory()
    MembershipFactory(user=user, organisation=mine, role=Membership.Role.DEVELOPER)
    MembershipFactory(user=user, organisation=left, ended_at=timezone.now())
    MembershipFactory(organisation=other)
    theirs = KycApplicationFactory(organisation=other)

    assert list(selectors.organisations_for_user(user)) == [mine]
    assert selectors.organisation_for_user(user=user, organisation_id=mine.pk) == mine
    with pytest.raises(Organisation.DoesNotExist):
        selectors.organisation_for_user(user=user, organisation_id=other.pk)
    with pytest.raises(KycApplication.DoesNotExist):
        selectors.application_for_user(user=user, application_id=theirs.pk)
    assert selectors.user_is_member(user, mine)
    assert not selectors.user_is_member(user, left)


def test_members_are_listed_owners_first():
    organisation = OrganisationFactory()
    developer = MembershipFactory(organisation=organisation, role=Membership.Role.DEVELOPER)
    owner = MembershipFactory(organisation=organisation, role=Membership.Role.OWNER)
    admin = MembershipFactory(organisation=organisation, role=Membership.Role.ADMIN)

    assert list(selectors.organisation_members(organisation)) == [owner, admin, developer]
    assert set(selectors.organisation_managers(organisation)) == {owner, admin}


def test_open_invitations(time_machine):
    time_machine.move_to(T0, tick=False)
    organisation = OrganisationFactory()
    open_one = InvitationFactory(organisation=organisation, email="a@example.org")
    InvitationFactory(organisation=organisation, expires_at=T0 - timedelta(seconds=1))
    InvitationFactory(organisation=organisation, revoked_at=T0)

    assert list(selectors.invitations_open(organisation)) == [open_one]
    assert list(selectors.invitations_for_email("A@example.org")) == [open_one]


def test_the_review_queue_waits_oldest_first_with_filters(time_machine):
    time_machine.move_to(T0, tick=False)
    old = KycApplicationFactory(status=KycApplication.Status.SUBMITTED, submitted_at=T0 - timedelta(days=10))
    high = KycApplicationFactory(
        status=KycApplication.Status.IN_REVIEW,
        submitted_at=T0 - timedelta(days=2),
        requested_trust_level=Organisation.TrustLevel.HIGH,
    )
    KycApplicationFactory(status=KycApplication.Status.DRAFT)
    KycApplicationFactory(status=KycApplication.Status.APPROVED, submitted_at=T0 - timedelta(days=30))

    assert list(selectors.review_queue()) == [old, high]
    assert list(selectors.review_queue(trust_level=Organisation.TrustLevel.HIGH)) == [high]
    assert list(selectors.review_queue(waiting_days=7)) == [old]
    assert selectors.review_queue().get(pk=high.pk).approvals_count == 0
    assert selectors.approvals_required(high) == 2
    assert selectors.approvals_required(old) == 1


def test_open_application_is_the_undecided_one():
    organisation = OrganisationFactory()
    KycApplicationFactory(organisation=organisation, status=KycApplication.Status.REJECTED)
    draft = KycApplicationFactory(organisation=organisation)

    assert selectors.open_application(organisation) == draft
    assert selectors.open_application(OrganisationFactory()) is None
    assert selectors.organisations_for_user(UserFactory()).count() == 0
