"""manage.py bootstrap: make a fresh installation usable, idempotently.

Creates the signing keys (active for the signing algorithms, next keys pre-published), and
on the embedded defaults an admin account, a demo client whose credentials are printed once,
when they are created, and the demo API (examples/demo_api/) that ``make run`` starts beside
the server: its API resource with the endpoints of its OpenAPI document, and the resource
server client it introspects with. Run by ``make run``; safe to run again.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction

from authserver import services
from authserver.audit import audit_record
from authserver.catalogue import api_import_openapi
from authserver.errors import DomainError
from authserver.oauth.client_auth import hash_client_secret
from clients.models import Client, ClientCredential
from clients.services import client_create, client_credential_issue_secret, client_credential_revoke
from onboarding.models import Organisation
from onboarding.services import organisation_create

DEMO_CLIENT_ID = "demo-service"
# What the walk-through's client may do: read and write orders, not administer (README.md).
DEMO_CLIENT_SCOPES = ["demo:read", "demo:write"]
# The demo API (examples/demo_api/): its catalogue entry, endpoints and introspection client.
DEMO_API_SLUG = "demo"
DEMO_API_URL = "http://localhost:8001/"
DEMO_API_OPENAPI = Path(settings.BASE_DIR) / "examples" / "demo_api" / "openapi.json"
DEMO_API_CLIENT_ID = "demo-api"
# scripts/run.sh hands the demo API and this command the same fresh secret on every start, so
# no clear secret is kept anywhere; only its hash is stored (authserver/oauth/client_auth.py).
DEMO_API_SECRET_ENV = "DEMO_API_CLIENT_SECRET"
# A small scope catalogue so the portal and open registration have something to offer.
DEMO_SCOPES: list[dict[str, Any]] = [
    {"name": "demo:read", "description": "Read the demo API", "risk_level": "low", "open_registration": True},
    {"name": "demo:write", "description": "Change data in the demo API", "risk_level": "medium"},
    {
        "name": "demo:admin",
        "description": "Administer the demo API",
        "risk_level": "high",
        "min_trust_level": "substantial",
        "requires_approval": True,
    },
]


class Command(BaseCommand):
    help = "Create signing keys and, outside production, an admin account and a demo client."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--no-demo", action="store_true", help="Keys only: no admin account, no demo client")
        parser.add_argument(
            "--demo-api-url",
            default=DEMO_API_URL,
            help=f"Where the demo API listens: its audience (RFC 8707 resource indicator); default {DEMO_API_URL}",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        for alg in {settings.AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG, settings.AUTHSERVER_ID_TOKEN_SIGNING_ALG}:
            services.signing_key_ensure_active(alg=alg)
        services.signing_keys_rotate_due()
        if options["no_demo"] or settings.IS_PRODUCTION:
            return
        issuer = settings.AUTHSERVER_ISSUER
        self._admin(issuer)
        self._demo_scopes()
        try:
            self._demo_api(options["demo_api_url"])
        except DomainError as exc:
            raise CommandError(f"cannot register the demo API: {exc}") from exc
        self._demo_client(issuer)

    def _demo_scopes(self) -> None:
        from authserver.models import Scope

        for row in DEMO_SCOPES:
            Scope.objects.get_or_create(name=row["name"], defaults=row)

    def _admin(self, issuer: str) -> None:
        User = get_user_model()
        if User.objects.filter(is_superuser=True).exists():
            self.stdout.write(
                f"Admin: {issuer}/admin/ (password and 2FA from the first start; reset the password with "
                "`.venv/bin/python manage.py changepassword admin`)"
            )
            return
        password = secrets.token_urlsafe(12)
        User.objects.create_superuser(username="admin", email="admin@localhost", password=password)
        self.stdout.write(
            f"Admin: username: admin  password: {password}  (shown once)\n"
            "  The admin requires two-factor authentication:\n"
            f"  sign in at {issuer}/accounts/login/?next=/accounts/2fa/ , scan the QR code with an\n"
            f"  authenticator app, keep the backup codes, then open {issuer}/admin/"
        )

    @staticmethod
    def _demo_organisation() -> Organisation:
        return Organisation.objects.filter(name="Demo Organisation").first() or organisation_create(
            name="Demo Organisation", kvk_number="90000001", status=Organisation.Status.ACTIVE
        )

    @transaction.atomic
    def _demo_api(self, url: str) -> None:
        """The demo API in the catalogue: its audience, its endpoints with their scopes (from its
        OpenAPI document, as an API owner imports one) and the resource server it introspects as."""
        from authserver.models import ApiResource

        organisation = self._demo_organisation()
        api = ApiResource.objects.select_for_update().filter(slug=DEMO_API_SLUG).first()
        if api is None:
            api = ApiResource.objects.create(
                name="Demo API",
                slug=DEMO_API_SLUG,
                description="The API of the README walk-through (examples/demo_api/): orders, and statistics.",
                audience=url,
                owner=organisation,
                documentation_url=f"{url.rstrip('/')}/openapi.json",
            )
            audit_record(
                "api.created",
                target=api,
                organisation=organisation,
                data={"name": api.name, "audience": api.audience, "via": "bootstrap"},
            )
            api_import_openapi(api=api, document=DEMO_API_OPENAPI.read_bytes(), actor=None, claim_scopes=True)
        elif api.audience != url:
            # The demo API was moved to another port (AUTHSERVER_DEMO_API_PORT): follow it.
            previous, api.audience = api.audience, url
            api.documentation_url = f"{url.rstrip('/')}/openapi.json"
            api.save(update_fields=["audience", "documentation_url", "updated_at"])
            audit_record(
                "api.changed",
                target=api,
                organisation=api.owner,
                data={"name": api.name, "changed": {"audience": url}, "previous": {"audience": previous}},
            )
        resource_server = Client.objects.filter(client_id=DEMO_API_CLIENT_ID).first()
        if resource_server is None:
            resource_server = client_create(
                organisation=organisation,
                name="Demo API (resource server)",
                grant_type="client_credentials",
                scopes=[],
                auth_method=Client.AuthMethod.CLIENT_SECRET_BASIC,
                client_id=DEMO_API_CLIENT_ID,
                environment=Client.Environment.DEVELOPMENT,
                is_resource_server=True,
            )
        if not api.introspectors.filter(pk=resource_server.pk).exists():
            api.introspectors.add(resource_server)
            audit_record(
                "api.changed",
                target=api,
                organisation=api.owner,
                data={"name": api.name, "changed": {"introspectors": [DEMO_API_CLIENT_ID]}},
            )
        secret = os.environ.get(DEMO_API_SECRET_ENV, "")
        if secret:
            self._demo_api_secret(resource_server, secret)
        self.stdout.write(f"Demo API: {url} (introspects as {DEMO_API_CLIENT_ID}; catalogue: /apis/{api.slug}/)")

    def _demo_api_secret(self, resource_server: Client, secret: str) -> None:
        """Make ``secret`` the resource server's one usable secret; nothing changes when it is already."""
        if resource_server.status != Client.Status.ACTIVE:
            self.stderr.write(
                f"note: {DEMO_API_CLIENT_ID} is {resource_server.status}: the demo API cannot introspect "
                "(rm -rf var to start from scratch)"
            )
            return
        usable = [
            credential
            for credential in resource_server.credentials.filter(kind=ClientCredential.Kind.SECRET)
            if credential.is_usable()
        ]
        wanted = hash_client_secret(secret)
        if len(usable) == 1 and hmac.compare_digest(usable[0].secret_hash, wanted):
            return
        for credential in usable:
            client_credential_revoke(credential_id=credential.pk)
        client_credential_issue_secret(client=resource_server, secret=secret)

    @transaction.atomic
    def _demo_client(self, issuer: str) -> None:
        existing = Client.objects.filter(client_id=DEMO_CLIENT_ID).first()
        if existing is not None:
            if existing.status != Client.Status.ACTIVE:
                self.stdout.write(
                    f"Demo client: {DEMO_CLIENT_ID} is {existing.status} (rm -rf var and start again for a new one)"
                )
                return
            self.stdout.write(f"Demo client: {DEMO_CLIENT_ID} (secret shown at the first start)")
            return
        organisation = self._demo_organisation()
        client = client_create(
            organisation=organisation,
            name="Demo service",
            grant_type="client_credentials",
            scopes=DEMO_CLIENT_SCOPES,
            auth_method=Client.AuthMethod.CLIENT_SECRET_BASIC,
            client_id=DEMO_CLIENT_ID,
            environment=Client.Environment.DEVELOPMENT,
        )
        issued = client_credential_issue_secret(client=client)
        self.stdout.write(
            f"Demo client: {DEMO_CLIENT_ID}  secret: {issued.secret}  (shown once)\n"
            f"  curl -u {DEMO_CLIENT_ID}:{issued.secret} -d grant_type=client_credentials {issuer}/oauth/token"
        )
