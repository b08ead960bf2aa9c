"""Token introspection (RFC 7662) that resource servers can lean on.

docs/decisions/0010-introspection.md records the why. In short:

- Only resource servers ask (the view checks ``Client.is_resource_server``), and a resource
  server learns about a token only when the token is for one of *its* APIs: one of the
  token's audiences (its RFC 8707 ``resource``) is an ApiResource listing the caller among its
  ``introspectors``, or, for a token without an audience, one of its scopes belongs to such an
  API. Anything else is ``{"active": false}`` (RFC 7662 §2.2: reveal nothing more).
- Active access-token answers are cached per (caller, token checksum) for at most half the
  token's remaining lifetime and never longer than AUTHSERVER_INTROSPECTION_CACHE_SECONDS
  (0: no caching at all). Inactive answers and refresh-token answers are never cached.
- A token that stops working gets a tombstone, read in the same cache round trip as the
  answer, so the very next call is inactive. Signals set it, after the commit: an access token
  deleted (DOT revokes an access token by deleting it, on every path: /oauth/revoke, refresh
  rotation, ``revoke_access_token``, ``RefreshToken.revoke_family``, client suspension and
  revocation), a user deactivated, a client or an organisation that is no longer active.
- What a caller may introspect (its APIs' audiences and scopes) is a process-local copy, and
  cached answers carry the generation of those copies (authserver/hotcache.py), which every
  change of an API, a scope or an introspector list replaces.
"""

from __future__ import annotations

import calendar
import hashlib
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt as pyjwt
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.utils import timezone
from oauth2_provider.models import get_access_token_model, get_refresh_token_model

from authserver import hotcache
from clients.models import Client
from onboarding.models import Organisation

from . import claims as oidc_claims

log = logging.getLogger(__name__)

AccessToken = get_access_token_model()
RefreshToken = get_refresh_token_model()

# A tombstone outlives every answer cached before it by this margin, so that an answer computed
# from the database just before a revocation committed, and written just after, is still
# overruled (docs/decisions/0010-introspection.md: the race).
TOMBSTONE_GRACE = 60
# Organisation identifiers in an answer, in the NL GOV order of preference (STANDARDS.md).
ORGANISATION_FIELDS = ("name", "oin", "kvk_number", "eidas_identifier")


def caller_tag(caller: Client) -> str:
    """The caller in a cache key: its row and its client_id, so a reused primary key (a restored
    database, or test databases sharing one Redis) never finds another client's entries."""
    return f"{caller.pk}.{hashlib.sha256(caller.client_id.encode()).hexdigest()[:16]}"


def answer_key(caller: Client, checksum: str) -> str:
    return f"introspection:answer:{caller_tag(caller)}:{checksum}"


def revoked_key(checksum: str) -> str:
    return f"introspection:revoked:{checksum}"


def token_checksum(token: str) -> str:
    """DOT's ``token_checksum``: SHA-256 of the token, hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def cache_seconds(expires: datetime, now: datetime) -> int:
    """How long an active answer may be cached: half the remaining lifetime, at most the setting."""
    half = int((expires - now).total_seconds() // 2)
    return max(0, min(settings.AUTHSERVER_INTROSPECTION_CACHE_SECONDS, half))


@dataclass(frozen=True)
class Rights:
    """What one resource server may introspect: the audiences and scopes of its APIs."""

    audiences: frozenset[str]
    scopes: frozenset[str]

    def cover(self, *, resource: Iterable[str], scope: str) -> bool:
        """A token with an audience: one of its audiences is the caller's API. A token without
        one (no RFC 8707 resource requested): one of its scopes belongs to the caller's API."""
        audiences = [value for value in resource or [] if isinstance(value, str)]
        if audiences:
            return not self.audiences.isdisjoint(audiences)
        return not self.scopes.isdisjoint(scope.split())


def rights_of(caller: Client) -> Rights:
    """One query: the audiences of the caller's APIs joined with their scopes."""
    from authserver.models import ApiResource

    rows = ApiResource.objects.filter(introspectors=caller.pk).values_list("audience", "scopes__name")
    audiences: set[str] = set()
    scopes: set[str] = set()
    for audience, scope in rows:
        audiences.add(audience)
        if scope:
            scopes.add(scope)
    return Rights(audiences=frozenset(audiences), scopes=frozenset(scopes))


