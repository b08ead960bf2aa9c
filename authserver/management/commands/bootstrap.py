"""manage.py bootstrap: make a fresh installation usable, idempotently.

Creates the signing keys (active for the signing algorithms, next keys pre-published), and
on the embedded defaults an admin account and a demo client whose credentials are printed
once, when they are created. Run by ``make run``; safe to run again.
"""

from __future__ import annotations

import secrets
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.db import transaction

from authserver import services
from clients.models import Client
from clients.services import client_create, client_credential_issue_secret
from onboarding.models import Organisation
from onboarding.services import organisation_create

DEMO_CLIENT_ID = "demo-service"
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

    def handle(self, *args: Any, **options: Any) -> None:
        for alg in {settings.AUTHSERVER_ACCESS_TOKEN_SIGNING_ALG, settings.AUTHSERVER_ID_TOKEN_SIGNING_ALG}:
            services.signing_key_ensure_active(alg=alg)
        services.signing_keys_rotate_due()
        if options["no_demo"] or settings.IS_PRODUCTION:
            return
        issuer = settings.AUTHSERVER_ISSUER
        self._admin(issuer)
        self._demo_scopes()
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

    @transaction.atomic
    def _demo_client(self, issuer: str) -> None:
        if Client.objects.filter(client_id=DEMO_CLIENT_ID).exists():
            self.stdout.write(f"Demo client: {DEMO_CLIENT_ID} (secret shown at the first start)")
            return
        organisation = Organisation.objects.filter(name="Demo Organisation").first() or organisation_create(
            name="Demo Organisation", kvk_number="90000001", status=Organisation.Status.ACTIVE
        )
        client = client_create(
            organisation=organisation,
            name="Demo service",
            grant_type="client_credentials",
            scopes=["demo:read"],
            auth_method=Client.AuthMethod.CLIENT_SECRET_BASIC,
            client_id=DEMO_CLIENT_ID,
            environment=Client.Environment.DEVELOPMENT,
        )
        issued = client_credential_issue_secret(client=client)
        self.stdout.write(
            f"Demo client: {DEMO_CLIENT_ID}  secret: {issued.secret}  (shown once)\n"
            f"  curl -u {DEMO_CLIENT_ID}:{issued.secret} -d grant_type=client_credentials {issuer}/oauth/token"
        )
