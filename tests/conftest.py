"""Shared fixtures: organisations, clients of every kind, keys, and a live issuer."""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from django.conf import settings as django_settings
from jwcrypto.jwk import JWK

from authserver.oauth.keys import keyring
from clients.models import Client
from clients.services import client_create, client_credential_add_public_key, client_credential_issue_secret

from .factories import PASSWORD, OrganisationFactory, UserFactory

REDIRECT_URI = "https://rp.example.org/callback"


_KEY_POOL: dict[str, list[Any]] = {}


def pytest_configure(config):
    """Hash test users' passwords cheaply (Django's testing advice): PBKDF2 at full strength
    made creating and signing in a user cost over a second under the parallel suite. The
    production hashers stay behind it, so their hashes still verify."""
    django_settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        *django_settings.PASSWORD_HASHERS,
    ]


@pytest.fixture(autouse=True)
def _fresh_keyring(monkeypatch):
    """Each test sees the signing keys of its own database, not a previous test's.

    Generating an RSA-3072 key takes about a second, so tests reuse a pool of generated keys:
    the n-th key a test asks for is the same object in every test (each test has its own
    database, so kids never collide), and a test that needs more keys grows the pool.
    """
    from authserver import services
    from authserver.oauth import keys

    used: dict[str, int] = {}

    def pooled_private_key(alg: str):
        pool = _KEY_POOL.setdefault(alg, [])
        index = used.get(alg, 0)
        used[alg] = index + 1
        while len(pool) <= index:
            pool.append(keys.generate_private_key(alg))
        return pool[index]

    monkeypatch.setattr(services, "generate_private_key", pooled_private_key)
    keyring.clear()
    yield
    keyring.clear()


@pytest.fixture(autouse=True)
def _own_rate_limit_counters(settings):
    """Each test counts its requests apart (authserver/ratelimit.py): every test calls from
    127.0.0.1, and the xdist workers share one Redis, so shared counters would leak between them."""
    settings.AUTHSERVER_RATE_LIMIT_KEY_PREFIX = f"test-ratelimit-{uuid.uuid4().hex}"


@pytest.fixture(autouse=True)
def _fresh_issuance_catalogue():
    """Each test reads its own clients and scope catalogue (authserver/hotcache.py): a test's
    rows are rolled back without the signals that would drop what a process copied."""
    from authserver import hotcache

    hotcache.replace_generation()


@pytest.fixture
def organisation(db):
    return OrganisationFactory()


@pytest.fixture
def user(db):
    return UserFactory()


@pytest.fixture
def password() -> str:
    return PASSWORD


@dataclass
class ClientKey:
    """A client's key pair for private_key_jwt: the private half stays with the test."""

    private_key: Any
    alg: str
    kid: str
    public_jwk: dict[str, Any] = field(default_factory=dict)

    def assertion(self, client_id: str, audience: str, **overrides: Any) -> str:
        now = int(time.time())
        claims = {
            "iss": client_id,
            "sub": client_id,
            "aud": audience,
            "iat": now,
            "exp": now + 60,
            "jti": uuid.uuid4().hex,
        }
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private_key, algorithm=self.alg, headers={"kid": self.kid})


def make_client_key(alg: str = "RS256") -> ClientKey:
    private_key = ec.generate_private_key(ec.SECP256R1()) if alg == "ES256" else rsa.generate_private_key(65537, 2048)
    jwk = JWK.from_pyca(private_key.public_key())
    public = jwk.export_public(as_dict=True)
    public["kid"] = jwk.thumbprint()
    public["alg"] = alg
    return ClientKey(private_key=private_key, alg=alg, kid=public["kid"], public_jwk=public)


@pytest.fixture
def client_key() -> ClientKey:
    return make_client_key("RS256")


@dataclass
class RegisteredClient:
    client: Client
    secret: str | None = None
    key: ClientKey | None = None

    @property
    def client_id(self) -> str:
        return self.client.client_id


def register_client(
    organisation, *, grant_type: str, auth_method: str, scopes: list[str], key: ClientKey | None = None, **kwargs: Any
) -> RegisteredClient:
    client = client_create(
        organisation=organisation,
        name=f"{grant_type} {auth_method}",
        grant_type=grant_type,
        scopes=scopes,
        auth_method=auth_method,
        **kwargs,
    )
    registered = RegisteredClient(client=client)
    if client.uses_client_secret:
        registered.secret = client_credential_issue_secret(client=client).secret
    if auth_method == Client.AuthMethod.PRIVATE_KEY_JWT:
        registered.key = key or make_client_key()
        client_credential_add_public_key(client=client, jwk=registered.key.public_jwk)
    return registered


@pytest.fixture
def cc_basic(organisation) -> RegisteredClient:
    return register_client(
        organisation,
        grant_type="client_credentials",
        auth_method="client_secret_basic",
        scopes=["orders:read", "orders:write"],
    )


@pytest.fixture
def cc_post(organisation) -> RegisteredClient:
    return register_client(
        organisation, grant_type="client_credentials", auth_method="client_secret_post", scopes=["orders:read"]
    )


@pytest.fixture
def cc_jwt(organisation) -> RegisteredClient:
    return register_client(
        organisation, grant_type="client_credentials", auth_method="private_key_jwt", scopes=["orders:read"]
    )


@pytest.fixture
def web_client(organisation) -> RegisteredClient:
    return register_client(
        organisation,
        grant_type="authorization_code",
        auth_method="client_secret_basic",
        scopes=["openid", "profile", "email", "orders:read"],
        redirect_uris=[REDIRECT_URI],
        post_logout_redirect_uris=["https://rp.example.org/signed-out"],
    )


@pytest.fixture
def resource_server(organisation) -> RegisteredClient:
    return register_client(
        organisation,
        grant_type="client_credentials",
        auth_method="client_secret_basic",
        scopes=[],
        is_resource_server=True,
    )


@pytest.fixture
def resource_server_api(organisation, resource_server):
    """The API the ``resource_server`` fixture serves: it owns the orders scopes the client
    fixtures hold, and lists that resource server among its introspectors, which introspection
    requires (only for a resource server's own APIs, docs/decisions/0010-introspection.md).
    With the scopes under an API, a token asked for them gets its audience (decision 0009)."""
    from authserver.models import ApiResource, Scope

    api, _ = ApiResource.objects.get_or_create(
        audience="https://api.example.org/orders",
        defaults={"name": "Orders", "slug": "orders", "owner": organisation},
    )
    api.introspectors.add(resource_server.client)
    for name in ("orders:read", "orders:write"):
        Scope.objects.update_or_create(name=name, defaults={"api": api, "risk_level": "low"})
    return api


@pytest.fixture
def issuer(live_server, settings) -> str:
    """Make the live server the issuer, as production configures AUTHSERVER_ISSUER."""
    url = live_server.url
    settings.AUTHSERVER_ISSUER = url
    settings.OAUTH2_PROVIDER = {**django_settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": url}
    return url


def decode_unverified(token: str) -> dict[str, Any]:
    return jwt.decode(token, options={"verify_signature": False})


def pretty(data: Any) -> str:
    return json.dumps(data, indent=2, sort_keys=True)
