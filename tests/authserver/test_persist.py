"""fast_insert writes the row Model.save() would, in one statement, and says so (post_save)."""

from __future__ import annotations

import hashlib
from datetime import timedelta

import pytest
from django.db.models.signals import post_save
from django.forms.models import model_to_dict
from django.utils import timezone
from oauth2_provider.models import get_access_token_model

from authserver.oauth.persist import fast_insert

from ..conftest import register_client
from ..factories import OrganisationFactory

AccessToken = get_access_token_model()


@pytest.mark.django_db
def test_the_row_is_the_one_save_writes(django_assert_num_queries):
    client = register_client(
        OrganisationFactory(), grant_type="client_credentials", auth_method="client_secret_basic", scopes=[]
    ).client
    expires = timezone.now() + timedelta(hours=1)

    def token(value: str) -> AccessToken:
        instance = AccessToken(
            user=None, scope="orders:read", expires=expires, application=client, resource=["https://api.example/"]
        )
        instance.token = value
        return instance

    saved = []
    post_save.connect(
        lambda sender, instance, created, **kwargs: saved.append(created),
        sender=AccessToken,
        weak=False,
        dispatch_uid="t",
    )
    try:
        fast = token("fast-token-value")
        with django_assert_num_queries(1):
            fast_insert(fast)
        slow = token("slow-token-value")
        slow.save()
    finally:
        post_save.disconnect(sender=AccessToken, dispatch_uid="t")

    assert fast.pk is not None
    assert not fast._state.adding
    assert saved == [True, True]
    fast_row, slow_row = (model_to_dict(AccessToken.objects.get(pk=pk)) for pk in (fast.pk, slow.pk))
    differing = {key for key in fast_row if fast_row[key] != slow_row[key]} - {"id", "token", "token_checksum"}
    assert not differing, (fast_row, slow_row)
    stored = AccessToken.objects.get(pk=fast.pk)
    assert stored.token_checksum == hashlib.sha256(b"fast-token-value").hexdigest()  # as save() computes it
    assert stored.resource == ["https://api.example/"]
    assert stored.created is not None
    assert stored.updated is not None
