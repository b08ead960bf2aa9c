"""Signals onboarding sends so other layers can react without onboarding knowing them.

DESIGN.md: onboarding knows nothing of clients. When an organisation stops being active,
``organisation_deactivated`` is sent inside the same transaction; ``clients`` listens
(clients/receivers.py) and suspends the organisation's clients and revokes their tokens.
"""

from django.dispatch import Signal

# Sent with sender=Organisation, organisation=<Organisation>, actor=<User | None>, reason=<str>.
organisation_deactivated = Signal()
