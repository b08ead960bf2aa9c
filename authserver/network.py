"""The caller's address, and the network zones it is in.

The address is the socket peer (``REMOTE_ADDR``). Only when that peer is one of
AUTHSERVER_TRUSTED_PROXIES (the nginx in front, deploy/nginx/) does ``X-Forwarded-For``
count, and then only as far as the proxies go: walking it from the right, trusted proxies
are skipped and the first address that is not one is the caller. Anything left of it was
written by the caller itself and proves nothing (STANDARDS.md, Transport: headers of a TLS
offloader are trusted only from configured proxies).

Used for network zones (the issuance policy), the audit log (RequestContextMiddleware) and
rate limits per address.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, TypeVar

from .mtls import is_trusted_proxy

__all__ = ["client_address", "parse_networks", "zones_containing"]

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Z = TypeVar("Z")
FORWARDED_FOR = "HTTP_X_FORWARDED_FOR"
MAX_FORWARDED_FOR = 2048  # characters; a longer header is not one a proxy of ours wrote


def _normalise(value: str) -> str | None:
    """An IP address in canonical form, or None. Accepts ``[v6]``, ``[v6]:port`` and ``v4:port``."""
    value = value.strip()
    if value.startswith("["):
        value = value[1:].split("]", 1)[0]
    elif value.count(":") == 1:
        value = value.split(":", 1)[0]  # IPv4 with a port
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return str(address)


def _meta(request_or_meta: Any) -> Mapping[str, Any]:
    meta = getattr(request_or_meta, "META", None)  # a Django request
    if meta is None:
        meta = getattr(request_or_meta, "headers", None)  # an oauthlib request: DOT copies META
    if meta is None:
        meta = request_or_meta
    return meta if isinstance(meta, Mapping) else {}


def client_address(request_or_meta: Any) -> str | None:
    """The caller's IP address: the socket peer, or what trusted proxies say it is.

    Takes a Django request, an oauthlib request (whose headers DOT fills from META) or a
    META mapping.
    """
    meta = _meta(request_or_meta)
    peer = _normalise(str(meta.get("REMOTE_ADDR") or ""))
    if peer is None or not is_trusted_proxy(peer):
        return peer
    forwarded = meta.get(FORWARDED_FOR)
    if not isinstance(forwarded, str) or not forwarded or len(forwarded) > MAX_FORWARDED_FOR:
        return peer
    address = peer
    for hop in reversed(forwarded.split(",")):
        candidate = _normalise(hop)
        if candidate is None:
            # Garbage where a proxy of ours would have written an address: stop at the last
            # address we can vouch for.
            return address
        address = candidate
        if not is_trusted_proxy(candidate):
            return candidate
    return address  # every hop was a trusted proxy: the left-most is the best we know


@lru_cache(maxsize=1024)
def parse_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    """CIDR strings as networks; entries that do not parse are skipped (the admin form validates)."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(ipaddress.ip_network(str(cidr).strip(), strict=False))
        except ValueError:
            continue
    return tuple(networks)


def zones_containing(address: str | None, zones: Iterable[tuple[Z, tuple[str, ...]]]) -> tuple[Z, ...]:
    """The zones (each given with its CIDRs) whose networks contain ``address``."""
    if not address:
        return ()
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return ()
    return tuple(
        zone for zone, cidrs in zones if any(ip.version == net.version and ip in net for net in parse_networks(cidrs))
    )
