"""Onboarding services: every organisation, membership and KYC state change goes through here.

STYLE.md §1-§5: keyword-only, one transaction each, the row locked, the status moved only by
the model's transition table, audited in the same transaction, emails enqueued on commit.
Refusals raise PermissionDenied (who), InvalidTransition (when), InvalidInput (field errors,
both a ValidationError and a DomainError) or DomainError (any other rule).

One package, one import: ``from onboarding import services`` and call ``services.<name>``.
"""

from .applications import (
    evidence_attach,
    kyc_application_approve,
    kyc_application_create,
    kyc_application_expire,
    kyc_application_reject,
    kyc_application_request_changes,
    kyc_application_start_review,
    kyc_application_submit,
    kyc_application_update,
    kyc_message_add,
)
from .lifecycle import (
    evidence_warn_expiring,
    invitations_expire,
    kyc_applications_expire_stale,
    memberships_end_expired,
    organisations_remind_review,
    organisations_suspend_lapsed,
)
from .memberships import invitation_accept, invitation_create, invitation_revoke, membership_end
from .organisations import (
    CONTACT_FIELDS,
    IDENTITY_FIELDS,
    UNIQUE_IDENTIFIERS,
    organisation_create,
    organisation_offboard,
    organisation_reactivate,
    organisation_suspend,
    organisation_update,
)

__all__ = [
    "CONTACT_FIELDS",
    "IDENTITY_FIELDS",
    "UNIQUE_IDENTIFIERS",
    "evidence_attach",
    "evidence_warn_expiring",
    "invitation_accept",
    "invitation_create",
    "invitation_revoke",
    "invitations_expire",
    "kyc_application_approve",
    "kyc_application_create",
    "kyc_application_expire",
    "kyc_application_reject",
    "kyc_application_request_changes",
    "kyc_application_start_review",
    "kyc_application_submit",
    "kyc_application_update",
    "kyc_applications_expire_stale",
    "kyc_message_add",
    "membership_end",
    "memberships_end_expired",
    "organisation_create",
    "organisation_offboard",
    "organisation_reactivate",
    "organisation_suspend",
    "organisation_update",
    "organisations_remind_review",
    "organisations_suspend_lapsed",
]
