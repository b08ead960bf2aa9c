"""factory_boy factories (STYLE.md §8). Clients go through the services, like production."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from onboarding.models import Organisation

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
