"""Client registration services (STYLE.md §1), one module per concern:

- ``clients``: create, suspend, revoke clients; issue and revoke single credentials.
- ``registration``: the three registration modes (clients.policy), intakes, allowlist entries
  and initial access tokens.
- ``credentials``: rotation with overlap, expiry, reminders (the lifecycle jobs call these).
- ``dcr``: RFC 7591 registration with its credentials, RFC 7592 update and delete.
"""

from .clients import (
    IssuedSecret,
    client_create,
    client_credential_add_certificate,
    client_credential_add_jwks_uri,
    client_credential_add_public_key,
    client_credential_issue_secret,
    client_credential_revoke,
    client_reinstate,
    client_revoke,
    client_suspend,
    clients_deactivate_for_organisation,
    expires_in_days,
)
from .credentials import (
    RotationResult,
    client_credential_end_overlap,
    client_credential_rotate,
    clients_expire_unused_open,
    credentials_expire_due,
    credentials_remind_expiring,
    initial_access_tokens_expire,
)
from .dcr import (
    DynamicRegistration,
    client_for_registration_token,
    client_register_dynamic,
    client_registration_delete,
    client_registration_update,
)
from .registration import (
    IntakeDetails,
    IssuedInitialAccessToken,
    Registration,
    RegistrationRefused,
    allowlist_entry_create,
    allowlist_entry_revoke,
    catalogue_rules,
    client_intake_approve,
    client_intake_reject,
    client_register,
    initial_access_token_issue,
    initial_access_token_lookup,
    initial_access_token_revoke,
    open_registration_organisation,
)

__all__ = [
    "DynamicRegistration",
    "IntakeDetails",
    "IssuedInitialAccessToken",
    "IssuedSecret",
    "Registration",
    "RegistrationRefused",
    "RotationResult",
    "allowlist_entry_create",
    "allowlist_entry_revoke",
    "catalogue_rules",
    "client_create",
    "client_credential_add_certificate",
    "client_credential_add_jwks_uri",
    "client_credential_add_public_key",
    "client_credential_end_overlap",
    "client_credential_issue_secret",
    "client_credential_revoke",
    "client_credential_rotate",
    "client_for_registration_token",
    "client_intake_approve",
    "client_intake_reject",
    "client_register",
    "client_register_dynamic",
    "client_registration_delete",
    "client_registration_update",
    "client_reinstate",
    "client_revoke",
    "client_suspend",
    "clients_deactivate_for_organisation",
    "clients_expire_unused_open",
    "credentials_expire_due",
    "credentials_remind_expiring",
    "expires_in_days",
    "initial_access_token_issue",
    "initial_access_token_lookup",
    "initial_access_token_revoke",
    "initial_access_tokens_expire",
    "open_registration_organisation",
]
