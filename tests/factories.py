"""factory_boy factories (STYLE.md §8). Clients go through the services, like production."""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from onboarding.models import Evidence, Invitation, KycApplication, Membership, Organisation

PASSWORD = "correct horse battery staple"


class OrganisationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Organisation

    name = factory.Sequence(lambda n: f"Organisation {n}")
    kind = Organisation.Kind.PRIVATE
    kvk_number = factory.Sequence(lambda n: f"{10000000 + n}")
    status = Organisation.Status.ACTIVE
    trust_level = Organisation.TrustLevel.SUBSTANTIAL


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda u: f"{u.username}@example.org")
    first_name = "Anne"
    last_name = "de Vries"
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


def otp_verified(user):
    """``user`` as django-otp's OTPMiddleware leaves a request's user after a second factor.

    Staff powers need it (onboarding.permissions.is_reviewer): a service test that acts as a
    reviewer in the admin passes such a user. Browsers and tokens load their user afresh.
    """
    user.is_verified = lambda: True
    return user


# --- onboarding -----------------------------------------------------------------------------
# Rows in a given state for tests that start mid-way; state changes in tests go through the
# services.

# The smallest whole PDF the evidence reader accepts (magic, body, end-of-file marker).
MINIMAL_PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    organisation = factory.SubFactory(OrganisationFactory)
    role = Membership.Role.OWNER


class InvitationFactory(factory.django.DjangoModelFactory):
    """An open invitation; its clear token is ``invitation.token`` (only the hash is stored)."""

    class Meta:
        model = Invitation

    organisation = factory.SubFactory(OrganisationFactory)
    email = factory.Sequence(lambda n: f"invitee{n}@example.org")
    role = Membership.Role.DEVELOPER
    token = factory.LazyFunction(lambda: secrets.token_urlsafe(32))
    token_hash = factory.LazyAttribute(lambda i: hashlib.sha256(i.token.encode()).hexdigest())
    expires_at = factory.LazyFunction(lambda: timezone.now() + timedelta(days=7))

    @classmethod
    def _create(cls, model_class, *args, token: str, **kwargs):
        invitation = super()._create(model_class, *args, **kwargs)
        invitation.token = token  # the clear token exists only on this object, as in production
        return invitation


class KycApplicationFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = KycApplication

    organisation = factory.SubFactory(OrganisationFactory, status=Organisation.Status.PENDING)
    status = KycApplication.Status.DRAFT
    requested_trust_level = Organisation.TrustLevel.SUBSTANTIAL
    motivation = "We exchange orders with municipalities."


class EvidenceFactory(factory.django.DjangoModelFactory):
    """A KvK extract by default; certificates come from tests/onboarding/certificates.py."""

    class Meta:
        model = Evidence

    application = factory.SubFactory(KycApplicationFactory)
    kind = Evidence.Kind.KVK_EXTRACT
    filename = "kvk-extract.pdf"
    content_type = "application/pdf"
    content = MINIMAL_PDF
    sha256 = factory.LazyAttribute(lambda e: hashlib.sha256(bytes(e.content)).hexdigest())
    size = factory.LazyAttribute(lambda e: len(e.content))
    extracted = factory.LazyFunction(lambda: {"document": "kvk_extract", "format": "PDF"})


class ScopeFactory(factory.django.DjangoModelFactory):
    """A catalogue scope (authserver.models.Scope); medium risk unless told otherwise."""

    class Meta:
        model = "authserver.Scope"
        django_get_or_create = ("name",)

    name = factory.Sequence(lambda n: f"api{n}:read")
    description = factory.LazyAttribute(lambda s: f"Read access ({s.name})")
    risk_level = "medium"
