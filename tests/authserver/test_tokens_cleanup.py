"""tokens_clear_expired: what goes, what stays (reuse detection), and the bounded batches."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import pytest
from oauth2_provider.models import AccessToken, Grant, IDToken, RefreshToken

from authserver import services

from ..conftest import REDIRECT_URI

NOW = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SECOND = timedelta(seconds=1)


@pytest.fixture
def windows(settings):
    return {
        # DOT measures refresh expiry from the paired access token's expiry.
        "idle": timedelta(seconds=settings.OAUTH2_PROVIDER["REFRESH_TOKEN_EXPIRE_SECONDS"]),
        "absolute": timedelta(seconds=settings.AUTHSERVER_REFRESH_TOKEN_ABSOLUTE_LIFETIME),
    }


@pytest.fixture
def issue(web_client, user, time_machine):
    """Makers of grants and tokens for one client and user, created at a chosen moment."""
    client = web_client.client

    class Issue:
        @staticmethod
        def grant(*, expires: datetime) -> Grant:
            return Grant.objects.create(
                user=user,
                application=client,
                code=secrets.token_urlsafe(),
                expires=expires,
                redirect_uri=REDIRECT_URI,
                code_challenge=secrets.token_urlsafe(32),
                code_challenge_method="S256",
            )

        @staticmethod
        def access_token(*, expires: datetime, id_token: IDToken | None = None) -> AccessToken:
            return AccessToken.objects.create(
                user=user, application=client, token=secrets.token_urlsafe(), expires=expires, id_token=id_token
            )

        @staticmethod
        def refresh_token(
            *, access_token: AccessToken | None = None, revoked: datetime | None = None, created: datetime = NOW
        ) -> RefreshToken:
            time_machine.move_to(created, tick=False)
            token = RefreshToken.objects.create(
                user=user, application=client, token=secrets.token_urlsafe(), access_token=access_token, revoked=revoked
            )
            time_machine.move_to(NOW, tick=False)
            return token

        @staticmethod
        def id_token(*, expires: datetime) -> IDToken:
            return IDToken.objects.create(user=user, application=client, expires=expires)

    time_machine.move_to(NOW, tick=False)
    return Issue


def remaining() -> dict[str, set[int]]:
    return {
        "grants": set(Grant.objects.values_list("pk", flat=True)),
        "access_tokens": set(AccessToken.objects.values_list("pk", flat=True)),
        "refresh_tokens": set(RefreshToken.objects.values_list("pk", flat=True)),
        "id_tokens": set(IDToken.objects.values_list("pk", flat=True)),
    }


def test_clears_what_expired_and_keeps_what_is_live_or_needed(issue, windows):
    expired_grant = issue.grant(expires=NOW - SECOND)
    live_grant = issue.grant(expires=NOW + timedelta(seconds=60))

    live_access = issue.access_token(expires=NOW + timedelta(hours=1))
    live_refresh = issue.refresh_token(access_token=live_access)
    # Expired, but within the idle window: it anchors a refresh token that may still be used.
    anchoring_access = issue.access_token(expires=NOW - windows["idle"] + timedelta(minutes=5))
    anchored_refresh = issue.refresh_token(access_token=anchoring_access)
    stale_access = issue.access_token(expires=NOW - windows["idle"] - SECOND)

    # Reuse detection (RFC 9700 §4.14.2) needs recently revoked refresh tokens.
    recently_revoked = issue.refresh_token(revoked=NOW - timedelta(hours=1))
    long_revoked = issue.refresh_token(revoked=NOW - windows["absolute"] - SECOND)
    old_orphan = issue.refresh_token(created=NOW - windows["absolute"] - SECOND)

    expired_id_token = issue.id_token(expires=NOW - SECOND)
    live_id_token = issue.id_token(expires=NOW + timedelta(minutes=5))

    deleted = services.tokens_clear_expired()

    assert remaining() == {
        "grants": {live_grant.pk},
        "access_tokens": {live_access.pk, anchoring_access.pk},
        "refresh_tokens": {live_refresh.pk, anchored_refresh.pk, recently_revoked.pk},
        "id_tokens": {live_id_token.pk},
    }
    assert deleted == 5
    assert not Grant.objects.filter(pk=expired_grant.pk).exists()
    assert not AccessToken.objects.filter(pk=stale_access.pk).exists()
    assert not RefreshToken.objects.filter(pk__in=[long_revoked.pk, old_orphan.pk]).exists()
    assert not IDToken.objects.filter(pk=expired_id_token.pk).exists()


def test_an_expired_id_token_does_not_take_its_live_access_token_along(issue):
    # ID tokens live minutes, access tokens an hour; the access token row points at its
    # ID token with ON DELETE CASCADE, so deleting the ID token would end the session.
    id_token = issue.id_token(expires=NOW - timedelta(minutes=10))
    access = issue.access_token(expires=NOW + timedelta(minutes=50), id_token=id_token)
    refresh = issue.refresh_token(access_token=access)

    services.tokens_clear_expired()

    refresh.refresh_from_db()
    assert AccessToken.objects.filter(pk=access.pk).exists()
    assert refresh.access_token_id == access.pk
    assert IDToken.objects.filter(pk=id_token.pk).exists()


def test_an_expired_id_token_goes_with_its_stale_access_token(issue, windows):
    id_token = issue.id_token(expires=NOW - windows["idle"] - timedelta(hours=1))
    issue.access_token(expires=NOW - windows["idle"] - SECOND, id_token=id_token)

    assert services.tokens_clear_expired() == 2

    assert remaining()["access_tokens"] == set()
    assert remaining()["id_tokens"] == set()


def test_deletes_in_bounded_batches(issue, windows):
    for _ in range(3):
        issue.grant(expires=NOW - SECOND)
        issue.access_token(expires=NOW - windows["idle"] - SECOND)
        issue.refresh_token(revoked=NOW - windows["absolute"] - SECOND)
        issue.id_token(expires=NOW - SECOND)

    assert services.tokens_clear_expired(batch_size=2, max_batches=1) == 8
    assert {kind: len(pks) for kind, pks in remaining().items()} == {
        "grants": 1,
        "access_tokens": 1,
        "refresh_tokens": 1,
        "id_tokens": 1,
    }

    # A killed or bounded run is simply finished by the next one.
    assert services.tokens_clear_expired(batch_size=2, max_batches=1) == 4
    assert remaining() == {"grants": set(), "access_tokens": set(), "refresh_tokens": set(), "id_tokens": set()}


def test_max_batches_bounds_one_run(issue):
    for _ in range(5):
        issue.grant(expires=NOW - SECOND)

    assert services.tokens_clear_expired(batch_size=2, max_batches=2) == 4
    assert Grant.objects.count() == 1


def test_running_twice_changes_nothing_more(issue, windows):
    issue.grant(expires=NOW - SECOND)
    issue.grant(expires=NOW + SECOND)
    issue.refresh_token(revoked=NOW - timedelta(minutes=1))
    issue.access_token(expires=NOW - windows["idle"] - SECOND)
    issue.access_token(expires=NOW + timedelta(hours=1))
    assert services.tokens_clear_expired() == 2
    after_first = remaining()

    assert services.tokens_clear_expired() == 0
    assert remaining() == after_first


def test_the_now_argument_sets_the_cut_off(issue):
    grant = issue.grant(expires=NOW + timedelta(minutes=1))

    assert services.tokens_clear_expired(now=NOW) == 0
    assert services.tokens_clear_expired(now=NOW + timedelta(minutes=2)) == 1
    assert not Grant.objects.filter(pk=grant.pk).exists()