def introspect(*, caller: Client, token: str, token_type_hint: str | None = None) -> dict[str, Any]:
    """RFC 7662 §2.2: the answer for an authenticated resource server; never raises for a bad token."""
    checksum = token_checksum(token)
    # Cached answers belong to the generation of the process-local copies (authserver/hotcache.py),
    # which every change of an API, a scope or an introspector list replaces: an answer of another
    # generation is never used. None (no shared cache, or it is down): nothing is cached.
    version = hotcache.generation() if settings.AUTHSERVER_INTROSPECTION_CACHE_SECONDS > 0 else None
    if version is not None:
        keys = [answer_key(caller, checksum), revoked_key(checksum)]
        found = _cache_get_many(keys)
        if found.get(keys[1]):
            return {"active": False}
        entry = found.get(keys[0])
        if isinstance(entry, dict) and entry.get("version") == version and isinstance(entry.get("answer"), dict):
            return dict(entry["answer"])
    rights: Rights | None = None

    def caller_rights() -> Rights:
        # Read only once a token was found: unknown tokens cost no query for them.
        nonlocal rights
        if rights is None:
            rights = hotcache.local("introspection-rights", caller_tag(caller), lambda: rights_of(caller))
        return rights

    if token_type_hint != "refresh_token":
        access_token = _find_access_token(checksum)
        if access_token is not None:
            now = timezone.now()
            answer = _access_token_answer(access_token, token, caller_rights())
            if answer is None:
                return {"active": False}
            ttl = cache_seconds(access_token.expires, now) if version is not None else 0
            if ttl > 0:
                entry = {"version": version, "answer": answer}
                _cache_call(cache.set, answer_key(caller, checksum), entry, timeout=ttl)
            return answer
        if token.count(".") == 2:
            # A JWT: refresh tokens are random strings (REFRESH_TOKEN_GENERATOR), never JWTs.
            return {"active": False}
    refresh_token = _find_refresh_token(checksum)
    if refresh_token is not None:
        return _refresh_token_answer(refresh_token, caller_rights()) or {"active": False}
    if token_type_hint == "refresh_token":
        # RFC 7662 §2.1: the hint may be wrong; look further.
        access_token = _find_access_token(checksum)
        if access_token is not None:
            return _access_token_answer(access_token, token, caller_rights()) or {"active": False}
    return {"active": False}


def _find_access_token(checksum: str) -> Any:
    return (
        AccessToken.objects.select_related("application__organisation", "user").filter(token_checksum=checksum).first()
    )


def _find_refresh_token(checksum: str) -> Any:
    return (
        RefreshToken.objects.select_related("application__organisation", "user", "access_token")
        .filter(token_checksum=checksum, revoked__isnull=True)
        .first()
    )


def _common(token: Any, token_type: str) -> dict[str, Any] | None:
    application = token.application
    if application is None or not application.is_usable(None):
        return None
    if token.user_id and not token.user.is_active:
        return None  # a deactivated account's tokens are inactive at once
    # ``username`` is left out on purpose: the subject identifier is what a resource server needs.
    answer: dict[str, Any] = {
        "active": True,
        "iss": settings.AUTHSERVER_ISSUER,
        "client_id": application.client_id,
        "azp": application.client_id,
        "token_type": token_type,
        "iat": calendar.timegm(token.created.utctimetuple()),
        "sub": oidc_claims.subject_for(token.user, application) if token.user_id else application.client_id,
    }
    if token.resource:
        answer["aud"] = token.resource[0] if len(token.resource) == 1 else list(token.resource)
    organisation = application.organisation
    identifiers = {name: getattr(organisation, name) for name in ORGANISATION_FIELDS if getattr(organisation, name)}
    if identifiers:
        answer["organisation"] = identifiers
    return answer


def _access_token_answer(token: Any, raw: str, rights: Rights) -> dict[str, Any] | None:
    if token.is_expired() or not rights.cover(resource=token.resource, scope=token.scope):
        return None
    answer = _common(token, "Bearer")
    if answer is None:
        return None
    answer["scope"] = token.scope
    # The stored expiry is the signed exp (validator._create_access_token); the row is saved a
    # moment after the JWT was signed, so a JWT's own iat is the truer one.
    answer["exp"] = calendar.timegm(token.expires.utctimetuple())
    claims = _unverified_claims(raw)
    if isinstance(claims.get("iat"), int):
        answer["iat"] = claims["iat"]
    confirmation = claims.get("cnf")
    if isinstance(confirmation, dict) and isinstance(confirmation.get("x5t#S256"), str):
        # RFC 8705 §3.2: the resource server checks the binding against its own connection.
        answer["cnf"] = {"x5t#S256": confirmation["x5t#S256"]}
    return answer


