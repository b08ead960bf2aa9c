"""manage.py revokeclient: revoke a client from a script, at once and for good.

The same service as the admin's and the portal's revoke (clients.services.client_revoke): the
client's credentials stop working, every access and refresh token it holds is revoked (a
resource server introspecting one gets ``active: false`` on its next call), and the
revocation is audited. A revoked client cannot be reinstated; register a new one.
"""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from authserver.errors import DomainError
from clients.models import Client
from clients.services import client_revoke


class Command(BaseCommand):
    help = "Revoke an OAuth client with its credentials and tokens; prints the client as JSON."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("client_id", help="The client's client_id")

    def handle(self, *args: Any, **options: Any) -> None:
        client = Client.objects.filter(client_id=options["client_id"]).first()
        if client is None:
            raise CommandError(f"no client with client_id {options['client_id']!r}")
        try:
            client = client_revoke(client_id=client.pk)
        except DomainError as exc:
            raise CommandError(f"{client.client_id}: {exc}") from exc
        self.stdout.write(
            json.dumps(
                {
                    "client_id": client.client_id,
                    "name": client.name,
                    "organisation": client.organisation.name,
                    "status": client.status,
                },
                indent=2,
            )
        )
