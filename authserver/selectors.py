"""Reads of runtime data that more than one caller needs."""

from __future__ import annotations

from datetime import timedelta

from django.conf import settings
from django.db.models import Q, QuerySet
from django.utils import timezone

from .models import SigningKey


def published_signing_keys() -> QuerySet[SigningKey]:
    """Next, active and recently retired keys: what the JWKS publishes."""
    retired_after = timezone.now() - timedelta(seconds=settings.AUTHSERVER_SIGNING_KEY_RETENTION_SECONDS)
    return SigningKey.objects.filter(
        Q(status__in=[SigningKey.Status.NEXT, SigningKey.Status.ACTIVE])
        | Q(status=SigningKey.Status.RETIRED, retired_at__gt=retired_after)
    ).order_by("alg", "created_at")
