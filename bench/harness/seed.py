"""Seed a benchmark database and write the fixture every server under test shares.

Run by the harness as a subprocess with the server's environment (DATABASE_URL and the
rest), after ``manage.py migrate``:

    .venv/bin/python bench/harness/seed.py OUT.json

It creates the signing keys, an organisation, two APIs with a scope each (``orders``, the
fixture's resource, gets JWT access tokens; ``ledger`` gets opaque ones), and the clients
of the workloads: ``basic`` (client_secret_basic), ``rs256``
and ``ps256`` (private_key_jwt with RSA-2048 keys), ``introspector`` (the API's resource
server) and ``web`` (authorization code with PKCE) with a user to sign in as. The fixture
holds what a load generator needs: client ids, secrets, private keys (PEM). It lives in
bench/out/, which git ignores, and is thrown away with the benchmark database.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
RESOURCE = "https://orders.bench.example/"
SCOPE = "orders:read"
# An API whose access tokens are opaque (introspected by its resource server, never parsed).
OPAQUE_RESOURCE = "https://ledger.bench.example/"
OPAQUE_SCOPE = "ledger:read"
REDIRECT_URI = "https://rp.bench.example/callback"
USERNAME = "bench-user"


def _key_pair(alg: str) -> tuple[str, dict[str, object]]:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from jwcrypto.jwk import JWK

    # RSA-2048 client keys: a client's choice (the server verifies RSA-3072 keys ~20 µs slower,
    # openssl speed), and ~7 times cheaper to sign the assertions the load generator needs.
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    jwk = JWK.from_pyca(private.public_key())
    public = jwk.export_public(as_dict=True)
    public.update(kid=jwk.thumbprint(), alg=alg, use="sig")
    return pem, public


def seed() -> dict[str, object]:
    from django.conf import settings
    from django.contrib.auth import get_user_model
    from django.core.management import call_command

    from authserver.models import ApiResource, Scope
    from clients.models import Client
    from clients.services import client_create, client_credential_add_public_key, client_credential_issue_secret
    from onboarding.models import Organisation
    from onboarding.services import organisation_create

    call_command("bootstrap", "--no-demo")
    organisation = organisation_create(
        name="Benchmark Organisation", kvk_number="90000002", status=Organisation.Status.ACTIVE
    )
    api = ApiResource.objects.create(name="Orders", slug="orders", audience=RESOURCE, owner=organisation)
    Scope.objects.update_or_create(name=SCOPE, defaults={"api": api, "risk_level": "low"})
    ledger = ApiResource.objects.create(
        name="Ledger", slug="ledger", audience=OPAQUE_RESOURCE, owner=organisation, token_format="opaque"
    )
    Scope.objects.update_or_create(name=OPAQUE_SCOPE, defaults={"api": ledger, "risk_level": "low"})
    Scope.objects.update_or_create(name="openid", defaults={"risk_level": "low"})
    clients: dict[str, dict[str, object]] = {}

    def register(name: str, **kwargs: object) -> Client:
        return client_create(organisation=organisation, name=f"bench {name}", client_id=f"bench-{name}", **kwargs)  # type: ignore[arg-type]

    for name in ("basic", "introspector"):
        client = register(
            name,
            grant_type="client_credentials",
            scopes=[] if name == "introspector" else [SCOPE, OPAQUE_SCOPE],
            auth_method=Client.AuthMethod.CLIENT_SECRET_BASIC,
            is_resource_server=name == "introspector",
        )
        secret = secrets.token_urlsafe(32)
        client_credential_issue_secret(client=client, secret=secret)
        clients[name] = {"client_id": client.client_id, "client_secret": secret}
    for served in (api, ledger):
        served.introspectors.add(Client.objects.get(client_id="bench-introspector"))
    for alg in ("RS256", "PS256"):
        client = register(alg.lower(), grant_type="client_credentials", scopes=[SCOPE])
        pem, public = _key_pair(alg)
        client_credential_add_public_key(client=client, jwk=public)
        clients[alg.lower()] = {
            "client_id": client.client_id,
            "alg": alg,
            "jwks": {"keys": [public]},
            "private_key_pem": pem,
            "kid": public["kid"],
        }
    web = register(
        "web",
        grant_type="authorization_code",
        scopes=["openid", SCOPE],
        auth_method=Client.AuthMethod.CLIENT_SECRET_BASIC,
        redirect_uris=[REDIRECT_URI],
    )
    web_secret = secrets.token_urlsafe(32)
    client_credential_issue_secret(client=web, secret=web_secret)
    password = secrets.token_urlsafe(16)
    get_user_model().objects.create_user(username=USERNAME, email="bench@example.org", password=password)
    clients["web"] = {
        "client_id": web.client_id,
        "client_secret": web_secret,
        "redirect_uri": REDIRECT_URI,
        "username": USERNAME,
        "password": password,
    }
    return {
        "issuer": settings.AUTHSERVER_ISSUER,
        "token_endpoint": f"{settings.AUTHSERVER_ISSUER}/oauth/token",
        "resource": RESOURCE,
        "scope": SCOPE,
        "opaque_resource": OPAQUE_RESOURCE,
        "opaque_scope": OPAQUE_SCOPE,
        "clients": clients,
    }


def main() -> None:
    sys.path.insert(0, str(REPO))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "authserver.settings")
    import django

    django.setup()
    out = Path(sys.argv[1])
    out.write_text(json.dumps(seed(), indent=2))


if __name__ == "__main__":
    main()
