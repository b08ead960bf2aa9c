"""Domain errors shared by the services of every layer."""


class DomainError(Exception):
    """A rule of the domain refused an operation; the message is safe to show."""


class InvalidTransition(DomainError):
    """A status change that the model's transition table does not allow."""
