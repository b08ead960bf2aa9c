"""Runtime services: every signing-key state change goes through here (STYLE.md §1)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from .audit import audit_record
from .errors import DomainError
from .models import SigningKey
from .oauth.keys import encrypt_private_key, generate_private_key, keyring, public_jwk_for


def _invalidate_keyring() -> None:
    transaction.on_commit(keyring.clear)


@transaction.atomic
def signing_key_create(*, alg: str, status: str = SigningKey.Status.NEXT, actor: Any = None) -> SigningKey:
    """Generate a key pair for ``alg``; the private key is stored only encrypted."""
    if alg not in SigningKey.Algorithm.values:
        raise DomainError(f"unsupported algorithm {alg!r}; choose one of {', '.join(SigningKey.Algorithm.values)}")
    if status not in (SigningKey.Status.NEXT, SigningKey.Status.ACTIVE):
        raise DomainError("a new key is either next or active")
    private_key = generate_private_key(alg)
    jwk = public_jwk_for(private_key, alg)
    now = timezone.now()
    key = SigningKey.objects.create(
        kid=jwk["kid"],
        alg=alg,
        status=SigningKey.Status.NEXT,
        private_key_encrypted=encrypt_private_key(private_key),
        public_jwk=jwk,
        created_at=now,
    )
    audit_record("signing_key.created", actor=actor, target=key, data={"alg": alg, "kid": key.kid})
    if status == SigningKey.Status.ACTIVE:
        key = signing_key_activate(key_id=key.pk, actor=actor)
    _invalidate_keyring()
    return key


@transaction.atomic
def signing_key_activate(*, key_id: int, actor: Any = None) -> SigningKey:
    """Make a next key the active key of its algorithm; the previous active key retires."""
    key = SigningKey.objects.select_for_update().get(pk=key_id)
    now = timezone.now()
    for previous in SigningKey.objects.select_for_update().filter(alg=key.alg, status=SigningKey.Status.ACTIVE):
        previous.transition_to(SigningKey.Status.RETIRED)
        previous.retired_at = now
        previous.save(update_fields=["status", "retired_at"])
        audit_record("signing_key.retired", actor=actor, target=previous, data={"kid": previous.kid})
    key.transition_to(SigningKey.Status.ACTIVE)
    key.activated_at = now
    key.save(update_fields=["status", "activated_at"])
    audit_record("signing_key.activated", actor=actor, target=key, data={"kid": key.kid, "alg": key.alg})
    _invalidate_keyring()
    return key


@transaction.atomic
def signing_key_retire(*, key_id: int, actor: Any = None) -> SigningKey:
    """Stop signing with a key; it stays published for the retention period."""
    key = SigningKey.objects.select_for_update().get(pk=key_id)
    key.transition_to(SigningKey.Status.RETIRED)
    key.retired_at = timezone.now()
    key.save(update_fields=["status", "retired_at"])
    audit_record("signing_key.retired", actor=actor, target=key, data={"kid": key.kid})
    _invalidate_keyring()
    return key


def signing_key_ensure_active(*, alg: str) -> SigningKey:
    """Return the active key for ``alg``, promoting a next key or creating one if needed."""
    for _attempt in range(3):
        try:
            with transaction.atomic():
                active = SigningKey.objects.filter(alg=alg, status=SigningKey.Status.ACTIVE).first()
                if active is not None:
                    return active
                upcoming = (
                    SigningKey.objects.filter(alg=alg, status=SigningKey.Status.NEXT).order_by("created_at").first()
                )
                if upcoming is not None:
                    return signing_key_activate(key_id=upcoming.pk)
                return signing_key_create(alg=alg, status=SigningKey.Status.ACTIVE)
        except IntegrityError:
            continue  # another process activated one at the same moment; read it
    raise DomainError(f"could not establish an active {alg} signing key")


@transaction.atomic
def signing_key_rotate(*, alg: str, actor: Any = None) -> SigningKey:
    """Promote the next key of ``alg`` to active and pre-publish a new next key.

    If no next key exists one is created and activated at once; tokens it signs verify only
    for clients that refresh the JWKS on an unknown ``kid``, so schedule rotations instead.
    """
    upcoming = SigningKey.objects.filter(alg=alg, status=SigningKey.Status.NEXT).order_by("created_at").first()
    if upcoming is None:
        upcoming = signing_key_create(alg=alg, actor=actor)
    active = signing_key_activate(key_id=upcoming.pk, actor=actor)
    signing_key_create(alg=alg, actor=actor)
    audit_record("signing_key.rotated", actor=actor, target=active, data={"alg": alg, "kid": active.kid})
    return active


def signing_keys_rotate_due(*, now: datetime | None = None) -> int:
    """The periodic job: keep a next key published and rotate keys that are due. Idempotent.

    A key is due once it has been active for AUTHSERVER_SIGNING_KEY_ROTATION_DAYS, and only
    rotates when its successor has been published for AUTHSERVER_SIGNING_KEY_PREPUBLISH_SECONDS,
    so every relying party has seen the new key before it signs anything.
    """
    now = now or timezone.now()
    rotation_age = timedelta(days=settings.AUTHSERVER_SIGNING_KEY_ROTATION_DAYS)
    prepublish = timedelta(seconds=settings.AUTHSERVER_SIGNING_KEY_PREPUBLISH_SECONDS)
    changes = 0
    for alg in settings.AUTHSERVER_SIGNING_ALGORITHMS:
        with transaction.atomic():
            active = SigningKey.objects.select_for_update().filter(alg=alg, status=SigningKey.Status.ACTIVE).first()
            upcoming = (
                SigningKey.objects.select_for_update()
                .filter(alg=alg, status=SigningKey.Status.NEXT)
                .order_by("created_at")
                .first()
            )
            if upcoming is None:
                signing_key_create(alg=alg)
                changes += 1
                continue
            if active is None:
                if upcoming.created_at <= now - prepublish:
                    signing_key_activate(key_id=upcoming.pk)
                    signing_key_create(alg=alg)
                    changes += 1
                continue
            activated_at = active.activated_at or active.created_at
            if activated_at <= now - rotation_age and upcoming.created_at <= now - prepublish:
                signing_key_rotate(alg=alg)
                changes += 1
    return changes


def tokens_clear_expired(*, batch_size: int = 1000, max_batches: int = 50, now: datetime | None = None) -> int:
    """Delete expired grants and tokens in bounded batches; returns how many rows went.

    Idempotent and safe to kill halfway: every batch is its own DELETE. Revoked refresh
    tokens are kept for the absolute refresh lifetime, because reuse detection needs them.
    """
    from django.db.models import Q
    from oauth2_provider.models import (
        get_access_token_model,
        get_grant_model,
        get_id_token_model,
        get_refresh_token_model,
    )

    now = now or timezone.now()
    idle = timedelta(seconds=settings.OAUTH2_PROVIDER["REFRESH_TOKEN_EXPIRE_SECONDS"])
    absolute = timedelta(seconds=settings.AUTHSERVER_REFRESH_TOKEN_ABSOLUTE_LIFETIME)
    targets = [
        (get_grant_model(), Q(expires__lt=now)),
        (get_refresh_token_model(), Q(revoked__lt=now - absolute)),
        # An expired access token still anchors its refresh token for the idle window.
        (get_access_token_model(), Q(expires__lt=now - idle)),
        (get_refresh_token_model(), Q(access_token__isnull=True, revoked__isnull=True, created__lt=now - absolute)),
        # The access token row cascades from its ID token, and ID tokens expire long before
        # access tokens do: delete an ID token only once its access token is gone.
        (get_id_token_model(), Q(expires__lt=now, access_token__isnull=True)),
    ]
    deleted = 0
    for model, condition in targets:
        for _batch in range(max_batches):
            ids = list(model.objects.filter(condition).values_list("pk", flat=True)[:batch_size])
            if not ids:
                break
            model.objects.filter(pk__in=ids).delete()
            deleted += len(ids)
    return deleted
