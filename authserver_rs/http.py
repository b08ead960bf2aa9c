"""A small HTTP client on the standard library (no runtime dependency beyond PyJWT).

It talks to one issuer: discovery, the JWKS, the introspection endpoint and the catalogue.
HTTPS only, except to a loopback address (development, tests) or when the caller says so;
redirects are never followed (an endpoint that moved is a configuration to fix, and a
redirect must not carry a token or client credentials elsewhere); answers are bounded in size.
Every failure is an ``IssuerUnavailable``: the resource answers 503, never 500.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from .errors import IssuerUnavailable

log = logging.getLogger("authserver_rs")

MAX_BODY_BYTES = 1024 * 1024
USER_AGENT = "authserver-rs/1"


def is_loopback(host: str | None) -> bool:
    if not host:
        return False
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_url(url: str, *, allow_insecure_http: bool = False) -> str:
    """The URL when it is one this client may call: https, or http to loopback (or allowed)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname and (allow_insecure_http or is_loopback(parts.hostname)):
        return url
    raise ValueError(f"{url!r} is not an https URL (plain http only to a loopback address, or when allowed)")


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    headers: Message = field(default_factory=Message)

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise IssuerUnavailable(f"The issuer answered something that is not JSON (HTTP {self.status}).") from exc

    def max_age(self) -> int | None:
        """Seconds from ``Cache-Control`` (RFC 9111 §5.2.2): 0 for no-store/no-cache, None when unsaid."""
        value = self.headers.get("Cache-Control") or ""
        directives = [part.strip().lower() for part in value.split(",") if part.strip()]
        if any(directive in ("no-store", "no-cache") for directive in directives):
            return 0
        for directive in directives:
            name, _, argument = directive.partition("=")
            if name.strip() == "max-age":
                try:
                    return max(0, int(argument.strip().strip('"')))
                except ValueError:
                    return None
        return None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


class HttpClient:
    """GET JSON documents and POST forms to the issuer, with a timeout on every call."""

    def __init__(self, *, timeout: float = 5.0, allow_insecure_http: bool = False) -> None:
        self.timeout = timeout
        self.allow_insecure_http = allow_insecure_http
        self._opener = urllib.request.build_opener(_NoRedirect())

    def check(self, url: str) -> str:
        return check_url(url, allow_insecure_http=self.allow_insecure_http)

    def get(self, url: str, *, headers: Mapping[str, str] | None = None) -> Response:
        return self._send(self._request("GET", url, headers=self._headers(headers)))

    def post_form(self, url: str, data: Mapping[str, str], *, headers: Mapping[str, str] | None = None) -> Response:
        body = urllib.parse.urlencode(data).encode()
        all_headers = {**self._headers(headers), "Content-Type": "application/x-www-form-urlencoded"}
        return self._send(self._request("POST", url, headers=all_headers, data=body))

    def _request(self, method: str, url: str, *, headers: dict[str, str], data: bytes | None = None) -> Any:
        # check() lets through https, and http only where allowed: never file:, ftp: or others.
        return urllib.request.Request(self.check(url), data=data, headers=headers, method=method)  # noqa: S310

    @staticmethod
    def _headers(extra: Mapping[str, str] | None) -> dict[str, str]:
        return {"Accept": "application/json", "User-Agent": USER_AGENT, **(extra or {})}

    def _send(self, request: urllib.request.Request) -> Response:
        where = f"{request.get_method()} {request.full_url}"
        try:
            with self._opener.open(request, timeout=self.timeout) as answer:
                return Response(status=answer.status, body=self._read(answer, where), headers=answer.headers)
        except urllib.error.HTTPError as exc:
            # An error status is an answer too (401 from introspection, 404 from a catalogue).
            with exc:
                return Response(status=exc.code, body=self._read_error(exc, where), headers=exc.headers)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            log.warning("authserver_rs: %s failed: %s", where, exc)
            raise IssuerUnavailable("The token issuer cannot be reached; try again shortly.") from exc

    @classmethod
    def _read_error(cls, answer: Any, where: str) -> bytes:
        try:
            return cls._read(answer, where)
        except OSError:
            return b""

    @staticmethod
    def _read(answer: Any, where: str) -> bytes:
        body: bytes = answer.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            log.warning("authserver_rs: %s answered more than %d bytes", where, MAX_BODY_BYTES)
            raise IssuerUnavailable("The token issuer answered an oversized document.")
        return body
