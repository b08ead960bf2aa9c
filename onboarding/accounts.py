"""Sign-up with email verification: the account stays inactive until its owner proves the address.

An unverified account is ``is_active=False``, so Django's ModelBackend refuses it at login with
the same message as a wrong password (nothing tells a stranger that the username exists).

The verification link carries a signed, expiring token (``django.core.signing``) with a hash of
the account's state. Verifying changes that state (``is_active``), so a link works once; a
changed password or email address voids it too. Only an account with ``self_registered`` and
without ``email_verified_at`` can be activated, so no link ever
reactivates an account that staff created or deactivated.

Sign-up never says whether an email address is already registered: the page reads the same,
and the address's owner gets a mail (a fresh link if that account is still unverified, a note
otherwise).
"""

from __future__ import annotations

import logging
from datetime import timedelta
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone
from django.utils.crypto import salted_hmac

from authserver.audit import audit_record

from .models import User

logger = logging.getLogger(__name__)

_SALT = "onboarding.accounts.verify-email"
SIGNED_UP_EVENT = "account.signed_up"
EMAIL_VERIFIED_EVENT = "account.email_verified"


class VerificationFailed(Exception):
    """The link is malformed, expired, used, or its account changed since it was sent."""


def _account_state(user: User) -> str:
    value = f"{user.pk}|{user.password}|{user.email.lower()}|{user.is_active}|{user.last_login}"
    return salted_hmac(_SALT, value).hexdigest()[:32]


def email_verification_token(user: User) -> str:
    """A signed token naming the account and its current state; checked by ``user_verify_email``."""
    return signing.dumps({"u": user.pk, "s": _account_state(user)}, salt=_SALT, compress=True)


def email_verification_url(user: User, *, next_url: str = "") -> str:
    path = reverse("accounts-verify", kwargs={"token": email_verification_token(user)})
    query = f"?{urlencode({'next': next_url})}" if next_url else ""
    return f"{settings.AUTHSERVER_ISSUER}{path}{query}"


def _send(*, to: str, subject: str, template: str, context: dict[str, object]) -> None:
    """Send one plain-text mail; a mail server failure is logged, never shown as a server error."""
    try:
        send_mail(subject, render_to_string(template, context), None, [to])
    except Exception:
        logger.exception("could not send %s", template)


def _send_verification(user: User, next_url: str) -> None:
    _send(
        to=user.email,
        subject="Confirm your email address",
        template="registration/email/verify_email.txt",
        context={
            "user": user,
            "url": email_verification_url(user, next_url=next_url),
            "hours": settings.ACCOUNT_VERIFICATION_MAX_AGE_HOURS,
        },
    )


def _send_already_registered(user: User) -> None:
    _send(
        to=user.email,
        subject="Someone tried to sign up with your email address",
        template="registration/email/already_registered.txt",
        context={"user": user, "login_url": f"{settings.AUTHSERVER_ISSUER}{reverse('login')}"},
    )


def _unverified(user: User) -> bool:
    """Signed up here, and never verified nor used: only such an account can be activated by email.

    An account staff created or deactivated is never activated by a link.
    """
    return not user.is_active and user.last_login is None and user.self_registered and user.email_verified_at is None


@transaction.atomic
def user_sign_up(*, username: str, email: str, password: str, next_url: str = "") -> User | None:
    """Create an inactive account and mail its verification link.

    Returns None, and creates nothing, when the email address is taken; its owner is told by mail.
    """
    model = get_user_model()
    existing = model.objects.filter(email__iexact=email).order_by("pk").first()
    if existing is not None:
        if _unverified(existing):
            transaction.on_commit(lambda: _send_verification(existing, next_url))
        else:
            transaction.on_commit(lambda: _send_already_registered(existing))
        return None
    try:
        with transaction.atomic():
            user = model.objects.create_user(
                username=username, email=email, password=password, is_active=False, self_registered=True
            )
    except IntegrityError:
        raise ValidationError({"username": "This username is not available; choose another."}) from None
    audit_record(SIGNED_UP_EVENT, actor=user, target=user)
    transaction.on_commit(lambda: _send_verification(user, next_url))
    return user


def user_resend_verification(*, email: str, next_url: str = "") -> None:
    """Mail a fresh link if an unverified account has this address; say nothing either way."""
    model = get_user_model()
    for user in model.objects.filter(email__iexact=email, is_active=False, last_login__isnull=True)[:5]:
        if _unverified(user):
            _send_verification(user, next_url)


def user_for_verification_token(token: str) -> User:
    """The unverified account a valid, unused, unexpired link names; else VerificationFailed."""
    max_age = timedelta(hours=settings.ACCOUNT_VERIFICATION_MAX_AGE_HOURS)
    try:
        data = signing.loads(token, salt=_SALT, max_age=max_age)
        user = get_user_model().objects.get(pk=int(data["u"]))
        state = str(data["s"])
    except (signing.BadSignature, KeyError, TypeError, ValueError, User.DoesNotExist):
        raise VerificationFailed from None
    if state != _account_state(user) or not _unverified(user):
        raise VerificationFailed
    return user


@transaction.atomic
def user_verify_email(*, token: str) -> User:
    """Activate the account the link names (once); raises VerificationFailed otherwise."""
    user = user_for_verification_token(token)
    user = get_user_model().objects.select_for_update().get(pk=user.pk)
    if not _unverified(user):
        raise VerificationFailed
    user.is_active = True
    user.email_verified_at = timezone.now()
    user.save(update_fields=["is_active", "email_verified_at"])
    audit_record(EMAIL_VERIFIED_EVENT, actor=user, target=user, data={"email": user.email})
    return user