def _unverified_claims(raw: str) -> dict[str, Any]:
    """The claims of one of our JWTs, found by its checksum (so ours and intact); {} for opaque."""
    if raw.count(".") != 2:
        return {}
    try:
        claims = pyjwt.decode(raw, options={"verify_signature": False})
    except pyjwt.PyJWTError:
        return {}
    return claims if isinstance(claims, dict) else {}


def _refresh_token_answer(token: Any, rights: Rights) -> dict[str, Any] | None:
    if token.access_token is None:
        return None
    idle_deadline = token.access_token.expires + timedelta(
        seconds=settings.OAUTH2_PROVIDER["REFRESH_TOKEN_EXPIRE_SECONDS"]
    )
    if idle_deadline <= timezone.now():
        return None
    if not rights.cover(resource=token.resource, scope=token.access_token.scope):
        return None
    answer = _common(token, "refresh_token")
    if answer is not None:
        answer["scope"] = token.access_token.scope
    return answer


# ---- the cache: failures make introspection slower, never wrong --------------------------------


def _cache_get_many(keys: list[str]) -> dict[str, Any]:
    try:
        return cache.get_many(keys)
    except Exception:
        log.warning("introspection cache unreachable; answering from the database", exc_info=True)
        return {}


def _cache_call(operation: Any, *args: Any, **kwargs: Any) -> None:
    try:
        operation(*args, **kwargs)
    except Exception:
        log.warning("introspection cache write failed", exc_info=True)


# ---- invalidation ---------------------------------------------------------------------------


def forget_tokens(checksums: Iterable[str]) -> None:
    """Mark these access tokens inactive in the cache once the transaction commits.

    After the commit, so a rolled-back revocation leaves the tokens working; a reader that
    cached an answer from the old rows in between is overruled by the tombstone.
    """
    seconds = settings.AUTHSERVER_INTROSPECTION_CACHE_SECONDS
    if seconds <= 0:
        return
    tombstones = {revoked_key(checksum): True for checksum in checksums if checksum}
    if not tombstones:
        return
    timeout = seconds + TOMBSTONE_GRACE
    transaction.on_commit(lambda: cache.set_many(tombstones, timeout=timeout), robust=True)


def forget_live_tokens(**filters: Any) -> None:
    """Tombstone every unexpired access token matching ``filters`` (one query)."""
    if settings.AUTHSERVER_INTROSPECTION_CACHE_SECONDS <= 0:
        return
    forget_tokens(
        AccessToken.objects.filter(expires__gt=timezone.now(), **filters).values_list("token_checksum", flat=True)
    )


def _access_token_deleted(sender: Any, instance: Any, **kwargs: Any) -> None:
    # An expired token's answer expired from the cache before it did (half the lifetime).
    if instance.expires is not None and instance.expires > timezone.now():
        forget_tokens([instance.token_checksum])


def _user_saved(sender: Any, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    if created or instance.is_active or (update_fields is not None and "is_active" not in update_fields):
        return
    forget_live_tokens(user=instance)


def _client_saved(sender: Any, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any) -> None:
    if created or instance.status == Client.Status.ACTIVE:
        return
    if update_fields is not None and "status" not in update_fields:
        return
    forget_live_tokens(application=instance)


def _organisation_saved(
    sender: Any, instance: Any, created: bool = False, update_fields: Any = None, **kwargs: Any
) -> None:
    if created or instance.is_active or (update_fields is not None and "status" not in update_fields):
        return
    forget_live_tokens(application__organisation=instance)


def connect_signals() -> None:
    """Called from AuthserverConfig.ready(): every process, web and worker, invalidates. Changes
    to the catalogue (APIs, scopes, introspectors) replace the hotcache generation instead."""
    uid = "authserver.introspection"
    post_delete.connect(_access_token_deleted, sender=AccessToken, dispatch_uid=f"{uid}.access_token")
    post_save.connect(_user_saved, sender=get_user_model(), dispatch_uid=f"{uid}.user")
    post_save.connect(_client_saved, sender=Client, dispatch_uid=f"{uid}.client")
    post_save.connect(_organisation_saved, sender=Organisation, dispatch_uid=f"{uid}.organisation")
