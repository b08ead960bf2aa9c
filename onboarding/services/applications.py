"""KYC applications: the draft-to-decision workflow, evidence and the conversation with the reviewer."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from authserver.audit import audit_record
from authserver.errors import DomainError, InvalidInput

from .. import evidence as evidence_reader
from .. import tasks
from ..models import Evidence, KycApplication, KycApproval, KycMessage, Organisation
from ..permissions import MANAGE_ROLES, PermissionDenied, is_reviewer, membership_for, require_reviewer, require_role
from ._common import AppStatus, OrgStatus, check_choice, enqueue, require_staff_or_system, required_text


def _lock_application(application_id: int) -> KycApplication:
    return KycApplication.objects.select_for_update().select_related("organisation").get(pk=application_id)


@transaction.atomic
def kyc_application_create(
    *,
    organisation_id: int,
    actor: Any,
    requested_trust_level: str = Organisation.TrustLevel.SUBSTANTIAL,
    motivation: str = "",
) -> KycApplication:
    """Open a draft application; an organisation has at most one open application at a time."""
    organisation = Organisation.objects.select_for_update().get(pk=organisation_id)
    require_role(actor, organisation, *MANAGE_ROLES)
    check_choice("requested_trust_level", requested_trust_level, Organisation.TrustLevel)
    if organisation.status == OrgStatus.OFFBOARDED:
        raise DomainError("An offboarded organisation cannot apply.")
    if organisation.applications.filter(status__in=KycApplication.OPEN_STATUSES).exists():
        raise DomainError("This organisation has an open application already; continue that one.")
    application = KycApplication.objects.create(
        organisation=organisation,
        requested_trust_level=requested_trust_level,
        motivation=(motivation or "").strip(),
        created_by=actor,
    )
    audit_record(
        "kyc.created",
        actor=actor,
        target=application,
        organisation=organisation,
        data={"requested_trust_level": requested_trust_level},
    )
    return application


def _require_editable(application: KycApplication) -> None:
    if application.status not in KycApplication.EDITABLE_STATUSES:
        raise DomainError(f"An application that is {application.get_status_display().lower()} cannot be changed.")


@transaction.atomic
def kyc_application_update(
    *,
    application_id: int,
    actor: Any,
    requested_trust_level: str | None = None,
    motivation: str | None = None,
) -> KycApplication:
    """Change a draft (or an application sent back for changes)."""
    application = _lock_application(application_id)
    require_role(actor, application.organisation_id, *MANAGE_ROLES)
    _require_editable(application)
    changes: dict[str, Any] = {}
    if requested_trust_level is not None and requested_trust_level != application.requested_trust_level:
        check_choice("requested_trust_level", requested_trust_level, Organisation.TrustLevel)
        changes["requested_trust_level"] = [application.requested_trust_level, requested_trust_level]
        application.requested_trust_level = requested_trust_level
    if motivation is not None and motivation.strip() != application.motivation:
        changes["motivation"] = True
        application.motivation = motivation.strip()
    if changes:
        application.save(update_fields=["requested_trust_level", "motivation", "updated_at"])
        audit_record(
            "kyc.updated",
            actor=actor,
            target=application,
            organisation=application.organisation,
            data={"changes": changes},
        )
    return application


_READERS: dict[str, Callable[[bytes], dict[str, Any]]] = {
    Evidence.Kind.CERTIFICATE: evidence_reader.parse_certificate,
    Evidence.Kind.KVK_EXTRACT: evidence_reader.parse_kvk_extract,
    Evidence.Kind.EIDAS_ATTESTATION: evidence_reader.parse_eidas_attestation,
}
_CONTENT_TYPES = {
    ("certificate", "PEM"): "application/x-pem-file",
    ("certificate", "DER"): "application/pkix-cert",
    ("kvk_extract", "PDF"): "application/pdf",
    ("eidas_attestation", "PDF"): "application/pdf",
    ("eidas_attestation", "JSON"): "application/json",
}


def _refusal(message: str) -> InvalidInput:
    return InvalidInput({"file": [message]})


def _describe_refusal(mismatch: dict[str, str]) -> str:
    label = {"oin": "OIN", "kvk_number": "KvK number", "rsin": "RSIN", "eidas_identifier": "eIDAS identifier"}
    what = label.get(mismatch["field"], mismatch["field"])
    return (
        f"The document names {what} {mismatch['found']}, but the organisation's {what} is {mismatch['claimed']}. "
        "Upload the document of this organisation, or correct its details."
    )


@transaction.atomic
def evidence_attach(
    *, application_id: int, kind: str, filename: str, content: bytes, content_type: str, actor: Any
) -> Evidence:
    """Read and attach a document; unreadable, expired, oversized or contradicting documents are refused.

    A refused document raises InvalidInput({"file": [...]}) and nothing is stored. A name or
    country that differs is kept as a mismatch for the reviewer; a different identifier refuses.
    """
    application = _lock_application(application_id)
    require_role(actor, application.organisation_id, *MANAGE_ROLES)
    _require_editable(application)
    check_choice("kind", kind, Evidence.Kind)
    content = bytes(content or b"")
    try:
        evidence_reader.check_size(content)
        extracted = _READERS[kind](content)
    except ValidationError as exc:
        raise _refusal(exc.messages[0]) from exc
    if extracted.get("expired"):
        raise _refusal(f"The certificate expired on {extracted['not_after'][:10]}; upload a valid one.")
    if extracted.get("not_yet_valid"):
        raise _refusal(f"The certificate is not valid before {extracted['not_before'][:10]}.")
    organisation = application.organisation
    mismatches = evidence_reader.compare_claims(extracted, organisation)
    refusing = evidence_reader.refusing_mismatches(mismatches)
    if refusing:
        raise _refusal(_describe_refusal(refusing[0]))
    sha256 = hashlib.sha256(content).hexdigest()
    if application.evidence.filter(sha256=sha256).exists():
        raise _refusal("This document is attached to the application already.")
    not_after = extracted.get("not_after")
    evidence = Evidence.objects.create(
        application=application,
        kind=kind,
        filename=(filename or "upload").strip()[:255] or "upload",
        # What the bytes are, not what the browser said they are.
        content_type=_CONTENT_TYPES.get((kind, extracted.get("format", "")), (content_type or "")[:100]),
        content=content,
        sha256=sha256,
        size=len(content),
        extracted=extracted,
        mismatches=mismatches,
        valid_until=datetime.fromisoformat(not_after) if not_after else None,
        uploaded_by=actor,
    )
    application.save(update_fields=["updated_at"])
    audit_record(
        "kyc.evidence.attached",
        actor=actor,
        target=evidence,
        organisation=organisation,
        data={"application": application.pk, "kind": kind, "sha256": sha256, "mismatches": mismatches},
    )
    return evidence


@transaction.atomic
def kyc_application_submit(*, application_id: int, actor: Any) -> KycApplication:
    """Send a draft (or a changed application) to the reviewers; it needs at least one document."""
    application = _lock_application(application_id)
    require_role(actor, application.organisation_id, *MANAGE_ROLES)
    application.transition_to(AppStatus.SUBMITTED)
    if application.organisation.status == OrgStatus.OFFBOARDED:
        raise DomainError("An offboarded organisation cannot apply.")
    if not application.evidence.exists():
        raise DomainError("Attach at least one document (certificate, KvK extract or eIDAS attestation) first.")
    application.submitted_at = timezone.now()
    application.save(update_fields=["status", "submitted_at", "updated_at"])
    audit_record("kyc.submitted", actor=actor, target=application, organisation=application.organisation)
    enqueue(tasks.notify_kyc_application_task, application.pk, "submitted")
    return application


@transaction.atomic
def kyc_application_start_review(*, application_id: int, reviewer: Any) -> KycApplication:
    """A staff reviewer takes a submitted application from the queue."""
    application = _lock_application(application_id)
    require_reviewer(reviewer, application.organisation_id)
    application.transition_to(AppStatus.IN_REVIEW)
    application.reviewer = reviewer
    application.save(update_fields=["status", "reviewer", "updated_at"])
    audit_record("kyc.review_started", actor=reviewer, target=application, organisation=application.organisation)
    return application


@transaction.atomic
def kyc_application_approve(*, application_id: int, reviewer: Any, note: str = "") -> KycApplication:
    """Approve; trust level high needs a second, different reviewer (four eyes), nobody their own organisation.

    The final approval activates the organisation (or keeps it active) at the requested trust
    level with a new ``next_review_at``.
    """
    application = _lock_application(application_id)
    require_reviewer(reviewer, application.organisation_id)
    if application.status != AppStatus.IN_REVIEW:
        application.transition_to(AppStatus.APPROVED)  # raises InvalidTransition with the reason
    if application.approvals.filter(reviewer=reviewer).exists():
        raise PermissionDenied("You approved this application already; a second reviewer must approve it too.")
    note = (note or "").strip()
    KycApproval.objects.create(application=application, reviewer=reviewer, note=note)
    needed = application.approvals_required
    given = application.approvals.count()
    if given < needed:
        audit_record(
            "kyc.approval_recorded",
            actor=reviewer,
            target=application,
            organisation=application.organisation,
            data={"approvals": given, "needed": needed, "note": note},
        )
        application.save(update_fields=["updated_at"])
        return application
    organisation = Organisation.objects.select_for_update().get(pk=application.organisation_id)
    application.transition_to(AppStatus.APPROVED)
    now = timezone.now()
    if organisation.status != OrgStatus.ACTIVE:
        organisation.transition_to(OrgStatus.ACTIVE)
    organisation.trust_level = application.requested_trust_level
    organisation.next_review_at = now + timedelta(days=settings.ONBOARDING_REVIEW_INTERVAL_DAYS)
    organisation.review_reminder_sent_at = None
    organisation.save(
        update_fields=["status", "trust_level", "next_review_at", "review_reminder_sent_at", "updated_at"]
    )
    application.organisation = organisation
    application.decided_at = now
    application.decision_reason = note
    application.reviewer = reviewer
    application.save(update_fields=["status", "decided_at", "decision_reason", "reviewer", "updated_at"])
    audit_record(
        "kyc.approved",
        actor=reviewer,
        target=application,
        organisation=organisation,
        data={
            "trust_level": organisation.trust_level,
            "approvers": list(application.approvals.values_list("reviewer__username", flat=True)),
            "note": note,
        },
    )
    audit_record(
        "organisation.activated",
        actor=reviewer,
        target=organisation,
        organisation=organisation,
        data={"trust_level": organisation.trust_level, "next_review_at": organisation.next_review_at.isoformat()},
    )
    enqueue(tasks.notify_kyc_application_task, application.pk, "approved")
    return application


@transaction.atomic
def kyc_application_reject(*, application_id: int, reviewer: Any, reason: str) -> KycApplication:
    """Reject with a reason the applicant sees; the organisation's status does not change."""
    application = _lock_application(application_id)
    require_reviewer(reviewer, application.organisation_id)
    application.transition_to(AppStatus.REJECTED)
    reason = required_text("reason", reason, "the reason for the rejection")
    application.decided_at = timezone.now()
    application.decision_reason = reason
    application.reviewer = reviewer
    application.save(update_fields=["status", "decided_at", "decision_reason", "reviewer", "updated_at"])
    audit_record(
        "kyc.rejected",
        actor=reviewer,
        target=application,
        organisation=application.organisation,
        data={"reason": reason},
    )
    enqueue(tasks.notify_kyc_application_task, application.pk, "rejected")
    return application


