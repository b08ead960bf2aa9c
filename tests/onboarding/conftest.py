"""Onboarding fixtures: a pending organisation with its owner, staff reviewers, eager tasks."""

from __future__ import annotations

import pytest

from authserver.celery import app
from onboarding.models import Membership, Organisation

from ..factories import MembershipFactory, OrganisationFactory, UserFactory, otp_verified


@pytest.fixture(autouse=True)
def eager_tasks():
    """Tasks enqueued on commit run in the test process (the worker test runs a real one)."""
    # The app reads Django settings under the CELERY_ namespace, so the namespaced keys win.
    saved = app.conf.CELERY_TASK_ALWAYS_EAGER, app.conf.get("CELERY_TASK_EAGER_PROPAGATES", False)
    app.conf.CELERY_TASK_ALWAYS_EAGER, app.conf.CELERY_TASK_EAGER_PROPAGATES = True, True
    yield
    app.conf.CELERY_TASK_ALWAYS_EAGER, app.conf.CELERY_TASK_EAGER_PROPAGATES = saved


@pytest.fixture
def pending_organisation(db) -> Organisation:
    return OrganisationFactory(
        status=Organisation.Status.PENDING, trust_level=Organisation.TrustLevel.LOW, contact_email="info@example.org"
    )


@pytest.fixture
def owner(pending_organisation):
    return MembershipFactory(organisation=pending_organisation, role=Membership.Role.OWNER).user


@pytest.fixture
def developer(pending_organisation):
    return MembershipFactory(organisation=pending_organisation, role=Membership.Role.DEVELOPER).user


@pytest.fixture
def reviewer(db):
    """A staff reviewer as the admin has them: signed in with a second factor."""
    return otp_verified(UserFactory(is_staff=True))


@pytest.fixture
def second_reviewer(db):
    return otp_verified(UserFactory(is_staff=True))
