"""Logging filters: the request id on every line, and a last line of defence for secrets.

JsonFormatter writes one JSON object a line (LOG_FORMAT=json, the production default);
RedactingFormatter the plain line. Both redact the exception text as well as the message.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from .context import current_request_context

# Bearer/Basic credentials, JWTs, and form fields that carry secrets.
_PATTERNS = [
    re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"),
    re.compile(r"eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    re.compile(
        r"(?i)((?:client_secret|client_assertion|refresh_token|access_token|code_verifier|code|token|password)"
        r"[\"']?\s*[=:]\s*[\"']?)[^&\s\"',}]+"
    ),
    # Prose that names the credential before its value, as oauthlib's refresh grant logs at
    # DEBUG: "Validating refresh token <token> for client", "Invalid refresh token, <token>,".
    # Only token-like words (16+ characters) go, so "refresh token request" stays readable.
    re.compile(
        r"(?i)(\b(?:refresh|access|bearer|id)[ _]token,?\s+|\bauthorization[ _]code,?\s+|\bcode[ _]verifier,?\s+"
        r"|\bclient[ _](?:secret|assertion),?\s+)[A-Za-z0-9._~+/=-]{16,}"
    ),
]


def redact(text: str) -> str:
    for pattern in _PATTERNS:
        text = pattern.sub(lambda m: (m.group(1) if m.lastindex else "") + "[redacted]", text)
    return text


class RequestContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        context = current_request_context()
        record.request_id = context.request_id if context else "-"
        return True


class RedactSecretsFilter(logging.Filter):
    """Redact credentials from the rendered message; our own code never logs them at all."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not drop the record
            return True
        redacted = redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        return True


class RedactingFormatter(logging.Formatter):
    """The plain one-line format, redacted as a whole: RedactSecretsFilter sees only the
    message, and a traceback (an exception's text, ``exc_info``) may carry a credential too."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time, level, logger, message, request id, exception.

    Only these fields: arbitrary ``extra`` attributes are left out, so nothing reaches the
    log that RedactSecretsFilter has not seen. The message is the one that filter already
    redacted; the exception text is redacted here, because the filter sees only the message.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", "-"),
            "process": record.process,
        }
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)
