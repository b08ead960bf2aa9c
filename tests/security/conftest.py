"""Attack-suite fixtures: a second organisation to attack from, an API whose resource server
introspects, OTP-verified staff, and a canary listener that records every connection made to it.

docs/security.md maps each threat to the test that proves its defence.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from django.test import Client as Browser
from django_otp import DEVICE_ID_SESSION_KEY
from django_otp.plugins.otp_totp.models import TOTPDevice

from authserver.models import ApiResource
from onboarding.models import Membership, Organisation, User

from ..conftest import REDIRECT_URI, RegisteredClient, register_client
from ..factories import OrganisationFactory, ScopeFactory, UserFactory

ORDERS_API = "https://api.example.org/orders"


# ---- organisations, members, clients ---------------------------------------------------------


@pytest.fixture
def other_organisation(db) -> Organisation:
    """The attacker's own, active organisation."""
    return OrganisationFactory(name="Attacker BV")


@pytest.fixture
def attacker_client(other_organisation) -> RegisteredClient:
    """An authorization-code client of the attacker's organisation, registered for the same
    redirect URI as the victim's client: a code stolen from one may be tried at the other."""
    return register_client(
        other_organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "orders:read"],
        redirect_uris=[REDIRECT_URI],
    )


def add_member(organisation: Organisation, role: str = Membership.Role.OWNER, **user_fields: object) -> User:
    user = UserFactory(**user_fields)
    Membership.objects.create(user=user, organisation=organisation, role=role)
    return user


def browser_for(user: User, *, enforce_csrf_checks: bool = False) -> Browser:
    browser = Browser(enforce_csrf_checks=enforce_csrf_checks)
    browser.force_login(user)
    return browser


def otp_verified_browser(user: User, *, enforce_csrf_checks: bool = False) -> Browser:
    """A browser whose session a confirmed TOTP device verified (what the admin login does)."""
    device = TOTPDevice.objects.filter(user=user, confirmed=True).first() or TOTPDevice.objects.create(
        user=user, name="Authenticator app", confirmed=True
    )
    browser = browser_for(user, enforce_csrf_checks=enforce_csrf_checks)
    session = browser.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return browser


# ---- an API with its own resource server (RFC 7662 introspection only for its own APIs) -------


@dataclass
class Api:
    resource: ApiResource
    resource_server: RegisteredClient


@pytest.fixture
def orders_api(db) -> Api:
    """The ``orders`` API: its scopes, and the resource server that may introspect for it."""
    owner = OrganisationFactory(name="API owner", kind="government", oin="00000001002220647000", kvk_number="")
    resource_server = register_client(
        owner, grant_type="client_credentials", auth_method="client_secret_basic", scopes=[], is_resource_server=True
    )
    api = ApiResource.objects.create(name="Orders", slug="orders", audience=ORDERS_API, owner=owner)
    api.introspectors.add(resource_server.client)
    for name in ("orders:read", "orders:write"):
        ScopeFactory(name=name, api=api, risk_level="low")
    return Api(resource=api, resource_server=resource_server)


# ---- a canary: any connection to it is a request the server should never have made -----------


@dataclass
class Canary:
    """A TCP listener on 127.0.0.1 that counts connections and the first bytes of each."""

    port: int
    connections: list[bytes] = field(default_factory=list)

    def url(self, path: str = "/", scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"


@pytest.fixture
def canary() -> Iterator[Canary]:
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    listener.settimeout(0.2)
    canary = Canary(port=listener.getsockname()[1])
    stopping = threading.Event()

    def serve() -> None:
        while not stopping.is_set():
            try:
                connection, _address = listener.accept()
            except OSError:
                continue
            with connection:
                connection.settimeout(0.5)
                try:
                    data = connection.recv(512)
                except OSError:
                    data = b""
                canary.connections.append(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield canary
    finally:
        stopping.set()
        thread.join(timeout=2)
        listener.close()
