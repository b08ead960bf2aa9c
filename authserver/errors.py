"""Domain errors shared by the services of every layer."""

from django.core.exceptions import ValidationError


class DomainError(Exception):
    """A rule of the domain refused an operation; the message is safe to show."""


class InvalidTransition(DomainError):
    """A status change that the model's transition table does not allow."""


class InvalidInput(ValidationError, DomainError):
    """Bad input, field by field: a ValidationError (forms and the API read ``message_dict``)
    that is also a DomainError (commands and callers that catch DomainError keep working)."""

    def __str__(self) -> str:
        if hasattr(self, "error_dict"):
            return "; ".join(f"{field}: {' '.join(messages)}" for field, messages in self.message_dict.items())
        return " ".join(self.messages)
