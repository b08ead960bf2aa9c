"""A lifecycle job through a real Celery worker on Redis (the approach of tests/authserver/test_worker.py).

The worker suspends an organisation whose review lapsed; in that same transaction clients'
receiver suspends its client and revokes its token, and on commit the suspension email is
enqueued, which the same worker sends (the console backend writes it to the worker's log).
"""

from __future__ import annotations

import secrets
from datetime import timedelta

import pytest
from django.conf import settings
from django.utils import timezone
from oauth2_provider.models import AccessToken

from authserver.models import AuditEvent
from clients.models import Client
from onboarding.models import Membership, Organisation
from onboarding.tasks import organisations_suspend_lapsed_task

from ..authserver.test_worker import celery_worker, wait_for  # noqa: F401 (the fixture)
from ..conftest import register_client
from ..factories import MembershipFactory, OrganisationFactory, UserFactory


@pytest.fixture(autouse=True)
def eager_tasks():
    """Overrides the onboarding conftest: here the tasks go to the real worker."""


@pytest.mark.worker
def test_suspending_lapsed_organisations_runs_on_a_real_worker(celery_worker):  # noqa: F811
    lapsed_at = timezone.now() - timedelta(days=settings.ONBOARDING_REVIEW_GRACE_DAYS + 1)
    lapsed = OrganisationFactory(next_review_at=lapsed_at, contact_email="lapsed@example.org")
    MembershipFactory(organisation=lapsed, role=Membership.Role.OWNER)
    current = OrganisationFactory(next_review_at=timezone.now() + timedelta(days=100))
    client = register_client(
        lapsed, grant_type="client_credentials", auth_method="client_secret_basic", scopes=["orders:read"]
    ).client
    AccessToken.objects.create(
        user=UserFactory(),
        application=client,
        token=secrets.token_urlsafe(),
        expires=timezone.now() + timedelta(hours=1),
    )

    celery_worker.send(organisations_suspend_lapsed_task)

    wait_for(
        lambda: Organisation.objects.get(pk=lapsed.pk).status == Organisation.Status.SUSPENDED,
        what="the lapsed organisation to be suspended",
        log=celery_worker.log,
    )
    wait_for(
        lambda: f"Subject: {lapsed.name} is suspended" in celery_worker.log.read_text(),
        what="the suspension email",
        log=celery_worker.log,
    )
    assert Organisation.objects.get(pk=current.pk).status == Organisation.Status.ACTIVE
    assert Client.objects.get(pk=client.pk).status == Client.Status.SUSPENDED
    assert not AccessToken.objects.filter(application=client).exists()
    assert AuditEvent.objects.filter(event="organisation.suspended", actor_type="system").count() == 1
    assert AuditEvent.objects.filter(event="client.suspended", target_id=str(client.pk)).count() == 1
    assert "lapsed@example.org" in celery_worker.log.read_text()
    assert celery_worker.process.poll() is None
