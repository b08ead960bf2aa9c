"""Onboarding emails: plain-text templates (templates/onboarding/email/) through Django's email backend.

Every decision and reminder goes to the organisation's live owners and admins and its contact
address, one message per recipient (members do not see each other's addresses). The Celery
tasks in ``tasks.py`` call these with ids; only the invitation is sent in-process, because its
token must not travel through the broker.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.mail import EmailMessage, get_connection
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from .models import Evidence, Invitation, KycApplication, KycMessage, Organisation
from .permissions import MANAGE_ROLES, live_memberships

SUBJECTS = {
    "kyc_submitted": "We received the application of {organisation}",
    "kyc_approved": "{organisation} is approved",
    "kyc_rejected": "The application of {organisation} is rejected",
    "kyc_changes_requested": "The reviewer asks for changes to the application of {organisation}",
    "kyc_expired": "The draft application of {organisation} expired",
    "kyc_message": "A new message about the application of {organisation}",
    "organisation_suspended": "{organisation} is suspended",
    "organisation_reactivated": "{organisation} is active again",
    "organisation_offboarded": "{organisation} is offboarded",
    "organisation_review_reminder": "{organisation} is due for its periodic review",
    "certificate_expiring": "A certificate of {organisation} expires soon",
    "invitation": "You are invited to join {organisation}",
}


def _url(name: str, fallback: str, **kwargs: Any) -> str:
    try:
        path = reverse(name, kwargs=kwargs)
    except NoReverseMatch:
        path = fallback
    return f"{settings.AUTHSERVER_ISSUER}{path}"


def portal_url(organisation: Organisation | None = None) -> str:
    if organisation is None:
        return _url("portal:dashboard", "/portal/")
    return _url("portal:organisation", f"/portal/organisations/{organisation.pk}/", organisation_id=organisation.pk)


def recipients(organisation: Organisation) -> list[str]:
    """Live owners and admins, then the contact address; each address once."""
    addresses = list(
        live_memberships()
        .filter(organisation=organisation, role__in=MANAGE_ROLES)
        .exclude(user__email="")
        .order_by("pk")
        .values_list("user__email", flat=True)
    )
    if organisation.contact_email:
        addresses.append(organisation.contact_email)
    seen: dict[str, str] = {}
    for address in addresses:
        seen.setdefault(address.strip().lower(), address.strip())
    return list(seen.values())


def send(template: str, *, to: list[str], context: dict[str, Any]) -> int:
    """Render ``onboarding/email/<template>.txt`` and send one message per address; returns how many."""
    if not to:
        return 0
    organisation = context.get("organisation")
    subject = SUBJECTS[template].format(organisation=organisation.name if organisation else "")
    context = {"site_url": settings.AUTHSERVER_ISSUER, **context}
    body = render_to_string(f"onboarding/email/{template}.txt", context)
    messages = [EmailMessage(subject=subject, body=body, from_email=settings.DEFAULT_FROM_EMAIL, to=[a]) for a in to]
    with get_connection() as connection:
        return connection.send_messages(messages) or 0


def notify_organisation(organisation_id: int, event: str, reason: str = "") -> int:
    """``event``: suspended, reactivated, offboarded or review_reminder."""
    organisation = Organisation.objects.get(pk=organisation_id)
    return send(
        f"organisation_{event}",
        to=recipients(organisation),
        context={
            "organisation": organisation,
            "reason": reason,
            "portal_url": portal_url(organisation),
            "grace_days": settings.ONBOARDING_REVIEW_GRACE_DAYS,
        },
    )


def notify_kyc_application(application_id: int, event: str) -> int:
    """``event``: submitted, approved, rejected, changes_requested or expired."""
    application = KycApplication.objects.select_related("organisation").get(pk=application_id)
    organisation = application.organisation
    return send(
        f"kyc_{event}",
        to=recipients(organisation),
        context={
            "organisation": organisation,
            "application": application,
            "reason": application.decision_reason,
            "portal_url": _url(
                "portal:application",
                f"/portal/organisations/{organisation.pk}/applications/{application.pk}/",
                organisation_id=organisation.pk,
                application_id=application.pk,
            ),
            "draft_expiry_days": settings.ONBOARDING_DRAFT_EXPIRY_DAYS,
        },
    )


def notify_kyc_message(message_id: int) -> int:
    """A reviewer's message goes to the organisation; an applicant's to the reviewer of the application."""
    message = KycMessage.objects.select_related("application__organisation", "application__reviewer").get(pk=message_id)
    application = message.application
    organisation = application.organisation
    if message.from_reviewer:
        to = recipients(organisation)
        url = _url(
            "portal:application",
            f"/portal/organisations/{organisation.pk}/applications/{application.pk}/",
            organisation_id=organisation.pk,
            application_id=application.pk,
        )
    else:
        reviewer = application.reviewer
        to = [reviewer.email] if reviewer is not None and reviewer.email else []
        url = _url(
            "admin:onboarding_kycapplication_change",
            f"/admin/onboarding/kycapplication/{application.pk}/change/",
            object_id=application.pk,
        )
    return send(
        "kyc_message",
        to=to,
        context={"organisation": organisation, "application": application, "message": message, "portal_url": url},
    )


def notify_certificate_expiring(evidence_id: int) -> int:
    evidence = Evidence.objects.select_related("application__organisation").get(pk=evidence_id)
    organisation = evidence.application.organisation
    return send(
        "certificate_expiring",
        to=recipients(organisation),
        context={
            "organisation": organisation,
            "evidence": evidence,
            "subject": evidence.extracted.get("subject", ""),
            "portal_url": portal_url(organisation),
        },
    )


def send_invitation(invitation_id: int, token: str) -> int:
    invitation = Invitation.objects.select_related("organisation", "invited_by").get(pk=invitation_id)
    return send(
        "invitation",
        to=[invitation.email],
        context={
            "organisation": invitation.organisation,
            "invitation": invitation,
            "inviter": invitation.invited_by,
            "accept_url": _url("portal:invitation-accept", f"/portal/invitations/{token}/", token=token),
        },
    )