@transaction.atomic
def kyc_application_request_changes(*, application_id: int, reviewer: Any, reason: str) -> KycApplication:
    """Send the application back with a question; approvals given so far lapse (the evidence may change)."""
    application = _lock_application(application_id)
    require_reviewer(reviewer, application.organisation_id)
    application.transition_to(AppStatus.CHANGES_REQUESTED)
    reason = required_text("reason", reason, "what should change")
    application.approvals.all().delete()
    application.decision_reason = reason
    application.reviewer = reviewer
    application.save(update_fields=["status", "decision_reason", "reviewer", "updated_at"])
    KycMessage.objects.create(application=application, author=reviewer, from_reviewer=True, body=reason)
    audit_record(
        "kyc.changes_requested",
        actor=reviewer,
        target=application,
        organisation=application.organisation,
        data={"reason": reason},
    )
    enqueue(tasks.notify_kyc_application_task, application.pk, "changes_requested")
    return application


@transaction.atomic
def kyc_message_add(*, application_id: int, author: Any, body: str) -> KycMessage:
    """Add to the conversation: a reviewer asks (staff), the applicant answers (owners and admins)."""
    application = _lock_application(application_id)
    body = required_text("body", body, "a message")
    if is_reviewer(author) and membership_for(author, application.organisation_id) is None:
        require_reviewer(author, application.organisation_id)
        from_reviewer = True
    else:
        require_role(author, application.organisation_id, *MANAGE_ROLES)
        from_reviewer = False
    if application.status not in KycApplication.OPEN_STATUSES:
        raise DomainError(f"The application is {application.get_status_display().lower()}; the conversation is closed.")
    message = KycMessage.objects.create(application=application, author=author, from_reviewer=from_reviewer, body=body)
    application.save(update_fields=["updated_at"])
    audit_record(
        "kyc.message_added",
        actor=author,
        target=application,
        organisation=application.organisation,
        data={"from_reviewer": from_reviewer, "message": message.pk},
    )
    enqueue(tasks.notify_kyc_message_task, message.pk)
    return message


def expire_application(application: KycApplication, *, actor: Any = None, notify: bool = True) -> None:
    application.transition_to(AppStatus.EXPIRED)
    application.decided_at = timezone.now()
    application.save(update_fields=["status", "decided_at", "updated_at"])
    audit_record("kyc.expired", actor=actor, target=application, organisation=application.organisation)
    if notify:
        enqueue(tasks.notify_kyc_application_task, application.pk, "expired")


@transaction.atomic
def kyc_application_expire(*, application_id: int, actor: Any = None) -> KycApplication:
    """Close a draft that will not be submitted (the lifecycle job, or staff)."""
    application = _lock_application(application_id)
    require_staff_or_system(actor)
    expire_application(application, actor=actor)
    return application
