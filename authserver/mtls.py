"""Mutual TLS (RFC 8705): the client certificate nginx verified, handed to Django in a header.

nginx (deploy/nginx/, back channel) terminates TLS, asks for a client certificate and passes
it on as ``X-SSL-Client-Cert`` (the URL-encoded PEM, ``$ssl_client_escaped_cert``) with
``X-SSL-Client-Verify`` (``$ssl_client_verify``: ``SUCCESS``, ``FAILED:reason`` or ``NONE``).
Those headers mean something only when nginx set them, so ``ClientCertificateMiddleware``
reads them only from a peer in AUTHSERVER_TRUSTED_PROXIES and removes them from every request
(STANDARDS.md, Transport). What it found is ``request.client_certificate`` (a cryptography
certificate, or None) and, for the oauthlib request the validator sees, two WSGI environ
keys with a dot in their name, which no HTTP header can produce.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import logging
from collections.abc import Callable
from functools import lru_cache
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from django.conf import settings
from django.http import HttpRequest, HttpResponse

log = logging.getLogger(__name__)

CERT_HEADER = "HTTP_X_SSL_CLIENT_CERT"
VERIFY_HEADER = "HTTP_X_SSL_CLIENT_VERIFY"
# Set by the middleware only; DOT copies request.META into the oauthlib request's headers.
CERT_ENVIRON = "authserver.client_certificate"
VERIFIED_ENVIRON = "authserver.client_certificate_verified"
MAX_PEM_LENGTH = 16 * 1024


@lru_cache(maxsize=16)
def _networks(proxies: tuple[str, ...]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(proxy.strip(), strict=False) for proxy in proxies if proxy.strip())


def is_trusted_proxy(address: str | None) -> bool:
    """Is the immediate peer one of AUTHSERVER_TRUSTED_PROXIES (IP addresses or CIDR networks)?"""
    if not address:
        return False
    try:
        peer = ipaddress.ip_address(address)
    except ValueError:
        return False
    return any(peer in network for network in _networks(tuple(settings.AUTHSERVER_TRUSTED_PROXIES)))


def parse_escaped_pem(value: str) -> x509.Certificate | None:
    """nginx's ``$ssl_client_escaped_cert``: a URL-encoded PEM certificate."""
    if not value or len(value) > MAX_PEM_LENGTH:
        return None
    try:
        return x509.load_pem_x509_certificate(unquote(value).encode("ascii"))
    except (ValueError, UnicodeEncodeError):
        return None


def thumbprint(certificate: x509.Certificate) -> str:
    """RFC 8705 §3.1: ``x5t#S256``, the base64url SHA-256 of the DER certificate, no padding."""
    digest = hashlib.sha256(certificate.public_bytes(serialization.Encoding.DER)).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def subject_dn(certificate: x509.Certificate) -> str:
    """The subject as an RFC 4514 string, the form tls_client_auth_subject_dn is registered in."""
    return certificate.subject.rfc4514_string()


def from_oauthlib(request: Any) -> tuple[x509.Certificate | None, bool]:
    """The client certificate the middleware accepted, and whether nginx verified its chain."""
    headers = getattr(request, "headers", None) or {}
    certificate = headers.get(CERT_ENVIRON)
    if not isinstance(certificate, x509.Certificate):
        return None, False
    return certificate, headers.get(VERIFIED_ENVIRON) is True


class ClientCertificateMiddleware:
    """Accept the proxy's client-certificate headers from trusted proxies only; drop them always."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        meta = request.META
        pem = meta.get(CERT_HEADER, "")
        verify = meta.get(VERIFY_HEADER, "")
        for key in [key for key in meta if key.startswith("HTTP_X_SSL_CLIENT_")]:
            del meta[key]
        meta.pop(CERT_ENVIRON, None)
        meta.pop(VERIFIED_ENVIRON, None)
        certificate = None
        if pem and is_trusted_proxy(meta.get("REMOTE_ADDR")):
            # NONE: no certificate. SUCCESS: chained to nginx's trust store. FAILED:...: presented,
            # the key proven by the handshake, but not chained (optional_no_ca, self-signed).
            if verify == "SUCCESS" or verify.startswith("FAILED"):
                certificate = parse_escaped_pem(pem)
                if certificate is None:
                    log.warning("the proxy sent a client certificate that does not parse")
        elif pem:
            log.warning("client certificate header from an untrusted peer ignored")
        request.client_certificate = certificate  # type: ignore[attr-defined]
        if certificate is not None:
            meta[CERT_ENVIRON] = certificate
            meta[VERIFIED_ENVIRON] = verify == "SUCCESS"
        return self.get_response(request)
