"""Who may do what with an organisation's clients: one rule for the portal and the REST API.

Every member (owner, admin, developer) registers clients and manages their credentials:
developers build and run the clients. Revoking a whole client ends every token it holds,
so only the organisation's managers (owners and admins) may.
"""

from __future__ import annotations

from onboarding.models import Membership
from onboarding.permissions import MANAGE_ROLES

CLIENT_ROLES: tuple[str, ...] = tuple(Membership.Role.values)
CLIENT_REVOKE_ROLES: tuple[str, ...] = MANAGE_ROLES
